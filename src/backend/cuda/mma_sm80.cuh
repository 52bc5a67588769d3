// The warp-level tensor-core product shared by the attention kernels and the persistent decode
// kernel (mma.sync, Ampere and later): m16n8k16 with bf16 operands and f32 accumulators, the
// ldmatrix loads of its operands from shared memory, and the bf16x2 packing of its operand
// registers.
#pragma once

#include "backend/cuda/cuda_common.cuh"

namespace loom::cuda {

// Fragments of mma.m16n8k16 (bf16 in, f32 accumulate); lane L, g = L / 4, c = L % 4:
//   A (16x16, row-major), 4 registers of 2 bf16 (lower column in the low half):
//     a[0] = A[g][2c, 2c+1]      a[1] = A[g+8][2c, 2c+1]
//     a[2] = A[g][2c+8, 2c+9]    a[3] = A[g+8][2c+8, 2c+9]
//   B (16x8, K x N, "col"), 2 registers:  b[0] = B[2c, 2c+1][g]   b[1] = B[2c+8, 2c+9][g]
//   C, D (16x8 f32):  c[0], c[1] = C[g][2c, 2c+1]   c[2], c[3] = C[g+8][2c, 2c+1]
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ldmatrix .x4: lanes 8i..8i+7 give the shared-memory addresses of rows 0..7 of 8x8 matrix i
// (16 bytes each); register r[i] of lane L receives matrix i's elements (row L/4, cols 2(L%4),
// 2(L%4)+1), the lower column in the low half. With .trans, r[i] receives (row 2(L%4), col L/4)
// and (row 2(L%4)+1, col L/4): the transpose's fragment.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(p)))
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(p)))
               : "memory");
}

// Two floats as bf16x2, `lo` in the low half (the lower index of a fragment pair).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return static_cast<uint32_t>(__bfloat16_as_ushort(v.x)) |
         (static_cast<uint32_t>(__bfloat16_as_ushort(v.y)) << 16);
}

}  // namespace loom::cuda
