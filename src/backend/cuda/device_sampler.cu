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
  last_ids_ = ids_dev_;
  LOOM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&cuts_dev_), n * sizeof(SampleCut)));
  for (Slot& slot : slots_) {
    LOOM_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&slot.ids_host), n * sizeof(int32_t),
                                  cudaHostAllocDefault));
    LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
  }
  // Room for every row's parameters and row lists, plus 64 Ki penalty entries (1 MiB).
  ensure_stage(align_up(n * sizeof(DeviceSampleParams)) + 2 * align_up(n * sizeof(int32_t)) +
                   (size_t{1} << 16) * sizeof(PenaltyEntry),
               nullptr);
}

DeviceSampler::~DeviceSampler() {
  // Launches still in flight have copies queued into the pinned buffers freed below.
  for (Slot& slot : slots_)
    if (slot.done != nullptr) cudaEventSynchronize(slot.done);
  cudaFree(stage_dev_);
  cudaFree(ids_dev_);
  cudaFree(cuts_dev_);
  for (Slot& slot : slots_) {
    cudaFreeHost(slot.stage_host);
    cudaFreeHost(slot.ids_host);
    cudaFreeHost(slot.rows_host);
    if (slot.done != nullptr) cudaEventDestroy(slot.done);
  }
}

// Grows the staging buffers (the device one and both slots' pinned ones) to at least `bytes`
// (doubling). The launch in flight, if any, may still be uploading from its slot or reading
// stage_dev_ in its kernels, so the stream is synchronised first (it has all the work of the
// launches in flight); its ids and logprobs rows live in other buffers, which are kept.
void DeviceSampler::ensure_stage(size_t bytes, cudaStream_t stream) {
  if (bytes <= stage_capacity_) return;
  if (stage_dev_ != nullptr) LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  const size_t capacity = std::max(bytes, 2 * stage_capacity_);
  if (stage_dev_ != nullptr) LOOM_CUDA_CHECK(cudaFree(stage_dev_));
  stage_dev_ = nullptr;
  LOOM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&stage_dev_), capacity));
  for (Slot& slot : slots_) {
    if (slot.stage_host != nullptr) LOOM_CUDA_CHECK(cudaFreeHost(slot.stage_host));
    slot.stage_host = nullptr;
    LOOM_CUDA_CHECK(
        cudaHostAlloc(reinterpret_cast<void**>(&slot.stage_host), capacity, cudaHostAllocDefault));
  }
  stage_capacity_ = capacity;
}

// Grows one slot's logprobs rows. Only in that slot's launch: its previous launch has been
// finished, after its event, so no copy still writes the old buffer.
void DeviceSampler::ensure_host_rows(Slot& slot, size_t rows) {
  if (rows <= slot.rows_capacity) return;
  const size_t capacity = std::max(rows, 2 * slot.rows_capacity);
  if (slot.rows_host != nullptr) LOOM_CUDA_CHECK(cudaFreeHost(slot.rows_host));
  slot.rows_host = nullptr;
  LOOM_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&slot.rows_host),
                                capacity * static_cast<size_t>(vocab_) * sizeof(float),
                                cudaHostAllocDefault));
  slot.rows_capacity = capacity;
}

int32_t DeviceSampler::last_rows() const {
  return launches_ == 0 ? 0 : slots_[(launches_ - 1) % 2].num_rows;
}

bool DeviceSampler::last_row_on_device(int32_t r) const {
  if (r < 0 || r >= last_rows()) return false;
  return slots_[(launches_ - 1) % 2].kinds[r] != kRowOnHost;
}

void DeviceSampler::sample(float* logits, std::span<const SampleInput> rows,
                           std::span<SampleOutput> out, cudaStream_t stream) {
  LOOM_CHECK(in_flight() == 0, "DeviceSampler: sample() with %d launches unfinished", in_flight());
  LOOM_CHECK(rows.size() == out.size(), "DeviceSampler: %zu rows, %zu outputs", rows.size(),
             out.size());
  launch(logits, rows, stream);
  finish(out);
}

