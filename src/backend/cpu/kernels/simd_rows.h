// Internal: SIMD row helpers compiled with AVX2+F16C flags (fp16_avx2.cpp). Each converts the
// longest prefix it can and returns how many values it handled; the caller finishes the tail.
#pragma once

#include <cstdint>

namespace loom::cpu::avx2 {

int64_t fp16_to_fp32_row(const uint16_t* src, float* dst, int64_t n);
int64_t fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n);
int64_t bf16_to_fp32_row(const uint16_t* src, float* dst, int64_t n);

}  // namespace loom::cpu::avx2
