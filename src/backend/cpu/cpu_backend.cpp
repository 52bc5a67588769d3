#include "backend/cpu/cpu_backend.h"

#include <omp.h>

#include <cmath>
#include <string>

#include "backend/cpu/kernels/matmul.h"
#include "backend/cpu/kernels/quant.h"
#include "util/check.h"
#include "util/log.h"

namespace loom::cpu {
namespace {

std::vector<float> to_floats(const TensorView& t) {
  std::vector<float> out(t.num_elements());
  dequantize_row(t.type, t.data, out.data(), t.num_elements());
  return out;
}

template <class T>
void grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

Result<std::unique_ptr<CpuBackend>> CpuBackend::create(std::shared_ptr<const ModelFile> model,
                                                       const CpuBackendOptions& options) {
  const ModelConfig& c = model->config();
  if (options.block_size < 1 || options.block_size > 64)
    return make_error("block size must be in [1, 64], got %d", options.block_size);
  if (c.head_dim % 16 != 0 || c.head_dim > 256)
    return make_error("head_dim %d is not supported by the CPU backend (a multiple of 16, <= 256)",
                      c.head_dim);
  if (c.num_heads / c.num_kv_heads > 16)
    return make_error("%d query heads per KV head is more than the CPU backend supports (16)",
                      c.num_heads / c.num_kv_heads);
  if (options.num_threads > 0) omp_set_num_threads(options.num_threads);
  if (!kv_dtype_supports(options.kv_dtype, c.head_dim))
    return make_error(
        "KV cache dtype %s does not support head_dim %d (int4 needs a multiple of %d)",
        kv_dtype_name(options.kv_dtype), c.head_dim, kKvInt4Group);
  KvLayout layout{c.num_layers, c.num_kv_heads, c.head_dim, options.block_size, options.kv_dtype};
  const int64_t num_device_blocks =
      static_cast<int64_t>(options.kv_cache_bytes / layout.block_bytes());
  const int64_t num_host_blocks =
      static_cast<int64_t>(options.swap_space_bytes / layout.block_bytes());
  if (num_device_blocks < 1)
    return make_error("a KV cache of %zu bytes holds no block of %zu bytes", options.kv_cache_bytes,
                      layout.block_bytes());
  if (num_device_blocks > (int64_t{1} << 30) || num_host_blocks > (int64_t{1} << 30))
    return make_error("KV cache budget too large");
  return std::unique_ptr<CpuBackend>(new CpuBackend(std::move(model), layout,
                                                    static_cast<int32_t>(num_device_blocks),
                                                    static_cast<int32_t>(num_host_blocks)));
}

CpuBackend::CpuBackend(std::shared_ptr<const ModelFile> model, KvLayout layout,
                       int32_t num_device_blocks, int32_t num_host_blocks)
    : model_(std::move(model)),
      config_(model_->config()),
      kv_(layout, num_device_blocks, num_host_blocks),
      rope_(config_) {
  auto need = [&](const std::string& name) {
    const TensorView* t = model_->tensor(name);
    LOOM_CHECK(t != nullptr, "tensor %s missing after validation", name.c_str());
    return t;
  };
  token_embd_ = need("token_embd.weight");
  output_ = config_.tied_embeddings ? token_embd_ : need("output.weight");
  output_norm_ = to_floats(*need("output_norm.weight"));
  layers_.resize(config_.num_layers);
  for (int32_t l = 0; l < config_.num_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& w = layers_[l];
    w.wq = need(p + "attn_q.weight");
    w.wk = need(p + "attn_k.weight");
    w.wv = need(p + "attn_v.weight");
    w.wo = need(p + "attn_output.weight");
    w.w_gate = need(p + "ffn_gate.weight");
    w.w_up = need(p + "ffn_up.weight");
    w.w_down = need(p + "ffn_down.weight");
    w.attn_norm = to_floats(*need(p + "attn_norm.weight"));
    w.ffn_norm = to_floats(*need(p + "ffn_norm.weight"));
    if (config_.qkv_bias) {
      w.bq = to_floats(*need(p + "attn_q.bias"));
      w.bk = to_floats(*need(p + "attn_k.bias"));
      w.bv = to_floats(*need(p + "attn_v.bias"));
    }
  }
  attn_shape_ = AttentionShape{config_.num_heads, config_.num_kv_heads, config_.head_dim,
                               1.0f / std::sqrt(static_cast<float>(config_.head_dim))};
}

KvPoolInfo CpuBackend::kv_pool() const {
  KvPoolInfo info;
  info.block_size = kv_.layout().block_size;
  info.num_device_blocks = kv_.num_device_blocks();
  info.num_host_blocks = kv_.num_host_blocks();
  info.bytes_per_block = kv_.layout().block_bytes();
  info.dtype = kv_dtype_name(kv_.layout().dtype);
  return info;
}

void CpuBackend::forward(const ForwardBatch& batch, float* logits) {
  check_forward_batch(batch, kv_.layout().block_size, kv_.num_device_blocks(), config_.vocab_size);
  const int64_t T = batch.num_tokens();
  const int32_t H = config_.hidden_size, F = config_.intermediate_size;
  const int32_t QD = config_.q_dim(), KVD = config_.kv_dim();
  grow(x_, T * H);
  grow(h_, T * H);
  grow(q_, T * QD);
  grow(k_, T * KVD);
  grow(v_, T * KVD);
  grow(attn_, T * QD);
  grow(gate_, T * F);
  grow(up_, T * F);

  Status embedded = embedding_rows(*token_embd_, batch.tokens.data(), T, x_.data());
  LOOM_CHECK(embedded.ok(), "%s", embedded.error().c_str());
  rope_.prepare(batch.positions.data(), T);

  for (int32_t l = 0; l < config_.num_layers; ++l) {
    const LayerWeights& w = layers_[l];
    // Attention block: x += Wo * attention(rope(Wq h), rope(Wk h), Wv h), h = norm(x).
    rms_norm(x_.data(), w.attn_norm.data(), T, H, config_.rms_norm_eps, h_.data());
    matmul(*w.wq, h_.data(), T, q_.data());
    matmul(*w.wk, h_.data(), T, k_.data());
    matmul(*w.wv, h_.data(), T, v_.data());
    if (config_.qkv_bias) {
      for (int64_t t = 0; t < T; ++t) {
        add_inplace(q_.data() + t * QD, w.bq.data(), QD);
        add_inplace(k_.data() + t * KVD, w.bk.data(), KVD);
        add_inplace(v_.data() + t * KVD, w.bv.data(), KVD);
      }
    }
    for (int64_t t = 0; t < T; ++t) {
      rope_.apply(q_.data() + t * QD, t, config_.num_heads);
      rope_.apply(k_.data() + t * KVD, t, config_.num_kv_heads);
    }
    write_kv(batch, k_.data(), v_.data(), l, attn_shape_, kv_);
    paged_attention(batch, q_.data(), l, attn_shape_, kv_, attn_.data());
    matmul(*w.wo, attn_.data(), T, h_.data());
    add_inplace(x_.data(), h_.data(), T * H);

    // MLP block: x += W_down (silu(W_gate h) * W_up h), h = norm(x).
    rms_norm(x_.data(), w.ffn_norm.data(), T, H, config_.rms_norm_eps, h_.data());
    matmul(*w.w_gate, h_.data(), T, gate_.data());
    matmul(*w.w_up, h_.data(), T, up_.data());
    silu_mul(gate_.data(), up_.data(), T * F, gate_.data());
    matmul(*w.w_down, gate_.data(), T, h_.data());
    add_inplace(x_.data(), h_.data(), T * H);
  }

  // Logits only for the rows that will be sampled.
  const int64_t R = static_cast<int64_t>(batch.logits_rows.size());
  if (R == 0) return;
  grow(rows_, R * H);
  for (int64_t r = 0; r < R; ++r) {
    const float* src = x_.data() + static_cast<int64_t>(batch.logits_rows[r]) * H;
    std::copy(src, src + H, rows_.data() + r * H);
  }
  rms_norm(rows_.data(), output_norm_.data(), R, H, config_.rms_norm_eps, rows_.data());
  matmul(*output_, rows_.data(), R, logits);
}

}  // namespace loom::cpu
