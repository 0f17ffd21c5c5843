// Issue 24, hardening: every byte of a checkpoint or engine directory is hostile. Each test is a reproducer of one
// defect, written here: JSON that nests too deep, is too large or repeats a key; safetensors headers of the wrong
// structure, with numbers a cast would turn into undefined behaviour; an engine's config.json with values of the
// wrong type; the rank files of a tensor-parallel engine swapped. Every refusal is one lamina::Error line naming the
// file and the key or tensor, never nlohmann's text alone.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>

#include "../refusal_util.h"
#include "../test_util.h"
#include "build/engine_format.h"
#include "core/error.h"
#include "core/json_fields.h"
#include "io/hf_config.h"
#include "io/safetensors.h"

namespace lamina {
namespace {

using test::expect_refusal;
using test::peak_rss;

using test::TempDir;

// --- JSON itself -------------------------------------------------------------------------------------------------

TEST(JsonBounds, NestingPastTheLimitIsRefusedBeforeItCostsMemory) {
    const size_t depth = kMaxJsonDepth;
    EXPECT_NO_THROW(parse_json(std::string(depth, '[') + std::string(depth, ']'), "x.json"));
    expect_refusal([&] { parse_json(std::string(depth + 1, '[') + std::string(depth + 1, ']'), "x.json"); },
                   {"x.json", "nests deeper than 64 levels"});
}

TEST(JsonBounds, RepeatedKeysAreRefused) {
    // Python's json keeps the last copy, nlohmann's parser kept the last, other readers the first: a file that
    // means two things to two readers is refused.
    expect_refusal([] { parse_json(R"({"w": {"a": 1}, "w": {"a": 2}})", "x.json"); }, {"x.json", "repeats the key \"w\""});
    EXPECT_NO_THROW(parse_json(R"({"w": {"a": 1}, "v": {"a": 2}})", "x.json"));
}

TEST(JsonBounds, MemoryIsBudgeted) {
    // 20000 empty lists: 60 KB of text, about 1.3 MB as nlohmann values (kJsonValueCost each).
    std::string text = "[";
    for (int i = 0; i < 20000; ++i) text += "[],";
    text += "[]]";
    EXPECT_NO_THROW(parse_json(text, "x.json", size_t{2} << 20));
    expect_refusal([&] { parse_json(text, "x.json", size_t{1} << 20); }, {"x.json", "would take more than 1048576 bytes"});
}

TEST(JsonBounds, SyntaxErrorsNameTheFileAndPlace) {
    expect_refusal([] { parse_json("{\"a\": tru}", "x.json"); }, {"x.json: not valid JSON", "line 1, column"});
    expect_refusal([] { parse_json("", "x.json"); }, {"x.json: not valid JSON"});
    expect_refusal([] { parse_json("{} {}", "x.json"); }, {"x.json: not valid JSON"});
}

TEST(JsonBounds, FilesLargerThanTheirCapAreNotRead) {
    TempDir dir;
    test::write_file(dir / "a.json", "{\"a\": 1}     ");
    EXPECT_NO_THROW(read_json_file(dir / "a.json", "test file", 13));
    expect_refusal([&] { read_json_file(dir / "a.json", "test file", 12); }, {"a.json", "13 bytes", "larger than the 12"});
    // config.json: 16 MiB at most, refused before a byte is parsed.
    test::write_file(dir / "config.json", "{}" + std::string((size_t{16} << 20) - 1, ' '));
    expect_refusal([&] { model_config_from_hf(dir / "config.json"); }, {"config.json", "larger than"});
}

TEST(JsonFieldsRead, IntegersComeOnlyFromJsonIntegers) {
    // Before: get<int64_t> truncated 72.9 to 72, read 2^64 - 1 as -1, and cast 1e20 (undefined behaviour).
    const auto j = nlohmann::json::parse(R"({"frac": 72.9, "whole_float": 72.0, "exp": 1e3, "str": "72", "yes": true,
        "huge": 18446744073709551615, "past_u64": 18446744073709551616, "neg": -1, "ok": 72, "list": [1, 2.5]})");
    const JsonFields f(j, "f.json");
    for (const char* key : {"frac", "whole_float", "exp", "str", "yes", "past_u64"})
        expect_refusal([&] { f.integer(key); }, {"f.json: ", std::string(key) + " = ", "expected an integer"});
    expect_refusal([&] { f.integer("huge"); }, {"huge = 18446744073709551615", "beyond the range of a 64-bit integer"});
    expect_refusal([&] { f.integer("neg", 0); }, {"neg = -1", "must be in [0, "});
    expect_refusal([&] { f.integers("list"); }, {"list = [1,2.5]", "element 1 is not an integer"});
    expect_refusal([&] { f.integer("absent"); }, {"f.json: absent is missing"});
    EXPECT_EQ(f.integer("ok"), 72);
    EXPECT_EQ(json_integer(nlohmann::json(1e20)), std::nullopt);
    EXPECT_EQ(json_integer(nlohmann::json(-1), 0), std::nullopt);
    EXPECT_EQ(json_integer(nlohmann::json(uint64_t{1} << 63)), std::nullopt);
    EXPECT_EQ(json_integer(nlohmann::json(INT64_MAX)), INT64_MAX);
}

// --- safetensors headers -----------------------------------------------------------------------------------------

// model.safetensors in `dir` of this header text (written as is: it may be anything) and data section.
std::filesystem::path write_safetensors(const TempDir& dir, const std::string& header, const std::string& data,
                                        const std::string& name = "model.safetensors") {
    const auto p = dir / name;
    const uint64_t n = header.size();
    test::write_file(p, std::string(reinterpret_cast<const char*>(&n), 8) + header + data);
    return p;
}

// The refusal of a file whose one tensor 'w' has this entry, over 16 bytes of data.
void expect_entry_refused(const std::string& entry, std::initializer_list<std::string> needles) {
    TempDir dir;
    const auto p = write_safetensors(dir, "{\"w\": " + entry + "}", std::string(16, '\0'));
    SCOPED_TRACE(entry);
    expect_refusal([&] { SafetensorsFile f(p); }, needles);
}

TEST(SafetensorsHeader, FiftyMillionBracketsAreRefusedCheaply) {
    // The reproducer: nlohmann allocated 3.8 GB for this 50 MB header before failing on it.
    TempDir dir;
    const auto p = write_safetensors(dir, std::string(50'000'000, '['), "");
    const size_t before = peak_rss();
    expect_refusal([&] { SafetensorsFile f(p); }, {"model.safetensors", "nests deeper than 64 levels"});
    EXPECT_LT(peak_rss(), before + (size_t{200} << 20)) << "parsing raised the peak memory by more than 200 MB";
}

TEST(SafetensorsHeader, LengthIsCheckedAgainstTheFileAndTheFormatLimit) {
    TempDir dir;
    const auto p = dir / "model.safetensors";
    uint64_t n = 100'000'001;  // the format's limit is 100'000'000 bytes
    test::write_file(p, std::string(reinterpret_cast<const char*>(&n), 8));
    std::filesystem::resize_file(p, 8 + n);  // sparse: nothing is written
    expect_refusal([&] { SafetensorsFile f(p); }, {"model.safetensors", "header length 100000001", "limit of 100000000"});
    n = ~uint64_t{0};
    test::write_file(p, std::string(reinterpret_cast<const char*>(&n), 8) + "{}");
    expect_refusal([&] { SafetensorsFile f(p); }, {"header length 18446744073709551615 exceeds the file"});
}

TEST(SafetensorsHeader, ShapeIsAListOfDimensions) {
    const std::string rest = R"(, "dtype": "F32", "data_offsets": [0, 16]})";
    expect_entry_refused(R"({"shape": {"rows": 2, "cols": 2})" + rest, {"tensor 'w' shape", "expected a list"});
    expect_entry_refused(R"({"shape": [2, 2.5])" + rest, {"tensor 'w' shape = [2,2.5]", "element 1 is not an integer"});
    expect_entry_refused(R"({"shape": [2, 2.0])" + rest, {"tensor 'w' shape", "element 1 is not an integer"});
    expect_entry_refused(R"({"shape": ["4"])" + rest, {"tensor 'w' shape", "element 0 is not an integer"});
    expect_entry_refused(R"({"shape": [true, 4])" + rest, {"tensor 'w' shape", "element 0 is not an integer"});
    expect_entry_refused(R"({"shape": [-4, -1])" + rest, {"tensor 'w' shape", "element 0 must be in [0, 1099511627776]"});
    expect_entry_refused(R"({"shape": [1e20])" + rest, {"tensor 'w' shape", "element 0 is not an integer"});
    expect_entry_refused(R"({"dtype": "F32", "data_offsets": [0, 16]})", {"tensor 'w' shape is missing"});
}

TEST(SafetensorsHeader, DataOffsetsAreTwoIntegersInsideTheDataSection) {
    const std::string head = R"({"dtype": "F32", "shape": [4], "data_offsets": )";
    expect_entry_refused(head + "[0, 16, 32]}", {"tensor 'w' data_offsets = [0,16,32]", "expected [begin, end]"});
    expect_entry_refused(head + "[16]}", {"tensor 'w' data_offsets", "expected [begin, end]"});
    expect_entry_refused(head + "{\"begin\": 0, \"end\": 16}}", {"tensor 'w' data_offsets", "expected a list"});
    expect_entry_refused(head + "[0, 16.5]}", {"tensor 'w' data_offsets", "element 1 is not an integer"});
    expect_entry_refused(head + "[0.0, 16]}", {"tensor 'w' data_offsets", "element 0 is not an integer"});
    expect_entry_refused(head + "[\"0\", 16]}", {"tensor 'w' data_offsets", "element 0 is not an integer"});
    // 1e20 is a JSON float, and 2^64 one too: converting either to uint64 was undefined behaviour.
    expect_entry_refused(head + "[0, 1e20]}", {"tensor 'w' data_offsets", "element 1 is not an integer"});
    expect_entry_refused(head + "[0, 18446744073709551616]}", {"tensor 'w' data_offsets", "element 1 is not an integer"});
    expect_entry_refused(head + "[0, 18446744073709551615]}", {"tensor 'w' data_offsets", "element 1 must be in [0, "});
    expect_entry_refused(head + "[-16, 0]}", {"tensor 'w' data_offsets", "element 0 must be in [0, "});
    expect_entry_refused(head + "[16, 0]}", {"tensor 'w' data_offsets = [16,0]", "begin is past end"});
    expect_entry_refused(head + "[16, 32]}", {"tensor 'w' data_offsets = [16,32]", "outside the data section of 16 bytes"});
    expect_entry_refused(head + "[0, 8]}", {"tensor 'w' data_offsets", "holds 8 bytes but its shape needs 16"});
}

TEST(SafetensorsHeader, DtypeIsASupportedString) {
    const std::string rest = R"(, "shape": [4], "data_offsets": [0, 16]})";
    expect_entry_refused(R"({"dtype": "F64")" + rest, {"tensor 'w' dtype = \"F64\"", "supported: F32, F16, BF16"});
    expect_entry_refused(R"({"dtype": 4)" + rest, {"tensor 'w' dtype = 4", "expected a string"});
    expect_entry_refused(R"({"dtype": ["F32"])" + rest, {"tensor 'w' dtype", "expected a string"});
    expect_entry_refused(R"({"shape": [4], "data_offsets": [0, 16]})", {"tensor 'w' dtype is missing"});
    expect_entry_refused("5", {"tensor 'w' is not a JSON object"});
    expect_entry_refused("[\"F32\", [4], [0, 16]]", {"tensor 'w' is not a JSON object"});
}

TEST(SafetensorsHeader, OverlappingTensorsAreRefusedNamingBoth) {
    TempDir dir;
    const std::string header = R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                   "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}})";
    const auto p = write_safetensors(dir, header, std::string(24, '\0'));
    expect_refusal([&] { SafetensorsFile f(p); }, {"model.safetensors", "'a' (bytes 0 to 16)", "'b' (bytes 12 to 20)", "overlap"});
    // Empty tensors anywhere alias nothing: accepted.
    const std::string tiled = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                  "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
                                  "b": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]}})";
    const SafetensorsFile ok(write_safetensors(dir, tiled, std::string(12, '\0')));
    EXPECT_EQ(ok.tensors().size(), 3u);
}

