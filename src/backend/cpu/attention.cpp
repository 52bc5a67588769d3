#include "backend/cpu/attention.h"

#include <vector>

#include "backend/cpu/kernels/cpu_features.h"
#include "backend/cpu/kernels/fp16.h"
#include "util/check.h"

namespace loom::cpu {
namespace {

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

void write_kv(const ForwardBatch& batch, const float* k, const float* v, int32_t layer,
              const AttentionShape& shape, KvStorage& kv) {
  const int32_t bs = kv.layout().block_size;
  const int32_t hd = shape.head_dim;
  const int64_t num_tokens = batch.num_tokens();
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t slot = batch.slot_mapping[t];
    const BlockId block = static_cast<BlockId>(slot / bs);
    const int32_t offset = static_cast<int32_t>(slot % bs);
    LOOM_CHECK(block >= 0 && block < kv.num_device_blocks(), "slot %ld out of the pool",
               static_cast<long>(slot));
    for (int32_t h = 0; h < shape.num_kv_heads; ++h) {
      const float* kr = k + (t * shape.num_kv_heads + h) * hd;
      const float* vr = v + (t * shape.num_kv_heads + h) * hd;
      uint16_t* kd = kv.k(block, layer, h) + static_cast<size_t>(offset) * hd;
      uint16_t* vd = kv.v(block, layer, h) + static_cast<size_t>(offset) * hd;
      for (int32_t i = 0; i < hd; ++i) {
        kd[i] = fp32_to_fp16(kr[i]);
        vd[i] = fp32_to_fp16(vr[i]);
      }
    }
  }
}

void paged_attention(const ForwardBatch& batch, const float* q, int32_t layer,
                     const AttentionShape& shape, KvStorage& kv, float* out) {
  LOOM_CHECK(shape.num_heads % shape.num_kv_heads == 0);
  static const detail::AttentionTaskFn fn = task_fn();
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
    a.block_table = batch.block_tables.data() + static_cast<size_t>(t.seq) * batch.max_blocks_per_seq;
    a.k_base = kv.k(0, layer, t.kv_head);
    a.v_base = kv.v(0, layer, t.kv_head);
    a.block_stride = static_cast<int64_t>(kv.layout().block_elems());
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
