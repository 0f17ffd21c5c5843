// Malformed GGUF files: every failure is a lamina::Error naming the file, never a crash or a hang.
// Run under ASan/UBSan too (make test), which turns any out-of-bounds read into a failure.
#include <gtest/gtest.h>
#include <malloc.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "../test_util.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/hf_config.h"
#include "tokenizer/tokenizer.h"

#if defined(__SANITIZE_ADDRESS__)
// From libasan (sanitizer/allocator_interface.h, which not every toolchain installs).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif

namespace lamina {
namespace {

using test::TempDir;

// Opens a GGUF the way `lamina build` starts: header, config, tokenizer, every tensor's bounds.
void open_fully(const std::filesystem::path& p) {
    ModelSpec spec = load_gguf_spec(p);
    Tokenizer tok(spec.vocab);
    (void)tok;
}

// Either loads, or throws lamina::Error whose message names the file.
void expect_clean_outcome(const std::filesystem::path& p) {
    try {
        open_fully(p);
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(p.filename().string()), std::string::npos) << e.what();
    }
}

TEST(GgufErrors, MissingFile) {
    try {
        GgufFile f("/nonexistent/model.gguf");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
    }
}

TEST(GgufErrors, WrongMagicAndVersion) {
    TempDir dir;
    test::write_file(dir / "bad.gguf", "GGML\x03\0\0\0");
    EXPECT_THROW(GgufFile(dir / "bad.gguf"), Error);
    std::string v9("GGUF\x09\0\0\0", 8);
    v9 += std::string(16, '\0');
    test::write_file(dir / "v9.gguf", v9);
    try {
        GgufFile f(dir / "v9.gguf");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("version 9"), std::string::npos) << e.what();
    }
    test::write_file(dir / "empty.gguf", "");
    EXPECT_THROW(GgufFile(dir / "empty.gguf"), Error);
}

TEST(GgufErrors, VocabFileTruncatedAtEveryRegion) {
    // The gpt-2 vocab GGUF: 1.7 MB of metadata. Truncate at many offsets, including every one of the
    // first 64 bytes (magic, version, counts, first key).
    const auto src = test::data_dir() / "tokenizer" / "ggml-vocab-gpt-2.gguf";
    const std::string bytes = test::read_file(src);
    ASSERT_GT(bytes.size(), 1000u);
    TempDir dir;
    std::vector<size_t> offsets;
    for (size_t i = 0; i < 64; ++i) offsets.push_back(i);
    std::mt19937 rng(7);
    for (int i = 0; i < 40; ++i) offsets.push_back(std::uniform_int_distribution<size_t>(64, bytes.size() - 1)(rng));
    for (size_t off : offsets) {
        const auto p = dir / "trunc.gguf";
        test::write_file(p, bytes.substr(0, off));
        EXPECT_THROW(GgufFile{p}, Error) << "truncated at " << off;
    }
}

TEST(GgufErrors, RealModelTruncatedAtManyOffsets) {
    LAMINA_REQUIRE_SMOLLM2();
    TempDir dir;
    const auto p = dir / "model.gguf";
    std::filesystem::copy_file(test::smollm2_gguf(), p);
    const auto size = std::filesystem::file_size(p);
    // From the end towards the start: one copy, then shrink it in place.
    std::vector<uintmax_t> offsets = {size - 1, size - 4096, size / 2, size / 4, 4000000, 2000000, 1500000,
                                      1000000, 100000, 10000, 1000, 100, 24, 23, 16, 8, 4, 1};
    for (uintmax_t off : offsets) {
        std::filesystem::resize_file(p, off);
        try {
            open_fully(p);
            ADD_FAILURE() << "truncated at " << off << " was accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("model.gguf"), std::string::npos) << e.what();
        }
    }
}

TEST(GgufErrors, RandomlyCorruptedHeaders) {
    LAMINA_REQUIRE_SMOLLM2();
    // Corrupt a few bytes of the metadata or tensor directory at random, many times. Each attempt must
    // load or fail with a lamina::Error: no crash, no hang, no sanitizer report.
    TempDir dir;
    const std::string original = test::read_file(test::smollm2_gguf());
    // The metadata and tensor directory of this file span its first ~1.6 MB.
    const size_t span = 1600000;
    std::mt19937 rng(12345);
    const auto p = dir / "corrupt.gguf";
    test::write_file(p, original);
    auto poke = [&](size_t pos, char value) {  // edit the copy in place instead of rewriting 98 MB
        std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(pos));
        f.put(value);
    };
    for (int iter = 0; iter < 60; ++iter) {
        std::vector<size_t> flipped;
        const int n_flips = 1 + iter % 4;
        for (int k = 0; k < n_flips; ++k) {
            const size_t pos = std::uniform_int_distribution<size_t>(0, span - 1)(rng);
            flipped.push_back(pos);
            poke(pos, static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng)));
        }
        expect_clean_outcome(p);
        for (size_t pos : flipped) poke(pos, original[pos]);
    }
}