// The mutation run's reproducer: a header length one short still parses (the header ends in pad spaces) and
// shifted every tensor one byte; the byte left over at the end now gives it away. Gaps between tensors too.
TEST(SafetensorsHeader, BytesNoTensorClaimsAreRefused) {
    TempDir dir;
    const std::string gap = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                "b": {"dtype": "F16", "shape": [2], "data_offsets": [12, 16]}})";
    expect_refusal([&] { SafetensorsFile f(write_safetensors(dir, gap, std::string(16, '\0'))); },
                   {"model.safetensors", "bytes 8 to 12 of the 16-byte data section belong to no tensor"});
    const std::string one = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
    expect_refusal([&] { SafetensorsFile f(write_safetensors(dir, one, std::string(9, '\0'))); },
                   {"bytes 8 to 9 of the 9-byte data section belong to no tensor"});
}

TEST(SafetensorsHeader, RepeatedTensorNamesAndMetadataOfTheWrongType) {
    const std::string w = R"({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]})";
    TempDir dir;
    auto refusal_of = [&](const std::string& header) {
        const auto p = write_safetensors(dir, header, std::string(16, '\0'));
        return [p] { SafetensorsFile f(p); };
    };
    expect_refusal(refusal_of("{\"w\": " + w + ", \"w\": " + w + "}"), {"model.safetensors", "repeats the key \"w\""});
    expect_refusal(refusal_of("{\"__metadata__\": \"pt\", \"w\": " + w + "}"), {"__metadata__ = \"pt\"", "expected an object"});
    expect_refusal(refusal_of("{\"__metadata__\": {\"format\": 1}, \"w\": " + w + "}"),
                   {"__metadata__.format = 1", "expected a string"});
    expect_refusal(refusal_of("[" + w + "]"), {"model.safetensors: the top level is not a JSON object"});
    EXPECT_NO_THROW(refusal_of("{\"__metadata__\": {\"format\": \"pt\"}, \"w\": " + w + "}")());
    EXPECT_NO_THROW(refusal_of("{\"__metadata__\": null, \"w\": " + w + "}")());
}

