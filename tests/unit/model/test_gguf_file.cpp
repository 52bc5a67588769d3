// GgufFile: typed metadata, tensor infos, and hostile / truncated files (errors, never crashes).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "model/gguf_file.h"
#include "unit/model/gguf_writer.h"

namespace loom {
namespace {

using testing::GgufWriter;

Result<std::unique_ptr<GgufFile>> parse(std::vector<uint8_t> bytes) {
  return GgufFile::parse(MappedFile::from_bytes(std::move(bytes), "test.gguf"));
}

// The error of a parse that must fail, checked to mention every `needle`.
void expect_error(const std::vector<uint8_t>& bytes, std::vector<std::string> needles) {
  auto r = parse(bytes);
  ASSERT_FALSE(r.ok()) << "parse unexpectedly succeeded";
  for (const std::string& n : needles) {
    EXPECT_NE(r.error().find(n), std::string::npos)
        << "error \"" << r.error() << "\" does not mention \"" << n << "\"";
  }
}

std::vector<uint8_t> f32_bytes(std::vector<float> v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A small but complete file: scalars of several types, arrays, two tensors.
GgufWriter small_writer() {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 2);
  w.add_f32("llama.rope.freq_base", 10000.0f);
  w.add_bool("tokenizer.ggml.add_bos_token", true);
  w.add_string_array("tokenizer.ggml.tokens", {"a", "bc", ""});
  w.add_array<int32_t>("tokenizer.ggml.token_type", 5, {1, 3, 6});
  w.add_f32_tensor("a.weight", {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  w.add_f32_tensor("b.weight", {3}, {-1, -2, -3});
  return w;
}

TEST(GgufFile, TypedMetadataRoundTrip) {
  GgufWriter w;
  w.add_u8("k.u8", 200);
  w.add_i8("k.i8", -100);
  w.add_u16("k.u16", 60000);
  w.add_i16("k.i16", -30000);
  w.add_u32("k.u32", 4000000000u);
  w.add_i32("k.i32", -2000000000);
  w.add_u64("k.u64", 1ull << 40);
  w.add_i64("k.i64", -(1ll << 40));
  w.add_f32("k.f32", 1.5f);
  w.add_f64("k.f64", -2.25);
  w.add_bool("k.bool", true);
  w.add_string("k.str", "héllo");
  w.add_string_array("k.strs", {"x", "", "yz"});
  w.add_array<uint16_t>("k.u16s", 2, {1, 65535});
  w.add_array<int64_t>("k.i64s", 11, {-5, 7});
  w.add_array<float>("k.f32s", 6, {0.5f, -1.0f});
  auto g = parse(w.build());
  ASSERT_TRUE(g.ok()) << g.error();
  const GgufFile& f = **g;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.keys().size(), 16u);
  EXPECT_EQ(f.get_u8("k.u8").value(), 200);
  EXPECT_EQ(f.get_i8("k.i8").value(), -100);
  EXPECT_EQ(f.get_u16("k.u16").value(), 60000);
  EXPECT_EQ(f.get_i16("k.i16").value(), -30000);
  EXPECT_EQ(f.get_u32("k.u32").value(), 4000000000u);
  EXPECT_EQ(f.get_i32("k.i32").value(), -2000000000);
  EXPECT_EQ(f.get_u64("k.u64").value(), 1ull << 40);
  EXPECT_EQ(f.get_i64("k.i64").value(), -(1ll << 40));
  EXPECT_EQ(f.get_f32("k.f32").value(), 1.5f);
  EXPECT_EQ(f.get_f64("k.f64").value(), -2.25);
  EXPECT_TRUE(f.get_bool("k.bool").value());
  EXPECT_EQ(f.get_string("k.str").value(), "héllo");
  EXPECT_EQ(f.get_int("k.u32").value(), 4000000000ll);
  EXPECT_EQ(f.get_int("k.i8").value(), -100);
  EXPECT_EQ(f.get_float("k.f32").value(), 1.5);
  auto strs = f.get_string_array("k.strs");
  ASSERT_TRUE(strs.ok());
  ASSERT_EQ(strs->size(), 3u);
  EXPECT_EQ((*strs)[0], "x");
  EXPECT_EQ((*strs)[1], "");
  EXPECT_EQ((*strs)[2], "yz");
  EXPECT_EQ(f.get_int_array("k.u16s").value(), (std::vector<int64_t>{1, 65535}));
  EXPECT_EQ(f.get_int_array("k.i64s").value(), (std::vector<int64_t>{-5, 7}));
  EXPECT_EQ(f.get_float_array("k.f32s").value(), (std::vector<float>{0.5f, -1.0f}));

  // Wrong type and missing keys are errors that name the key.
  auto wrong = f.get_u32("k.str");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().find("k.str"), std::string::npos);
  EXPECT_NE(wrong.error().find("string"), std::string::npos);
  auto missing = f.get_f32("k.nothing");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("k.nothing"), std::string::npos);
  EXPECT_FALSE(f.get_string_array("k.f32s").ok());
  EXPECT_FALSE(f.get_float_array("k.strs").ok());
  EXPECT_FALSE(f.get_int("k.f32").ok());
}

TEST(GgufFile, TensorInfosAndData) {
  GgufWriter w = small_writer();
  w.add_tensor("q.weight", DType::kQ4_0, {64, 3});  // 2 blocks per row, 18 bytes each
  auto bytes = w.build();
  auto g = parse(bytes);
  ASSERT_TRUE(g.ok()) << g.error();
  const GgufFile& f = **g;
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  const GgufTensor* a = f.tensor("a.weight");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->view.ne, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(a->view.type, DType::kF32);
  EXPECT_EQ(a->view.nbytes, 32u);
  EXPECT_EQ(a->offset, 0u);
  float v[8];
  std::memcpy(v, a->view.data, 32);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[7], 8.0f);
  EXPECT_EQ(a->view.rows(), 2);
  const GgufTensor* b = f.tensor("b.weight");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->offset, 32u);
  EXPECT_EQ(static_cast<const uint8_t*>(b->view.data) - f.file().data(),
            static_cast<ptrdiff_t>(f.data_offset() + 32));
  const GgufTensor* q = f.tensor("q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->view.nbytes, 3u * 2 * 18);
  EXPECT_EQ(q->view.row_stride_bytes(), 36u);
  EXPECT_EQ(f.tensor("nope"), nullptr);
}

