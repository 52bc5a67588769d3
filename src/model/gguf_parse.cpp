// The GGUF header parser: every read is bounds-checked against the file size first.
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/dtype.h"
#include "model/gguf_file.h"

namespace loom {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kMaxDims = 4;             // GGML_MAX_DIMS
// Smallest encodings, used to refuse counts that the remaining bytes could never hold before
// anything is allocated for them.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // empty name, n_dims=0, type, offset

// Scalar size in bytes, 0 for string / array.
size_t scalar_size(GgufType type) {
  switch (type) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return 0;
}

bool valid_type(uint32_t raw) {
  return raw <= static_cast<uint32_t>(GgufType::kF64);
}

// The tensor types the CPU backend can compute with.
bool supported_tensor_type(DType type) {
  switch (type) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return true;
    default:
      return false;
  }
}

}  // namespace

class GgufParser {
 public:
  explicit GgufParser(GgufFile& out)
      : out_(out), data_(out.file_->data()), size_(out.file_->size()) {}

  Status run() {
    uint32_t magic = 0;
    if (size_ < 4) {
      return fail("file is %zu bytes, too small to be GGUF (needs at least the 4-byte magic)",
                  size_);
    }
    std::memcpy(&magic, data_, 4);
    if (magic != kGgufMagic) {
      return fail("bad magic 0x%08x (expected \"GGUF\"): not a GGUF file", magic);
    }
    pos_ = 4;
    uint32_t version = 0;
    if (auto s = read(&version, "version"); !s) return s;
    if (version != 2 && version != 3) {
      if (version == 1) return fail("GGUF version 1 is not supported (only versions 2 and 3)");
      return fail("unsupported GGUF version %u (only versions 2 and 3%s)", version,
                  (version & 0xffff) == 0 ? "; a big-endian file?" : "");
    }
    out_.version_ = version;
    uint64_t num_tensors = 0, num_kv = 0;
    if (auto s = read(&num_tensors, "tensor count"); !s) return s;
    if (auto s = read(&num_kv, "metadata count"); !s) return s;
    if (num_kv > remaining() / kMinKvBytes) {
      return fail("metadata count %" PRIu64 " is impossible: only %" PRIu64
                  " bytes follow the header",
                  num_kv, remaining());
    }
    if (num_tensors > remaining() / kMinTensorInfoBytes) {
      return fail("tensor count %" PRIu64 " is impossible: only %" PRIu64
                  " bytes follow the header",
                  num_tensors, remaining());
    }
    for (uint64_t i = 0; i < num_kv; ++i) {
      if (auto s = read_kv(i); !s) return s;
    }
    if (auto s = read_alignment(); !s) return s;
    out_.tensors_.reserve(num_tensors);
    for (uint64_t i = 0; i < num_tensors; ++i) {
      if (auto s = read_tensor_info(i); !s) return s;
    }
    // The data section starts at the next multiple of the alignment.
    uint64_t align = out_.alignment_;
    uint64_t data_offset = (pos_ + align - 1) / align * align;  // pos_ <= size_: cannot overflow
    out_.data_offset_ = data_offset;
    for (GgufTensor& t : out_.tensors_) {
      if (auto s = place_tensor(t); !s) return s;
    }
    return ok_status();
  }

 private:
  uint64_t remaining() const { return size_ - pos_; }