TEST(SafetensorsHeader, HostileNamesStayOnOneLine) {
    TempDir dir;
    const auto p = write_safetensors(dir, R"({"evil\nname": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}})",
                                     std::string(16, '\0'));
    expect_refusal([&] { SafetensorsFile f(p); }, {"tensor 'evil\\nname' dtype"});
}

// --- sharded checkpoints -----------------------------------------------------------------------------------------

// A checkpoint directory of two shards, each holding the tensors named, and an index of `weight_map`.
std::filesystem::path sharded(const TempDir& dir, const std::vector<std::string>& shard1, const std::vector<std::string>& shard2,
                              const std::string& index) {
    auto shard = [&](const std::string& file, const std::vector<std::string>& names) {
        std::string header = "{";
        for (size_t i = 0; i < names.size(); ++i)
            header += (i ? ", \"" : "\"") + names[i] + "\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [" +
                      std::to_string(4 * i) + ", " + std::to_string(4 * i + 4) + "]}";
        write_safetensors(dir, header + "}", std::string(4 * names.size(), '\0'), file);
    };
    shard("model-00001-of-00002.safetensors", shard1);
    shard("model-00002-of-00002.safetensors", shard2);
    test::write_file(dir / "model.safetensors.index.json", index);
    return dir.path();
}

