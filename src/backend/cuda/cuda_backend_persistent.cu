// The CUDA backend's side of the persistent decode kernel (decode_persistent.cuh): its set-up,
// the arguments of a one-token step, the ring's depth and copies in flight measured on the model
// at start, and which steps take it.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.cuh"
#include "util/log.h"

namespace loom::cuda {

void CudaBackend::init_persistent_decode() {
  const ModelConfig& c = config_;
  std::string why;
  if (!options_.persistent_decode ||
      !persistent_decode_supports(c.hidden_size, c.intermediate_size, c.num_heads, c.num_kv_heads,
                                  c.head_dim, options_.kv_cache_dtype, &why)) {
    if (options_.persistent_decode)
      LOOM_LOG_INFO("cuda backend: one-token steps layer by layer (persistent kernel %s)",
                    why.c_str());
    return;
  }
  persistent_plan_ = plan_persistent_decode(c.num_layers, c.hidden_size, c.intermediate_size,
                                            c.num_heads, c.num_kv_heads, c.head_dim);
  if (persistent_plan_.grid == 0) {
    LOOM_LOG_INFO(
        "cuda backend: one-token steps layer by layer (no persistent kernel on this GPU)");
    return;
  }
  std::vector<PersistentLayer> host(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerWeights& w = layers_[l];
    host[l] =
        PersistentLayer{w.w_qkv, w.w_o, w.w_gate_up, w.w_down, w.attn_norm, w.ffn_norm, w.qkv_bias};
  }
  persistent_layers_ = alloc<PersistentLayer>(static_cast<int64_t>(host.size()));
  LOOM_CUDA_CHECK(cudaMemcpy(persistent_layers_, host.data(), host.size() * sizeof(host[0]),
                             cudaMemcpyHostToDevice));
  persistent_ws_ = alloc<uint8_t>(persistent_plan_.workspace_bytes);
  LOOM_CUDA_CHECK(cudaMemset(persistent_ws_, 0, persistent_plan_.workspace_bytes));
  persistent_sync_ = alloc<unsigned>(kPersistentSyncWords);
  LOOM_CUDA_CHECK(cudaMemset(persistent_sync_, 0, kPersistentSyncWords * sizeof(unsigned)));
  persistent_argmax_ = alloc<int32_t>(1);
  LOOM_LOG_INFO(
      "cuda backend: one-token steps in one persistent kernel (%d CTAs, %d stages of "
      "%d KB, %d attention splits)",
      persistent_plan_.grid, persistent_plan_.stages, kPersistentStageBytes / 1024,
      persistent_plan_.attn_splits);
}

PersistentDecodeArgs CudaBackend::persistent_args(const int32_t* token, const int32_t* position,
                                                  const int64_t* slot, const int32_t* table,
                                                  bool with_logits) const {
  const ModelConfig& c = config_;
  PersistentDecodeArgs p = persistent_model_args(c);
  p.layers = persistent_layers_;
  p.x = x_.ptr;
  p.embed = token_embd_;  // the kernel reads the token's embedding row itself
  p.token = token;
  p.position = position;
  p.slot = slot;
  p.block_table = table;
  p.inv_freq = inv_freq_;
  p.kv_cache = kv_cache_;
  p.cache = cache_shape_;
  p.workspace = persistent_ws_;
  p.sync = persistent_sync_;
  if (with_logits) {  // the output layer as the kernel's last phase: logits_ row 0
    p.lm_head = lm_head_;
    p.output_norm = output_norm_;
    p.vocab = c.vocab_size;
    p.logits = logits_.ptr;
    p.argmax = persistent_argmax_;
  }
  return p;
}

void CudaBackend::choose_persistent_ring() {
  if (persistent_plan_.grid == 0) return;
  const ModelConfig& c = config_;
  if (options_.persistent_in_flight > 0) {
    if (options_.persistent_stages > 0) {
      const PersistentDecodePlan p =
          plan_persistent_decode(c.num_layers, c.hidden_size, c.intermediate_size, c.num_heads,
                                 c.num_kv_heads, c.head_dim, options_.persistent_stages);
      if (p.grid > 0) persistent_plan_ = p;
    }
    persistent_plan_.in_flight = std::min(options_.persistent_in_flight, persistent_plan_.stages);
    return;
  }
  // The candidates: 1 and 2 copies in flight, with the plan's ring and with one stage more where
  // it fits.
  std::vector<PersistentDecodePlan> candidates;
  const PersistentDecodePlan deeper =
      plan_persistent_decode(c.num_layers, c.hidden_size, c.intermediate_size, c.num_heads,
                             c.num_kv_heads, c.head_dim, persistent_plan_.stages + 1);
  std::vector<PersistentDecodePlan> rings = {persistent_plan_};
  if (deeper.grid > 0 && deeper.stages > persistent_plan_.stages) rings.push_back(deeper);
  for (const PersistentDecodePlan& ring : rings) {
    for (int32_t in_flight : {1, 2}) {
      candidates.push_back(ring);
      candidates.back().in_flight = std::min(in_flight, ring.stages);
    }
  }
  // A step of token 0 at position 0 of block 0: it writes that slot's K/V, which no sequence
  // holds yet (the scheduler has handed out no block), and reads nothing else of the cache.
  int32_t* ints = alloc<int32_t>(3);  // token, position, block table [1]
  int64_t* slot = alloc<int64_t>(1);
  LOOM_CUDA_CHECK(cudaMemsetAsync(ints, 0, 3 * sizeof(int32_t), stream_));
  LOOM_CUDA_CHECK(cudaMemsetAsync(slot, 0, sizeof(int64_t), stream_));
  const PersistentDecodeArgs args = persistent_args(ints, ints + 1, slot, ints + 2, true);
  cudaEvent_t start, stop;
  LOOM_CUDA_CHECK(cudaEventCreate(&start));
  LOOM_CUDA_CHECK(cudaEventCreate(&stop));
  // The median of 5 rounds of 8 launches for each candidate, the candidates alternating.
  constexpr int kRounds = 5, kLaunches = 8;
  std::vector<std::vector<float>> ms(candidates.size());
  for (int round = -1; round < kRounds; ++round) {  // round -1: warm-up
    for (size_t k = 0; k < candidates.size(); ++k) {
      LOOM_CUDA_CHECK(cudaEventRecord(start, stream_));
      for (int i = 0; i < kLaunches; ++i) launch_persistent_decode(args, candidates[k], stream_);
      LOOM_CUDA_CHECK(cudaEventRecord(stop, stream_));
      LOOM_CUDA_CHECK(cudaEventSynchronize(stop));
      float t = 0.0f;
      LOOM_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
      if (round >= 0) ms[k].push_back(t / kLaunches);
    }
  }
  LOOM_CUDA_CHECK(cudaEventDestroy(start));
  LOOM_CUDA_CHECK(cudaEventDestroy(stop));
  std::string measured;
  size_t best = 0;
  float best_ms = 0.0f;
  for (size_t k = 0; k < candidates.size(); ++k) {
    std::sort(ms[k].begin(), ms[k].end());
    const float median = ms[k][kRounds / 2];
    if (k == 0 || median < best_ms) best = k, best_ms = median;
    measured += (k ? ", " : "") + std::to_string(candidates[k].stages) + "/" +
                std::to_string(candidates[k].in_flight) + ": " + std::to_string(median);
  }
  persistent_plan_ = candidates[best];
  LOOM_LOG_INFO(
      "cuda backend: persistent kernel with %d stages, %d weight copies in flight a CTA "
      "(measured ms a step, stages/in flight: %s)",
      persistent_plan_.stages, persistent_plan_.in_flight, measured.c_str());
}

bool CudaBackend::persistent_step(const StepInputs& in) const {
  return persistent_plan_.grid > 0 && in.T == 1 && in.R <= 1 && in.num_tiles == 0;
}

bool CudaBackend::persistent_logits(const StepInputs& in) const {
  return persistent_step(in) && in.R > 0 && options_.persistent_logits;
}

}  // namespace loom::cuda
