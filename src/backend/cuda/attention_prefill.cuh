// Causal grouped-query attention for prefill chunks on the tensor cores (mma.sync bf16 -> f32),
// over the paged KV cache: FlashAttention-2 style, one pass over the keys with an online softmax
// kept in registers.
//
// Why a second kernel: attention.cu runs one CTA per query token, so a prefill chunk of n tokens
// reads its sequence's K/V n times and multiplies on the CUDA cores. Here the new tokens of a
// sequence are cut into tiles of up to kPrefillTileTokens consecutive tokens; one CTA takes 128
// query rows of a tile (rows = token x query head of one KV head, token-major, so a GQA group's
// heads share every K/V row loaded) and walks the keys in blocks of 64 through shared memory.
//
// Division of labour with attention.cu, per step:
//   1. plan_prefill_tiles() on the host picks the sequences with at least `min_tokens` new tokens
//      and cuts them into tiles; decode rows and short chunks stay with the per-token kernel.
//   2. mark_prefill_tokens() gives one flag per token of the batch (1 = a tile covers it); the
//      flags go to the device and into AttentionArgs::skip_token, which makes
//      launch_paged_attention() leave those tokens alone (it writes only the others).
//   3. Per layer, launch_paged_attention(args) and launch_paged_prefill_attention(args, tiles)
//      with the same AttentionArgs, in either order: they write disjoint rows of args.out, and
//      together every row.
//
// Keys: token t of a tile sees keys [0, positions[t]] of its sequence, through the block table,
// so a cached prefix and earlier chunks are read like any other key. Positions within a tile must
// increase with the token index (they do: a chunk's positions are consecutive); the CTA reads up
// to the position of its last row's token.
//
// Precision: Q (times scale) and the softmax weights P are rounded to bf16 for the products, the
// sums are f32; outputs carry ~3e-3 relative error, like the per-token kernel's bf16 output.
// Cache dtypes: bf16 (copied to shared memory with cp.async), and fp8 / int8 whose rows are
// dequantized (value x the row's f16 scale, rounded to bf16) as they are staged.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cuda/attention.cuh"

namespace loom::cuda {

// Most new tokens of one sequence in a tile. A CTA takes 128 rows (token x head of a KV head's
// group), so a full tile is G CTAs of 128 / G tokens each (G = query heads per KV head).
constexpr int32_t kPrefillTileTokens = 128;
// A reasonable `min_tokens` for plan_prefill_tiles: below it a chunk's tokens re-read few keys
// and the per-token kernel (which splits long contexts across CTAs) is as good.
constexpr int32_t kPrefillMinTokens = 16;

// New tokens [q_begin, q_end) of the flat batch (indexes into q, positions and out), all of
// sequence `seq` (the row of the block tables), q_end - q_begin in [1, kPrefillTileTokens].
struct PrefillTile {
  int32_t seq;
  int32_t q_begin;
  int32_t q_end;
};

// Tiles for every sequence s with query_start[s + 1] - query_start[s] >= max(min_tokens, 1).
// `query_start` has num_seqs + 1 entries (ForwardBatch::query_start). A sequence's tokens are cut
// from the end in full tiles, the remainder (fewest keys) being its first tile; its tiles are
// listed last first, so the CTAs with the longest key ranges start first. `tiles` is replaced.
void plan_prefill_tiles(const int32_t* query_start, int32_t num_seqs, int32_t min_tokens,
                        std::vector<PrefillTile>& tiles);

// skip[t] = 1 for the tokens the tiles cover, 0 for the others; `skip` is resized to num_tokens.
// On the device this is AttentionArgs::skip_token for launch_paged_attention().
void mark_prefill_tokens(const std::vector<PrefillTile>& tiles, int32_t num_tokens,
                         std::vector<uint8_t>& skip);

// Whether launch_paged_prefill_attention() takes this cache and head layout (head_dim 64 or 128,
// num_heads a multiple of num_kv_heads; every cache dtype).
bool prefill_attention_supported(const KvCacheShape& cache, int32_t num_heads);

// Writes a.out for the tokens of the `num_tiles` tiles at `tiles_dev` (device memory). Reads
// a.q, a.kv_cache, a.positions, a.block_tables, a.max_blocks_per_seq, a.num_heads, a.layer,
// a.cache, a.scale; ignores the split fields and skip_token. Nothing else is written.
void launch_paged_prefill_attention(const AttentionArgs& a, const PrefillTile* tiles_dev,
                                    int32_t num_tiles, cudaStream_t stream);

}  // namespace loom::cuda
