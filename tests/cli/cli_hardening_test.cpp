// Issue 24's reproducers for the user's files: `build` never writes over its checkpoint or into a
// stranger's directory, a FIFO given as any input fails at once instead of blocking, and temporary
// engines live in private mkdtemp directories that no planted symlink can redirect.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "../refusal_util.h"
#include "../test_util.h"
#include "build/engine_cache.h"
#include "core/file_util.h"

namespace lamina {
namespace {

namespace fs = std::filesystem;
using test::expect_command_refusal;
using test::run_command;
using test::TempDir;

std::string lamina(const std::string& args) { return test::lamina_binary() + " " + args; }
fs::path tiny() { return test::data_dir() / "tiny_llama"; }

fs::path copy_of_tiny(const TempDir& dir) {
    const fs::path out = dir / "ckpt";
    fs::create_directories(out);
    for (const auto& e : fs::directory_iterator(tiny())) fs::copy_file(e.path(), out / e.path().filename());
    return out;
}

void make_fifo(const fs::path& p) { ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0) << p; }

TEST(CliHardening, BuildNeverWritesOverItsCheckpoint) {
    TempDir dir;
    const fs::path ckpt = copy_of_tiny(dir);
    const std::string config = test::read_file(ckpt / "config.json");
    const std::string build = "build --dtype float32 --model_dir " + ckpt.string() + " --output_dir ";
    expect_command_refusal(build + ckpt.string(),
                           "--output_dir " + ckpt.string() + " is the directory of " + ckpt.string());
    expect_command_refusal(build + ckpt.string() + "/", "is the directory of");
    expect_command_refusal(build + (ckpt / "engine").string(), "is inside the directory of " + ckpt.string());
    expect_command_refusal(build + (ckpt / ".." / "ckpt").string(), "would overwrite its files");
    // Nor the tokenizer's source, nor a .gguf file's folder (a folder beside the .gguf is fine).
    expect_command_refusal(
        "build --random_weights tiny --tokenizer " + ckpt.string() + " --output_dir " + ckpt.string(),
        "is the directory of");
    const fs::path gguf_dir = dir / "gguf";
    fs::create_directories(gguf_dir);
    fs::copy_file(test::data_dir() / "gguf" / "tiny_llama_v5_llama3.gguf", gguf_dir / "m.gguf");
    expect_command_refusal("build --model_dir " + (gguf_dir / "m.gguf").string() + " --output_dir " + gguf_dir.string(),
                           "is the directory of");
    const auto beside = run_command(lamina("build --model_dir " + (gguf_dir / "m.gguf").string() + " --output_dir " +
                                           (gguf_dir / "engine").string()));
    EXPECT_EQ(beside.status, 0) << beside.output;

    EXPECT_EQ(test::read_file(ckpt / "config.json"), config);
    EXPECT_FALSE(fs::exists(ckpt / "weights.bin"));
    EXPECT_FALSE(fs::exists(ckpt / "engine"));
}

TEST(CliHardening, BuildIntoANonEngineDirectoryNeedsForce) {
    TempDir dir;
    const fs::path other = dir / "notes";
    fs::create_directories(other);
    test::write_file(other / "config.json", "{\"mine\": true}\n");
    const std::string build = "build --random_weights tiny --output_dir " + other.string();
    expect_command_refusal(build, "is not empty and is not a Lamina engine");
    expect_command_refusal(build, "--force");
    EXPECT_EQ(test::read_file(other / "config.json"), "{\"mine\": true}\n");
    EXPECT_EQ(std::distance(fs::directory_iterator(other), fs::directory_iterator()), 1);

    const auto forced = run_command(lamina(build + " --force"));
    EXPECT_EQ(forced.status, 0) << forced.output;
    // An engine directory may be rebuilt without --force; a plain file is not a directory to build in.
    const auto again = run_command(lamina(build));
    EXPECT_EQ(again.status, 0) << again.output;
    test::write_file(dir / "file", "x");
    expect_command_refusal("build --random_weights tiny --output_dir " + (dir / "file").string(), "is not a directory");
    // The --force flag has help text.
    const auto help = run_command(lamina("build --help"));
    EXPECT_NE(help.output.find("--force"), std::string::npos) << help.output;
}

TEST(CliHardening, FifosAndDevicesFailFast) {
    TempDir dir;
    make_fifo(dir / "fifo.gguf");
    expect_command_refusal(
        "build --model_dir " + (dir / "fifo.gguf").string() + " --output_dir " + (dir / "e1").string(),
        "is not a regular file: " + (dir / "fifo.gguf").string());
    expect_command_refusal("build --model_dir /dev/zero --output_dir " + (dir / "e1").string(),
                           "is not a regular file: /dev/zero");

    // A Hugging Face directory whose config.json, then tokenizer.json, is a FIFO.
    for (const char* name : {"config.json", "tokenizer.json"}) {
        TempDir d;
        const fs::path ckpt = copy_of_tiny(d);
        fs::remove(ckpt / name);
        make_fifo(ckpt / name);
        expect_command_refusal("build --model_dir " + ckpt.string() + " --output_dir " + (d / "e").string(),
                               std::string(name) + " is not a regular file: " + (ckpt / name).string());
    }

    // An engine whose config.json is a FIFO.
    const fs::path engine = dir / "engine";
    const auto built = run_command(lamina("build --dtype float32 --model_dir " + tiny().string() + " --output_dir " + engine.string()));
    ASSERT_EQ(built.status, 0) << built.output;
    const fs::path fake = dir / "fake_engine";
    fs::create_directories(fake);
    make_fifo(fake / "config.json");
    expect_command_refusal("run --device cpu --engine_dir " + fake.string(), "engine config is not a regular file");

    // Inputs of the commands: prompts, text, token ids.
    make_fifo(dir / "prompts");
    const std::string run = "run --device cpu --engine_dir " + engine.string() + " --max_output_len 2";
    expect_command_refusal(run + " --input_file " + (dir / "prompts").string(), "--input_file is not a regular file");
    expect_command_refusal("tokenize --model " + engine.string() + " --file " + (dir / "prompts").string(),
                           "--file is not a regular file");
    expect_command_refusal("tokenize --model " + engine.string() + " --file " + dir.path().string(),
                           "--file is not a regular file");
    expect_command_refusal("logits --device cpu --engine_dir " + engine.string() + " --input_ids " +
                               (dir / "prompts").string() + " --output " + (dir / "l.json").string(),
                           "--input_ids is not a regular file");
    expect_command_refusal(
        "rouge --predictions " + (dir / "prompts").string() + " --references " + (dir / "prompts").string(),
        "is not a regular file");

    // Standard input still reads as before.
    const auto stdin_run = run_command("echo Hello | timeout 60 " + lamina(run + " --input_file -"));
    EXPECT_EQ(stdin_run.status, 0) << stdin_run.output;
}

// Reproducer: a tokenizer.json whose vocab gives one token the id 100000000 made `lamina tokenize` fill a table of
// 100M placeholder tokens (6 GB) and print the pieces; the id is refused in one line naming the token.
TEST(CliHardening, TokenizeRefusesAFarTokenId) {
    TempDir dir;
    const fs::path model = dir / "hf";
    fs::create_directories(model);
    test::write_file(model / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 100000000},
        "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}})");
    expect_command_refusal("tokenize --model " + model.string() + " --text ab",
                           "model.vocab token 'ab' has id 100000000");
    // A directory, a FIFO or a device as --file is refused before the tokenizer is read.
    test::write_file(model / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
        "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}})");
    expect_command_refusal("tokenize --model " + model.string() + " --file " + dir.path().string(),
                           "--file is not a regular file: " + dir.path().string());
    expect_command_refusal("tokenize --model " + model.string() + " --file /dev/zero",
                           "--file is not a regular file: /dev/zero");
    const auto ok = run_command("timeout 20 " + lamina("tokenize --ids --model " + model.string() + " --text ab"));
    EXPECT_EQ(ok.status, 0) << ok.output;
    EXPECT_EQ(ok.output, "2\n");
    test::write_file(dir / "bad.txt", "ab\xC3");
    expect_command_refusal("tokenize --model " + model.string() + " --file " + (dir / "bad.txt").string(),
                           "--file " + (dir / "bad.txt").string() + ": not valid UTF-8 at byte 2");
}

