#include <algorithm>
#include <cstring>

#include "backend/cuda/device_sampler.cuh"
#include "backend/cuda/sampling.cuh"

namespace loom::cuda {
namespace {

constexpr size_t kAlign = 16;

size_t align_up(size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

// Byte offsets of the staging sections for one call.
struct StageLayout {
  size_t params = 0, argmax_rows = 0, device_rows = 0, entries = 0, total = 0;
};

StageLayout layout_of(const SamplePacker& p) {
  StageLayout l;
  size_t at = 0;
  auto place = [&at](size_t bytes) {
    const size_t here = at;
    at = align_up(at + bytes);
    return here;
  };
  l.params = place(p.params.size() * sizeof(DeviceSampleParams));
  l.argmax_rows = place(p.argmax_rows.size() * sizeof(int32_t));
  l.device_rows = place(p.device_rows.size() * sizeof(int32_t));
  l.entries = place(p.entries.size() * sizeof(PenaltyEntry));
  l.total = at;
  return l;
}

template <class T>
void copy_section(uint8_t* base, size_t offset, const std::vector<T>& v) {
  if (!v.empty()) std::memcpy(base + offset, v.data(), v.size() * sizeof(T));
}

}  // namespace

DeviceSampler::DeviceSampler(int32_t vocab_size, int32_t max_rows)
    : vocab_(vocab_size), max_rows_(max_rows), packer_(vocab_size) {
  LOOM_CHECK(vocab_size > 0 && max_rows > 0, "DeviceSampler: vocab %d, max_rows %d", vocab_size,
             max_rows);
  prepare_sample_kernels();
  const size_t n = static_cast<size_t>(max_rows);
  LOOM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ids_dev_), n * sizeof(int32_t)));
  LOOM_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&ids_host_), n * sizeof(int32_t),
                                cudaHostAllocDefault));
  LOOM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&cuts_dev_), n * sizeof(SampleCut)));
  // Room for every row's parameters and row lists, plus 64 Ki penalty entries (1 MiB).
  ensure_stage(align_up(n * sizeof(DeviceSampleParams)) + 2 * align_up(n * sizeof(int32_t)) +
               (size_t{1} << 16) * sizeof(PenaltyEntry));
}

DeviceSampler::~DeviceSampler() {
  cudaFree(stage_dev_);
  cudaFreeHost(stage_host_);
  cudaFree(ids_dev_);
  cudaFreeHost(ids_host_);
  cudaFree(cuts_dev_);
  cudaFreeHost(rows_host_);
}

// Grows the staging buffers to at least `bytes` (doubling). Only between calls: the previous
// call synchronised, so no copy still reads the old buffers.
void DeviceSampler::ensure_stage(size_t bytes) {
  if (bytes <= stage_capacity_) return;
  const size_t capacity = std::max(bytes, 2 * stage_capacity_);
  if (stage_dev_ != nullptr) LOOM_CUDA_CHECK(cudaFree(stage_dev_));
  if (stage_host_ != nullptr) LOOM_CUDA_CHECK(cudaFreeHost(stage_host_));
  stage_dev_ = nullptr;
  stage_host_ = nullptr;
  LOOM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&stage_dev_), capacity));
  LOOM_CUDA_CHECK(
      cudaHostAlloc(reinterpret_cast<void**>(&stage_host_), capacity, cudaHostAllocDefault));
  stage_capacity_ = capacity;
}

void DeviceSampler::ensure_host_rows(size_t rows) {
  if (rows <= rows_capacity_) return;
  const size_t capacity = std::max(rows, 2 * rows_capacity_);
  if (rows_host_ != nullptr) LOOM_CUDA_CHECK(cudaFreeHost(rows_host_));
  rows_host_ = nullptr;
  LOOM_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&rows_host_),
                                capacity * static_cast<size_t>(vocab_) * sizeof(float),
                                cudaHostAllocDefault));
  rows_capacity_ = capacity;
}

