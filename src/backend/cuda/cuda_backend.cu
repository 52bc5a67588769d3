#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "backend/cpu/kernels/quant.h"
#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/cuda_backend.cuh"
#include "backend/cuda/gemv.cuh"
#include "backend/cuda/graph_cache.cuh"
#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/random_fill.cuh"
#include "backend/cuda/rmsnorm.cuh"
#include "backend/cuda/rope_kv.cuh"
#include "backend/cuda/sampling.cuh"
#include "backend/cuda/swiglu.cuh"
#include "util/log.h"

namespace loom::cuda {
namespace {

uint16_t float_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Rows of `t` as bf16 bits appended to `out` (BF16 copied, everything else through f32).
Status append_bf16_rows(const TensorView& t, std::vector<uint16_t>& out) {
  const int64_t rows = t.rows(), cols = t.cols();
  const size_t start = out.size();
  out.resize(start + static_cast<size_t>(rows * cols));
  if (t.type == DType::kBF16) {
    std::memcpy(out.data() + start, t.data, static_cast<size_t>(rows * cols) * 2);
    return ok_status();
  }
  if (!cpu::kernel_supports(t.type))
    return make_error("tensor %s: type not supported by the CUDA loader", t.name.c_str());
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    cpu::dequantize_row(t.type, t.row(r), row.data(), cols);
    for (int64_t c = 0; c < cols; ++c) out[start + r * cols + c] = float_to_bf16_bits(row[c]);
  }
  return ok_status();
}

}  // namespace

template <class T>
T* CudaBackend::alloc(int64_t n) {
  void* p = nullptr;
  LOOM_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T)));
  allocations_.push_back(p);
  return static_cast<T*>(p);
}

template <class T>
void CudaBackend::ensure(DeviceArray<T>& a, int64_t n) {
  if (a.capacity >= n) return;
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (a.ptr) LOOM_CUDA_CHECK(cudaFree(a.ptr));
  const int64_t cap = std::max<int64_t>(n, a.capacity * 3 / 2);
  LOOM_CUDA_CHECK(
      cudaMalloc(reinterpret_cast<void**>(&a.ptr), static_cast<size_t>(cap) * sizeof(T)));
  a.capacity = cap;
  ++buffers_generation_;  // captured graphs hold the old address
}
template void CudaBackend::ensure(DeviceArray<int64_t>&, int64_t);  // step_inputs.cu
// cuda_backend_persistent.cu:
template PersistentLayer* CudaBackend::alloc(int64_t);
template uint8_t* CudaBackend::alloc(int64_t);
template unsigned* CudaBackend::alloc(int64_t);
template int32_t* CudaBackend::alloc(int64_t);
template int64_t* CudaBackend::alloc(int64_t);

CudaBackend::CudaBackend(const ModelConfig& config, const CudaBackendOptions& options)
    : config_(config), options_(options) {}

CudaBackend::~CudaBackend() {
  if (stream_) cudaStreamSynchronize(stream_);
  swap_.reset();
  gemm_.reset();
  for (void* p : allocations_) cudaFree(p);
  for (void* p :
       {static_cast<void*>(meta_dev_.ptr), static_cast<void*>(x_.ptr),
        static_cast<void*>(delta_.ptr), static_cast<void*>(qkv_.ptr), static_cast<void*>(q_.ptr),
        static_cast<void*>(logits_.ptr), static_cast<void*>(attn_ws_.ptr),
        static_cast<void*>(h_.ptr), static_cast<void*>(attn_out_.ptr),
        static_cast<void*>(gate_up_.ptr), static_cast<void*>(act_.ptr),
        static_cast<void*>(rows_h_.ptr), static_cast<void*>(ids_.ptr)})
    if (p) cudaFree(p);
  if (greedy_ids_host_) cudaFreeHost(greedy_ids_host_);
  for (int slot = 0; slot < 2; ++slot) {
    if (meta_host_[slot]) cudaFreeHost(meta_host_[slot]);
    if (meta_uploaded_[slot]) cudaEventDestroy(meta_uploaded_[slot]);
  }
  if (stream_) cudaStreamDestroy(stream_);
}

