// The command line as a new user meets it: --version, usage, typos, defaults that work on any model's
// context, the engine cache, sampling flags, prompt files, stop strings, JSON output, beams in `run`.
#include <gtest/gtest.h>

#include <set>

#include "../test_util.h"

namespace lamina {
namespace {

using test::run_command;
using test::TempDir;

std::string lamina(const std::string& args) { return test::lamina_binary() + " " + args; }
std::string tiny() { return (test::data_dir() / "tiny_llama").string(); }

// A copy of the tiny model whose config says `n_ctx` positions.
std::filesystem::path tiny_with_context(const TempDir& dir, int64_t n_ctx) {
    const auto out = dir / ("tiny_ctx" + std::to_string(n_ctx));
    std::filesystem::create_directories(out);
    for (const auto& e : std::filesystem::directory_iterator(tiny())) std::filesystem::copy_file(e.path(), out / e.path().filename());
    auto config = test::read_json(out / "config.json");
    config["max_position_embeddings"] = n_ctx;
    std::ofstream(out / "config.json") << config.dump(2);
    return out;
}

size_t count_entries(const std::filesystem::path& dir) {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.is_directory() ? 1 : 0;
    return n;
}

TEST(CliUsage, VersionUsageAndTypos) {
    const auto v = run_command(lamina("--version"));
    EXPECT_EQ(v.status, 0);
    EXPECT_EQ(v.output, std::string("lamina ") + LAMINA_VERSION + "\n");
    const auto bare = run_command(lamina(""));
    EXPECT_EQ(bare.status, 0);
    for (const char* c : {"build", "run", "summarize", "bench", "perplexity", "logits", "tokenize", "rouge"})
        EXPECT_NE(bare.output.find(c), std::string::npos) << c << "\n" << bare.output;

    const auto typo = run_command(lamina("run --model_dir " + tiny() + " --tempreature 0.8"));
    EXPECT_EQ(typo.status, 2) << typo.output;
    EXPECT_EQ(std::count(typo.output.begin(), typo.output.end(), '\n'), 1) << typo.output;
    EXPECT_NE(typo.output.find("did you mean --temperature?"), std::string::npos) << typo.output;
    EXPECT_NE(typo.output.find("lamina run --help"), std::string::npos) << typo.output;

    const auto command = run_command(lamina("rnu"));
    EXPECT_EQ(command.status, 2);
    EXPECT_NE(command.output.find("did you mean 'run'?"), std::string::npos) << command.output;
    const auto bad_value = run_command(lamina("run --model_dir " + tiny() + " --max_output_len lots"));
    EXPECT_EQ(bad_value.status, 2) << bad_value.output;
}

TEST(CliUsage, EveryFlagHasHelpAndShowsItsDefault) {
    for (const char* c : {"build", "run", "summarize", "bench", "perplexity", "logits", "tokenize", "rouge"}) {
        const auto r = run_command(lamina(std::string(c) + " --help"));
        ASSERT_EQ(r.status, 0) << c;
        std::vector<std::string> lines;
        std::istringstream in(r.output);
        for (std::string line; std::getline(in, line);) lines.push_back(line);
        for (size_t i = 0; i < lines.size(); ++i) {
            // An option: "  --name TYPE=default" then its help, on the same line after a gap (CLI11 aligns
            // it at column 30) or, when the name is long, on the next line, indented.
            constexpr size_t kHelpColumn = 30;
            if (lines[i].rfind("  -", 0) != 0) continue;
            const std::string& l = lines[i];
            const size_t gap = l.find("  ", 3);
            const bool same_line = (gap != std::string::npos && l.find_first_not_of(' ', gap) != std::string::npos) ||
                                   (l.size() > kHelpColumn && l[kHelpColumn - 1] == ' ' && l[kHelpColumn] != ' ');
            const bool next_line = i + 1 < lines.size() && lines[i + 1].rfind("      ", 0) == 0;
            EXPECT_TRUE(same_line || next_line) << c << ": no help text: " << lines[i];
        }
    }
    const auto run = run_command(lamina("run --help"));
    // Defaults: "=64" (CLI11 2.1) or "[64]" (later CLI11).
    auto shows = [&](const std::string& flag, const std::string& value) {
        const size_t at = run.output.find(flag + " ");
        if (at == std::string::npos) return false;
        const std::string line = run.output.substr(at, run.output.find('\n', at) - at);
        return line.find("=" + value) != std::string::npos || line.find("[" + value + "]") != std::string::npos;
    };
    EXPECT_TRUE(shows("--max_output_len", "64")) << run.output;
    EXPECT_TRUE(shows("--top_k", "1")) << run.output;
    EXPECT_TRUE(shows("--device", "auto")) << run.output;
}

// run --model_dir works with no other flag whatever the model's context, and the second call on the
// same checkpoint reuses the cached engine instead of writing a new one.
TEST(CliModelDir, RunsAnyContextAndCachesTheEngine) {
    TempDir dir;
    const auto cache = dir / "cache";
    const std::string env = "XDG_CACHE_HOME=" + cache.string() + " ";
    std::string first_text;
    for (int64_t n_ctx : {256, 2048, 8192}) {
        const auto model = n_ctx == 256 ? std::filesystem::path(tiny()) : tiny_with_context(dir, n_ctx);
        const auto json = (dir / "r.json").string();
        const auto r = run_command(env + lamina("run --model_dir " + model.string() + " --input_text 'Hello world' --output_json " + json));
        ASSERT_EQ(r.status, 0) << n_ctx << "\n" << r.output;
        const std::string text = test::read_json(json)["results"][0]["outputs"][0]["text"];
        if (first_text.empty()) first_text = text;
        EXPECT_EQ(text, first_text) << "the context length does not change the greedy text";
    }
    const auto engines = cache / "lamina" / "engines";
    ASSERT_EQ(count_entries(engines), 3u);
    const auto again = run_command(env + lamina("run --verbose --model_dir " + tiny() + " --input_text 'Hello world'"));
    ASSERT_EQ(again.status, 0) << again.output;
    EXPECT_NE(again.output.find("lamina: cached engine"), std::string::npos) << again.output;
    EXPECT_EQ(count_entries(engines), 3u);
    // The same for a GGUF file: the second call writes nothing.
    const std::string gguf = (test::data_dir() / "gguf" / "tiny_llama_v5_llama3.gguf").string();
    const auto g1 = run_command(env + lamina("run --verbose --model_dir " + gguf + " --input_text Hi"));
    const auto g2 = run_command(env + lamina("run --verbose --model_dir " + gguf + " --input_text Hi"));
    EXPECT_NE(g1.output.find("lamina: built engine"), std::string::npos) << g1.output;
    EXPECT_NE(g2.output.find("lamina: cached engine"), std::string::npos) << g2.output;
    EXPECT_EQ(g2.output.find("building engine"), std::string::npos) << g2.output;
    // A changed checkpoint is a new entry.
    const auto model = tiny_with_context(dir, 512);
    const auto changed = run_command(env + lamina("run --verbose --model_dir " + model.string() + " --input_text Hi"));
    EXPECT_NE(changed.output.find("lamina: built engine"), std::string::npos) << changed.output;
    // A sliding window shorter than the context: the defaults stay inside the window (exact attention).
    const auto mistral = run_command(env + lamina("run --model_dir " + (test::data_dir() / "tiny_mistral_v5").string() + " --input_text Hi"));
    EXPECT_EQ(mistral.status, 0) << mistral.output;
    // Limit flags belong to --model_dir; an engine keeps its own.
    const auto limits = run_command(lamina("run --engine_dir " + (engines / "x").string() + " --max_input_len 9"));
    EXPECT_NE(limits.status, 0);
    EXPECT_NE(limits.output.find("--engine_dir keeps"), std::string::npos) << limits.output;
}

TEST(CliModelDir, BuildDefaultsToTheModelsContextAndShowsProgress) {
    TempDir dir;
    const auto r = run_command(lamina("build --model_dir " + tiny() + " --output_dir " + (dir / "e").string()));
    ASSERT_EQ(r.status, 0) << r.output;
    const auto config = test::read_json(dir / "e" / "config.json");
    EXPECT_EQ(config["limits"]["max_input_len"].get<int64_t>() + config["limits"]["max_output_len"].get<int64_t>(), 256);
    EXPECT_NE(r.output.find("build: 100%"), std::string::npos) << r.output;  // the final progress line (not a terminal)
}

class CliSampling : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir;
        const auto r = run_command(lamina("build --model_dir " + tiny() + " --output_dir " + engine() +
                                          " --dtype float32 --max_input_len 32 --max_output_len 24 --max_batch_size 4"));
        ASSERT_EQ(r.status, 0) << r.output;
    }
    static void TearDownTestSuite() { delete dir_; }
    static std::string engine() { return (dir_->path() / "engine").string(); }
    // The output texts of a run, from its --output_json (robust to any bytes the tiny model writes).
    // (`json`: where the record goes, for the test to read more of it; a scratch file otherwise)
    static std::vector<std::string> run_all(const std::string& args, std::string json = "") {
        TempDir out;
        if (json.empty()) json = (out / "r.json").string();
        const auto r = run_command(lamina("run --device cpu --engine_dir " + engine() + " --max_output_len 24 --output_json " +
                                          json + " " + args));
        EXPECT_EQ(r.status, 0) << args << "\n" << r.output;
        std::vector<std::string> texts;
        if (r.status == 0) {
            const auto record = test::read_json(json);
            for (const auto& res : record["results"]) texts.push_back(res["outputs"][0]["text"]);
        }
        return texts;
    }
    static std::string run(const std::string& args, const std::string& json = "") {
        const auto texts = run_all(args, json);
        return texts.empty() ? "" : texts[0];
    }
    static TempDir* dir_;
};
TempDir* CliSampling::dir_ = nullptr;