TEST(ShardedIndex, TensorsAreWhereTheIndexSaysAndOnlyThere) {
    const std::string s1 = "\"model-00001-of-00002.safetensors\"", s2 = "\"model-00002-of-00002.safetensors\"";
    TempDir dir;
    EXPECT_EQ(SafetensorsCheckpoint(sharded(dir, {"a"}, {"b"}, "{\"weight_map\": {\"a\": " + s1 + ", \"b\": " + s2 + "}}"))
                  .tensors().size(), 2u);
    // The same tensor in two shards: which copy is read would depend on the order the shards are opened.
    expect_refusal([&] { SafetensorsCheckpoint c(sharded(dir, {"a", "b"}, {"b"}, "{\"weight_map\": {\"a\": " + s1 + ", \"b\": " + s2 + "}}")); },
                   {"model-0000", "tensor 'b' is also in", "two shards hold it"});
    // The index sends a tensor to a shard that lacks it.
    expect_refusal([&] { SafetensorsCheckpoint c(sharded(dir, {"a"}, {"b"}, "{\"weight_map\": {\"a\": " + s1 + ", \"b\": " + s1 + "}}")); },
                   {"model.safetensors.index.json: weight_map.b = \"model-00001-of-00002.safetensors\"", "the shard lacks the tensor"});
    expect_refusal(
        [&] {
            SafetensorsCheckpoint c(
                sharded(dir, {"a"}, {"b", "c"}, "{\"weight_map\": {\"a\": " + s1 + ", \"b\": " + s1 + ", \"c\": " + s2 + "}}"));
        },
        {"weight_map.b", "lacks the tensor, which is in", "model-00002-of-00002"});
}