// Finds the tensor-info record of `name` and returns the offset of its u32 type field.
size_t type_field_offset(const std::string& bytes, const std::string& name) {
    std::string needle(8, '\0');
    const uint64_t len = name.size();
    std::memcpy(needle.data(), &len, 8);
    needle += name;
    const size_t at = bytes.find(needle);
    EXPECT_NE(at, std::string::npos);
    size_t pos = at + needle.size();
    uint32_t n_dims;
    std::memcpy(&n_dims, bytes.data() + pos, 4);
    return pos + 4 + 8 * n_dims;
}

TEST(GgufErrors, UnsupportedTensorTypeNamesTheTensor) {
    LAMINA_REQUIRE_SMOLLM2();
    TempDir dir;
    std::string bytes = test::read_file(test::smollm2_gguf());
    const size_t at = type_field_offset(bytes, "blk.0.attn_norm.weight");
    const uint32_t q8_1 = 9;  // a real GGML type lamina does not dequantize (ggml's activation format)
    std::memcpy(bytes.data() + at, &q8_1, 4);
    const auto p = dir / "q8_1.gguf";
    test::write_file(p, bytes);
    try {
        open_fully(p);
        FAIL() << "accepted an unsupported tensor type";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("blk.0.attn_norm.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find("Q8_1"), std::string::npos) << msg;
    }
}

TEST(GgufErrors, UnknownArchitectureIsNamed) {
    LAMINA_REQUIRE_SMOLLM2();
    TempDir dir;
    std::string bytes = test::read_file(test::smollm2_gguf());
    const size_t at = bytes.find("llama");  // general.architecture's value is the first "llama"
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 5, "gptxx");
    const auto p = dir / "arch.gguf";
    test::write_file(p, bytes);
    try {
        open_fully(p);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("gptxx"), std::string::npos) << e.what();
    }
}

// GGUF v3 bytes built record by record, for the files no real writer makes.
constexpr uint32_t kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8,
                   kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12;
constexpr uint32_t kGgmlF32 = 0;

template <typename T>
std::string raw(const T& v) {
    return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}
std::string gguf_string(const std::string& s) {
    return raw(static_cast<uint64_t>(s.size())) + s;
}
template <typename T>
std::string array_of(uint32_t elem_type, const std::vector<T>& xs) {
    std::string b = raw(elem_type) + raw(static_cast<uint64_t>(xs.size()));
    for (const T& x : xs) b += raw(x);
    return b;
}
std::string string_array(const std::vector<std::string>& xs) {
    std::string b = raw(kString) + raw(static_cast<uint64_t>(xs.size()));
    for (const auto& x : xs) b += gguf_string(x);
    return b;
}

class GgufBuilder {
public:
    // One metadata record: `value` is the value's bytes as stored after the type.
    GgufBuilder& kv(const std::string& key, uint32_t type, const std::string& value) {
        kvs_ += gguf_string(key) + raw(type) + value;
        ++n_kv_;
        return *this;
    }
    GgufBuilder& str(const std::string& key, const std::string& v) { return kv(key, kString, gguf_string(v)); }
    GgufBuilder& tensor(const std::string& name, const std::vector<uint64_t>& shape, uint64_t offset,
                        uint32_t type = kGgmlF32) {
        infos_ += gguf_string(name) + raw(static_cast<uint32_t>(shape.size()));
        for (uint64_t d : shape) infos_ += raw(d);
        infos_ += raw(type) + raw(offset);
        ++n_tensors_;
        return *this;
    }
    // The file: header, records, padding to `alignment`, then `data_bytes` zero bytes of tensor data.
    std::string bytes(size_t data_bytes = 0, size_t alignment = 32) const {
        std::string b = "GGUF" + raw(uint32_t{3}) + raw(n_tensors_) + raw(n_kv_) + kvs_ + infos_;
        b.resize((b.size() + alignment - 1) / alignment * alignment, '\0');
        return b + std::string(data_bytes, '\0');
    }

private:
    std::string kvs_, infos_;
    uint64_t n_kv_ = 0, n_tensors_ = 0;
};

