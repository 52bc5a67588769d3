// SafetensorsFile: header parsing and hostile headers.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "model/safetensors_file.h"

namespace loom {
namespace {

using nlohmann::json;

std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> b(8);
  uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  b.insert(b.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<uint8_t>(i));
  return b;
}

Result<std::unique_ptr<SafetensorsFile>> parse(std::vector<uint8_t> bytes) {
  return SafetensorsFile::parse(MappedFile::from_bytes(std::move(bytes), "test.safetensors"));
}

void expect_error(const std::vector<uint8_t>& bytes, std::vector<std::string> needles) {
  auto r = parse(bytes);
  ASSERT_FALSE(r.ok()) << "parse unexpectedly succeeded";
  for (const auto& n : needles) {
    EXPECT_NE(r.error().find(n), std::string::npos)
        << "error \"" << r.error() << "\" does not mention \"" << n << "\"";
  }
}

std::string header(const std::string& dtype, std::vector<int64_t> shape, int64_t begin,
                   int64_t end) {
  json j;
  j["w"] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, end}}};
  j["__metadata__"] = {{"format", "pt"}};
  return j.dump();
}

TEST(Safetensors, ParsesTensors) {
  json j;
  j["a"] = {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}};
  j["b"] = {{"dtype", "BF16"}, {"shape", {4}}, {"data_offsets", {24, 32}}};
  j["c"] = {{"dtype", "F16"}, {"shape", json::array()}, {"data_offsets", {32, 34}}};
  auto f = parse(make_file(j.dump(), 34));
  ASSERT_TRUE(f.ok()) << f.error();
  ASSERT_EQ((*f)->tensors().size(), 3u);
  const SafetensorsTensor* a = (*f)->tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->type, DType::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->nbytes, 24u);
  const SafetensorsTensor* b = (*f)->tensor("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->type, DType::kBF16);
  EXPECT_EQ(static_cast<const uint8_t*>(b->data) - static_cast<const uint8_t*>(a->data), 24);
  EXPECT_EQ(static_cast<const uint8_t*>(b->data)[0], 24);  // data bytes are 0, 1, 2, ...
  EXPECT_EQ((*f)->tensor("c")->nbytes, 2u);
  EXPECT_EQ((*f)->tensor("__metadata__"), nullptr);
}

TEST(Safetensors, HostileHeaders) {
  expect_error({1, 2, 3}, {"too small"});
  auto huge = make_file("{}", 0);
  uint64_t n = 1ull << 62;
  std::memcpy(huge.data(), &n, 8);
  expect_error(huge, {"header length", "past the end"});
  expect_error(make_file("{not json", 0), {"not valid JSON"});
  expect_error(make_file("[1,2]", 0), {"not a JSON object"});
  expect_error(make_file(header("F32", {2}, 0, 8), 4), {"'w'", "past the end"});
  expect_error(make_file(header("F32", {2}, 8, 4), 16), {"'w'", "begin is after end"});
  expect_error(make_file(header("F32", {2}, 0, 12), 16), {"'w'", "span 12 bytes", "need 8"});
  expect_error(make_file(header("F32", {2}, -8, 0), 16), {"'w'", "non-negative"});
  expect_error(make_file(header("F32", {-2}, 0, 0), 16), {"'w'", "negative"});
  expect_error(make_file(header("I64", {2}, 0, 16), 16), {"'w'", "I64", "not supported"});
  expect_error(make_file(header("F8_E4M3", {2}, 0, 2), 16), {"F8_E4M3"});
  // Dims whose product overflows 64 bits.
  expect_error(make_file(header("F32", {1ll << 40, 1ll << 40}, 0, 8), 16), {"'w'", "overflow"});
  // Element count fits but bytes overflow.
  expect_error(make_file(header("F32", {1ll << 62, 2}, 0, 8), 16), {"'w'"});
  expect_error(make_file(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", 4), {"dtype"});
  expect_error(make_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 4),
               {"data_offsets"});
  expect_error(make_file(R"({"w": 5})", 4), {"not an object"});
  expect_error(make_file(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4),
               {"non-integer"});
}

TEST(Safetensors, TruncationNeverCrashes) {
  json j;
  j["a"] = {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}};
  auto bytes = make_file(j.dump(), 24);
  ASSERT_TRUE(parse(bytes).ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = parse(std::vector<uint8_t>(bytes.begin(), bytes.begin() + n));
    EXPECT_FALSE(r.ok()) << n;
  }
}

}  // namespace
}  // namespace loom