TEST(ShardedIndex, ShardNamesStayInTheDirectory) {
    TempDir dir;
    for (const char* shard : {"../model-00001-of-00002.safetensors", "/etc/passwd", "sub/x.safetensors", "..", ".", ""}) {
        SCOPED_TRACE(shard);
        const std::string index = nlohmann::json{{"weight_map", {{"a", shard}}}}.dump();
        expect_refusal([&] { SafetensorsCheckpoint c(sharded(dir, {"a"}, {"b"}, index)); },
                       {"model.safetensors.index.json: weight_map.a", "not a plain file name"});
    }
}

TEST(ShardedIndex, MalformedIndexesNameTheKey) {
    TempDir dir;
    auto refused = [&](const std::string& index, std::initializer_list<std::string> needles) {
        SCOPED_TRACE(index);
        expect_refusal([&] { SafetensorsCheckpoint c(sharded(dir, {"a"}, {"b"}, index)); }, needles);
    };
    refused("{\"weight_map\": {\"a\": 5}}", {"weight_map.a = 5", "expected the file name of a shard"});
    refused("{\"weight_map\": {\"a\": null}}", {"weight_map.a = null", "expected the file name of a shard"});
    refused("{\"weight_map\": [\"a\"]}", {"weight_map = [\"a\"]", "expected an object"});
    refused("{\"metadata\": {}}", {"model.safetensors.index.json: weight_map is missing"});
    refused("{\"weight_map\": {}}", {"weight_map lists no tensors"});
    refused("[]", {"the top level is not a JSON object"});
    refused(std::string(1000, '['), {"model.safetensors.index.json", "nests deeper than 64 levels"});
}

// --- engines -----------------------------------------------------------------------------------------------------

// An engine of tiny_llama whose config.json a test edits.
class EngineConfigJson : public ::testing::Test {
protected:
    void SetUp() override {
        test::build_from(test::data_dir() / "tiny_llama", dir.path(), DType::F32, 16, 16);
        config = test::read_json(dir / "config.json");
    }
    // Writes config.json edited by `edit`, and expects opening the engine to fail naming each needle.
    void expect_refused(const std::function<void(nlohmann::json&)>& edit, std::initializer_list<std::string> needles) {
        auto j = config;
        edit(j);
        test::write_file(dir / "config.json", j.dump());
        SCOPED_TRACE(j.dump().substr(0, 300));
        expect_refusal([&] { Engine e(dir.path()); }, needles);
    }
    TempDir dir;
    nlohmann::json config;
};