TEST(GgufFile, HonoursAlignment) {
  GgufWriter w = small_writer();
  w.write_alignment = true;
  w.alignment = 256;
  auto g = parse(w.build());
  ASSERT_TRUE(g.ok()) << g.error();
  EXPECT_EQ((*g)->alignment(), 256u);
  EXPECT_EQ((*g)->data_offset() % 256, 0u);
  EXPECT_EQ((*g)->tensor("b.weight")->offset, 256u);
  float x;
  std::memcpy(&x, (*g)->tensor("b.weight")->view.data, 4);
  EXPECT_EQ(x, -1.0f);

  GgufWriter bad = small_writer();
  bad.write_alignment = true;
  bad.alignment = 48;
  expect_error(bad.build(), {"general.alignment", "48", "power of two"});

  // An offset that is not a multiple of the alignment.
  GgufWriter mis = small_writer();
  mis.tensors()[1].override_offset = true;
  mis.tensors()[1].offset = 4;
  expect_error(mis.build(), {"b.weight", "alignment"});
}

TEST(GgufFile, AcceptsVersion2) {
  GgufWriter w = small_writer();
  w.version = 2;
  auto g = parse(w.build());
  ASSERT_TRUE(g.ok()) << g.error();
  EXPECT_EQ((*g)->version(), 2u);
}

