// lamina summarize: prompts and truncation as summarize.py builds them, dataset and reference errors,
// batching that never changes a token, the report, and the command end to end.
#include <gtest/gtest.h>

#include "../test_util.h"
#include "core/error.h"
#include "eval/summarize.h"
#include "eval/summarize_report.h"

namespace lamina {
namespace {

using nlohmann::json;
using test::error_of;
using test::run_command;
using test::TempDir;

std::filesystem::path shipped_dataset() { return test::source_dir() / "data" / "cnn_dailymail" / "test_100.jsonl"; }
std::string lamina(const std::string& args) { return test::lamina_binary() + " " + args; }

TEST(SummarizePrompt, AppendsTldrStripsAndJoinsNegations) {
    EXPECT_EQ(summarize_prompt("The dog did n't bark."), "The dog didn't bark. TL;DR:");
    EXPECT_EQ(summarize_prompt("  (CNN) Hi \t"), "(CNN) Hi \t TL;DR:");  // only the ends are stripped
    EXPECT_EQ(summarize_prompt("is n't n't"), "isn'tn't TL;DR:");          // Python's replace, left to right
    EXPECT_EQ(summarize_prompt(""), "TL;DR:");
    // Python's str.isspace(): NBSP, U+2009 and U+3000 are stripped; U+200B (zero width) is not.
    EXPECT_EQ(python_strip("\xc2\xa0\xe2\x80\x89 a b\xe3\x80\x80\n"), "a b");
    EXPECT_EQ(python_strip("\xe2\x80\x8b" "a"), "\xe2\x80\x8b" "a");
    EXPECT_EQ(python_strip("a\xc3\x85"), "a\xc3\x85");  // "Å" ends in byte 0x85, which is not U+0085
    EXPECT_EQ(python_strip(" \x1c\x1f "), "");
}

TEST(SummarizePrompt, KeepsTheLastTokens) {
    const std::vector<int32_t> ids = {1, 2, 3, 4, 5};
    EXPECT_EQ(keep_last_tokens(ids, 3), (std::vector<int32_t>{3, 4, 5}));
    EXPECT_EQ(keep_last_tokens(ids, 5), ids);
    EXPECT_EQ(keep_last_tokens(ids, 923), ids);
}

TEST(SummarizeDataset, ReadsTheShippedSample) {
    const auto examples = read_summarize_dataset(shipped_dataset());
    ASSERT_EQ(examples.size(), 100u);
    EXPECT_EQ(examples[0].id, "f001ec5c4704938247d27a44948eebb37ae98d01");
    EXPECT_EQ(examples[0].line, 1);
    EXPECT_EQ(examples[99].id, "cc86a588b4e4e038e2591c363b4b895e46edbeda");
    EXPECT_EQ(examples[0].article.rfind("(CNN)", 0), 0u);
    EXPECT_NE(examples[0].highlights.find('\n'), std::string::npos);  // bullet lines for rougeLsum
}

TEST(SummarizeDataset, BadLinesAreNamed) {
    TempDir dir;
    const auto path = dir / "d.jsonl";
    const std::string good = R"({"id": "a", "article": "Text.", "highlights": "Sum."})";
    auto error_for = [&](const std::string& contents) {
        test::write_file(path, contents);
        return error_of([&] { read_summarize_dataset(path); });
    };
    auto expect = [&](const std::string& contents, const std::string& needle) {
        const std::string msg = error_for(contents);
        EXPECT_NE(msg.find(needle), std::string::npos) << "got: " << msg;
        EXPECT_NE(msg.find(path.string()), std::string::npos) << "got: " << msg;
    };
    expect(good + "\n{\"article\": \"x\", \"highlights\": ", "line 2: not valid JSON");
    expect(good + "\n" + good + "\n{\"highlights\": \"s\"}\n", "line 3: no \"article\" key");
    expect("{\"article\": \"x\"}\n", "line 1: no \"highlights\" key");
    expect("{\"article\": 5, \"highlights\": \"s\"}\n", "line 1: \"article\" is not a string");
    expect(good + "\n{\"article\": \" \\u00a0\", \"highlights\": \"s\"}\n", "line 2: \"article\" is empty");
    expect("{\"article\": \"a\", \"highlights\": \"\"}\n", "line 1: \"highlights\" is empty");
    expect(good + "\n\n" + good + "\n", "line 2: empty line");
    expect("[1, 2]\n", "line 1: not a JSON object");
    expect("{\"id\": [1], \"article\": \"a\", \"highlights\": \"s\"}\n", "line 1: \"id\" is neither");
    expect("", "holds no examples");
    EXPECT_NE(error_of([&] { read_summarize_dataset(dir / "missing.jsonl"); }).find("cannot open"), std::string::npos);
    // Without "id", the line names the example; a final newline is optional.
    test::write_file(path, "{\"article\": \"a\", \"highlights\": \"s\"}\n{\"id\": 7, \"article\": \"b\", \"highlights\": \"t\"}");
    const auto ok = read_summarize_dataset(path);
    ASSERT_EQ(ok.size(), 2u);
    EXPECT_EQ(ok[0].id, "line 1");
    EXPECT_EQ(ok[1].id, "7");
}

TEST(SummarizeDataset, HostileLinesAreNamed) {
    TempDir dir;
    const auto path = dir / "d.jsonl";
    const std::string good = R"({"id": "a", "article": "Text.", "highlights": "Sum."})";
    auto error_for = [&](const std::string& contents) {
        test::write_file(path, contents);
        return error_of([&] { read_summarize_dataset(path); });
    };
    // Invalid UTF-8 inside a string: named with its byte, where nlohmann's message quoted the raw bytes.
    std::string e = error_for(good + "\n{\"article\": \"caf\xC3\", \"highlights\": \"s\"}\n");
    EXPECT_NE(e.find("d.jsonl line 2: not valid UTF-8 at byte 16 of the line (byte 70 of the file)"), std::string::npos) << e;
    // Reproducer: one line of 10M '[' took gigabytes in nlohmann's parser.
    e = error_for(good + "\n" + std::string(size_t{10} << 20, '[') + "\n");
    EXPECT_NE(e.find("d.jsonl line 2: nests deeper than 64 levels"), std::string::npos) << e.substr(0, 200);
    // Two "article" keys mean different texts to different readers.
    e = error_for(R"({"article": "a", "article": "b", "highlights": "s"})");
    EXPECT_NE(e.find("line 1: repeats the key \"article\""), std::string::npos) << e;
    // An id past 2^63 is kept as written, not wrapped to a negative number.
    test::write_file(path, R"({"id": 18446744073709551615, "article": "a", "highlights": "s"})");
    EXPECT_EQ(read_summarize_dataset(path)[0].id, "18446744073709551615");
}

TEST(SummarizeOptions, ValidatesFlagCombinations) {
    SummarizeOptions o;
    EXPECT_NO_THROW(o.validate());
    EXPECT_EQ(o.n_examples(100), 20u);
    o.batch_size = 8;
    EXPECT_EQ(o.n_examples(100), 100u);  // max_ite counts batches, as in summarize.py
    EXPECT_EQ(o.n_examples(7), 7u);
    auto bad = [](auto change, const std::string& needle) {
        SummarizeOptions x;
        change(x);
        const std::string msg = error_of([&] { x.validate(); });
        EXPECT_NE(msg.find(needle), std::string::npos) << "got: " << msg;
    };
    bad([](SummarizeOptions& x) { x.output_len = 0; }, "--output_len");
    bad([](SummarizeOptions& x) { x.no_repeat_ngram_size = 3; }, "--num_beams > 1");
    bad([](SummarizeOptions& x) { x.num_return_sequences = 2; }, "--num_return_sequences");
    bad([](SummarizeOptions& x) { x.num_beams = 2; x.num_return_sequences = 3; }, "--num_return_sequences");
    bad([](SummarizeOptions& x) { x.num_beams = 2; x.top_k = 5; }, "--top_k");
    bad([](SummarizeOptions& x) { x.num_beams = 2; x.top_p = 0.9f; }, "--top_p");
    bad([](SummarizeOptions& x) { x.repetition_penalty = -1.0f; }, "--repetition_penalty");
}

// A run as the JSON would record it, for the report tests.
SummarizeRun fake_run(const std::vector<std::string>& ids) {
    SummarizeRun run;
    run.eos_id = 2;
    run.total_latency_s = 3.0;
    run.scores = {{20.0, 5.0, 15.0, 16.0}};
    for (size_t i = 0; i < ids.size(); ++i) {
        SummarizeOutput o;
        o.id = ids[i];
        o.line = static_cast<int64_t>(i + 1);
        o.input_tokens = 10;
        o.output_ids = {{5, 6, static_cast<int32_t>(i)}};
        o.outputs = {"text " + std::to_string(i)};
        o.rouge = {score_rouge(o.outputs[0], "text", false)};
        run.examples.push_back(o);
    }
    return run;
}

std::vector<SummarizeExample> examples_with_ids(const std::vector<std::string>& ids) {
    std::vector<SummarizeExample> out;
    for (size_t i = 0; i < ids.size(); ++i) out.push_back({ids[i], static_cast<int64_t>(i + 1), "a", "h"});
    return out;
}

TEST(SummarizeReport, JsonRoundTripAndComparison) {
    TempDir dir;
    SummarizeRun ref_run = fake_run({"a", "b", "c"});
    ref_run.total_latency_s = 6.0;
    ref_run.scores = {{19.5, 5.5, 15.0, 16.25}};
    ref_run.examples[2].output_ids = {{5, 6, 9}};  // one example differs
    test::write_file(dir / "ref.json", summarize_json(ref_run, {{"engine", "hf_transformers"}}).dump());

    const SummarizeReference ref = read_summarize_reference(dir / "ref.json");
    EXPECT_EQ(ref.engine, "hf_transformers");
    EXPECT_EQ(ref.ids, (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_DOUBLE_EQ(ref.scores[0].rougeLsum, 16.25);
    EXPECT_DOUBLE_EQ(ref.total_latency_s, 6.0);

    const SummarizeRun run = fake_run({"a", "b", "c"});
    EXPECT_NO_THROW(check_reference_examples(ref, examples_with_ids({"a", "b", "c"})));
    EXPECT_EQ(count_identical_outputs(run, ref), 2u);
    const std::string table = comparison_table(run, ref);
    EXPECT_NE(table.find("beam 0 rouge1               20.0000      19.5000      +0.5000"), std::string::npos) << table;
    EXPECT_NE(table.find("beam 0 rougeLsum            16.0000      16.2500      -0.2500"), std::string::npos) << table;
    EXPECT_NE(table.find("total latency (sec)           3.000        6.000       -3.000  (lamina/HF 0.50x)"), std::string::npos) << table;
    EXPECT_NE(table.find("2 of 3 examples"), std::string::npos) << table;
    EXPECT_EQ(table.find("note:"), std::string::npos) << table;  // same config

    const std::string log = summarize_log(run, "lamina");
    EXPECT_EQ(log.rfind("lamina (total latency: 3.000000 sec)\nlamina beam 0 result\n  rouge1 : 20.000000\n", 0), 0u)
        << log;
    EXPECT_NE(log.find("  rougeLsum : 16.000000\n"), std::string::npos) << log;
}

TEST(SummarizeReport, ReferenceForOtherExamplesIsAnError) {
    TempDir dir;
    test::write_file(dir / "ref.json", summarize_json(fake_run({"a", "b", "c"}), {}).dump());
    const SummarizeReference ref = read_summarize_reference(dir / "ref.json");
    std::string msg = error_of([&] { check_reference_examples(ref, examples_with_ids({"a", "x", "c"})); });
    EXPECT_NE(msg.find("different example set"), std::string::npos) << msg;
    EXPECT_NE(msg.find("has id b but this run's has id x"), std::string::npos) << msg;
    msg = error_of([&] { check_reference_examples(ref, examples_with_ids({"a", "b", "c", "d"})); });
    EXPECT_NE(msg.find("id d (dataset line 4) is not in the reference"), std::string::npos) << msg;
    msg = error_of([&] { check_reference_examples(ref, examples_with_ids({"a", "b"})); });
    EXPECT_NE(msg.find("reference id c is not in this run"), std::string::npos) << msg;

    test::write_file(dir / "bad.json", "{\"scores\": [{\"rouge1\": 1}], \"examples\": []}");
    msg = error_of([&] { read_summarize_reference(dir / "bad.json"); });
    EXPECT_NE(msg.find("no \"total_latency_s\" field"), std::string::npos) << msg;
    test::write_file(dir / "bad.json", "{\"total_latency_s\": 1, \"scores\": [{\"rouge1\": 1}], \"examples\": []}");
    msg = error_of([&] { read_summarize_reference(dir / "bad.json"); });
    EXPECT_NE(msg.find("scores[0]: no \"rouge2\" field"), std::string::npos) << msg;
    test::write_file(dir / "bad.json", "{\"total_latency_s\": ");
    EXPECT_NE(error_of([&] { read_summarize_reference(dir / "bad.json"); }).find("not valid JSON"), std::string::npos);
}

TEST(SummarizeReport, CommittedHfReferenceFitsTheShippedSample) {
    // tests/data/summarize/hf_greedy_20.json (tools/hf_summarize.py): the default run's 20 examples,
    // and rouge-score's per-example F1 on HF's outputs equal Lamina's ROUGE of the same texts.
    const auto path = test::data_dir() / "summarize" / "hf_greedy_20.json";
    const SummarizeReference ref = read_summarize_reference(path);
    auto dataset = read_summarize_dataset(shipped_dataset());
    dataset.resize(SummarizeOptions{}.n_examples(dataset.size()));
    EXPECT_NO_THROW(check_reference_examples(ref, dataset));
    const json doc = test::read_json(path);
    EXPECT_EQ(doc["config"]["max_input_length"], SummarizeOptions{}.max_input_length);
    EXPECT_EQ(doc["config"]["output_len"], SummarizeOptions{}.output_len);
    double rouge1 = 0.0, rougeLsum = 0.0;
    for (size_t i = 0; i < dataset.size(); ++i) {
        const json& e = doc["examples"][i];
        const RougeScores s = score_rouge(e["outputs"][0].get<std::string>(), dataset[i].highlights, false);
        EXPECT_NEAR(s.rouge1.fmeasure, e["rouge"][0]["rouge1"].get<double>(), 1e-12) << e["id"];
        EXPECT_NEAR(s.rouge2.fmeasure, e["rouge"][0]["rouge2"].get<double>(), 1e-12) << e["id"];
        EXPECT_NEAR(s.rougeL.fmeasure, e["rouge"][0]["rougeL"].get<double>(), 1e-12) << e["id"];
        EXPECT_NEAR(s.rougeLsum.fmeasure, e["rouge"][0]["rougeLsum"].get<double>(), 1e-12) << e["id"];
        EXPECT_EQ(e["output_tokens"][0], e["output_ids"][0].size());
        rouge1 += s.rouge1.fmeasure;
        rougeLsum += s.rougeLsum.fmeasure;
    }
    EXPECT_NEAR(100.0 * rouge1 / 20, ref.scores[0].rouge1, 1e-9);
    EXPECT_NEAR(100.0 * rougeLsum / 20, ref.scores[0].rougeLsum, 1e-9);
}

// The tiny random model: fast, so batching can be checked on many examples and both decoders.
class SummarizeTiny : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir;
        test::build_from(test::data_dir() / "tiny_llama", dir_->path(), DType::F32, 24, 8, /*max_batch_size=*/4);
        engine_ = new Engine(dir_->path());
    }
    static void TearDownTestSuite() {
        delete engine_;
        delete dir_;
    }
    static SummarizeOptions small_options() {
        SummarizeOptions o;
        o.max_input_length = 24;
        o.output_len = 8;
        return o;
    }
    static TempDir* dir_;
    static Engine* engine_;
};
TempDir* SummarizeTiny::dir_ = nullptr;
Engine* SummarizeTiny::engine_ = nullptr;

TEST_F(SummarizeTiny, BatchesGiveTheTokensOfBatchOne) {
    const auto dataset = read_summarize_dataset(shipped_dataset());
    auto backend = make_cpu_backend();
    for (const int64_t num_beams : {int64_t{1}, int64_t{2}}) {
        SummarizeOptions one = small_options();
        one.num_beams = num_beams;
        one.repetition_penalty = 1.1f;
        one.max_ite = 6;
        const SummarizeRun base = run_summarize(*engine_, *backend, dataset, one);
        ASSERT_EQ(base.examples.size(), 6u);
        for (const int64_t batch : {int64_t{2}, int64_t{4} / num_beams}) {
            SummarizeOptions many = one;
            many.batch_size = batch;
            many.max_ite = (6 + batch - 1) / batch;
            const SummarizeRun run = run_summarize(*engine_, *backend, dataset, many);
            ASSERT_GE(run.examples.size(), 6u);  // whole batches: 8 with batch 4
            for (size_t i = 0; i < 6; ++i) {
                EXPECT_EQ(run.examples[i].id, base.examples[i].id);
                EXPECT_EQ(run.examples[i].input_tokens, 24);  // truncated to the last 24 tokens
                EXPECT_EQ(run.examples[i].output_ids, base.examples[i].output_ids)
                    << "beams " << num_beams << " batch " << batch << " example " << i;
            }
        }
    }
}

TEST_F(SummarizeTiny, RecordsOutputsLatenciesAndScores) {
    const auto dataset = read_summarize_dataset(shipped_dataset());
    auto backend = make_cpu_backend();
    SummarizeOptions o = small_options();
    o.num_beams = 2;
    o.max_ite = 3;
    std::vector<size_t> progress;
    const SummarizeRun run = run_summarize(*engine_, *backend, dataset, o, [&](const SummarizeRun& so_far, size_t done) {
        EXPECT_EQ(so_far.examples.size(), 3u);
        EXPECT_FALSE(so_far.examples[done - 1].outputs.empty());
        progress.push_back(done);
    });
    EXPECT_EQ(progress, (std::vector<size_t>{1, 2, 3}));
    ASSERT_EQ(run.scores.size(), 2u);  // num_return_sequences defaults to num_beams
    double latency = 0.0;
    for (const auto& e : run.examples) {
        ASSERT_EQ(e.output_ids.size(), 2u);
        ASSERT_EQ(e.outputs.size(), 2u);
        ASSERT_EQ(e.rouge.size(), 2u);
        EXPECT_EQ(e.outputs[0], engine_->tokenizer().decode(e.output_ids[0], true));
        EXPECT_GT(e.first_token_latency_s, 0.0);
        EXPECT_LE(e.first_token_latency_s, e.latency_s);
        latency += e.latency_s;
    }
    EXPECT_DOUBLE_EQ(run.total_latency_s, latency);
}

TEST_F(SummarizeTiny, EngineTooSmallSaysWhatToRebuildWith) {
    const auto dataset = read_summarize_dataset(shipped_dataset());
    auto backend = make_cpu_backend();
    auto expect = [&](SummarizeOptions o, const std::string& needle) {
        const std::string msg = error_of([&] { run_summarize(*engine_, *backend, dataset, o); });
        EXPECT_NE(msg.find(needle), std::string::npos) << "got: " << msg;
    };
    SummarizeOptions o = small_options();
    o.max_input_length = 25;
    expect(o, "rebuild with `lamina build --max_input_len 25`");
    o = small_options();
    o.output_len = 9;
    expect(o, "rebuild with `lamina build --max_output_len 9`");
    o = small_options();
    o.num_beams = 4;
    o.batch_size = 2;
    expect(o, "--batch_size 2 x --num_beams 4 = 8 sequences; rebuild with `lamina build --max_batch_size 8`");
}

// The command end to end on the tiny model: errors before anything runs, the accuracy gate.
class SummarizeCli : public SummarizeTiny {
protected:
    static std::string base() {
        return "summarize --device cpu --engine_dir " + dir_->path().string() + " --max_input_length 24 --output_len 8";
    }
};

void expect_one_line_error(const std::string& args, const std::string& needle) {
    const auto r = run_command(lamina(args));
    EXPECT_NE(r.status, 0) << args;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(r.output.find("total latency"), std::string::npos) << "a partial result was reported:\n" << r.output;
}

TEST_F(SummarizeCli, BadInputIsOneLineAndNothingRuns) {
    TempDir dir;
    const auto data = dir / "d.jsonl";
    test::write_file(data, "{\"article\": \"a\", \"highlights\": \"s\"}\n{\"article\": \"\", \"highlights\": \"s\"}\n");
    const std::string out = " --output_json " + (dir / "out.json").string();
    expect_one_line_error(base() + " --dataset_path " + data.string() + out, "line 2: \"article\" is empty");
    expect_one_line_error(base() + " --dataset_path " + (dir / "none.jsonl").string(), "cannot open");
    test::write_file(dir / "ref.json", summarize_json(fake_run({"f001ec5c4704938247d27a44948eebb37ae98d01", "zzz"}), {}).dump());
    expect_one_line_error(base() + " --max_ite 2 --reference_json " + (dir / "ref.json").string() + out,
                          "has id zzz but this run's has id 230c5228");
    expect_one_line_error(base() + " --num_beams 8", "rebuild with `lamina build --max_batch_size 8`");
    expect_one_line_error(base() + " --num_beams 2 --early_stopping maybe", "--early_stopping 'maybe'");
    EXPECT_FALSE(std::filesystem::exists(dir / "out.json"));
}

TEST_F(SummarizeCli, CheckAccuracyFailsBelowTheThreshold) {
    TempDir dir;
    const auto json_path = dir / "out.json";
    const auto r = run_command(lamina(base() + " --max_ite 2 --check_accuracy --rouge1_threshold 99 --output_json " +
                                      json_path.string()));
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("lamina (total latency: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("accuracy check failed: beam 0 rouge1 "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("is not above --rouge1_threshold 99"), std::string::npos) << r.output;
    ASSERT_TRUE(std::filesystem::exists(json_path));  // the report is complete; only the gate failed
    const double rouge1 = test::read_json(json_path)["scores"][0]["rouge1"];
    const auto pass = run_command(lamina(base() + " --max_ite 2 --check_accuracy --rouge1_threshold " +
                                         std::to_string(rouge1 - 0.01)));
    EXPECT_EQ(pass.status, 0) << pass.output;
}

// The default model on two real examples: the report, the JSON, and batch 2 == batch 1.
TEST(SummarizeSmolLM2, CommandHappyPathAndBatchEquivalence) {
    LAMINA_REQUIRE_SMOLLM2();
    TempDir dir;
    test::build_from(test::smollm2_gguf(), dir / "engine", DType::F32, 64, 12, /*max_batch_size=*/2);
    const std::string base = "summarize --device cpu --engine_dir " + (dir / "engine").string() +
                             " --max_input_length 64 --output_len 12 --check_accuracy --rouge1_threshold 1";
    const auto one = run_command(lamina(base + " --max_ite 2 --output_json " + (dir / "one.json").string()));
    ASSERT_EQ(one.status, 0) << one.output;
    for (const char* line : {"lamina (total latency: ", "lamina beam 0 result\n  rouge1 : ", "\n  rouge2 : ",
                             "\n  rougeL : ", "\n  rougeLsum : "})
        EXPECT_NE(one.output.find(line), std::string::npos) << line << "\n" << one.output;
    EXPECT_EQ(one.output.find("ETA"), std::string::npos) << "progress bar without a terminal";

    const json doc = test::read_json(dir / "one.json");
    EXPECT_EQ(doc["engine"], "lamina");
    EXPECT_EQ(doc["config"]["max_input_length"], 64);
    ASSERT_EQ(doc["examples"].size(), 2u);
    for (const auto& e : doc["examples"]) {
        EXPECT_EQ(e["input_tokens"], 64);
        EXPECT_EQ(e["output_tokens"][0], e["output_ids"][0].size());
        EXPECT_FALSE(e["outputs"][0].get<std::string>().empty());
        EXPECT_GT(e["latency_s"].get<double>(), 0.0);
        EXPECT_GT(e["first_token_latency_s"].get<double>(), 0.0);
    }
    EXPECT_EQ(doc["examples"][1]["id"], "230c522854991d053fe98a718b1defa077a8efef");

    // Batch 2 against the batch-1 JSON as the reference: every output token-identical.
    const auto two = run_command(lamina(base + " --max_ite 1 --batch_size 2 --reference_json " + (dir / "one.json").string()));
    ASSERT_EQ(two.status, 0) << two.output;
    EXPECT_NE(two.output.find("token-identical outputs (every returned beam): 2 of 2 examples"), std::string::npos)
        << two.output;
    EXPECT_NE(two.output.find("beam 0 rouge1 "), std::string::npos) << two.output;
}

}  // namespace
}  // namespace lamina
