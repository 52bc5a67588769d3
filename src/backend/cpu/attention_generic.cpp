// Portable build of the attention task (no ISA beyond the baseline).
#include "backend/cpu/attention_task.h"
#include "backend/cpu/kernels/fp16.h"
#include "util/check.h"

namespace {
inline float __attribute__((vector_size(64))) load_f16_generic(const uint16_t* p) {
  float __attribute__((vector_size(64))) v;
  for (int i = 0; i < 16; ++i) v[i] = loom::cpu::fp16_to_fp32(p[i]);
  return v;
}
}  // namespace

#define LOOM_ATTN_NS generic
#define LOOM_ATTN_LOAD_F16(p) load_f16_generic(p)
#define LOOM_ATTN_F16_TO_F32(h) loom::cpu::fp16_to_fp32(h)
#include "backend/cpu/attention_impl.inc"