// `run --model_dir` without a cache home builds into a temporary directory: never the old predictable
// /tmp/lamina-engine-<pid>, nor <cache>/.tmp-<entry>-<pid> inside a cache, even with a symlink planted
// there. `exec` keeps the shell's pid, so $$ is the pid lamina runs as.
TEST(CliHardening, TemporaryEnginesIgnorePlantedSymlinks) {
    TempDir dir;
    const fs::path tmp = dir / "tmp", victim = dir / "victim", cache = dir / "cache";
    fs::create_directories(tmp);
    fs::create_directories(victim);
    fs::create_directories(cache);
    const std::string plant_tmp = "ln -s " + victim.string() + " " + tmp.string() + "/lamina-engine-$$; ";
    const auto no_home = run_command("env -u HOME -u XDG_CACHE_HOME TMPDIR=" + tmp.string() + " sh -c '" + plant_tmp +
                                     "exec " + lamina("run --device cpu --max_output_len 2 --model_dir " + tiny().string()) + "'");
    EXPECT_EQ(no_home.status, 0) << no_home.output;
    EXPECT_TRUE(fs::is_empty(victim));
    // Only the planted link is left: the private directory went with the run.
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(tmp)) {
        EXPECT_TRUE(e.is_symlink()) << e.path();
        ++n;
    }
    EXPECT_EQ(n, 1u);

    BuildOptions opts;
    opts.dtype = DType::F32;  // what --dtype auto picks for the tiny model on the CPU
    const std::string entry = EngineCache{cache}.entry(tiny(), opts).filename().string();
    const std::string plant_cache = "ln -s " + victim.string() + " " + cache.string() + "/.tmp-" + entry + "-$$; ";
    const auto cached = run_command("sh -c '" + plant_cache + "exec " +
                                    lamina("run --device cpu --max_output_len 2 --cache_dir " + cache.string() +
                                           " --model_dir " + tiny().string()) + "'");
    EXPECT_EQ(cached.status, 0) << cached.output;
    EXPECT_TRUE(fs::is_empty(victim));
    EXPECT_TRUE(fs::exists(cache / entry / "config.json"));
}

