// Set-up and checks shared by the CUDA backend tests (test_cuda_backend.cpp,
// test_cuda_kv_quant.cpp, test_cuda_overlap.cpp, test_cuda_persistent_decode.cpp), on sequences
// driven by hand (e2e/model_fixture.h).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "cuda/cuda_test_util.h"
#include "e2e/model_fixture.h"

namespace loom::testing {

// The options the backend tests share: blocks of `block_size` tokens, a 64 MiB KV pool, 16 MiB
// of swap, 256 tokens a step.
inline CudaBackendOptions test_backend_options(int32_t block_size) {
  CudaBackendOptions o;
  o.block_size = block_size;
  o.kv_cache_bytes = size_t{64} << 20;
  o.swap_space_bytes = size_t{16} << 20;
  o.max_num_batched_tokens = 256;
  return o;
}

// The CUDA backend on random weights of `c`; null (and a test failure) when it cannot be built.
inline std::unique_ptr<Backend> dummy_cuda_backend(const ModelConfig& c,
                                                   const CudaBackendOptions& o) {
  auto b = create_cuda_backend_dummy(c, o);
  EXPECT_TRUE(b.ok()) << b.error();
  return b.ok() ? std::move(b).value() : nullptr;
}

// A hand-driven sequence over the n blocks from `first` on.
inline ManualSeq seq(std::vector<TokenId> tokens, BlockId first, int32_t n) {
  ManualSeq s;
  s.tokens = std::move(tokens);
  for (int32_t i = 0; i < n; ++i) s.blocks.push_back(first + i);
  return s;
}

// Swaps a sequence's three blocks out, overwrites them with another sequence, swaps them back
// into other blocks: its next step's logits equal, bit for bit, those of the same tokens that
// never left the device.
inline void expect_swap_round_trip_exact(Backend& b, int32_t block_size) {
  const int32_t V = b.vocab_size();
  auto toks = random_tokens(40, 4, V);
  ManualSeq ref = seq(toks, 0, 3), swapped = seq(toks, 10, 3);
  std::vector<float> lr(V), ls(V);
  b.forward(make_batch({&ref}, {39}, block_size), lr.data());
  b.forward(make_batch({&swapped}, {39}, block_size), ls.data());
  const std::vector<BlockCopy> out = {{10, 0}, {11, 1}, {12, 2}};
  b.swap_out(out);
  // Overwrite the device blocks with another sequence, then bring the swapped ones back elsewhere.
  ManualSeq clobber = seq(random_tokens(48, 5, V), 10, 3);
  b.forward(make_batch({&clobber}, {48}, block_size), ls.data());
  const std::vector<BlockCopy> in = {{0, 20}, {1, 21}, {2, 22}};
  b.swap_in(in);
  swapped.blocks = {20, 21, 22};
  std::fill(ls.begin(), ls.end(), NAN);
  b.forward(make_batch({&ref}, {1}, block_size), lr.data());
  b.forward(make_batch({&swapped}, {1}, block_size), ls.data());
  EXPECT_EQ(lr, ls);
}

}  // namespace loom::testing