Result<std::unique_ptr<CudaBackend>> CudaBackend::create(const ModelConfig& c,
                                                         std::shared_ptr<const ModelFile> weights,
                                                         const CudaBackendOptions& o) {
  if (!cuda_device_available()) return make_error("no CUDA GPU is available");
  if (c.head_dim != 64 && c.head_dim != 128)
    return make_error("head_dim %d is not supported by the CUDA backend (64 or 128)", c.head_dim);
  if (c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0 ||
      c.num_heads / c.num_kv_heads > kMaxGroupSize)
    return make_error("%d query heads over %d KV heads is not supported (group <= %d)", c.num_heads,
                      c.num_kv_heads, kMaxGroupSize);
  if (c.hidden_size % 8 != 0 || c.intermediate_size % 8 != 0)
    return make_error("hidden %d and ffn %d must be multiples of 8", c.hidden_size,
                      c.intermediate_size);
  if (o.block_size < 1 || o.block_size > 256)
    return make_error("block size must be in [1, 256], got %d", o.block_size);
  if (!(o.gpu_memory_utilization > 0.05 && o.gpu_memory_utilization <= 1.0))
    return make_error("gpu memory utilization %.3f must be in (0.05, 1]", o.gpu_memory_utilization);
  if (o.max_num_batched_tokens < 1 || o.max_num_seqs < 1)
    return make_error("max batched tokens and max sequences must be positive");
  std::unique_ptr<CudaBackend> b(new CudaBackend(c, o));
  if (Status s = b->init(std::move(weights)); !s.ok()) return Error{s.error()};
  return std::move(b);
}

