#include "backend/cpu/attention.h"

#include <vector>

#include "backend/cpu/kernels/cpu_features.h"
#include "backend/cpu/kernels/fp16.h"
#include "util/check.h"

namespace loom::cpu {
namespace {

static_assert(static_cast<int32_t>(KvDtype::kF16) == detail::kAttnKvF16 &&
              static_cast<int32_t>(KvDtype::kInt8) == detail::kAttnKvInt8 &&
              static_cast<int32_t>(KvDtype::kInt4) == detail::kAttnKvInt4);

constexpr int32_t kTileTokens = 16;  // query tokens per task (attention_impl.inc: kMaxTile)

detail::AttentionTaskFn task_fn() {
  switch (active_isa()) {
    case Isa::kAvx512:
      return detail::avx512::attention_task;
    case Isa::kAvx2:
      return detail::avx2::attention_task;
    default:
      return detail::generic::attention_task;
  }
}

struct Task {
  int32_t seq, kv_head, t_begin, t_end;
};

}  // namespace

namespace {

// One row of head_dim floats into row `offset` of a head region, in the region's format.
void store_row(const float* x, const KvLayout& layout, int32_t offset, uint8_t* head) {
  const int32_t hd = layout.head_dim;
  uint8_t* data = head + static_cast<size_t>(offset) * layout.row_data_bytes();
  uint16_t* params = reinterpret_cast<uint16_t*>(
      head + layout.params_offset() + static_cast<size_t>(offset) * layout.row_param_bytes());
  switch (layout.dtype) {
    case KvDtype::kF16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(data);
      for (int32_t i = 0; i < hd; ++i) d[i] = fp32_to_fp16(x[i]);
      break;
    }
    case KvDtype::kInt8:
      quantize_row_int8(x, hd, reinterpret_cast<int8_t*>(data), params);
      break;
    case KvDtype::kInt4:
      quantize_row_int4(x, hd, data, params);
      break;
  }
}

}  // namespace

void write_kv(const ForwardBatch& batch, const float* k, const float* v, int32_t layer,
              const AttentionShape& shape, KvStorage& kv) {
  const KvLayout& layout = kv.layout();
  const int32_t bs = layout.block_size;
  const int32_t hd = shape.head_dim;
  const int64_t num_tokens = batch.num_tokens();
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t slot = batch.slot_mapping[t];
    const BlockId block = static_cast<BlockId>(slot / bs);
    const int32_t offset = static_cast<int32_t>(slot % bs);
    LOOM_CHECK(slot >= 0 && block < kv.num_device_blocks(), "slot %ld out of the pool",
               static_cast<long>(slot));
    for (int32_t h = 0; h < shape.num_kv_heads; ++h) {
      store_row(k + (t * shape.num_kv_heads + h) * hd, layout, offset, kv.k(block, layer, h));
      store_row(v + (t * shape.num_kv_heads + h) * hd, layout, offset, kv.v(block, layer, h));
    }
  }
}

void paged_attention(const ForwardBatch& batch, const float* q, int32_t layer,
                     const AttentionShape& shape, KvStorage& kv, float* out) {
  LOOM_CHECK(shape.num_heads % shape.num_kv_heads == 0);
  const detail::AttentionTaskFn fn = task_fn();  // per call: set_active_isa applies at once
  std::vector<Task> tasks;
  for (int32_t s = 0; s < batch.num_seqs(); ++s) {
    const int32_t begin = batch.query_start[s], end = batch.query_start[s + 1];
    for (int32_t t = begin; t < end; t += kTileTokens) {
      const int32_t t_end = std::min(end, t + kTileTokens);
      for (int32_t g = 0; g < shape.num_kv_heads; ++g) tasks.push_back({s, g, t, t_end});
    }
  }
  const int64_t num_tasks = static_cast<int64_t>(tasks.size());
  const int32_t group = shape.num_heads / shape.num_kv_heads;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < num_tasks; ++i) {
    const Task& t = tasks[i];
    detail::AttentionTask a;
    a.q = q;
    a.out = out;
    a.positions = batch.positions.data();
    a.block_table =
        batch.block_tables.data() + static_cast<size_t>(t.seq) * batch.max_blocks_per_seq;
    a.k_base = kv.k(0, layer, t.kv_head);
    a.v_base = kv.v(0, layer, t.kv_head);
    a.block_stride = static_cast<int64_t>(kv.layout().block_bytes());
    a.kv_format = static_cast<int32_t>(kv.layout().dtype);
    a.params_offset = static_cast<int32_t>(kv.layout().params_offset());
    a.int4_group = kKvInt4Group;
    a.num_device_blocks = kv.num_device_blocks();
    a.block_size = kv.layout().block_size;
    a.num_heads = shape.num_heads;
    a.head_dim = shape.head_dim;
    a.group = group;
    a.kv_head = t.kv_head;
    a.t_begin = t.t_begin;
    a.t_end = t.t_end;
    a.scale = shape.scale;
    fn(a);
  }
}

}  // namespace loom::cpu
