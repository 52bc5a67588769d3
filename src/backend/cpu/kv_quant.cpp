#include "backend/cpu/kv_quant.h"

#include <cmath>

#include "backend/cpu/kernels/fp16.h"
#include "util/check.h"

namespace loom::cpu {
namespace {

// The smallest f16 >= v (finite v). fp32_to_fp16 rounds to nearest; step one ulp when it fell
// below. f16 bit patterns are ordered like sign-magnitude integers.
uint16_t fp16_round_up(float v) {
  uint16_t h = fp32_to_fp16(v);
  if (fp16_to_fp32(h) >= v) return h;
  if ((h & 0x8000u) == 0) return static_cast<uint16_t>(h + 1);
  return h == 0x8000u ? uint16_t{1} : static_cast<uint16_t>(h - 1);
}

// The largest f16 <= v (finite v).
uint16_t fp16_round_down(float v) {
  uint16_t h = fp32_to_fp16(v);
  if (fp16_to_fp32(h) <= v) return h;
  if ((h & 0x8000u) != 0) return static_cast<uint16_t>(h + 1);
  return h == 0 ? uint16_t{0x8001u} : static_cast<uint16_t>(h - 1);
}

// Rounds to the nearest integer and clamps into [lo, hi]; NaN goes to lo.
int32_t round_clamp(float v, int32_t lo, int32_t hi) {
  const float r = std::nearbyint(v);
  if (!(r >= static_cast<float>(lo))) return lo;
  if (r > static_cast<float>(hi)) return hi;
  return static_cast<int32_t>(r);
}

}  // namespace

const char* kv_dtype_name(KvDtype d) {
  switch (d) {
    case KvDtype::kF16:
      return "f16";
    case KvDtype::kInt8:
      return "int8";
    case KvDtype::kInt4:
      return "int4";
  }
  return "?";
}

Result<KvDtype> parse_kv_dtype(const std::string& s) {
  if (s == "f16") return KvDtype::kF16;
  if (s == "int8") return KvDtype::kInt8;
  if (s == "int4") return KvDtype::kInt4;
  return make_error("unknown KV cache dtype '%s' (expected f16, int8 or int4)", s.c_str());
}

size_t kv_row_data_bytes(KvDtype d, int32_t head_dim) {
  switch (d) {
    case KvDtype::kF16:
      return static_cast<size_t>(head_dim) * 2;
    case KvDtype::kInt8:
      return static_cast<size_t>(head_dim);
    case KvDtype::kInt4:
      return static_cast<size_t>(head_dim) / 2;
  }
  return 0;
}

size_t kv_row_param_bytes(KvDtype d, int32_t head_dim) {
  switch (d) {
    case KvDtype::kF16:
      return 0;
    case KvDtype::kInt8:
      return sizeof(uint16_t);  // one f16 scale
    case KvDtype::kInt4:
      return static_cast<size_t>(head_dim / kKvInt4Group) * 2 * sizeof(uint16_t);  // (scale, min)
  }
  return 0;
}

bool kv_dtype_supports(KvDtype d, int32_t head_dim) {
  if (head_dim <= 0) return false;
  if (d == KvDtype::kInt4) return head_dim % 32 == 0 && head_dim % kKvInt4Group == 0;
  return true;
}

void quantize_row_int8(const float* x, int32_t n, int8_t* q, uint16_t* scale) {
  float amax = 0.0f;
  for (int32_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  const uint16_t sh = fp16_round_up(amax / 127.0f);
  const float s = fp16_to_fp32(sh);
  *scale = sh;
  if (!(s > 0.0f)) {
    for (int32_t i = 0; i < n; ++i) q[i] = 0;
    return;
  }
  // s * 127 >= amax, so |x / s| <= 127: the clamp never changes a value.
  for (int32_t i = 0; i < n; ++i) q[i] = static_cast<int8_t>(round_clamp(x[i] / s, -127, 127));
}

void dequantize_row_int8(const int8_t* q, uint16_t scale, int32_t n, float* x) {
  const float s = fp16_to_fp32(scale);
  for (int32_t i = 0; i < n; ++i) x[i] = static_cast<float>(q[i]) * s;
}

void quantize_row_int4(const float* x, int32_t n, uint8_t* q, uint16_t* params) {
  LOOM_CHECK(n % kKvInt4Group == 0 && n % 32 == 0, "int4 row of %d values", n);
  uint8_t nib[kKvInt4Group];
  for (int32_t g = 0; g < n / kKvInt4Group; ++g) {
    const float* xg = x + g * kKvInt4Group;
    float mn = xg[0], mx = xg[0];
    for (int32_t i = 1; i < kKvInt4Group; ++i) {
      mn = std::fmin(mn, xg[i]);
      mx = std::fmax(mx, xg[i]);
    }
    const uint16_t mh = fp16_round_down(mn);
    const float m = fp16_to_fp32(mh);
    const uint16_t sh = fp16_round_up((mx - m) / 15.0f);
    const float s = fp16_to_fp32(sh);
    params[2 * g] = sh;
    params[2 * g + 1] = mh;
    for (int32_t i = 0; i < kKvInt4Group; ++i)
      nib[i] = s > 0.0f ? static_cast<uint8_t>(round_clamp((xg[i] - m) / s, 0, 15)) : 0;
    // Pack per 32-value chunk: byte i = value i (low nibble) | value i + 16 (high nibble).
    for (int32_t c = 0; c < kKvInt4Group / 32; ++c) {
      uint8_t* qc = q + (g * kKvInt4Group + c * 32) / 2;
      for (int32_t i = 0; i < 16; ++i)
        qc[i] = static_cast<uint8_t>(nib[c * 32 + i] | (nib[c * 32 + i + 16] << 4));
    }
  }
}

void dequantize_row_int4(const uint8_t* q, const uint16_t* params, int32_t n, float* x) {
  LOOM_CHECK(n % kKvInt4Group == 0 && n % 32 == 0, "int4 row of %d values", n);
  for (int32_t c = 0; c < n / 32; ++c) {
    const int32_t g = c * 32 / kKvInt4Group;
    const float s = fp16_to_fp32(params[2 * g]);
    const float m = fp16_to_fp32(params[2 * g + 1]);
    const uint8_t* qc = q + c * 16;
    for (int32_t i = 0; i < 16; ++i) {
      x[c * 32 + i] = m + static_cast<float>(qc[i] & 15) * s;
      x[c * 32 + i + 16] = m + static_cast<float>(qc[i] >> 4) * s;
    }
  }
}

}  // namespace loom::cpu
