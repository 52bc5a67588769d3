// Names of the GPU KV cache formats (kv_cache_format.h). Plain C++: built with or without CUDA.
#include "backend/cuda/kv_cache_format.h"

namespace loom::cuda {

const char* kv_cache_dtype_name(KvCacheDtype d) {
  switch (d) {
    case KvCacheDtype::kBf16:
      return "bf16";
    case KvCacheDtype::kFp8:
      return "fp8";
    case KvCacheDtype::kInt8:
      return "int8";
  }
  return "?";
}

Result<KvCacheDtype> parse_kv_cache_dtype(const std::string& s) {
  if (s == "bf16" || s == "f16" || s == "auto") return KvCacheDtype::kBf16;
  if (s == "fp8") return KvCacheDtype::kFp8;
  if (s == "int8") return KvCacheDtype::kInt8;
  if (s == "int4")
    return make_error(
        "KV cache dtype int4 is CPU only; with --device cuda use bf16 (f16, auto), fp8 or int8");
  return make_error("unknown GPU KV cache dtype '%s' (expected bf16, f16, auto, fp8 or int8)",
                    s.c_str());
}

}  // namespace loom::cuda