Status CudaBackend::init(std::shared_ptr<const ModelFile> weights) {
  const ModelConfig& c = config_;
  LOOM_CUDA_CHECK(cudaSetDevice(options_.device));
  LOOM_CUDA_CHECK(
      cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, options_.device));
  int cc_major = 0;
  LOOM_CUDA_CHECK(
      cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, options_.device));
  set_pdl_enabled(options_.pdl && cc_major >= 9);
  LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  for (cudaEvent_t& e : meta_uploaded_)
    LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  gemm_ = std::make_unique<Gemm>();

  const int64_t H = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t QKV = c.q_dim() + 2 * c.kv_dim();
  // Weights: uploaded from the model file, or filled with uniform noise of std ~0.02 (norm
  // weights near 1) like a freshly initialised checkpoint.
  std::vector<uint16_t> staging;
  uint64_t seed = options_.dummy_seed;
  auto matrix = [&](std::initializer_list<std::string> names, int64_t rows, int64_t cols,
                    bf16** out) -> Status {
    *out = alloc<bf16>(rows * cols);
    if (!weights) {
      launch_fill_uniform_bf16(*out, rows * cols, ++seed, 0.035f, 0.0f, stream_);
      return ok_status();
    }
    staging.clear();
    for (const std::string& n : names) {
      const TensorView* t = weights->tensor(n);
      if (!t) return make_error("tensor %s missing", n.c_str());
      if (Status s = append_bf16_rows(*t, staging); !s.ok()) return s;
    }
    if (static_cast<int64_t>(staging.size()) != rows * cols)
      return make_error("tensors %s...: %zu values, expected %lld", names.begin()->c_str(),
                        staging.size(), static_cast<long long>(rows * cols));
    LOOM_CUDA_CHECK(cudaMemcpy(*out, staging.data(), staging.size() * 2, cudaMemcpyHostToDevice));
    return ok_status();
  };
  auto vec = [&](const std::string& name, int64_t n, float** out) -> Status {
    *out = alloc<float>(n);
    if (!weights) {
      launch_fill_uniform_f32(*out, n, ++seed, 0.05f, 1.0f, stream_);
      return ok_status();
    }
    const TensorView* t = weights->tensor(name);
    if (!t || t->num_elements() != n)
      return make_error("tensor %s missing or misshaped", name.c_str());
    std::vector<float> host(static_cast<size_t>(n));
    cpu::dequantize_row(t->type, t->data, host.data(), n);
    LOOM_CUDA_CHECK(cudaMemcpy(*out, host.data(), n * 4, cudaMemcpyHostToDevice));
    return ok_status();
  };

  if (Status s = matrix({"token_embd.weight"}, V, H, &token_embd_); !s.ok()) return s;
  if (c.tied_embeddings) {
    lm_head_ = token_embd_;
  } else if (Status s = matrix({"output.weight"}, V, H, &lm_head_); !s.ok()) {
    return s;
  }
  if (Status s = vec("output_norm.weight", H, &output_norm_); !s.ok()) return s;
  layers_.resize(c.num_layers);
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& w = layers_[l];
    for (Status s :
         {matrix({p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"}, QKV, H, &w.w_qkv),
          matrix({p + "attn_output.weight"}, H, c.q_dim(), &w.w_o),
          matrix({p + "ffn_gate.weight", p + "ffn_up.weight"}, 2 * F, H, &w.w_gate_up),
          matrix({p + "ffn_down.weight"}, H, F, &w.w_down),
          vec(p + "attn_norm.weight", H, &w.attn_norm), vec(p + "ffn_norm.weight", H, &w.ffn_norm)})
      if (!s.ok()) return s;
    if (c.qkv_bias) {
      if (!weights) return make_error("dummy weights do not cover Q/K/V biases");
      std::vector<float> bias;
      for (const char* n : {"attn_q.bias", "attn_k.bias", "attn_v.bias"}) {
        const TensorView* t = weights->tensor(p + n);
        if (!t) return make_error("tensor %s%s missing", p.c_str(), n);
        const size_t at = bias.size();
        bias.resize(at + static_cast<size_t>(t->num_elements()));
        cpu::dequantize_row(t->type, t->data, bias.data() + at, t->num_elements());
      }
      if (static_cast<int64_t>(bias.size()) != QKV) return make_error("Q/K/V bias sizes");
      w.qkv_bias = alloc<float>(QKV);
      LOOM_CUDA_CHECK(cudaMemcpy(w.qkv_bias, bias.data(), QKV * 4, cudaMemcpyHostToDevice));
    }
  }

  // RoPE frequencies exactly as the CPU reference computes them (double, then f32).
  const int32_t half = c.head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int32_t i = 0; i < half; ++i) {
    double f = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / c.head_dim);
    if (static_cast<int32_t>(c.rope_freq_factors.size()) == half) f /= c.rope_freq_factors[i];
    if (c.rope_scaling.type == RopeScaling::Type::kLinear) f /= c.rope_scaling.factor;
    inv_freq[i] = static_cast<float>(f);
  }
  inv_freq_ = alloc<float>(half);
  LOOM_CUDA_CHECK(cudaMemcpy(inv_freq_, inv_freq.data(), half * 4, cudaMemcpyHostToDevice));

  init_persistent_decode();

  // Activations for the largest step, then the KV pool from what memory is left.
  cache_shape_ = KvCacheShape{c.num_layers, c.num_kv_heads, c.head_dim, options_.block_size,
                              options_.kv_cache_dtype};
  const int32_t T = options_.max_num_batched_tokens;
  int32_t splits = 1, per = 32;
  choose_attention_splits(std::min(T, options_.max_num_seqs), c.num_kv_heads, c.max_context,
                          num_sms_, &splits, &per);
  reserve_activations(T, std::min(T, options_.max_num_seqs),
                      attention_workspace_floats(splits, std::min(T, options_.max_num_seqs),
                                                 c.num_heads, c.head_dim));
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  size_t free_bytes = 0, total_bytes = 0;
  LOOM_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const size_t block_bytes = static_cast<size_t>(cache_shape_.block_bytes());  // scales included
  const double allowed = options_.gpu_memory_utilization * static_cast<double>(total_bytes) -
                         static_cast<double>(total_bytes - free_bytes);
  size_t kv_bytes = allowed > 0 ? static_cast<size_t>(allowed) : 0;
  if (options_.kv_cache_bytes > 0) kv_bytes = std::min(options_.kv_cache_bytes, free_bytes);
  const int64_t blocks = static_cast<int64_t>(kv_bytes / block_bytes);
  if (blocks < 1)
    return make_error(
        "no GPU memory left for the KV cache (%zu bytes free of %zu, utilization %.2f)", free_bytes,
        total_bytes, options_.gpu_memory_utilization);
  num_device_blocks_ = static_cast<int32_t>(std::min<int64_t>(blocks, int64_t{1} << 30));
  kv_cache_ = alloc<uint8_t>(int64_t{num_device_blocks_} * cache_shape_.block_bytes());
  const int64_t host_blocks = static_cast<int64_t>(options_.swap_space_bytes / block_bytes);
  swap_ = std::make_unique<KvSwapPool>(
      block_bytes, static_cast<int32_t>(std::min<int64_t>(host_blocks, int64_t{1} << 30)));
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  // The last block is kept from the scheduler: graphed decode steps pad their batch with rows
  // that write their K/V there.
  if (num_device_blocks_ < 2)
    return make_error("KV cache too small: %d blocks", num_device_blocks_);
  padding_block_ = --num_device_blocks_;
  choose_persistent_ring();
  max_graph_batch_ = std::min(options_.max_num_seqs, 256);
  max_graph_stride_ = graph_stride_bucket(
      static_cast<int32_t>(ceil_div(std::max<int64_t>(c.max_context, 1), options_.block_size)));
  LOOM_LOG_INFO(
      "cuda backend: %d SMs, KV cache %d blocks of %d tokens (%.2f GiB, %s, %zu bytes a block), "
      "swap %d blocks",
      num_sms_, num_device_blocks_, options_.block_size,
      static_cast<double>(num_device_blocks_) * block_bytes / (1 << 30),
      kv_cache_dtype_name(cache_shape_.dtype), block_bytes, swap_->num_host_blocks());
  return ok_status();
}

