// Helpers of the GPU tests: skip without a GPU, device buffers, bf16 on the host, errors.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/cuda_backend.h"

namespace loom::testing {

#define LOOM_REQUIRE_GPU()                                               \
  do {                                                                   \
    if (!::loom::cuda_device_available()) GTEST_SKIP() << "no CUDA GPU"; \
  } while (0)

#define ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float from_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_bf16(v[i]);
  return out;
}
inline std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = from_bf16(v[i]);
  return out;
}
// Values rounded to bf16 and back, so a reference sees exactly what the GPU reads.
inline std::vector<float> bf16_round(std::vector<float> v) {
  for (float& x : v) x = from_bf16(to_bf16(x));
  return v;
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A device copy of a host vector, freed with the object.
template <class T>
class DeviceVec {
 public:
  explicit DeviceVec(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)),
              cudaSuccess);
  }
  explicit DeviceVec(const std::vector<T>& host) : DeviceVec(host.size()) { upload(host); }
  ~DeviceVec() { cudaFree(p_); }
  DeviceVec(const DeviceVec&) = delete;
  DeviceVec& operator=(const DeviceVec&) = delete;
  void upload(const std::vector<T>& host) {
    EXPECT_EQ(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  // NaN in f32 and bf16 alike (0xFF bytes): an element the kernel never writes fails the check.
  void poison() { EXPECT_EQ(cudaMemset(p_, 0xFF, n_ * sizeof(T)), cudaSuccess); }
  T* get() const { return p_; }
  template <class U>
  U* as() const {
    return reinterpret_cast<U*>(p_);
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

// ||out - ref|| / ||ref||; NaN anywhere gives infinity.
inline double rel_error(const std::vector<float>& out, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}
inline double rel_error(const std::vector<float>& out, const std::vector<float>& ref) {
  return rel_error(out, std::vector<double>(ref.begin(), ref.end()));
}

// A small Llama (4 layers, hidden 512, GQA 8/2, head_dim 64, 1,000-token vocabulary) for the
// backend tests that run random weights (--load-format dummy).
inline ModelConfig small_llama_config() {
  ModelConfig c;
  c.arch = Arch::kLlama;
  c.vocab_size = 1000;
  c.hidden_size = 512;
  c.intermediate_size = 1024;
  c.num_layers = 4;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.max_context = 2048;
  c.rope_theta = 10000.0f;
  return c;
}

inline std::vector<TokenId> random_tokens(int32_t n, uint32_t seed, int32_t vocab) {
  std::mt19937 rng(seed);
  std::vector<TokenId> t(n);
  for (auto& x : t) x = static_cast<TokenId>(rng() % vocab);
  return t;
}

}  // namespace loom::testing