void DeviceSampler::launch(float* logits, std::span<const SampleInput> rows, cudaStream_t stream,
                           const int32_t* argmax_ready) {
  LOOM_CHECK(in_flight() < 2, "DeviceSampler: a third launch in flight");
  LOOM_CHECK(in_flight() == 0 || stream == stream_,
             "DeviceSampler: launches in flight on different streams");
  LOOM_CHECK(rows.size() <= static_cast<size_t>(max_rows_), "DeviceSampler: %zu rows > %d",
             rows.size(), max_rows_);
  // Slot launches_ % 2 was last used by launch launches_ - 2, finished (in_flight() < 2).
  Slot& slot = slots_[launches_ % 2];
  ++launches_;
  stream_ = stream;
  slot.num_rows = static_cast<int32_t>(rows.size());
  slot.debug = debug_;
  slot.kinds.clear();
  slot.host_rows.clear();
  slot.host_inputs.clear();
  last_ids_ = ids_dev_;
  if (rows.empty()) return;  // finish has nothing to wait for
  LOOM_CHECK(logits != nullptr, "DeviceSampler: no logits");
  const int32_t num_rows = slot.num_rows;
  const size_t row_bytes = static_cast<size_t>(vocab_) * sizeof(float);

  packer_.pack(rows);
  if (argmax_ready != nullptr && num_rows == 1 && packer_.params[0].kind == kRowArgmax && !debug_) {
    // The one greedy row's token is already computed: only its download.
    slot.kinds.assign(1, kRowArgmax);
    last_ids_ = argmax_ready;
    LOOM_CUDA_CHECK(cudaMemcpyAsync(slot.ids_host, argmax_ready, sizeof(int32_t),
                                    cudaMemcpyDeviceToHost, stream));
    LOOM_CUDA_CHECK(cudaEventRecord(slot.done, stream));
    return;
  }
  const StageLayout layout = layout_of(packer_);
  ensure_stage(layout.total, stream);
  copy_section(slot.stage_host, layout.params, packer_.params);
  copy_section(slot.stage_host, layout.argmax_rows, packer_.argmax_rows);
  copy_section(slot.stage_host, layout.device_rows, packer_.device_rows);
  copy_section(slot.stage_host, layout.entries, packer_.entries);
  LOOM_CUDA_CHECK(
      cudaMemcpyAsync(stage_dev_, slot.stage_host, layout.total, cudaMemcpyHostToDevice, stream));
  slot.kinds.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) slot.kinds[i] = packer_.params[i].kind;

  // Logprobs rows: raw copies (the kernels never touch these rows), sampled by finish from the
  // inputs copied here.
  slot.host_rows = packer_.host_rows;
  ensure_host_rows(slot, slot.host_rows.size());
  for (size_t k = 0; k < slot.host_rows.size(); ++k) {
    slot.host_inputs.push_back(rows[slot.host_rows[k]]);
    LOOM_CUDA_CHECK(cudaMemcpyAsync(slot.rows_host + k * vocab_,
                                    logits + static_cast<size_t>(slot.host_rows[k]) * vocab_,
                                    row_bytes, cudaMemcpyDeviceToHost, stream));
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
    LOOM_CUDA_CHECK(cudaMemcpyAsync(slot.ids_host, ids_dev_, num_rows * sizeof(int32_t),
                                    cudaMemcpyDeviceToHost, stream));
  }
  // After the upload and every download of this launch: finish waits for this alone, and once
  // it has, the slot's pinned buffers are free for launch n + 2.
  LOOM_CUDA_CHECK(cudaEventRecord(slot.done, stream));
  if (debug_) {
    cuts_.assign(rows.size(), SampleCut{});
    LOOM_CUDA_CHECK(cudaMemcpyAsync(cuts_.data(), cuts_dev_, num_rows * sizeof(SampleCut),
                                    cudaMemcpyDeviceToHost, stream));
    LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
}

void DeviceSampler::finish(std::span<SampleOutput> out) {
  LOOM_CHECK(in_flight() > 0, "DeviceSampler: finish with no launch in flight");
  Slot& slot = slots_[finishes_ % 2];
  ++finishes_;
  LOOM_CHECK(out.size() == static_cast<size_t>(slot.num_rows),
             "DeviceSampler: %zu outputs for a launch of %d rows", out.size(), slot.num_rows);
  if (slot.num_rows == 0) return;
  LOOM_CUDA_CHECK(cudaEventSynchronize(slot.done));

  for (size_t i = 0; i < out.size(); ++i) {
    if (slot.kinds[i] == kRowOnHost) continue;
    const int32_t id = slot.ids_host[i];
    // In debug mode a missed row (poisoned: -1) reaches the caller, whose checks report it.
    if (!slot.debug)
      LOOM_CHECK(id >= 0 && id < vocab_, "DeviceSampler: row %zu got token %d", i, id);
    out[i].token = id;
    out[i].logprobs = TokenLogprobs{};
  }
  for (size_t k = 0; k < slot.host_rows.size(); ++k) {
    SampleInput in = slot.host_inputs[k];
    in.logits = slot.rows_host + k * vocab_;
    out[slot.host_rows[k]] = sample_token(in, scratch_);
  }
}

}  // namespace loom::cuda
