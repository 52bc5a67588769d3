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
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < num_tasks; ++i) {
    const Task& task = tasks[i];
    fn(batch, q, layer, shape, kv, task.seq, task.kv_head, task.t_begin, task.t_end, out);
  }
}

}  // namespace loom::cpu