TEST(GgufFile, TruncationAtEveryByteIsAnError) {
  auto bytes = small_writer().build();
  ASSERT_TRUE(parse(bytes).ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + n);
    auto r = parse(std::move(prefix));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_NE(r.error().find("GGUF"), std::string::npos) << r.error();
  }
}

TEST(GgufFile, TruncatedFilesOnDiskAreErrors) {
  auto bytes = small_writer().build();
  auto dir =
      std::filesystem::temp_directory_path() / ("loom_gguf_trunc_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  for (size_t n = 0; n < bytes.size(); n += 5) {
    auto path = dir / "t.gguf";
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(n));
    }
    auto r = GgufFile::open(path.string());
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_NE(r.error().find(path.string()), std::string::npos) << r.error();
  }
  std::filesystem::remove_all(dir);
  auto missing = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("/nonexistent/model.gguf"), std::string::npos);
}

TEST(GgufFile, BadMagicAndVersion) {
  auto bytes = small_writer().build();
  auto bad = bytes;
  bad[0] = 'X';
  expect_error(bad, {"magic"});
  GgufWriter v1 = small_writer();
  v1.version = 1;
  expect_error(v1.build(), {"version 1"});
  GgufWriter v4 = small_writer();
  v4.version = 4;
  expect_error(v4.build(), {"version 4"});
  GgufWriter be = small_writer();
  be.version = 0x03000000;  // a big-endian v3 file read little-endian
  expect_error(be.build(), {"version", "big-endian"});
}

TEST(GgufFile, HugeCountsAreRefusedBeforeAllocating) {
  auto bytes = small_writer().build();
  auto patch_u64 = [&](size_t at, uint64_t v) {
    auto b = bytes;
    std::memcpy(b.data() + at, &v, 8);
    return b;
  };
  expect_error(patch_u64(8, std::numeric_limits<uint64_t>::max()), {"tensor count"});
  expect_error(patch_u64(8, 1ull << 40), {"tensor count"});
  expect_error(patch_u64(16, std::numeric_limits<uint64_t>::max()), {"metadata count"});
  // A kv count a little too large makes the tensor infos be read as metadata.
  expect_error(patch_u64(16, 7), {});

  GgufWriter arr;
  std::vector<uint8_t> value;
  GgufWriter::put<uint32_t>(value, 6);           // f32 elements
  GgufWriter::put<uint64_t>(value, 1ull << 61);  // count * 4 overflows 64 bits
  arr.add_raw_kv("tokenizer.ggml.scores", 9, value);
  expect_error(arr.build(), {"tokenizer.ggml.scores", "array"});

  GgufWriter sarr;
  value.clear();
  GgufWriter::put<uint32_t>(value, 8);  // strings
  GgufWriter::put<uint64_t>(value, 1ull << 50);
  sarr.add_raw_kv("tokenizer.ggml.tokens", 9, value);
  expect_error(sarr.build(), {"tokenizer.ggml.tokens", "strings"});
}

TEST(GgufFile, StringLengthsPastEnd) {
  GgufWriter w;
  std::vector<uint8_t> value;
  GgufWriter::put<uint64_t>(value, 1ull << 40);
  value.push_back('a');
  w.add_raw_kv("general.name", 8, value);
  expect_error(w.build(), {"general.name", "length", "past the end"});

  GgufWriter k;
  k.add_u32("x", 1);
  auto bytes = k.build();
  uint64_t huge = std::numeric_limits<uint64_t>::max();
  std::memcpy(bytes.data() + 24, &huge, 8);  // the first key's length
  expect_error(bytes, {"key of metadata entry 0", "past the end"});

  GgufWriter arr;
  value.clear();
  GgufWriter::put<uint32_t>(value, 8);
  GgufWriter::put<uint64_t>(value, 2);
  GgufWriter::put_string(value, "ok");
  GgufWriter::put<uint64_t>(value, 999999);
  arr.add_raw_kv("tokenizer.ggml.merges", 9, value);
  expect_error(arr.build(), {"tokenizer.ggml.merges", "element 1", "past the end"});
}