TEST_F(CliSampling, TemperatureAloneSamplesAndSeedsRepeat) {
    const std::string greedy = run("--input_text Hello");
    EXPECT_EQ(greedy, run("--input_text Hello --temperature 0"));
    EXPECT_EQ(greedy, run("--input_text Hello --top_k 1 --temperature 0.8"));
    std::set<std::string> texts;
    for (int seed = 1; seed <= 4; ++seed) {
        const std::string a = run("--input_text Hello --temperature 0.8 --seed " + std::to_string(seed));
        EXPECT_EQ(a, run("--input_text Hello --temperature 0.8 --seed " + std::to_string(seed)));
        texts.insert(a);
    }
    EXPECT_EQ(texts.size(), 4u) << "four seeds, four different samples";
    EXPECT_EQ(texts.count(greedy), 0u);
    // --top_p alone samples too.
    EXPECT_NE(run("--input_text Hello --top_p 0.95 --seed 3"), greedy);
}

TEST_F(CliSampling, FreshSeedIsReportedAndReproduces) {
    TempDir out;
    const auto json = (out / "r.json").string();
    run("--input_text Hello --temperature 0.9", json);
    const auto j = test::read_json(json);
    const uint64_t seed = j["sampling"]["seed"];
    const std::string text = j["results"][0]["outputs"][0]["text"];
    EXPECT_EQ(run("--input_text Hello --temperature 0.9 --seed " + std::to_string(seed)), text);
    const auto verbose = run_command(lamina("run --device cpu --verbose --engine_dir " + engine() + " --temperature 0.9 --seed 77"));
    EXPECT_NE(verbose.output.find("lamina: seed 77"), std::string::npos) << verbose.output;
}