void CudaBackend::reserve_activations(int32_t T, int32_t R, int64_t workspace_floats) {
  const ModelConfig& c = config_;
  const int64_t H = c.hidden_size, F = c.intermediate_size;
  ensure(x_, T * H);
  ensure(delta_, T * H);
  ensure(h_, T * H);
  ensure(qkv_, T * (c.q_dim() + 2 * c.kv_dim()));
  ensure(q_, int64_t{T} * c.q_dim());
  ensure(attn_out_, int64_t{T} * c.q_dim());
  ensure(gate_up_, T * 2 * F);
  ensure(act_, T * F);
  ensure(rows_h_, R * H);
  ensure(logits_, int64_t{R} * c.vocab_size);
  ensure(ids_, R);
  ensure(attn_ws_, workspace_floats);
}

KvPoolInfo CudaBackend::kv_pool() const {
  KvPoolInfo info;
  info.block_size = cache_shape_.block_size;
  info.num_device_blocks = num_device_blocks_;
  info.num_host_blocks = swap_->num_host_blocks();
  info.bytes_per_block = static_cast<size_t>(cache_shape_.block_bytes());  // scales included
  info.dtype = kv_cache_dtype_name(cache_shape_.dtype);
  return info;
}

bool CudaBackend::graphable(const ForwardBatch& b) const {
  // Pure decode: one new token per sequence, every one sampled, in order.
  const int32_t T = b.num_tokens();
  if (!options_.cuda_graphs || T == 0 || T != b.num_seqs() || T > max_graph_batch_ ||
      static_cast<int32_t>(b.logits_rows.size()) != T)
    return false;
  for (int32_t i = 0; i < T; ++i)
    if (b.logits_rows[i] != i) return false;
  return graph_stride_bucket(b.max_blocks_per_seq) <= max_graph_stride_;
}