TEST(GgufFile, BadValueTypes) {
  GgufWriter w;
  w.add_raw_kv("weird", 13, {0, 0, 0, 0});
  expect_error(w.build(), {"weird", "unknown value type 13"});
  GgufWriter nested;
  std::vector<uint8_t> value;
  GgufWriter::put<uint32_t>(value, 9);
  GgufWriter::put<uint64_t>(value, 0);
  nested.add_raw_kv("nest", 9, value);
  expect_error(nested.build(), {"nest", "nested"});
  GgufWriter dup;
  dup.add_u32("same", 1);
  dup.add_u32("same", 2);
  expect_error(dup.build(), {"duplicate", "same"});
}

TEST(GgufFile, TensorDataPastEnd) {
  GgufWriter w = small_writer();
  w.tensors()[1].override_offset = true;
  w.tensors()[1].offset = 1ull << 20;
  expect_error(w.build(), {"tensor 'b.weight'", "past end of file"});
  GgufWriter o = small_writer();
  o.tensors()[0].override_offset = true;
  o.tensors()[0].offset = std::numeric_limits<uint64_t>::max() - 31;  // aligned, overflows
  expect_error(o.build(), {"a.weight", "overflow"});
  // Dims that claim more data than the file holds.
  GgufWriter big = small_writer();
  big.tensors()[1].ne = {1024, 1024};
  expect_error(big.build(), {"b.weight", "past end of file"});
}

TEST(GgufFile, OverflowingAndBadDims) {
  GgufWriter w = small_writer();
  w.tensors()[0].ne = {1ull << 32, 1ull << 32};
  expect_error(w.build(), {"a.weight", "overflow"});
  GgufWriter bytes_overflow = small_writer();
  bytes_overflow.tensors()[0].ne = {1ull << 61, 2};  // elements fit int64, bytes do not
  expect_error(bytes_overflow.build(), {"a.weight", "overflow"});
  GgufWriter neg = small_writer();
  neg.tensors()[0].ne = {std::numeric_limits<uint64_t>::max(), 1};
  expect_error(neg.build(), {"a.weight", "out of range"});
  GgufWriter dims = small_writer();
  dims.tensors()[0].ne = {1, 1, 1, 1, 1};
  expect_error(dims.build(), {"a.weight", "5 dimensions"});
  GgufWriter block;
  block.add_tensor("q.weight", DType::kQ4_0, {64, 2});
  block.tensors()[0].ne = {48, 2};  // 48 is not a multiple of the 32-value block
  expect_error(block.build(), {"q.weight", "block size 32"});
}

TEST(GgufFile, UnknownAndUnsupportedTensorTypes) {
  GgufWriter w = small_writer();
  w.tensors()[0].type = 99;
  expect_error(w.build(), {"a.weight", "99"});
  GgufWriter q81 = small_writer();
  q81.tensors()[0].type = static_cast<uint32_t>(DType::kQ8_1);
  expect_error(q81.build(), {"a.weight", "Q8_1", "not supported"});
  GgufWriter dup = small_writer();
  dup.tensors()[1].name = "a.weight";
  expect_error(dup.build(), {"duplicate", "a.weight"});
}

TEST(GgufFile, RandomCorruptionNeverCrashes) {
  // Flip bytes of a valid file at pseudo-random places; each result is either a clean parse or
  // an error (sanitizer builds turn any out-of-bounds read into a failure).
  auto bytes = small_writer().build();
  uint64_t state = 12345;
  int errors = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    auto b = bytes;
    for (int k = 0; k < 3; ++k) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      size_t at = (state >> 33) % b.size();
      b[at] = static_cast<uint8_t>(state >> 17);
    }
    auto r = parse(std::move(b));
    if (!r.ok()) {
      ++errors;
      EXPECT_FALSE(r.error().empty());
    }
  }
  EXPECT_GT(errors, 0);
}

}  // namespace
}  // namespace loom