  Error fail(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    char buf[512];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);
    return make_error("GGUF '%s': %s", out_.file_->path().c_str(), buf);
  }

  Status need(uint64_t n, const std::string& what) {
    if (n > remaining()) {
      return fail("truncated: %s at offset %" PRIu64 " needs %" PRIu64
                  " bytes, but the file ends at %zu bytes",
                  what.c_str(), pos_, n, size_);
    }
    return ok_status();
  }

  template <class T>
  Status read(T* value, const std::string& what) {
    if (auto s = need(sizeof(T), what); !s) return s;
    std::memcpy(value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return ok_status();
  }

  Status read_string(std::string_view* out, const std::string& what) {
    uint64_t len = 0;
    if (auto s = read(&len, what + " length"); !s) return s;
    if (len > remaining()) {
      return fail("%s has length %" PRIu64 " at offset %" PRIu64
                  ", past the end of the file (%zu bytes)",
                  what.c_str(), len, pos_ - 8, size_);
    }
    *out = std::string_view(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return ok_status();
  }

  Status read_kv(uint64_t index) {
    std::string_view key;
    std::string where = "key of metadata entry " + std::to_string(index);
    if (auto s = read_string(&key, where); !s) return s;
    std::string key_str(key);
    std::string what = "metadata '" + key_str + "'";
    uint32_t raw_type = 0;
    if (auto s = read(&raw_type, what + " type"); !s) return s;
    if (!valid_type(raw_type)) return fail("%s has unknown value type %u", what.c_str(), raw_type);
    GgufValue value;
    value.type = static_cast<GgufType>(raw_type);
    if (value.type == GgufType::kArray) {
      if (auto s = read_array(&value, what); !s) return s;
    } else {
      if (auto s = read_scalar_or_string(value.type, &value, what); !s) return s;
    }
    if (out_.values_.count(key_str) != 0) {
      return fail("duplicate metadata key '%s'", key_str.c_str());
    }
    out_.keys_.push_back(key_str);
    out_.values_.emplace(std::move(key_str), std::move(value));
    return ok_status();
  }

  Status read_scalar_or_string(GgufType type, GgufValue* value, const std::string& what) {
    if (type == GgufType::kString) {
      std::string_view s;
      if (auto st = read_string(&s, what); !st) return st;
      value->strings.push_back(s);
      return ok_status();
    }
    size_t n = scalar_size(type);
    if (auto s = need(n, what + " value"); !s) return s;
    value->raw = data_ + pos_;
    pos_ += n;
    return ok_status();
  }

  Status read_array(GgufValue* value, const std::string& what) {
    uint32_t raw_elem = 0;
    if (auto s = read(&raw_elem, what + " array element type"); !s) return s;
    if (!valid_type(raw_elem)) {
      return fail("%s: array has unknown element type %u", what.c_str(), raw_elem);
    }
    value->elem_type = static_cast<GgufType>(raw_elem);
    if (value->elem_type == GgufType::kArray) {
      return fail("%s: nested arrays are not supported", what.c_str());
    }
    if (auto s = read(&value->count, what + " array count"); !s) return s;
    if (value->elem_type == GgufType::kString) {
      if (value->count > remaining() / 8) {  // each string needs at least its 8-byte length
        return fail("%s: array of %" PRIu64 " strings cannot fit in the %" PRIu64
                    " bytes left in the file",
                    what.c_str(), value->count, remaining());
      }
      value->strings.reserve(value->count);
      for (uint64_t i = 0; i < value->count; ++i) {
        std::string_view s;
        if (auto st = read_string(&s, what + " element " + std::to_string(i)); !st) return st;
        value->strings.push_back(s);
      }
      return ok_status();
    }
    uint64_t elem = scalar_size(value->elem_type);
    if (value->count > remaining() / elem) {
      return fail("%s: array of %" PRIu64 " x %" PRIu64 "-byte elements at offset %" PRIu64
                  " is past the end of the file (%zu bytes)",
                  what.c_str(), value->count, elem, pos_, size_);
    }
    value->raw = data_ + pos_;
    pos_ += value->count * elem;
    return ok_status();
  }

  Status read_alignment() {
    auto it = out_.values_.find("general.alignment");
    if (it == out_.values_.end()) return ok_status();
    const GgufValue& v = it->second;
    if (v.type != GgufType::kU32) {
      return fail("general.alignment has type %s, expected u32", gguf_type_name(v.type));
    }
    uint32_t align = 0;
    std::memcpy(&align, v.raw, 4);
    if (align == 0 || (align & (align - 1)) != 0) {
      return fail("general.alignment %u is not a power of two", align);
    }
    out_.alignment_ = align;
    return ok_status();
  }

  Status read_tensor_info(uint64_t index) {
    std::string_view name;
    if (auto s = read_string(&name, "name of tensor " + std::to_string(index)); !s) return s;
    GgufTensor t;
    t.view.name = std::string(name);
    std::string what = "tensor '" + t.view.name + "'";
    uint32_t n_dims = 0;
    if (auto s = read(&n_dims, what + " dimension count"); !s) return s;
    if (n_dims > kMaxDims) {
      return fail("%s has %u dimensions (at most %u are supported)", what.c_str(), n_dims,
                  kMaxDims);
    }
    t.view.ne.resize(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = 0;
      if (auto s = read(&dim, what + " dimension " + std::to_string(d)); !s) return s;
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return fail("%s: dimension %u is %" PRIu64 ", out of range", what.c_str(), d, dim);
      }
      t.view.ne[d] = static_cast<int64_t>(dim);
    }
    uint32_t raw_type = 0;
    if (auto s = read(&raw_type, what + " type"); !s) return s;
    if (auto s = read(&t.offset, what + " data offset"); !s) return s;

    auto info = dtype_info(raw_type);
    if (!info) return fail("%s has unknown tensor type id %u", what.c_str(), raw_type);
    t.view.type = static_cast<DType>(raw_type);
    if (!supported_tensor_type(t.view.type)) {
      return fail(
          "%s has tensor type %s (id %u), which is not supported (supported: F32, F16, "
          "BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)",
          what.c_str(), info->name, raw_type);
    }
    if (auto s = size_tensor(&t, *info); !s) return s;
    if (out_.tensor_index_.count(t.view.name) != 0) {
      return fail("duplicate tensor name '%s'", t.view.name.c_str());
    }
    out_.tensor_index_.emplace(t.view.name, out_.tensors_.size());
    out_.tensors_.push_back(std::move(t));
    return ok_status();
  }

  // Byte size from the dims: rows are whole blocks, and nothing may overflow.
  Status size_tensor(GgufTensor* t, const DTypeInfo& info) {
    const std::vector<int64_t>& ne = t->view.ne;
    const char* name = t->view.name.c_str();
    int64_t inner = ne.empty() ? 1 : ne[0];
    if (inner % info.block_elems != 0) {
      return fail("tensor '%s': innermost dimension %" PRId64
                  " is not a multiple of the %s block size %d",
                  name, inner, info.name, info.block_elems);
    }
    int64_t num_elements = 1;
    for (int64_t d : ne) {
      if (__builtin_mul_overflow(num_elements, d, &num_elements)) {
        return fail("tensor '%s': the element count overflows (dims too large)", name);
      }
    }
    uint64_t num_blocks = static_cast<uint64_t>(num_elements / info.block_elems);
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(num_blocks, static_cast<uint64_t>(info.block_bytes), &nbytes) ||
        nbytes > std::numeric_limits<size_t>::max()) {
      return fail("tensor '%s': the byte size overflows (dims too large)", name);
    }
    t->view.nbytes = static_cast<size_t>(nbytes);
    return ok_status();
  }

  Status place_tensor(GgufTensor& t) {
    const char* name = t.view.name.c_str();
    if (t.offset % out_.alignment_ != 0) {
      return fail("tensor '%s': data offset %" PRIu64 " is not a multiple of the alignment %u",
                  name, t.offset, out_.alignment_);
    }
    uint64_t begin = 0, end = 0;
    if (__builtin_add_overflow(out_.data_offset_, t.offset, &begin) ||
        __builtin_add_overflow(begin, static_cast<uint64_t>(t.view.nbytes), &end)) {
      return fail("tensor '%s': data offset %" PRIu64 " + size %zu overflows", name, t.offset,
                  t.view.nbytes);
    }
    if (end > size_) {
      return fail("tensor '%s': data [%" PRIu64 ", %" PRIu64 ") past end of file (%zu bytes)", name,
                  begin, end, size_);
    }
    t.view.data = t.view.nbytes == 0 ? nullptr : data_ + begin;
    return ok_status();
  }

  GgufFile& out_;
  const uint8_t* data_;
  size_t size_;
  uint64_t pos_ = 0;
};

Result<std::unique_ptr<GgufFile>> GgufFile::parse(std::shared_ptr<const MappedFile> file) {
  std::unique_ptr<GgufFile> gguf(new GgufFile(std::move(file)));
  GgufParser parser(*gguf);
  if (auto s = parser.run(); !s) return Error{s.error()};
  return gguf;
}

Result<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path) {
  auto file = MappedFile::open(path);
  if (!file) return Error{file.error()};
  return parse(std::move(file).value());
}

}  // namespace loom
