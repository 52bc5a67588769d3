// matmul driver: validates shapes, quantizes activation rows once (8 or 16 bits for the 32-value
// types, activation_precision()), and splits output columns over OpenMP threads. The per-ISA
// kernels live in q32_*.cpp and float_dot_*.cpp.
#include "backend/cpu/kernels/matmul.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cpu/kernels/blocks.h"
#include "backend/cpu/kernels/cpu_features.h"
#include "backend/cpu/kernels/float_dot.h"
#include "backend/cpu/kernels/q32.h"
#include "backend/cpu/kernels/quant.h"
#include "util/check.h"
#include "util/log.h"

namespace loom::cpu {
namespace {

// Weight columns per work item: small enough that 2 threads balance even for n_out = 192, and
// the packed panel (16 columns, about 50 KB at k = 1536) stays in L2 while all rows use it.
constexpr int64_t kColsPerChunk = 16;

// A growable 64-byte aligned byte buffer (SIMD loads of packed data are aligned).
class AlignedBuffer {
 public:
  ~AlignedBuffer() { std::free(data_); }
  uint8_t* get(size_t bytes) {
    if (bytes > capacity_) {
      std::free(data_);
      capacity_ = (bytes + 63) / 64 * 64;
      data_ = static_cast<uint8_t*>(std::aligned_alloc(64, capacity_));
      LOOM_CHECK(data_ != nullptr, "out of memory allocating %zu bytes", capacity_);
    }
    return data_;
  }

 private:
  uint8_t* data_ = nullptr;
  size_t capacity_ = 0;
};

// One per thread: packed activations are shared (the calling thread's), panels are private.
AlignedBuffer& activation_buffer() {
  static thread_local AlignedBuffer buffer;
  return buffer;
}
AlignedBuffer& panel_buffer() {
  static thread_local AlignedBuffer buffer;
  return buffer;
}

struct Q32Ops {
  size_t (*act_row_bytes)(int64_t k);
  size_t (*col_bytes)(int64_t k);
  void (*pack_act)(const float* x, int64_t k, uint8_t* dst, uint8_t* scratch);
  void (*pack_col)(DType type, const void* row, int64_t k, uint8_t* dst, uint8_t* scratch);
  void (*gemm)(DType type, const uint8_t* panel, int64_t ncols, const uint8_t* act, int64_t nrows,
               int64_t k, float* y, int64_t ldy);
  // Optional: decodes weights in registers instead of packing a panel (few rows).
  bool (*gemm_direct)(DType type, const uint8_t* w, size_t w_stride, int64_t ncols,
                      const uint8_t* act, int64_t nrows, int64_t k, float* y, int64_t ldy);
};

// Up to this many activation rows, decoding weights in registers at each use costs less than
// packing a panel once (decode is memory-bound: weights are read once either way).
constexpr int64_t kDirectMaxRows = 3;

// Below this many multiply-adds (about 20 us of one core) waking a second thread costs more than
// it saves. Results do not depend on the thread count, so this is only a speed choice.
constexpr int64_t kMinParallelMacs = 1 << 16;

Q32Ops q32_ops(Isa isa, ActivationPrecision precision) {
  if (precision == ActivationPrecision::kInt16) {
    switch (isa) {
      case Isa::kAvx512:
        return {avx512::q32_act16_row_bytes, avx512::q32_col_bytes, avx512::q32_pack_act16,
                avx512::q32_pack_col,        avx512::q32_gemm16,    avx512::q32_gemm16_direct};
      case Isa::kAvx2:
        return {q32::act16_row_bytes, q32::col_bytes,   q32::pack_act16,
                avx2::q32_pack_col,   avx2::q32_gemm16, nullptr};
      case Isa::kScalar:
        break;
    }
    return {q32::act16_row_bytes, q32::col_bytes, q32::pack_act16,
            q32::pack_col,        q32::gemm16,    nullptr};
  }
  switch (isa) {
    case Isa::kAvx512:
      return {avx512::q32_act_row_bytes, avx512::q32_col_bytes, avx512::q32_pack_act,
              avx512::q32_pack_col,      avx512::q32_gemm,      avx512::q32_gemm_direct};
    case Isa::kAvx2:
      return {q32::act_row_bytes, q32::col_bytes, q32::pack_act,
              avx2::q32_pack_col, avx2::q32_gemm, nullptr};
    case Isa::kScalar:
      break;
  }
  return {q32::act_row_bytes, q32::col_bytes, q32::pack_act, q32::pack_col, q32::gemm, nullptr};
}

void matmul_q32(const TensorView& w, const float* x, int64_t m, int64_t k, int64_t n_out,
                float* y) {
  const Q32Ops ops = q32_ops(active_isa(), activation_precision());
  const size_t act_stride = ops.act_row_bytes(k);
  const size_t col_stride = ops.col_bytes(k);
  const size_t scratch_bytes = q32::act_row_bytes(k);
  const size_t w_stride = w.row_stride_bytes();
  const auto* w_data = static_cast<const uint8_t*>(w.data);
  uint8_t* act = activation_buffer().get(static_cast<size_t>(m) * act_stride);
  const int64_t num_chunks = (n_out + kColsPerChunk - 1) / kColsPerChunk;

#pragma omp parallel if (m * n_out * k >= kMinParallelMacs)
  {
    uint8_t* panel = panel_buffer().get(kColsPerChunk * col_stride + scratch_bytes);
    uint8_t* scratch = panel + kColsPerChunk * col_stride;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < m; ++r) ops.pack_act(x + r * k, k, act + r * act_stride, scratch);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < num_chunks; ++c) {
      const int64_t col0 = c * kColsPerChunk;
      const int64_t ncols = std::min(kColsPerChunk, n_out - col0);
      if (ops.gemm_direct != nullptr && m <= kDirectMaxRows &&
          ops.gemm_direct(w.type, w_data + col0 * w_stride, w_stride, ncols, act, m, k, y + col0,
                          n_out)) {
        continue;
      }
      for (int64_t j = 0; j < ncols; ++j) {
        ops.pack_col(w.type, w_data + (col0 + j) * w_stride, k, panel + j * col_stride, scratch);
      }
      ops.gemm(w.type, panel, ncols, act, m, k, y + col0, n_out);
    }
  }
}