TEST_F(EngineConfigJson, ModelValuesOfTheWrongTypeNameTheirKey) {
    // Before: n_embd 72.9 read as 72, "3" failed with nlohmann's "type must be number, but is string".
    expect_refused([](auto& j) { j["model"]["n_embd"] = 72.9; }, {"config.json: model.n_embd = 72.9", "expected an integer"});
    expect_refused([](auto& j) { j["model"]["n_layer"] = "3"; }, {"model.n_layer = \"3\"", "expected an integer"});
    expect_refused([](auto& j) { j["model"]["n_vocab"] = true; }, {"model.n_vocab = true", "expected an integer"});
    expect_refused([](auto& j) { j["model"]["n_ctx"] = 1e20; }, {"model.n_ctx = 1e+20", "expected an integer"});
    expect_refused([](auto& j) { j["model"]["tied_embeddings"] = 0; }, {"model.tied_embeddings = 0", "true or false"});
    expect_refused([](auto& j) { j["model"]["rms_eps"] = "1e-6"; }, {"model.rms_eps", "expected a number"});
    expect_refused([](auto& j) { j["model"].erase("n_head"); }, {"model.n_head is missing"});
    expect_refused([](auto& j) { j["model"]["rope_scaling"].erase("type"); }, {"model.rope_scaling.type is missing"});
    expect_refused([](auto& j) { j["model"]["rope_scaling"]["type"] = "longrope"; },
                   {"model.rope_scaling.type = \"longrope\"", "rebuild"});
    expect_refused([](auto& j) { j["model"]["rope_scaling"]["freq_factors"] = {1.0, "2"}; },
                   {"model.rope_scaling.freq_factors", "element 1"});
    expect_refused([](auto& j) { j["model"] = "llama"; }, {"model = \"llama\"", "expected an object"});
}

TEST_F(EngineConfigJson, TopLevelAndLimitsNameTheirKey) {
    expect_refused([](auto& j) { j["format_version"] = 1.0; }, {"format_version = 1.0", "expected an integer"});
    expect_refused([](auto& j) { j["format_version"] = "1"; }, {"format_version = \"1\"", "expected an integer"});
    expect_refused([](auto& j) { j["limits"]["max_input_len"] = 16.5; }, {"limits.max_input_len = 16.5"});
    expect_refused([](auto& j) { j["limits"]["max_batch_size"] = -1; }, {"limits.max_batch_size = -1"});
    expect_refused([](auto& j) { j["dtype"] = "float64"; }, {"dtype = \"float64\"", "unknown dtype"});
    expect_refused([](auto& j) { j["build"]["rmsnorm_plugin"] = "yes"; }, {"build.rmsnorm_plugin = \"yes\""});
    expect_refused([](auto& j) { j["tokenizer"] = 5; }, {"tokenizer = 5", "expected a string"});
    expect_refused([](auto& j) { j["tokenizer"] = "../../etc/passwd"; }, {"tokenizer = \"../../etc/passwd\"", "unexpected"});
    expect_refused([](auto& j) { j["weights"]["file"] = "../weights.bin"; }, {"weights.file", "unexpected weights file"});
    expect_refused([](auto& j) { j["weights"]["bytes"] = 1e20; }, {"weights.bytes = 1e+20", "expected an integer"});
    expect_refused([](auto& j) { j["weights"] = nlohmann::json::array(); }, {"weights = []", "expected an object"});
    expect_refused([](auto& j) { j["format_version"] = 2; }, {"tensor_parallel is missing"});
    test::write_file(dir / "config.json", std::string(100, '['));
    expect_refusal([&] { Engine e(dir.path()); }, {"config.json", "nests deeper than 64 levels"});
}

TEST_F(EngineConfigJson, TensorTableEntriesAreChecked) {
    const std::string t3 = "weights.tensors[3].";
    // 1e20 and -64 were cast to uint64 (undefined behaviour, then a wrapped offset).
    expect_refused([](auto& j) { j["weights"]["tensors"][3]["offset"] = 1e20; }, {t3 + "offset = 1e+20", "expected an integer"});
    expect_refused([](auto& j) { j["weights"]["tensors"][3]["offset"] = -64; }, {t3 + "offset = -64", "must be in [0, "});
    expect_refused([](auto& j) { j["weights"]["tensors"][3]["offset"] = 0; }, {t3 + "offset = 0", "past the header"});
    expect_refused([](auto& j) { j["weights"]["tensors"][3]["bytes"] = 18446744073709551615ull; },
                   {t3 + "bytes = 18446744073709551615", "must be in [0, "});
    expect_refused([](auto& j) { j["weights"]["tensors"][3]["shape"] = {72, 2.5}; }, {t3 + "shape", "element 1 is not an integer"});
    expect_refused([](auto& j) { j["weights"]["tensors"][3]["dtype"] = "int8"; }, {t3 + "dtype = \"int8\"", "unknown dtype"});
    expect_refused([](auto& j) { j["weights"]["tensors"][3] = 7; }, {"weights.tensors[3] is not a JSON object"});
    expect_refused([](auto& j) { j["weights"]["tensors"][4]["name"] = j["weights"]["tensors"][3]["name"]; },
                   {"weights.tensors[4].name", "appears twice"});
    expect_refused(
        [](auto& j) {
            auto& t = j["weights"]["tensors"];  // two tensors of the same size made to share their bytes
            for (size_t a = 0; a < t.size(); ++a)
                for (size_t b = a + 1; b < t.size(); ++b)
                    if (t[a]["bytes"] == t[b]["bytes"]) {
                        t[b]["offset"] = t[a]["offset"];
                        return;
                    }
            FAIL() << "no two tensors of one size";
        },
        {"config.json: tensors '", "' of weights.bin overlap at bytes"});
}