// The lamina::Error of opening these bytes as a GGUF, checked to be one line naming the file ("" if none).
std::string open_error(const std::string& bytes) {
    TempDir dir;
    const auto p = dir / "hostile.gguf";
    test::write_file(p, bytes);
    const std::string msg = test::error_of([&] { GgufFile f(p); });
    if (!msg.empty()) {
        EXPECT_NE(msg.find("hostile.gguf"), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
    return msg;
}

void expect_mentions(const std::string& msg, std::initializer_list<std::string> parts) {
    EXPECT_FALSE(msg.empty()) << "no error";
    for (const auto& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
}

// Bytes the allocator hands out now (the sanitizer's own allocator under ASan).
size_t heap_in_use() {
#if defined(__SANITIZE_ADDRESS__)
    return __sanitizer_get_current_allocated_bytes();
#else
    const struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;  // the arenas, and the blocks large enough to get their own mapping
#endif
}

TEST(GgufErrors, ArraysCostMemoryBoundedByTheFileNotTheirLength) {
    // 50M u8 elements (a 50 MB file) once cost ~44 bytes each (2 GB); now an array is a view of the mapping.
    // The file is sparse: written as its header, then extended with zeros.
    TempDir dir;
    constexpr uint64_t kElems = 50'000'000;
    const auto p = dir / "big_array.gguf";
    const std::string head = GgufBuilder().kv("big", kArray, raw(kU8) + raw(kElems)).bytes();
    test::write_file(p, head.substr(0, head.find("big") + 3 + 4 + 12));  // up to the first element
    std::filesystem::resize_file(p, std::filesystem::file_size(p) + kElems);
    // And 5M empty strings (a 40 MB file): each is walked at load, none is copied.
    constexpr uint64_t kStrings = 5'000'000;
    const auto q = dir / "many_strings.gguf";
    const std::string head_q = GgufBuilder().kv("strs", kArray, raw(kString) + raw(kStrings)).bytes();
    test::write_file(q, head_q.substr(0, head_q.find("strs") + 4 + 4 + 12));
    std::filesystem::resize_file(q, std::filesystem::file_size(q) + 8 * kStrings);

    const auto start = std::chrono::steady_clock::now();
    const auto before = static_cast<int64_t>(heap_in_use());
    GgufFile f(p);
    GgufFile g(q);
    const int64_t grown = static_cast<int64_t>(heap_in_use()) - before;
    EXPECT_LT(grown, int64_t{1} << 20) << "bytes of heap for 90 MB of arrays";
    EXPECT_EQ(f.get_array_size("big"), kElems);
    EXPECT_EQ(g.get_array_size("strs"), kStrings);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0);
}

TEST(GgufErrors, ArrayElementsDecodeAtEveryWidth) {
    TempDir dir;
    const auto p = dir / "arrays.gguf";
    test::write_file(p, GgufBuilder()
                            .kv("u8", kArray, array_of<uint8_t>(kU8, {0, 255}))
                            .kv("i8", kArray, array_of<int8_t>(kI8, {-128, 127}))
                            .kv("u16", kArray, array_of<uint16_t>(kU16, {65535}))
                            .kv("i16", kArray, array_of<int16_t>(kI16, {-32768}))
                            .kv("u32", kArray, array_of<uint32_t>(kU32, {4294967295u}))
                            .kv("i32", kArray, array_of<int32_t>(kI32, {-7, 7}))
                            .kv("u64", kArray, array_of<uint64_t>(kU64, {uint64_t{1} << 40}))
                            .kv("i64", kArray, array_of<int64_t>(kI64, {int64_t{-1} << 40}))
                            .kv("f32", kArray, array_of<float>(kF32, {0.5f, -2.0f}))
                            .kv("f64", kArray, array_of<double>(kF64, {0.25}))
                            .kv("bools", kArray, array_of<uint8_t>(kBool, {0, 1}))
                            .kv("strs", kArray, string_array({"", "a b", "\xe2\x82\xac"}))
                            .kv("empty", kArray, array_of<uint8_t>(kU8, {}))
                            .bytes());
    GgufFile f(p);
    EXPECT_EQ(f.get_int_array("u8"), (std::vector<int64_t>{0, 255}));
    EXPECT_EQ(f.get_int_array("i8"), (std::vector<int64_t>{-128, 127}));
    EXPECT_EQ(f.get_int_array("u16"), (std::vector<int64_t>{65535}));
    EXPECT_EQ(f.get_int_array("i16"), (std::vector<int64_t>{-32768}));
    EXPECT_EQ(f.get_int_array("u32"), (std::vector<int64_t>{4294967295}));
    EXPECT_EQ(f.get_int_array("i32"), (std::vector<int64_t>{-7, 7}));
    EXPECT_EQ(f.get_int_array("u64"), (std::vector<int64_t>{int64_t{1} << 40}));
    EXPECT_EQ(f.get_int_array("i64"), (std::vector<int64_t>{int64_t{-1} << 40}));
    EXPECT_EQ(f.get_float_array("f32"), (std::vector<double>{0.5, -2.0}));
    EXPECT_EQ(f.get_float_array("f64"), (std::vector<double>{0.25}));
    EXPECT_EQ(f.get_float_array("i32"), (std::vector<double>{-7, 7}));
    EXPECT_EQ(f.get_string_array("strs"), (std::vector<std::string>{"", "a b", "\xe2\x82\xac"}));
    EXPECT_TRUE(f.get_int_array("empty").empty());
    EXPECT_EQ(f.get_array_size("bools"), 2u);
    expect_mentions(test::error_of([&] { f.get_int_array("f32"); }),
                    {"arrays.gguf", "'f32' element 0", "not an integer"});
    expect_mentions(test::error_of([&] { f.get_int_array("strs"); }), {"'strs'", "strings, not numbers"});
    expect_mentions(test::error_of([&] { f.get_string_array("u8"); }), {"'u8'", "not an array of strings"});
    expect_mentions(test::error_of([&] { f.get_int_array("missing"); }), {"'missing'", "is missing"});
}

TEST(GgufErrors, MalformedArraysAreRefusedByKey) {
    // Arrays of arrays are legal in the spec, but llama.cpp refuses them and no key it writes uses them.
    expect_mentions(
        open_error(
            GgufBuilder().kv("nested", kArray, raw(kArray) + raw(uint64_t{1}) + array_of<uint8_t>(kU8, {1})).bytes()),
        {"key 'nested'", "arrays of arrays"});
    expect_mentions(open_error(GgufBuilder().kv("odd", kArray, array_of<uint8_t>(13, {1})).bytes()),
                    {"key 'odd'", "unknown value type 13"});
    expect_mentions(open_error(GgufBuilder().kv("flags", kArray, array_of<uint8_t>(kBool, {1, 2})).bytes()),
                    {"key 'flags'", "bool value 2"});
    expect_mentions(open_error(GgufBuilder().kv("flag", kBool, raw(uint8_t{7})).bytes()),
                    {"key 'flag'", "bool value 7"});
    expect_mentions(open_error(GgufBuilder().kv("odd", 13, raw(uint32_t{0})).bytes()),
                    {"key 'odd'", "unknown value type 13"});
}

TEST(GgufErrors, HostileCountsAndLengthsAreRefusedBeforeAllocating) {
    // Each would ask for exabytes if believed; each is refused against the bytes left in the file.
    auto header = [](uint64_t n_tensors, uint64_t n_kv) {
        return "GGUF" + raw(uint32_t{3}) + raw(n_tensors) + raw(n_kv) + std::string(64, '\0');
    };
    expect_mentions(open_error(header(0, uint64_t{1} << 60)), {"metadata entries", "cannot fit"});
    expect_mentions(open_error(header(uint64_t{1} << 60, 0)), {"tensors cannot fit"});
    expect_mentions(open_error(header(~uint64_t{0}, ~uint64_t{0})), {"cannot fit"});
    const std::string one_kv = "GGUF" + raw(uint32_t{3}) + raw(uint64_t{0}) + raw(uint64_t{1});
    expect_mentions(open_error(one_kv + raw(uint64_t{1} << 63) + std::string(64, 'k')),
                    {"metadata key of 9223372036854775808 bytes"});
    expect_mentions(open_error(one_kv + raw(uint64_t{70000}) + std::string(70000, 'k')), {"longer than 65535"});
    expect_mentions(open_error(one_kv + raw(uint64_t{1000}) + std::string(20, 'k')),
                    {"truncated while reading metadata key"});
    expect_mentions(open_error(GgufBuilder().kv("s", kString, raw(uint64_t{1} << 63)).bytes()),
                    {"key 's'", "string of"});
    expect_mentions(open_error(GgufBuilder().kv("s", kString, raw(uint64_t{1} << 20)).bytes()),
                    {"key 's'", "truncated"});
    expect_mentions(open_error(GgufBuilder().kv("a", kArray, raw(kU64) + raw(uint64_t{1} << 62)).bytes()),
                    {"key 'a'", "array of 4611686018427387904 elements of 8 bytes is longer than"});
    expect_mentions(open_error(GgufBuilder().kv("a", kArray, raw(kString) + raw(uint64_t{1} << 61)).bytes()),
                    {"key 'a'", "array of 2305843009213693952 strings"});
    // A string array whose count fits the bytes left, but whose strings do not.
    expect_mentions(
        open_error(GgufBuilder()
                       .kv("a", kArray, raw(kString) + raw(uint64_t{2}) + gguf_string("x") + raw(uint64_t{1} << 20))
                       .bytes()),
        {"key 'a'", "truncated while reading array string"});
}

TEST(GgufErrors, DuplicateKeysAndTensorNamesAreNamed) {
    expect_mentions(
        open_error(GgufBuilder().str("general.name", "a").str("other", "b").str("general.name", "c").bytes()),
        {"metadata key 'general.name' appears twice"});
    expect_mentions(open_error(GgufBuilder().tensor("w", {8}, 0).tensor("v", {8}, 32).tensor("w", {8}, 64).bytes(96)),
                    {"tensor 'w' appears twice"});
    // A name with a newline in it cannot break the message over two lines (open_error checks).
    expect_mentions(open_error(GgufBuilder().str("a\nb", "x").str("a\nb", "y").bytes()), {"'a\\x0ab' appears twice"});
}

TEST(GgufErrors, TensorsMustBeAlignedInsideTheFileAndApart) {
    // [0, 64) and [32, 64): the second starts inside the first.
    expect_mentions(open_error(GgufBuilder().tensor("a", {16}, 0).tensor("b", {8}, 32).bytes(64)),
                    {"tensors 'a' [0, +64) and 'b' [32, +32) overlap"});
    // Listed out of order, and at the same offset.
    expect_mentions(open_error(GgufBuilder().tensor("late", {8}, 64).tensor("x", {8}, 0).tensor("y", {8}, 0).bytes(96)),
                    {"'x'", "'y'", "overlap"});
    // Touching is fine: [0, 32) then [32, 64).
    EXPECT_EQ(open_error(GgufBuilder().tensor("a", {8}, 0).tensor("b", {8}, 32).bytes(64)), "");
    expect_mentions(open_error(GgufBuilder().tensor("a", {8}, 16).bytes(64)),
                    {"tensor 'a' offset 16 is not a multiple of the alignment 32"});
    expect_mentions(open_error(GgufBuilder().tensor("a", {8}, 32).bytes(32)), {"tensor 'a'", "outside the file"});
    expect_mentions(open_error(GgufBuilder().tensor("a", {8}, ~uint64_t{31}).bytes(32)),
                    {"tensor 'a'", "outside the file"});
}

TEST(GgufErrors, AlignmentMustBeASanePowerOfTwo) {
    for (uint32_t bad : {0u, 3u, 48u, 1u << 21}) {
        SCOPED_TRACE(bad);
        expect_mentions(open_error(GgufBuilder().kv("general.alignment", kU32, raw(bad)).bytes()),
                        {"'general.alignment' = " + std::to_string(bad), "power of two"});
    }
    expect_mentions(open_error(GgufBuilder().kv("general.alignment", kI32, raw(int32_t{-32})).bytes()),
                    {"'general.alignment' = -32"});
    expect_mentions(open_error(GgufBuilder().str("general.alignment", "32").bytes()),
                    {"'general.alignment'", "not an integer"});
    // 64 is honoured: the data section starts at a multiple of 64, and offsets must be multiples of 64.
    TempDir dir;
    const auto p = dir / "a64.gguf";
    GgufBuilder b;
    b.kv("general.alignment", kU32, raw(uint32_t{64})).tensor("a", {8}, 0).tensor("b", {8}, 64);
    test::write_file(p, b.bytes(128, 64));
    GgufFile f(p);
    EXPECT_EQ(f.alignment(), 64u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f.tensor_data(*f.find_tensor("b")).data()) % 64, 0u);
    GgufBuilder c;
    c.kv("general.alignment", kU32, raw(uint32_t{64})).tensor("a", {8}, 32);
    expect_mentions(open_error(c.bytes(128, 64)), {"tensor 'a' offset 32 is not a multiple of the alignment 64"});
}

TEST(GgufErrors, TensorSizesUseCheckedArithmetic) {
    const uint64_t k32 = uint64_t{1} << 32;
    expect_mentions(open_error(GgufBuilder().tensor("w", {k32, k32}, 0).bytes(64)),
                    {"tensor 'w' element count", "overflows"});
    expect_mentions(open_error(GgufBuilder().tensor("w", {1 << 20, 1 << 20, 1 << 20, 1 << 20}, 0).bytes(64)),
                    {"tensor 'w' element count", "overflows"});
    // 2^62 elements fit int64; their 2^64 bytes of F32 do not.
    expect_mentions(open_error(GgufBuilder().tensor("w", {k32 / 2, k32 / 2}, 0).bytes(64)),
                    {"tensor 'w' n_bytes", "overflows"});
    expect_mentions(open_error(GgufBuilder().tensor("w", {uint64_t{1} << 41}, 0).bytes(64)),
                    {"tensor 'w'", "dimension 0 of 2199023255552"});
    expect_mentions(open_error(GgufBuilder().tensor("w", {8, 0}, 0).bytes(64)), {"tensor 'w'", "dimension 1 of 0"});
    expect_mentions(open_error(GgufBuilder().tensor("w", {1, 1, 1, 1, 1}, 0).bytes(64)),
                    {"tensor 'w'", "5 dimensions"});
    expect_mentions(open_error(GgufBuilder().tensor("w", {}, 0).bytes(64)), {"tensor 'w'", "0 dimensions"});
    expect_mentions(open_error(GgufBuilder().tensor("w", {8}, 0, 99).bytes(64)), {"tensor 'w'", "unknown type 99"});
    expect_mentions(open_error(GgufBuilder().tensor("w", {16}, 0, 8).bytes(64)),
                    {"tensor 'w'", "not a multiple of the Q8_0 block size 32"});
}

TEST(GgufErrors, AKnownTypeLaminaDoesNotComputeIsReadThenRefusedByName) {
    // IQ2_XS (code 17, 256 elements in 74 bytes): the reader knows its size, so the file opens, and turning
    // the tensor into floats is refused naming the type.
    TempDir dir;
    const auto p = dir / "iq2_xs.gguf";
    test::write_file(p, GgufBuilder().tensor("w", {256}, 0, 17).bytes(74));
    GgufFile f(p);
    const GgufTensorInfo* t = f.find_tensor("w");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(ggml_type_name(t->type), "IQ2_XS");
    EXPECT_EQ(t->n_bytes, 74u);
    std::vector<float> out(256);
    expect_mentions(test::error_of([&] { dequantize(t->type, f.tensor_data(*t).data(), out.data(), 256); }),
                    {"tensor type IQ2_XS is not supported", "Q5_K"});
}

TEST(GgufErrors, NumbersThatDoNotFitTheGetterAreNamed) {
    TempDir dir;
    const auto p = dir / "numbers.gguf";
    test::write_file(p, GgufBuilder()
                            .kv("big", kU64, raw(uint64_t{1} << 63))
                            .kv("ok", kU64, raw(uint64_t{1} << 62))
                            .kv("f64_huge", kF64, raw(1e300))
                            .kv("f64_tiny", kF64, raw(1e-300))
                            .kv("f32_inf", kF32, raw(std::numeric_limits<float>::infinity()))
                            .kv("f32_nan", kF32, raw(std::numeric_limits<float>::quiet_NaN()))
                            .kv("name", kString, gguf_string("x"))
                            .kv("big_elems", kArray, array_of<uint64_t>(kU64, {1, ~uint64_t{0}}))
                            .kv("f64_elems", kArray, array_of<double>(kF64, {1.0, -1e39}))
                            .bytes());
    GgufFile f(p);
    EXPECT_EQ(f.get_int("ok"), int64_t{1} << 62);
    expect_mentions(test::error_of([&] { f.get_int("big"); }),
                    {"numbers.gguf", "'big' = 9223372036854775808 does not fit a signed 64-bit integer"});
    expect_mentions(test::error_of([&] { f.get_float("f64_huge"); }),
                    {"'f64_huge' = 1e+300 is beyond the range of a 32-bit float"});
    expect_mentions(test::error_of([&] { f.get_float("f64_tiny"); }), {"'f64_tiny' = 1e-300 underflows"});
    expect_mentions(test::error_of([&] { f.get_float("f32_inf"); }), {"'f32_inf' = inf is not a finite number"});
    expect_mentions(test::error_of([&] { f.get_float("f32_nan"); }), {"'f32_nan'", "not a finite number"});
    expect_mentions(test::error_of([&] { f.get_float("name"); }), {"'name' is not a number"});
    expect_mentions(test::error_of([&] { f.get_int("name"); }), {"'name' is not an integer"});
    expect_mentions(test::error_of([&] { f.get_int_array("big_elems"); }),
                    {"'big_elems' element 1 = 18446744073709551615"});
    expect_mentions(test::error_of([&] { f.get_float_array("f64_elems"); }), {"'f64_elems' element 1 = -1e+39"});
}

// A minimal byte-level BPE vocabulary: three tokens, with `extra` records added.
std::string tiny_vocab(const std::function<void(GgufBuilder&)>& extra) {
    GgufBuilder b;
    b.str("tokenizer.ggml.model", "gpt2").kv("tokenizer.ggml.tokens", kArray, string_array({"a", "b", "ab"}));
    extra(b);
    return b.bytes();
}

Vocab read_vocab(const std::string& bytes) {
    TempDir dir;
    test::write_file(dir / "vocab.gguf", bytes);
    return vocab_from_gguf(GgufFile(dir / "vocab.gguf"));
}

TEST(GgufErrors, TokenIdsAndTypesAreNeverTruncated) {
    auto refusal = [](const std::function<void(GgufBuilder&)>& extra) {
        return test::error_of([&] { read_vocab(tiny_vocab(extra)); });
    };
    // 2^32 + 1 once became id 1.
    expect_mentions(
        refusal([](GgufBuilder& b) { b.kv("tokenizer.ggml.bos_token_id", kU64, raw((uint64_t{1} << 32) + 1)); }),
        {"vocab.gguf", "tokenizer.ggml.bos_token_id = 4294967297 is outside the vocab (0..2)"});
    expect_mentions(refusal([](GgufBuilder& b) { b.kv("tokenizer.ggml.eos_token_id", kU64, raw(~uint64_t{0})); }),
                    {"'tokenizer.ggml.eos_token_id' = 18446744073709551615 does not fit"});
    expect_mentions(refusal([](GgufBuilder& b) { b.kv("tokenizer.ggml.unknown_token_id", kI64, raw(int64_t{-2})); }),
                    {"tokenizer.ggml.unknown_token_id = -2"});
    expect_mentions(refusal([](GgufBuilder& b) { b.kv("tokenizer.ggml.padding_token_id", kU32, raw(uint32_t{3})); }),
                    {"tokenizer.ggml.padding_token_id = 3 is outside the vocab"});
    // 2^32 + 1 once became type 1 (normal).
    expect_mentions(
        refusal([](GgufBuilder& b) {
            b.kv("tokenizer.ggml.token_type", kArray, array_of<int64_t>(kI64, {1, (int64_t{1} << 32) + 1, 1}));
        }),
        {"tokenizer.ggml.token_type element 1 = 4294967297 is not a token type"});
    expect_mentions(refusal([](GgufBuilder& b) {
                        b.kv("tokenizer.ggml.token_type", kArray, array_of<int32_t>(kI32, {1, 1}));
                    }),
                    {"tokenizer.ggml.token_type has 2 entries, expected one per token (3)"});
    expect_mentions(refusal([](GgufBuilder& b) {
                        b.kv("tokenizer.ggml.scores", kArray, array_of<double>(kF64, {0, 1e300, 0}));
                    }),
                    {"'tokenizer.ggml.scores' element 1 = 1e+300 is beyond the range of a 32-bit float"});
    // u32 0xFFFFFFFF is how llama.cpp spells "none" (-1); an end-of-turn id past the vocab is ignored, as before.
    const Vocab v = read_vocab(tiny_vocab([](GgufBuilder& b) {
        b.kv("tokenizer.ggml.bos_token_id", kU32, raw(uint32_t{0xFFFFFFFF}))
            .kv("tokenizer.ggml.eos_token_id", kU32, raw(uint32_t{2}))
            .kv("tokenizer.ggml.eot_token_id", kU64, raw((uint64_t{1} << 32) + 1));
    }));
    EXPECT_EQ(v.bos_id, -1);
    EXPECT_EQ(v.eos_id, 2);
    EXPECT_EQ(v.stop_ids, (std::vector<int32_t>{2}));
}

TEST(GgufErrors, TokenCountIsBoundedBeforeDecoding) {
    // 2^24 + 1 empty tokens (a sparse 128 MB file): refused by count, before 16M strings are copied.
    TempDir dir;
    const uint64_t n = (uint64_t{1} << 24) + 1;
    const auto p = dir / "many_tokens.gguf";
    const std::string head =
        GgufBuilder().str("tokenizer.ggml.model", "gpt2").kv("tokenizer.ggml.tokens", kArray, raw(kString) + raw(n)).bytes();
    test::write_file(p, head.substr(0, head.find("tokenizer.ggml.tokens") + 21 + 4 + 12));
    std::filesystem::resize_file(p, std::filesystem::file_size(p) + 8 * n);
    const GgufFile f(p);
    expect_mentions(test::error_of([&] { vocab_from_gguf(f); }),
                    {"many_tokens.gguf", "tokenizer.ggml.tokens has 16777217 tokens (expected 1 to 2^24)"});
    expect_mentions(test::error_of([&] {
                        read_vocab(GgufBuilder()
                                       .str("tokenizer.ggml.model", "gpt2")
                                       .kv("tokenizer.ggml.tokens", kArray, string_array({}))
                                       .bytes());
                    }),
                    {"tokenizer.ggml.tokens has 0 tokens"});
}

TEST(GgufDequant, Q4_1AndQ8_0MatchTheFormula) {
    // One Q4_1 block: d = 0.5, m = -1, nibbles 0..15 twice -> x = q * d + m.
    std::vector<uint8_t> q41(20);
    const uint16_t d = f32_to_f16(0.5f), m = f32_to_f16(-1.0f);
    std::memcpy(q41.data(), &d, 2);
    std::memcpy(q41.data() + 2, &m, 2);
    for (int j = 0; j < 16; ++j) q41[4 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    std::vector<float> out(32);
    dequantize(static_cast<uint32_t>(GgmlType::Q4_1), q41.data(), out.data(), 32);
    for (int j = 0; j < 16; ++j) {
        EXPECT_EQ(out[j], j * 0.5f - 1.0f);
        EXPECT_EQ(out[j + 16], (15 - j) * 0.5f - 1.0f);
    }
    std::vector<uint8_t> q80(34);
    const uint16_t d8 = f32_to_f16(0.25f);
    std::memcpy(q80.data(), &d8, 2);
    for (int j = 0; j < 32; ++j) q80[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
    dequantize(static_cast<uint32_t>(GgmlType::Q8_0), q80.data(), out.data(), 32);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], (j - 16) * 0.25f);
}

TEST(GgufMetadata, SmolLM2Config) {
    LAMINA_REQUIRE_SMOLLM2();
    GgufFile f(test::smollm2_gguf());
    EXPECT_EQ(f.version(), 3u);
    const ModelConfig c = model_config_from_gguf(f);
    EXPECT_EQ(c.n_layer, 30);
    EXPECT_EQ(c.n_embd, 576);
    EXPECT_EQ(c.n_head, 9);
    EXPECT_EQ(c.n_head_kv, 3);
    EXPECT_EQ(c.head_dim, 64);
    EXPECT_EQ(c.n_ff, 1536);
    EXPECT_EQ(c.n_vocab, 49152);
    EXPECT_TRUE(c.block.tied_embeddings);
    EXPECT_FLOAT_EQ(c.rope_theta, 100000.0f);
}

}  // namespace
}  // namespace lamina

namespace lamina {
namespace {

// Every supported GGML type against gguf-py's reference dequantization (tools/make_quant_fixture.py).
TEST(GgufDequant, EveryTypeMatchesGgufPy) {
    const auto dir = test::data_dir() / "gguf";
    GgufFile f(dir / "quants.gguf");
    const auto ref = test::read_json(dir / "quants_expected.json");
    int checked = 0;
    for (const auto& [name, values] : ref["expected"].items()) {
        const GgufTensorInfo* t = f.find_tensor(name);
        ASSERT_NE(t, nullptr) << name;
        std::vector<float> out(t->n_elements());
        const auto data = f.tensor_data(*t);
        dequantize(t->type, data.data(), out.data(), t->n_elements());
        const auto expected = values.get<std::vector<float>>();
        ASSERT_EQ(out.size(), expected.size());
        for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], expected[i]) << name << " element " << i;
        ++checked;
    }
    EXPECT_EQ(checked, 8);
}

}  // namespace
}  // namespace lamina