void matmul_float(const TensorView& w, const float* x, int64_t m, int64_t k, int64_t n_out,
                  float* y) {
  const bool simd = active_isa() != Isa::kScalar;
  const size_t w_stride = w.row_stride_bytes();
  const auto* w_data = static_cast<const uint8_t*>(w.data);
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n_out; ++j) {
      const void* row = w_data + j * w_stride;
      y[i * n_out + j] =
          simd ? avx2::float_dot(w.type, row, x + i * k, k) : vec_dot(w.type, row, x + i * k, k);
    }
  }
}

void matmul_kquant(const TensorView& w, const float* x, int64_t m, int64_t k, int64_t n_out,
                   float* y) {
  const size_t act_stride = row_bytes(DType::kQ8_K, k);
  const size_t w_stride = w.row_stride_bytes();
  const auto* w_data = static_cast<const uint8_t*>(w.data);
  uint8_t* act = activation_buffer().get(static_cast<size_t>(m) * act_stride);
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < m; ++r) quantize_row_q8_K(x + r * k, act + r * act_stride, k);
#pragma omp for schedule(static)
    for (int64_t j = 0; j < n_out; ++j) {
      for (int64_t i = 0; i < m; ++i) {
        y[i * n_out + j] = vec_dot(w.type, w_data + j * w_stride, act + i * act_stride, k);
      }
    }
  }
}

ActivationPrecision precision_from_env() {
  const char* env = std::getenv("LOOM_CPU_ACT_PRECISION");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "int8") == 0) {
    return ActivationPrecision::kInt8;
  }
  if (std::strcmp(env, "int16") == 0) return ActivationPrecision::kInt16;
  LOOM_LOG_WARN("LOOM_CPU_ACT_PRECISION=%s is not one of int8|int16; using int8", env);
  return ActivationPrecision::kInt8;
}

ActivationPrecision& precision_slot() {
  static ActivationPrecision precision = precision_from_env();
  return precision;
}

}  // namespace

void matmul(const TensorView& w, const float* x, int64_t m, float* y) {
  LOOM_CHECK(kernel_supports(w.type), "matmul: unsupported weight type %s", dtype_name(w.type));
  LOOM_CHECK(w.ne.size() == 2, "matmul: weight %s is not a matrix", w.name.c_str());
  const int64_t k = w.cols(), n_out = w.rows();
  LOOM_CHECK(k % dtype_info(w.type).block_elems == 0, "matmul: %s rows are not whole blocks",
             w.name.c_str());
  LOOM_CHECK(w.nbytes >= static_cast<size_t>(n_out) * w.row_stride_bytes(),
             "matmul: %s holds %zu bytes, fewer than its shape needs", w.name.c_str(), w.nbytes);
  LOOM_CHECK(m >= 0 && (m == 0 || (x != nullptr && y != nullptr)), "matmul: bad activations");
  if (m == 0 || n_out == 0) return;
  if (q32::is_q32(w.type)) return matmul_q32(w, x, m, k, n_out, y);
  if (w.type == DType::kF32 || w.type == DType::kF16 || w.type == DType::kBF16) {
    return matmul_float(w, x, m, k, n_out, y);
  }
  return matmul_kquant(w, x, m, k, n_out, y);
}

Status embedding_rows(const TensorView& table, const int32_t* ids, int64_t n, float* out) {
  LOOM_CHECK(kernel_supports(table.type), "embedding_rows: unsupported type %s",
             dtype_name(table.type));
  const int64_t hidden = table.cols(), vocab = table.rows();
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return make_error("token id %d is outside the vocabulary [0, %lld)", ids[i],
                        static_cast<long long>(vocab));
    }
    dequantize_row(table.type, table.row(ids[i]), out + i * hidden, hidden);
  }
  return ok_status();
}

void set_activation_precision(ActivationPrecision p) {
  precision_slot() = p;
}

ActivationPrecision activation_precision() {
  return precision_slot();
}

const char* activation_precision_name(ActivationPrecision p) {
  return p == ActivationPrecision::kInt16 ? "int16" : "int8";
}

void set_num_threads(int n) {
  static const int default_threads = omp_get_max_threads();
  omp_set_num_threads(n > 0 ? n : default_threads);
}

int num_threads() {
  return omp_get_max_threads();
}

}  // namespace loom::cpu