void CudaBackend::run_layers(const ForwardBatch& b) {
  check_forward_batch(b, cache_shape_.block_size, num_device_blocks_, config_.vocab_size);
  if (!b.pending_tokens.empty()) {
    // Their ids are in the sampler's device buffer only for device-sampled rows of the launch
    // just before this one.
    LOOM_CHECK(sampler_ != nullptr && last_step_sampled_,
               "%zu pending tokens, but the previous step was not a launch_sample",
               b.pending_tokens.size());
    for (const PendingToken& p : b.pending_tokens)
      LOOM_CHECK(sampler_->last_row_on_device(p.prev_row),
                 "pending token %d: row %d of the previous step (%d rows) has no token on the "
                 "device (out of range, or a logprobs row sampled on the host)",
                 p.index, p.prev_row, sampler_->last_rows());
  }
  if (!graphable(b)) {
    const StepInputs in = stage_inputs(b, 0, b.max_blocks_per_seq);
    argmax_in_kernel_ = persistent_logits(in);
    reserve_activations(
        in.T, in.R,
        attention_workspace_floats(in.splits, in.T, config_.num_heads, config_.head_dim));
    launch_layers(in);
    return;
  }
  const int32_t B = graph_batch_bucket(b.num_tokens());
  const StepInputs in = stage_inputs(b, B, graph_stride_bucket(b.max_blocks_per_seq));
  argmax_in_kernel_ = persistent_logits(in);
  reserve_activations(
      in.T, in.R, attention_workspace_floats(in.splits, in.T, config_.num_heads, config_.head_dim));
  // The graph bakes in where the token is read (the upload, or the previous kernel's argmax).
  const uint64_t key = (static_cast<uint64_t>(B) << 33) |
                       (static_cast<uint64_t>(in.token_from_argmax) << 32) |
                       static_cast<uint32_t>(in.stride);
  graphs_.launch(key, buffers_generation_, stream_, [&] { launch_layers(in); });
}

