// CudaBackend::stage_inputs: a step's metadata (slots, tokens, positions, block tables, prefill
// tiles, pending tokens) packed into one pinned buffer of two alternating slots, one upload, and
// the fill of pending tokens from the previous step's samples.
#include <algorithm>
#include <cstring>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/cuda_backend.cuh"
#include "backend/cuda/pending_tokens.cuh"

namespace loom::cuda {

CudaBackend::StepInputs CudaBackend::stage_inputs(const ForwardBatch& b, int32_t pad_to,
                                                  int32_t stride) {
  const int32_t T0 = b.num_tokens(), S0 = b.num_seqs();
  const int32_t R0 = static_cast<int32_t>(b.logits_rows.size());
  // Padding (graphed decode only): rows past the batch are one-token sequences at position 0
  // whose K/V go to the reserved padding block; their outputs are never read.
  const int32_t T = std::max(T0, pad_to), S = S0 + (T - T0), R = R0 + (T - T0);
  StepInputs in;
  in.T = T;
  in.R = R;
  in.S = S;
  in.stride = stride;

  // Prefill chunks of >= kPrefillMinTokens tokens go to the tensor-core kernel in tiles; the
  // per-token kernel skips their tokens (eager steps only: graphed steps are pure decode).
  prefill_tiles_.clear();
  if (pad_to == 0 && options_.prefill_attention &&
      prefill_attention_supported(cache_shape_, config_.num_heads))
    plan_prefill_tiles(b.query_start.data(), S0, kPrefillMinTokens, prefill_tiles_);
  const int32_t num_tiles = static_cast<int32_t>(prefill_tiles_.size());
  if (num_tiles > 0) mark_prefill_tokens(prefill_tiles_, T, skip_flags_);

  // Slots (int64) first, then int32 arrays, then the tiles, the skip bytes and the pending
  // tokens' (index, prev_row) pairs; one pinned buffer, one copy.
  const int64_t skip_words = num_tiles > 0 ? ceil_div(T, 4) : 0;
  const int32_t num_pending = static_cast<int32_t>(b.pending_tokens.size());
  const int64_t pending_at =  // in int32 words past the slots
      3 * int64_t{T} + R + int64_t{S} * stride + 3 * int64_t{num_tiles} + skip_words;
  const int64_t n32 = pending_at + 2 * int64_t{num_pending};
  const int64_t words = T + (n32 + 1) / 2;
  // This slot's last upload (two steps ago) must be done before its buffer is rewritten.
  const int slot = static_cast<int>(steps_staged_++ % 2);
  LOOM_CUDA_CHECK(cudaEventSynchronize(meta_uploaded_[slot]));
  if (meta_host_capacity_[slot] < words) {
    if (meta_host_[slot]) LOOM_CUDA_CHECK(cudaFreeHost(meta_host_[slot]));
    meta_host_[slot] = nullptr;
    meta_host_capacity_[slot] = std::max<int64_t>(words, meta_host_capacity_[slot] * 3 / 2);
    LOOM_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&meta_host_[slot]),
                                  static_cast<size_t>(meta_host_capacity_[slot]) * 8,
                                  cudaHostAllocDefault));
  }
  ensure(meta_dev_, words);
  int64_t* const host = meta_host_[slot];
  int64_t* slots = host;
  int32_t* h32 = reinterpret_cast<int32_t*>(host + T);
  int32_t *tokens = h32, *positions = h32 + T, *seq_of = h32 + 2 * T, *rows = h32 + 3 * T;
  int32_t* tables = h32 + 3 * T + R;
  std::memcpy(slots, b.slot_mapping.data(), static_cast<size_t>(T0) * 8);
  std::memcpy(tokens, b.tokens.data(), static_cast<size_t>(T0) * 4);
  std::memcpy(positions, b.positions.data(), static_cast<size_t>(T0) * 4);
  int32_t max_keys = 1;
  for (int32_t s = 0; s < S0; ++s)
    for (int32_t t = b.query_start[s]; t < b.query_start[s + 1]; ++t) {
      seq_of[t] = s;
      max_keys = std::max(max_keys, b.positions[t] + 1);
    }
  if (R0 > 0) std::memcpy(rows, b.logits_rows.data(), static_cast<size_t>(R0) * 4);
  if (stride == b.max_blocks_per_seq) {
    std::memcpy(tables, b.block_tables.data(), b.block_tables.size() * 4);
  } else {
    std::fill(tables, tables + int64_t{S} * stride, kNoBlock);
    for (int32_t s = 0; s < S0; ++s)
      std::memcpy(tables + int64_t{s} * stride,
                  b.block_tables.data() + int64_t{s} * b.max_blocks_per_seq,
                  static_cast<size_t>(b.max_blocks_per_seq) * 4);
  }
  for (int32_t p = 0; p < T - T0; ++p) {
    slots[T0 + p] = int64_t{padding_block_} * cache_shape_.block_size;
    tokens[T0 + p] = 0;
    positions[T0 + p] = 0;
    seq_of[T0 + p] = S0 + p;
    rows[R0 + p] = T0 + p;
    std::fill(tables + int64_t{S0 + p} * stride, tables + int64_t{S0 + p + 1} * stride, kNoBlock);
    tables[int64_t{S0 + p} * stride] = padding_block_;
  }
  int32_t* tiles32 = tables + int64_t{S} * stride;
  if (num_tiles > 0) {
    static_assert(sizeof(PrefillTile) == 3 * sizeof(int32_t));
    std::memcpy(tiles32, prefill_tiles_.data(), prefill_tiles_.size() * sizeof(PrefillTile));
    std::memcpy(tiles32 + 3 * num_tiles, skip_flags_.data(), static_cast<size_t>(T));
  }
  int32_t* pairs = h32 + pending_at;  // [num_pending][2]
  for (int32_t i = 0; i < num_pending; ++i) {
    pairs[2 * i] = b.pending_tokens[i].index;
    pairs[2 * i + 1] = b.pending_tokens[i].prev_row;
  }
  LOOM_CUDA_CHECK(cudaMemcpyAsync(meta_dev_.ptr, host, static_cast<size_t>(words) * 8,
                                  cudaMemcpyHostToDevice, stream_));
  LOOM_CUDA_CHECK(cudaEventRecord(meta_uploaded_[slot], stream_));
  // Pending tokens (kPendingToken in the upload) get the ids the previous launch_sample's
  // sampler wrote; stream order puts this after that sampler and this upload, and before the
  // layers or the graph, which read the tokens from meta_dev_.
  // A lone sequence whose token is the one greedy row of the previous launch, which the
  // persistent kernel left in persistent_argmax_ (the sampler's device ids are that buffer): the
  // layers read it there. This step's kernel overwrites it only at its end, after every read of
  // its token, and stream order puts the previous sampler's download of it before this step.
  in.token_from_argmax = T == 1 && num_pending == 1 && b.pending_tokens[0].index == 0 &&
                         b.pending_tokens[0].prev_row == 0 && persistent_argmax_ != nullptr &&
                         sampler_->device_ids() == persistent_argmax_;
  if (num_pending > 0 && !in.token_from_argmax) {
    int32_t* d_tokens = reinterpret_cast<int32_t*>(meta_dev_.ptr + T);
    launch_fill_pending_tokens(d_tokens, d_tokens + pending_at, num_pending, sampler_->device_ids(),
                               stream_);
  }
  in.slots = meta_dev_.ptr;
  const int32_t* d32 = reinterpret_cast<const int32_t*>(meta_dev_.ptr + T);
  in.tokens = in.token_from_argmax ? persistent_argmax_ : d32;
  in.positions = d32 + T;
  in.seq_of_token = d32 + 2 * T;
  in.rows = d32 + 3 * T;
  in.tables = d32 + 3 * T + R;
  in.num_tiles = num_tiles;
  if (num_tiles > 0) {
    const int32_t* d_tiles = in.tables + int64_t{S} * stride;
    in.tiles = reinterpret_cast<const PrefillTile*>(d_tiles);
    in.skip = reinterpret_cast<const uint8_t*>(d_tiles + 3 * num_tiles);
  }
  // A graph's attention split must fit any context its stride allows; eager steps fit the batch.
  const int32_t keys = pad_to > 0 ? stride * cache_shape_.block_size : max_keys;
  int32_t covered = 0;
  for (const PrefillTile& t : prefill_tiles_) covered += t.q_end - t.q_begin;
  choose_attention_splits(std::max(T - covered, 1), config_.num_kv_heads, keys, num_sms_,
                          &in.splits, &in.keys_per_split);
  return in;
}

}  // namespace loom::cuda
