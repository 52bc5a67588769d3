// GGUF (v2, v3) reader over a read-only mapping. Every count, length, offset and size in the file
// is checked against the file size before it is used, so a truncated or hostile file gives an error
// naming the problem instead of a crash. Tensor data is used in place (no copy).
//
// Layout (little-endian): "GGUF" u32 version, u64 tensor_count, u64 kv_count,
//   kv_count x { string key, u32 value_type, value },
//   tensor_count x { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset },
//   padding to general.alignment (default 32), data section (offsets are relative to its start).
// A string is u64 length + bytes (no terminator); an array is u32 elem_type, u64 count, elements.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/mapped_file.h"
#include "model/tensor.h"
#include "util/result.h"

namespace loom {

enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
const char* gguf_type_name(GgufType type);

// One metadata value. Scalars and arrays of scalars point into the mapping (possibly unaligned);
// strings are views into the mapping.
struct GgufValue {
  GgufType type = GgufType::kU8;
  GgufType elem_type = GgufType::kU8;     // arrays only
  uint64_t count = 1;                     // arrays: number of elements
  const uint8_t* raw = nullptr;           // scalar bytes, or the first element of a scalar array
  std::vector<std::string_view> strings;  // kString: one; array of strings: `count`
};

struct GgufTensor {
  TensorView view;      // name, type, ne (innermost first), data, nbytes
  uint64_t offset = 0;  // relative to the data section
};

class GgufFile {
 public:
  static constexpr uint32_t kDefaultAlignment = 32;

  static Result<std::unique_ptr<GgufFile>> open(const std::string& path);
  // Parses an already mapped file (tests build files in memory).
  static Result<std::unique_ptr<GgufFile>> parse(std::shared_ptr<const MappedFile> file);

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute start of the data section
  const MappedFile& file() const { return *file_; }
  std::shared_ptr<const MappedFile> shared_file() const { return file_; }

  // Metadata, in file order for listing; lookups by key.
  const std::vector<std::string>& keys() const { return keys_; }
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  const GgufValue* find(const std::string& key) const;

  // Typed access: an error names the key when it is missing or has another type.
  Result<uint8_t> get_u8(const std::string& key) const;
  Result<int8_t> get_i8(const std::string& key) const;
  Result<uint16_t> get_u16(const std::string& key) const;
  Result<int16_t> get_i16(const std::string& key) const;
  Result<uint32_t> get_u32(const std::string& key) const;
  Result<int32_t> get_i32(const std::string& key) const;
  Result<uint64_t> get_u64(const std::string& key) const;
  Result<int64_t> get_i64(const std::string& key) const;
  Result<float> get_f32(const std::string& key) const;
  Result<double> get_f64(const std::string& key) const;
  Result<bool> get_bool(const std::string& key) const;
  Result<std::string> get_string(const std::string& key) const;
  // Any integer type (writers differ between u32 and i32), range-checked into int64.
  Result<int64_t> get_int(const std::string& key) const;
  // f32 or f64.
  Result<double> get_float(const std::string& key) const;
  // Arrays. Numeric arrays convert from any integer (resp. float) element type, range-checked.
  Result<std::vector<std::string_view>> get_string_array(const std::string& key) const;
  Result<std::vector<int64_t>> get_int_array(const std::string& key) const;
  Result<std::vector<float>> get_float_array(const std::string& key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* tensor(const std::string& name) const;

 private:
  explicit GgufFile(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) {}
  friend class GgufParser;
  Result<const GgufValue*> typed(const std::string& key, GgufType type) const;

  std::shared_ptr<const MappedFile> file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::string> keys_;
  std::unordered_map<std::string, GgufValue> values_;
  std::vector<GgufTensor> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace loom
