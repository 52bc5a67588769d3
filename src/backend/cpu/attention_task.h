// The attention kernel's per-ISA entry points. This header holds only plain types: the per-ISA
// files include it and nothing from the standard library, so no inline library function is
// compiled with their wider ISA flags (the linker could otherwise pick such a copy for code that
// runs on a CPU without that ISA).
#pragma once

#include <stdint.h>

namespace loom::cpu {

namespace detail {
// Row formats of the KV cache the task reads (KvDtype's values; kv_quant.h describes them).
constexpr int32_t kAttnKvF16 = 0;
constexpr int32_t kAttnKvInt8 = 1;
constexpr int32_t kAttnKvInt4 = 2;

// Everything one task needs, as plain pointers and strides, so that the per-ISA files include
// nothing but this header's PODs (no inline library templates compiled with wider ISA flags).
struct AttentionTask {
  const float* q;              // [T][num_heads][head_dim]
  float* out;                  // [T][num_heads][head_dim]
  const int32_t* positions;    // [T]
  const int32_t* block_table;  // this sequence's blocks
  const uint8_t* k_base;       // K head region of (block 0, this layer, this KV head)
  const uint8_t* v_base;       // V of the same
  int64_t block_stride;        // bytes from one block to the next
  int32_t kv_format;           // kAttnKv*
  int32_t params_offset;       // bytes from a head region's start to its f16 scales
  int32_t int4_group;          // int4 values per (scale, min) pair, a multiple of 32
  int32_t num_device_blocks;
  int32_t block_size;
  int32_t num_heads;
  int32_t head_dim;  // multiple of 16, <= 256
  int32_t group;     // query heads per KV head, <= 16
  int32_t kv_head;
  int32_t t_begin, t_end;  // query tokens, at most 16
  float scale;
};
using AttentionTaskFn = void (*)(const AttentionTask& task);
namespace generic {
void attention_task(const AttentionTask& task);
}
namespace avx2 {
void attention_task(const AttentionTask& task);
}
namespace avx512 {
void attention_task(const AttentionTask& task);
}
}  // namespace detail

}  // namespace loom::cpu