TEST_F(CliSampling, PromptFilesStopStringsRawAndJson) {
    TempDir dir;
    std::ofstream(dir / "p.txt") << "Hello world\n\nThe cat\nOnce upon a time\n";
    std::ofstream(dir / "p.jsonl") << "{\"prompt\": \"Hello world\"}\n{\"prompt\": \"The cat\", \"id\": 7}\n{\"prompt\": \"Once upon a time\"}\n";
    const std::string plain = "--temperature 0 --input_file " + (dir / "p.txt").string();
    const auto texts = run_all(plain);
    ASSERT_EQ(texts.size(), 3u);
    EXPECT_EQ(texts[0], run("--input_text 'Hello world'")) << "batched equals alone";
    EXPECT_EQ(texts[2], run("--input_text 'Once upon a time'"));
    EXPECT_EQ(run_all("--input_file " + (dir / "p.jsonl").string()), texts);
    EXPECT_EQ(run_all("--input_file - < " + (dir / "p.txt").string()), texts);

    // --raw: only the outputs, one a line (these outputs have no newline of their own).
    const auto raw = run_command("(" + lamina("run --device cpu --raw --engine_dir " + engine() + " --max_output_len 24 " + plain) +
                                 " 2>/dev/null)");
    EXPECT_EQ(raw.output, texts[0] + "\n" + texts[1] + "\n" + texts[2] + "\n");

    // --stop: the text ends just before the first occurrence of the stop string.
    const std::string full = texts[0];
    ASSERT_GE(full.size(), 8u);
    const std::string stop = full.substr(full.size() / 2, 3);
    const auto json = (dir / "s.json").string();
    const std::string stopped = run("--input_text 'Hello world' --stop '" + stop + "' --stop 'never appears'", json);
    EXPECT_EQ(stopped, full.substr(0, full.find(stop)));
    const auto j = test::read_json(json);
    EXPECT_EQ(j["results"][0]["outputs"][0]["finish_reason"], "stop");
    EXPECT_EQ(j["results"][0]["prompt"], "Hello world");
    EXPECT_GT(j["results"][0]["prompt_tokens"].get<int>(), 0);
    EXPECT_LT(j["results"][0]["outputs"][0]["tokens"].get<int>(), 24);
    EXPECT_GT(j["timings"]["decode_seconds"].get<double>(), 0.0);

    for (const auto& [args, needle] : std::vector<std::pair<std::string, std::string>>{
             {"--input_file /nonexistent.txt", "/nonexistent.txt"},
             {"--input_file " + (dir / "p.txt").string() + " --input_text x", "excludes"},
             {"--system hi", "--chat"},
             {"--num_beams 2 --temperature 0.7", "num_beams"}}) {
        const auto r = run_command(lamina("run --device cpu --engine_dir " + engine() + " " + args));
        EXPECT_NE(r.status, 0) << args;
        EXPECT_NE(r.output.find(needle), std::string::npos) << args << "\n" << r.output;
    }
    std::ofstream(dir / "bad.jsonl") << "{\"prompt\": \"ok\"}\n{\"text\": \"no prompt\"}\n";
    const auto bad = run_command(lamina("run --device cpu --engine_dir " + engine() + " --input_file " + (dir / "bad.jsonl").string()));
    EXPECT_NE(bad.output.find("bad.jsonl:2: needs a \"prompt\""), std::string::npos) << bad.output;
}