void CudaBackend::launch_layers(const StepInputs& in) {
  const ModelConfig& c = config_;
  const int32_t T = in.T, R = in.R;
  const int32_t H = c.hidden_size, F = c.intermediate_size, QD = c.q_dim(), KVD = c.kv_dim();

  if (persistent_step(in)) {
    const bool fused_logits = persistent_logits(in);
    // Block table row 0: the only sequence.
    launch_persistent_decode(
        persistent_args(in.tokens, in.positions, in.slots, in.tables, fused_logits),
        persistent_plan_, stream_);
    if (R > 0 && !fused_logits) launch_output_layer(in, nullptr);
    return;
  }
  launch_embed(token_embd_, in.tokens, T, H, x_.ptr, stream_);
  AttentionArgs attn;
  attn.q = q_.ptr;
  attn.kv_cache = kv_cache_;
  attn.seq_of_token = in.seq_of_token;
  attn.positions = in.positions;
  attn.block_tables = in.tables;
  attn.max_blocks_per_seq = in.stride;
  attn.num_tokens = T;
  attn.num_heads = c.num_heads;
  attn.cache = cache_shape_;
  attn.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  attn.num_splits = in.splits;
  attn.keys_per_split = in.keys_per_split;
  attn.partial_out = attn_ws_.ptr;
  attn.partial_max_sum = attn_ws_.ptr + int64_t{in.splits} * T * c.num_heads * c.head_dim;
  attn.out = attn_out_.ptr;
  attn.skip_token = in.skip;
  RopeKvArgs rope;
  rope.qkv = qkv_.ptr;
  rope.positions = in.positions;
  rope.slot_mapping = in.slots;
  rope.inv_freq = inv_freq_;
  rope.num_tokens = T;
  rope.num_heads = c.num_heads;
  rope.neox = c.rope_style == RopeStyle::kNeox;
  rope.cache = cache_shape_;
  rope.q_out = q_.ptr;
  rope.kv_cache = kv_cache_;

  // A handful of tokens (decode at small batch): the fused layer, whose products also apply RoPE
  // + the KV write (bf16 cache) and the residual adds, and with the MLP fused the SwiGLU and the
  // norms (fuse_norm).
  if (options_.fused_small_batch && gemv_supports(T, H, GemvIn::kBf16)) {
    using FuseNorm = CudaBackendOptions::FuseNorm;
    using Mlp = CudaBackendOptions::SmallBatchMlp;
    const bool gate_up_cublas = options_.small_batch_mlp != Mlp::kFused;
    // kAuto: down on the small-batch kernel for one row of a narrow model (see the options).
    const bool down_gemv = options_.small_batch_mlp == Mlp::kGemvDown ||
                           (options_.small_batch_mlp == Mlp::kAuto && T == 1 && H <= 2048);
    const bool down_cublas = gate_up_cublas && !down_gemv;
    // A norm is fused into the product that reads it (each CTA normalises x itself) when x is
    // complete: with down on cuBLAS its output waits in delta_ for the next QKV's norm, which
    // then has to be the separate add + norm kernel; gate_up on cuBLAS needs the norm's output.
    const bool fuse_norm = gemv_supports(T, H, GemvIn::kRmsNorm) &&
                           (options_.fuse_norm == FuseNorm::kOn ||
                            (options_.fuse_norm == FuseNorm::kAuto && H <= 2048));
    const bool fuse_qkv_norm = fuse_norm && !down_cublas;
    const bool fuse_mlp_norm = fuse_norm && !gate_up_cublas;
    GemvArgs qkv, o, gate_up, down;
    qkv.rows = o.rows = gate_up.rows = down.rows = T;
    qkv.input = fuse_qkv_norm ? GemvIn::kRmsNorm : GemvIn::kBf16;
    gate_up.input = fuse_mlp_norm ? GemvIn::kRmsNorm : GemvIn::kBf16;
    qkv.x_f32 = gate_up.x_f32 = x_.ptr;
    qkv.x = gate_up.x = h_.ptr;  // the separate norm's output
    qkv.eps = gate_up.eps = c.rms_norm_eps;
    qkv.in = gate_up.in = o.out = down.out = H;
    // bf16 cache: the QKV product also rotates and writes K/V (a quantized row needs its whole
    // row's absmax first, so those caches keep the separate RoPE + KV-write kernel).
    const bool fuse_rope = cache_shape_.dtype == KvCacheDtype::kBf16;
    qkv.out = fuse_rope ? (QD + 2 * KVD) / 2 : QD + 2 * KVD;
    qkv.output = fuse_rope ? GemvOut::kRopeKv : GemvOut::kStoreF32;
    qkv.y = qkv_.ptr;
    qkv.rope = rope;
    o.in = QD;
    o.x = attn_out_.ptr;
    o.output = down.output = GemvOut::kAddF32;  // the residual stream x += W a
    o.y = down.y = x_.ptr;
    gate_up.out = down.in = F;
    gate_up.output = GemvOut::kSwiGlu;
    gate_up.y = act_.ptr;
    down.x = act_.ptr;
    for (int32_t l = 0; l < c.num_layers; ++l) {
      const LayerWeights& w = layers_[l];
      qkv.w = w.w_qkv;
      qkv.norm_w = w.attn_norm;
      qkv.rope.bias = rope.bias = w.qkv_bias;
      qkv.rope.layer = rope.layer = l;
      if (!fuse_qkv_norm)
        launch_add_rmsnorm(x_.ptr, down_cublas && l > 0 ? delta_.ptr : nullptr, nullptr,
                           w.attn_norm, T, H, c.rms_norm_eps, h_.ptr, stream_);
      launch_gemv(qkv, stream_);
      if (!fuse_rope) launch_rope_kv_write(rope, stream_);
      attn.layer = l;
      if (in.num_tiles > 0) launch_paged_prefill_attention(attn, in.tiles, in.num_tiles, stream_);
      launch_paged_attention(attn, stream_);
      o.w = w.w_o;
      launch_gemv(o, stream_);
      gate_up.w = w.w_gate_up;
      gate_up.norm_w = w.ffn_norm;
      if (!fuse_mlp_norm)
        launch_add_rmsnorm(x_.ptr, nullptr, nullptr, w.ffn_norm, T, H, c.rms_norm_eps, h_.ptr,
                           stream_);
      if (gate_up_cublas) {
        gemm_->run_cublas(h_.ptr, T, H, w.w_gate_up, 2 * F, gate_up_.ptr, false, stream_);
        launch_swiglu(gate_up_.ptr, T, F, act_.ptr, stream_);
      } else {
        launch_gemv(gate_up, stream_);
      }
      if (down_cublas) {
        gemm_->run_cublas(act_.ptr, T, F, w.w_down, H, delta_.ptr, true, stream_);
      } else {
        down.w = w.w_down;
        launch_gemv(down, stream_);
      }
    }
    if (R > 0) launch_output_layer(in, down_cublas ? delta_.ptr : nullptr);
    return;
  }

  for (int32_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = layers_[l];
    launch_add_rmsnorm(x_.ptr, l == 0 ? nullptr : delta_.ptr, nullptr, w.attn_norm, T, H,
                       c.rms_norm_eps, h_.ptr, stream_);
    gemm_->run(h_.ptr, T, H, w.w_qkv, QD + 2 * KVD, qkv_.ptr, true, stream_);
    rope.bias = w.qkv_bias;
    rope.layer = l;
    launch_rope_kv_write(rope, stream_);
    attn.layer = l;
    if (in.num_tiles > 0) {
      // Disjoint rows of attn.out: the per-token kernel skips the tiles' tokens (all of them
      // when every sequence is a long prefill chunk; its CTAs then exit at once).
      launch_paged_prefill_attention(attn, in.tiles, in.num_tiles, stream_);
    }
    launch_paged_attention(attn, stream_);
    gemm_->run(attn_out_.ptr, T, QD, w.w_o, H, delta_.ptr, true, stream_);
    launch_add_rmsnorm(x_.ptr, delta_.ptr, nullptr, w.ffn_norm, T, H, c.rms_norm_eps, h_.ptr,
                       stream_);
    gemm_->run(h_.ptr, T, H, w.w_gate_up, 2 * F, gate_up_.ptr, false, stream_);
    launch_swiglu(gate_up_.ptr, T, F, act_.ptr, stream_);
    gemm_->run(act_.ptr, T, F, w.w_down, H, delta_.ptr, true, stream_);
  }
  // The last residual add only for the rows whose logits are wanted.
  if (R > 0) launch_output_layer(in, delta_.ptr);
}