void DeviceSampler::sample(float* logits, std::span<const SampleInput> rows,
                           std::span<SampleOutput> out, cudaStream_t stream) {
  LOOM_CHECK(rows.size() == out.size(), "DeviceSampler: %zu rows, %zu outputs", rows.size(),
             out.size());
  LOOM_CHECK(rows.size() <= static_cast<size_t>(max_rows_), "DeviceSampler: %zu rows > %d",
             rows.size(), max_rows_);
  if (rows.empty()) return;
  LOOM_CHECK(logits != nullptr, "DeviceSampler: no logits");
  const int32_t num_rows = static_cast<int32_t>(rows.size());
  const size_t row_bytes = static_cast<size_t>(vocab_) * sizeof(float);

  packer_.pack(rows);
  const StageLayout layout = layout_of(packer_);
  ensure_stage(layout.total);
  copy_section(stage_host_, layout.params, packer_.params);
  copy_section(stage_host_, layout.argmax_rows, packer_.argmax_rows);
  copy_section(stage_host_, layout.device_rows, packer_.device_rows);
  copy_section(stage_host_, layout.entries, packer_.entries);
  LOOM_CUDA_CHECK(
      cudaMemcpyAsync(stage_dev_, stage_host_, layout.total, cudaMemcpyHostToDevice, stream));

  // Logprobs rows: raw copies (the kernels never touch these rows).
  const std::vector<int32_t>& host_rows = packer_.host_rows;
  ensure_host_rows(host_rows.size());
  for (size_t k = 0; k < host_rows.size(); ++k) {
    LOOM_CUDA_CHECK(cudaMemcpyAsync(rows_host_ + k * vocab_,
                                    logits + static_cast<size_t>(host_rows[k]) * vocab_, row_bytes,
                                    cudaMemcpyDeviceToHost, stream));
  }

  if (debug_) {
    LOOM_CUDA_CHECK(cudaMemsetAsync(ids_dev_, 0xFF, num_rows * sizeof(int32_t), stream));
    LOOM_CUDA_CHECK(cudaMemsetAsync(cuts_dev_, 0xFF, num_rows * sizeof(SampleCut), stream));
  }
  SampleLaunch launch;
  launch.logits = logits;
  launch.vocab = vocab_;
  launch.params = reinterpret_cast<const DeviceSampleParams*>(stage_dev_ + layout.params);
  launch.entries = reinterpret_cast<PenaltyEntry*>(stage_dev_ + layout.entries);
  launch.argmax_rows = reinterpret_cast<const int32_t*>(stage_dev_ + layout.argmax_rows);
  launch.num_argmax = static_cast<int32_t>(packer_.argmax_rows.size());
  launch.device_rows = reinterpret_cast<const int32_t*>(stage_dev_ + layout.device_rows);
  launch.num_device = static_cast<int32_t>(packer_.device_rows.size());
  launch.ids = ids_dev_;
  launch.cuts = debug_ ? cuts_dev_ : nullptr;
  launch_sample(launch, stream);
  const bool on_device = launch.num_argmax + launch.num_device > 0;
  if (on_device) {
    LOOM_CUDA_CHECK(cudaMemcpyAsync(ids_host_, ids_dev_, num_rows * sizeof(int32_t),
                                    cudaMemcpyDeviceToHost, stream));
  }
  if (debug_) {
    cuts_.assign(rows.size(), SampleCut{});
    LOOM_CUDA_CHECK(cudaMemcpyAsync(cuts_.data(), cuts_dev_, num_rows * sizeof(SampleCut),
                                    cudaMemcpyDeviceToHost, stream));
  }
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));

  for (size_t i = 0; i < rows.size(); ++i) {
    if (packer_.params[i].kind == kRowOnHost) continue;
    const int32_t id = ids_host_[i];
    // In debug mode a missed row (poisoned: -1) reaches the caller, whose checks report it.
    if (!debug_) LOOM_CHECK(id >= 0 && id < vocab_, "DeviceSampler: row %zu got token %d", i, id);
    out[i].token = id;
    out[i].logprobs = TokenLogprobs{};
  }
  for (size_t k = 0; k < host_rows.size(); ++k) {
    SampleInput in = rows[host_rows[k]];
    in.logits = rows_host_ + k * vocab_;
    out[host_rows[k]] = sample_token(in, scratch_);
  }
}

}  // namespace loom::cuda
