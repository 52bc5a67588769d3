// A small GGUF writer for tests: valid files by default, with hooks to write hostile ones.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace loom::testing {

class GgufWriter {
 public:
  uint32_t version = 3;
  uint32_t alignment = 32;  // written as general.alignment only when write_alignment is set
  bool write_alignment = false;

  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type = 0;
    std::vector<uint8_t> data;  // written to the data section
    bool override_offset = false;
    uint64_t offset = 0;  // used when override_offset
  };

  void add_u32(const std::string& key, uint32_t v) { add_scalar(key, 4, v); }
  void add_i32(const std::string& key, int32_t v) { add_scalar(key, 5, v); }
  void add_u64(const std::string& key, uint64_t v) { add_scalar(key, 10, v); }
  void add_i64(const std::string& key, int64_t v) { add_scalar(key, 11, v); }
  void add_u8(const std::string& key, uint8_t v) { add_scalar(key, 0, v); }
  void add_i8(const std::string& key, int8_t v) { add_scalar(key, 1, v); }
  void add_u16(const std::string& key, uint16_t v) { add_scalar(key, 2, v); }
  void add_i16(const std::string& key, int16_t v) { add_scalar(key, 3, v); }
  void add_f32(const std::string& key, float v) { add_scalar(key, 6, v); }
  void add_f64(const std::string& key, double v) { add_scalar(key, 12, v); }
  void add_bool(const std::string& key, bool v) { add_scalar(key, 7, static_cast<uint8_t>(v)); }
  void add_string(const std::string& key, const std::string& v) {
    std::vector<uint8_t> b;
    put_string(b, v);
    add_raw_kv(key, 8, b);
  }
  void add_string_array(const std::string& key, const std::vector<std::string>& v) {
    std::vector<uint8_t> b;
    put<uint32_t>(b, 8);
    put<uint64_t>(b, v.size());
    for (const auto& s : v) put_string(b, s);
    add_raw_kv(key, 9, b);
  }
  template <class T>
  void add_array(const std::string& key, uint32_t elem_type, const std::vector<T>& v) {
    std::vector<uint8_t> b;
    put<uint32_t>(b, elem_type);
    put<uint64_t>(b, v.size());
    for (const T& x : v) put<T>(b, x);
    add_raw_kv(key, 9, b);
  }
  // Any bytes as the value of `key` with value type `type` (for hostile files).
  void add_raw_kv(const std::string& key, uint32_t type, const std::vector<uint8_t>& value) {
    std::vector<uint8_t> b;
    put_string(b, key);
    put<uint32_t>(b, type);
    b.insert(b.end(), value.begin(), value.end());
    kvs_.push_back(std::move(b));
  }

  // A tensor whose data is `data`, or zeros of the size its type and dims imply.
  Tensor& add_tensor(const std::string& name, DType type, std::vector<uint64_t> ne,
                     std::vector<uint8_t> data = {}) {
    Tensor t;
    t.name = name;
    t.type = static_cast<uint32_t>(type);
    t.ne = std::move(ne);
    if (data.empty()) {
      DTypeInfo info = dtype_info(type);
      uint64_t n = 1;
      for (uint64_t d : t.ne) n *= d;
      data.assign(n / info.block_elems * info.block_bytes, 0);
    }
    t.data = std::move(data);
    tensors_.push_back(std::move(t));
    return tensors_.back();
  }
  Tensor& add_f32_tensor(const std::string& name, std::vector<uint64_t> ne,
                         const std::vector<float>& values) {
    std::vector<uint8_t> data(values.size() * 4);
    if (!values.empty()) std::memcpy(data.data(), values.data(), data.size());
    return add_tensor(name, DType::kF32, std::move(ne), std::move(data));
  }
  std::vector<Tensor>& tensors() { return tensors_; }

  std::vector<uint8_t> build() const {
    std::vector<uint8_t> out;
    put<uint32_t>(out, 0x46554747);
    put<uint32_t>(out, version);
    put<uint64_t>(out, tensors_.size());
    put<uint64_t>(out, kvs_.size() + (write_alignment ? 1 : 0));
    if (write_alignment) {
      put_string(out, "general.alignment");
      put<uint32_t>(out, 4);
      put<uint32_t>(out, alignment);
    }
    for (const auto& kv : kvs_) out.insert(out.end(), kv.begin(), kv.end());
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const Tensor& t : tensors_) {
      put_string(out, t.name);
      put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
      for (uint64_t d : t.ne) put<uint64_t>(out, d);
      put<uint32_t>(out, t.type);
      offsets.push_back(offset);
      put<uint64_t>(out, t.override_offset ? t.offset : offset);
      offset += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    out.resize((out.size() + alignment - 1) / alignment * alignment, 0);
    const size_t data_start = out.size();
    for (size_t i = 0; i < tensors_.size(); ++i) {
      out.resize(data_start + offsets[i], 0);
      out.insert(out.end(), tensors_[i].data.begin(), tensors_[i].data.end());
    }
    return out;
  }

  template <class T>
  static void put(std::vector<uint8_t>& b, T v) {
    uint8_t bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    b.insert(b.end(), bytes, bytes + sizeof(T));
  }
  static void put_string(std::vector<uint8_t>& b, const std::string& s) {
    put<uint64_t>(b, s.size());
    b.insert(b.end(), s.begin(), s.end());
  }

 private:
  template <class T>
  void add_scalar(const std::string& key, uint32_t type, T v) {
    std::vector<uint8_t> b;
    put<T>(b, v);
    add_raw_kv(key, type, b);
  }

  std::vector<std::vector<uint8_t>> kvs_;
  std::vector<Tensor> tensors_;
};

}  // namespace loom::testing