void CudaBackend::launch_output_layer(const StepInputs& in, const float* delta) {
  const ModelConfig& c = config_;
  const int32_t R = in.R, H = c.hidden_size;
  launch_add_rmsnorm(x_.ptr, delta, in.rows, output_norm_, R, H, c.rms_norm_eps, rows_h_.ptr,
                     stream_);
  gemm_->run(rows_h_.ptr, R, H, lm_head_, c.vocab_size, logits_.ptr, true, stream_);
}

void CudaBackend::forward(const ForwardBatch& batch, float* logits) {
  LOOM_CHECK(batch.pending_tokens.empty(), "forward: pending tokens are for launch_sample only");
  last_step_sampled_ = false;
  run_layers(batch);
  const size_t n = batch.logits_rows.size() * static_cast<size_t>(config_.vocab_size);
  if (n > 0)
    LOOM_CUDA_CHECK(cudaMemcpyAsync(logits, logits_.ptr, n * 4, cudaMemcpyDeviceToHost, stream_));
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

bool CudaBackend::forward_sample(const ForwardBatch& batch, std::span<const SampleInput> rows,
                                 std::span<SampleOutput> out) {
  LOOM_CHECK(out.size() == rows.size(), "forward_sample: %zu rows, %zu outputs", rows.size(),
             out.size());
  LOOM_CHECK(!sampler_ || sampler_->in_flight() == 0,
             "forward_sample with %d launched steps unfinished", sampler_->in_flight());
  launch_sample(batch, rows);
  finish_sample(out);
  return true;
}

bool CudaBackend::launch_sample(const ForwardBatch& batch, std::span<const SampleInput> rows) {
  LOOM_CHECK(rows.size() == batch.logits_rows.size(), "launch_sample: %zu rows, %zu logits rows",
             rows.size(), batch.logits_rows.size());
  const int32_t R = static_cast<int32_t>(rows.size());
  if (!sampler_ || sampler_->max_rows() < R) {
    // A new sampler holds no ids of the previous step, and the launches in flight on the old one
    // could not be finished.
    LOOM_CHECK(batch.pending_tokens.empty(),
               "launch_sample: %zu pending tokens, but the sampler %s", batch.pending_tokens.size(),
               sampler_ ? "must be re-created for more rows" : "does not exist yet");
    LOOM_CHECK(!sampler_ || sampler_->in_flight() == 0,
               "launch_sample: the sampler must grow to %d rows with %d steps in flight", R,
               sampler_->in_flight());
    sampler_ = std::make_unique<DeviceSampler>(config_.vocab_size,
                                               std::max({R, options_.max_num_seqs, 1}));
  }
  LOOM_CHECK(sampler_->in_flight() < 2, "launch_sample: two steps in flight already");
  run_layers(batch);
  sampler_->launch(logits_.ptr, rows, stream_, argmax_in_kernel_ ? persistent_argmax_ : nullptr);
  last_step_sampled_ = true;
  return true;
}

void CudaBackend::finish_sample(std::span<SampleOutput> out) {
  LOOM_CHECK(sampler_ != nullptr && sampler_->in_flight() > 0, "finish_sample: no step in flight");
  sampler_->finish(out);
}

void CudaBackend::forward_greedy(const ForwardBatch& batch, int32_t* token_ids) {
  LOOM_CHECK(batch.pending_tokens.empty(),
             "forward_greedy: pending tokens are for launch_sample only");
  last_step_sampled_ = false;
  run_layers(batch);
  const int32_t R = static_cast<int32_t>(batch.logits_rows.size());
  const int32_t* ids = argmax_in_kernel_ ? persistent_argmax_ : ids_.ptr;
  if (!argmax_in_kernel_) launch_argmax(logits_.ptr, R, config_.vocab_size, ids_.ptr, stream_);
  if (R > greedy_ids_capacity_) {
    if (greedy_ids_host_) LOOM_CUDA_CHECK(cudaFreeHost(greedy_ids_host_));
    greedy_ids_host_ = nullptr;
    greedy_ids_capacity_ = std::max(R, options_.max_num_seqs);
    LOOM_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&greedy_ids_host_),
                                  static_cast<size_t>(greedy_ids_capacity_) * 4,
                                  cudaHostAllocDefault));
  }
  if (R > 0)
    LOOM_CUDA_CHECK(cudaMemcpyAsync(greedy_ids_host_, ids, R * 4, cudaMemcpyDeviceToHost, stream_));
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::copy(greedy_ids_host_, greedy_ids_host_ + R, token_ids);
}