// run --num_beams is Hugging Face's beam search: the beams of tests/data/smollm2_beams.json (transformers
// on the same GGUF, dequantized: so float32 weights here), token for token: the first case of each configuration.
TEST(CliSmolLM2Beams, RunNumBeamsGivesHfBeams) {
    LAMINA_REQUIRE_SMOLLM2();
    TempDir dir;
    const auto fixture = test::read_json(test::data_dir() / "smollm2_beams.json");
    const int pad = fixture["pad_token_id"].is_number() ? fixture["pad_token_id"].get<int>() : -1;
    std::set<std::string> configs;
    int checked = 0;
    for (const auto& c : fixture["cases"]) {
        const auto& cfg = c["config"];
        if (!configs.insert(cfg.dump()).second) continue;
        const std::string early = cfg["early_stopping"].is_boolean() ? (cfg["early_stopping"].get<bool>() ? "true" : "false")
                                                                      : cfg["early_stopping"].get<std::string>();
        const auto json = (dir / "b.json").string();
        const auto r = run_command(lamina("run --device cpu --dtype float32 --cache_dir " + (dir / "cache").string() + " --model_dir " +
                                          test::smollm2_gguf().string() + " --input_text '" + c["text"].get<std::string>() +
                                          "' --num_beams " + std::to_string(cfg["num_beams"].get<int>()) +
                                          " --num_return_sequences " + std::to_string(cfg["num_return_sequences"].get<int>()) +
                                          " --max_output_len " + std::to_string(cfg["max_new_tokens"].get<int>()) +
                                          " --length_penalty " + std::to_string(cfg["length_penalty"].get<double>()) +
                                          " --early_stopping " + early + " --no_repeat_ngram_size " +
                                          std::to_string(cfg.value("no_repeat_ngram_size", 0)) + " --repetition_penalty " +
                                          std::to_string(cfg.value("repetition_penalty", 1.0)) + " --output_json " + json));
        ASSERT_EQ(r.status, 0) << r.output;
        const auto j = test::read_json(json);
        ASSERT_EQ(j["results"][0]["prompt_tokens"], c["input_ids"].size());
        const auto& outs = j["results"][0]["outputs"];
        ASSERT_EQ(outs.size(), c["sequences"].size());
        for (size_t b = 0; b < outs.size(); ++b) {
            std::vector<int> expected = c["sequences"][b];
            while (!expected.empty() && expected.back() == pad && outs[b]["ids"].size() < expected.size()) expected.pop_back();
            EXPECT_EQ(outs[b]["ids"].get<std::vector<int>>(), expected) << c["text"] << " beam " << b;
        }
        ++checked;
    }
    EXPECT_GT(checked, 0);
}