TEST(PrivateTempDir, RandomNameMode0700RemovedAfter) {
    TempDir dir;
    fs::path kept;
    {
        PrivateTempDir a(dir.path(), "x-"), b(dir.path(), "x-");
        EXPECT_NE(a.path(), b.path());
        const std::string name = a.path().filename().string();
        EXPECT_EQ(name.size(), 2u + 6u);
        EXPECT_EQ(name.rfind("x-", 0), 0u);
        struct stat st {};
        ASSERT_EQ(::lstat(a.path().c_str(), &st), 0);
        EXPECT_TRUE(S_ISDIR(st.st_mode));
        EXPECT_EQ(st.st_mode & 0777, 0700u);
        fs::create_directories(a.path() / "sub");
        test::write_file(a.path() / "sub" / "f", "x");
        kept = b.path();
        b.release();
    }
    EXPECT_TRUE(fs::exists(kept));
    fs::remove(kept);
    EXPECT_TRUE(fs::is_empty(dir.path()));
    EXPECT_THROW(PrivateTempDir(dir / "missing", "x-"), Error);
}

// SIGTERM (and SIGINT) remove a live temporary directory, nested files included, and still end the
// process by the signal.
TEST(PrivateTempDir, RemovedOnSignal) {
    TempDir dir;
    for (int sig : {SIGTERM, SIGINT}) {
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            PrivateTempDir t(dir.path(), "sig-");
            fs::create_directories(t.path() / "entry" / "deeper");
            test::write_file(t.path() / "entry" / "weights.bin", std::string(1 << 20, 'w'));
            test::write_file(t.path() / "entry" / "deeper" / "f", "x");
            ::raise(sig);
            ::_exit(0);  // not reached
        }
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << status;
        EXPECT_TRUE(fs::is_empty(dir.path())) << fs::directory_iterator(dir.path())->path();
    }
}

}  // namespace
}  // namespace lamina