void CudaBackend::swap_out(std::span<const BlockCopy> copies) {
  swap_->swap_out(copies, kv_cache_, num_device_blocks_, stream_);
}

void CudaBackend::swap_in(std::span<const BlockCopy> copies) {
  swap_->swap_in(copies, kv_cache_, num_device_blocks_, stream_);
}

void CudaBackend::copy_blocks(std::span<const BlockCopy> copies) {
  const size_t block_bytes = static_cast<size_t>(cache_shape_.block_bytes());  // scales included
  for (const BlockCopy& c : copies) {
    LOOM_CHECK(c.src >= 0 && c.src < num_device_blocks_ && c.dst >= 0 &&
               c.dst < num_device_blocks_);
    LOOM_CUDA_CHECK(cudaMemcpyAsync(kv_cache_ + c.dst * block_bytes,
                                    kv_cache_ + c.src * block_bytes, block_bytes,
                                    cudaMemcpyDeviceToDevice, stream_));
  }
}

}  // namespace loom::cuda

namespace loom {

bool cuda_device_available() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  return n > 0;
}

Result<std::unique_ptr<Backend>> create_cuda_backend(std::shared_ptr<const ModelFile> model,
                                                     const CudaBackendOptions& options) {
  const ModelConfig config = model->config();
  auto b = cuda::CudaBackend::create(config, std::move(model), options);
  if (!b.ok()) return Error{b.error()};
  return std::unique_ptr<Backend>(std::move(b).value());
}

Result<std::unique_ptr<Backend>> create_cuda_backend_dummy(const ModelConfig& config,
                                                           const CudaBackendOptions& options) {
  auto b = cuda::CudaBackend::create(config, nullptr, options);
  if (!b.ok()) return Error{b.error()};
  return std::unique_ptr<Backend>(std::move(b).value());
}

}  // namespace loom