// run --chat with a terminal on stdin and no prompt: a conversation, turn by turn, under script(1)'s
// pseudo-terminal. Each turn's reply follows its "> " prompt; the empty line ends it.
TEST(CliChat, InteractiveTurnsOnATerminal) {
    LAMINA_REQUIRE_SMOLLM2();
    if (std::system("command -v script > /dev/null") != 0) GTEST_SKIP() << "script(1) is absent";
    TempDir dir;
    const std::string cmd = lamina("run --device cpu --cache_dir " + (dir / "cache").string() + " --model_dir " +
                                   test::smollm2_gguf().string() +
                                   " --chat --system 'You are terse.' --max_output_len 12 --temperature 0");
    const auto r = run_command("printf 'What is 2+2?\\nAnd 3+3?\\n\\n' | script -qfec \"" + cmd + "\" /dev/null");
    ASSERT_EQ(r.status, 0) << r.output;
    // After the banner: the "> " prompts with the replies, and the terminal's echo of the typed turns
    // (where it lands depends on timing). Take away prompts, echoes and blank lines: the replies remain.
    const size_t banner = r.output.find("lamina chat:");
    ASSERT_NE(banner, std::string::npos) << r.output;
    std::istringstream in(r.output.substr(banner));
    std::string line;
    std::vector<std::string> replies;
    int prompts = 0;
    std::getline(in, line);  // the banner
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        while (line.rfind("> ", 0) == 0 || line == ">") {
            ++prompts;
            line.erase(0, std::min<size_t>(2, line.size()));
        }
        if (!line.empty() && line != "What is 2+2?" && line != "And 3+3?") replies.push_back(line);
    }
    EXPECT_EQ(prompts, 3) << r.output;  // two turns, then the empty line that ends it
    EXPECT_EQ(replies.size(), 2u) << r.output;
}

}  // namespace
}  // namespace lamina
