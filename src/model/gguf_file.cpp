// Typed access to GGUF metadata and tensors (parsing is in gguf_parse.cpp).
#include "model/gguf_file.h"

#include <cinttypes>
#include <cmath>
#include <cstring>
#include <limits>

namespace loom {
namespace {

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // metadata values are not aligned in the file
  return v;
}

bool is_integer(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kU16:
    case GgufType::kI16:
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kU64:
    case GgufType::kI64:
      return true;
    default:
      return false;
  }
}

size_t int_size(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
      return 4;
    default:
      return 8;
  }
}

// Reads one integer of type t; false when a u64 does not fit int64.
bool load_int(GgufType t, const uint8_t* p, int64_t* out) {
  switch (t) {
    case GgufType::kU8:
      *out = load<uint8_t>(p);
      return true;
    case GgufType::kI8:
      *out = load<int8_t>(p);
      return true;
    case GgufType::kU16:
      *out = load<uint16_t>(p);
      return true;
    case GgufType::kI16:
      *out = load<int16_t>(p);
      return true;
    case GgufType::kU32:
      *out = load<uint32_t>(p);
      return true;
    case GgufType::kI32:
      *out = load<int32_t>(p);
      return true;
    case GgufType::kI64:
      *out = load<int64_t>(p);
      return true;
    case GgufType::kU64: {
      uint64_t v = load<uint64_t>(p);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
      *out = static_cast<int64_t>(v);
      return true;
    }
    default:
      return false;
  }
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::kU8:
      return "u8";
    case GgufType::kI8:
      return "i8";
    case GgufType::kU16:
      return "u16";
    case GgufType::kI16:
      return "i16";
    case GgufType::kU32:
      return "u32";
    case GgufType::kI32:
      return "i32";
    case GgufType::kF32:
      return "f32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kU64:
      return "u64";
    case GgufType::kI64:
      return "i64";
    case GgufType::kF64:
      return "f64";
  }
  return "?";
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<const GgufValue*> GgufFile::typed(const std::string& key, GgufType type) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return make_error("GGUF metadata '%s' is missing", key.c_str());
  if (v->type != type) {
    return make_error("GGUF metadata '%s' has type %s, expected %s", key.c_str(),
                      gguf_type_name(v->type), gguf_type_name(type));
  }
  return v;
}

#define LOOM_GGUF_GETTER(fn, T, tag)                     \
  Result<T> GgufFile::fn(const std::string& key) const { \
    auto v = typed(key, tag);                            \
    if (!v) return Error{v.error()};                     \
    return load<T>((*v)->raw);                           \
  }
LOOM_GGUF_GETTER(get_u8, uint8_t, GgufType::kU8)
LOOM_GGUF_GETTER(get_i8, int8_t, GgufType::kI8)
LOOM_GGUF_GETTER(get_u16, uint16_t, GgufType::kU16)
LOOM_GGUF_GETTER(get_i16, int16_t, GgufType::kI16)
LOOM_GGUF_GETTER(get_u32, uint32_t, GgufType::kU32)
LOOM_GGUF_GETTER(get_i32, int32_t, GgufType::kI32)
LOOM_GGUF_GETTER(get_u64, uint64_t, GgufType::kU64)
LOOM_GGUF_GETTER(get_i64, int64_t, GgufType::kI64)
LOOM_GGUF_GETTER(get_f32, float, GgufType::kF32)
LOOM_GGUF_GETTER(get_f64, double, GgufType::kF64)
#undef LOOM_GGUF_GETTER

Result<bool> GgufFile::get_bool(const std::string& key) const {
  auto v = typed(key, GgufType::kBool);
  if (!v) return Error{v.error()};
  return load<uint8_t>((*v)->raw) != 0;
}

Result<std::string> GgufFile::get_string(const std::string& key) const {
  auto v = typed(key, GgufType::kString);
  if (!v) return Error{v.error()};
  return std::string((*v)->strings.at(0));
}

Result<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return make_error("GGUF metadata '%s' is missing", key.c_str());
  int64_t out = 0;
  if (!is_integer(v->type)) {
    return make_error("GGUF metadata '%s' has type %s, expected an integer", key.c_str(),
                      gguf_type_name(v->type));
  }
  if (!load_int(v->type, v->raw, &out)) {
    return make_error("GGUF metadata '%s': value out of range", key.c_str());
  }
  return out;
}

Result<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return make_error("GGUF metadata '%s' is missing", key.c_str());
  if (v->type == GgufType::kF32) return static_cast<double>(load<float>(v->raw));
  if (v->type == GgufType::kF64) return load<double>(v->raw);
  return make_error("GGUF metadata '%s' has type %s, expected f32 or f64", key.c_str(),
                    gguf_type_name(v->type));
}

Result<std::vector<std::string_view>> GgufFile::get_string_array(const std::string& key) const {
  auto v = typed(key, GgufType::kArray);
  if (!v) return Error{v.error()};
  if ((*v)->elem_type != GgufType::kString) {
    return make_error("GGUF metadata '%s' is an array of %s, expected an array of strings",
                      key.c_str(), gguf_type_name((*v)->elem_type));
  }
  return (*v)->strings;
}

Result<std::vector<int64_t>> GgufFile::get_int_array(const std::string& key) const {
  auto v = typed(key, GgufType::kArray);
  if (!v) return Error{v.error()};
  const GgufValue& a = **v;
  if (!is_integer(a.elem_type)) {
    return make_error("GGUF metadata '%s' is an array of %s, expected an array of integers",
                      key.c_str(), gguf_type_name(a.elem_type));
  }
  std::vector<int64_t> out(a.count);
  size_t elem = int_size(a.elem_type);
  for (uint64_t i = 0; i < a.count; ++i) {
    if (!load_int(a.elem_type, a.raw + i * elem, &out[i])) {
      return make_error("GGUF metadata '%s': element %" PRIu64 " out of range", key.c_str(), i);
    }
  }
  return out;
}

Result<std::vector<float>> GgufFile::get_float_array(const std::string& key) const {
  auto v = typed(key, GgufType::kArray);
  if (!v) return Error{v.error()};
  const GgufValue& a = **v;
  std::vector<float> out(a.count);
  if (a.elem_type == GgufType::kF32) {
    if (a.count > 0) std::memcpy(out.data(), a.raw, a.count * sizeof(float));
  } else if (a.elem_type == GgufType::kF64) {
    for (uint64_t i = 0; i < a.count; ++i) out[i] = static_cast<float>(load<double>(a.raw + 8 * i));
  } else {
    return make_error("GGUF metadata '%s' is an array of %s, expected an array of floats",
                      key.c_str(), gguf_type_name(a.elem_type));
  }
  return out;
}

}  // namespace loom