// Rank `r` and tp_size written into a weights file's header (engine_format.h: WeightsHeader).
void set_rank_in_header(const std::filesystem::path& file, uint16_t rank, uint16_t tp_size) {
    std::string bytes = test::read_file(file);
    std::memcpy(bytes.data() + offsetof(engine_format::WeightsHeader, rank), &rank, 2);
    std::memcpy(bytes.data() + offsetof(engine_format::WeightsHeader, tp_size), &tp_size, 2);
    test::write_file(file, bytes);
}

TEST(EngineRankFiles, SwappedRankFilesAreRefused) {
    // The reproducer: tiny_llama at tp 2 has rank files of one size and one tensor table, so weights.rank0.bin and
    // weights.rank1.bin renamed into each other loaded, and ran each rank on the other's heads.
    TempDir dir;
    BuildOptions o;
    o.dtype = DType::F32;
    o.max_input_len = 16;
    o.max_output_len = 16;
    o.tp_size = 2;
    build_engine(load_model_spec(test::data_dir() / "tiny_llama"), o, dir.path());
    ASSERT_EQ(std::filesystem::file_size(dir / "weights.rank0.bin"), std::filesystem::file_size(dir / "weights.rank1.bin"));
    EXPECT_EQ(Engine(dir.path()).tp_size(), 2);
    std::filesystem::rename(dir / "weights.rank0.bin", dir / "tmp.bin");
    std::filesystem::rename(dir / "weights.rank1.bin", dir / "weights.rank0.bin");
    std::filesystem::rename(dir / "tmp.bin", dir / "weights.rank1.bin");
    expect_refusal([&] { Engine e(dir.path()); },
                   {"weights.rank0.bin: holds rank 1 of a 2-rank engine", "expects rank 0 of 2", "renamed"});
    // Rank files written before the header recorded the rank: rebuild.
    set_rank_in_header(dir / "weights.rank0.bin", 0, 0);
    expect_refusal([&] { Engine e(dir.path()); }, {"weights.rank0.bin", "rebuild the engine"});
}

TEST(EngineRankFiles, OneRankEnginesOfEitherHeaderLoad) {
    TempDir dir;
    test::build_from(test::data_dir() / "tiny_llama", dir.path(), DType::F32, 16, 16);
    EXPECT_NO_THROW(Engine e(dir.path()));
    set_rank_in_header(dir / "weights.bin", 0, 0);  // as written before the rank was recorded
    EXPECT_NO_THROW(Engine e(dir.path()));
    set_rank_in_header(dir / "weights.bin", 1, 2);  // a tp 2 engine's rank 1 file, copied in
    expect_refusal([&] { Engine e(dir.path()); }, {"weights.bin: holds rank 1 of a 2-rank engine"});
}

TEST(EngineBuildPaths, ACheckpointPathThatIsNotUtf8Builds) {
    // build.source records the checkpoint's path; nlohmann's dump threw its own type_error on the byte 0xff.
    TempDir dir;
    const auto ckpt = dir / "ckpt\xff";
    std::filesystem::copy(test::data_dir() / "tiny_llama", ckpt, std::filesystem::copy_options::recursive);
    const auto out = dir / "engine";
    ASSERT_NO_THROW(test::build_from(ckpt, out, DType::F32, 16, 16));
    EXPECT_NO_THROW(Engine e(out));
}

}  // namespace
}  // namespace lamina
