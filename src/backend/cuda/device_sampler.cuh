// Sampling of a step's logits rows on the GPU (sampling.cuh), so that only token ids cross PCIe
// for ordinary requests. Same semantics as loom::sample_token (sample/sampler.h) for every row:
//   - greedy rows and penalized / min_tokens rows pick exactly sample_token's token;
//   - temperature-only draws (with min-p) walk the same id order with the same u, so they pick
//     its token except when u falls within float rounding of a boundary between two tokens;
//   - top-k / top-p rows keep the same set (up to rounding at the top-p boundary) and draw from
//     it with the same probabilities, walking it in id order (not sample_token's order), so
//     they agree in distribution rather than token for token;
//   - rows that ask for logprobs are sampled by sample_token itself on a host copy of the row.
//
// One step: pack the rows on the host (SamplePacker; only penalized rows walk their history),
// one upload of one pinned staging buffer, at most two kernel launches, one download of the ids
// (plus one row copy per logprobs row), one event; finish waits on that event, not the stream.
// A single greedy row whose argmax the step's kernel already made (launch's argmax_ready: the
// persistent decode kernel's) takes only the download and the event.
//
// Overlapped steps (Backend::supports_overlap()): launch and finish are split, and two launches
// may be in flight (launch N, launch N+1, finish N, launch N+2, ...; finish is FIFO). Everything
// the host reads or writes after launch returns is therefore kept per slot (slot = launch count
// % 2): the pinned staging and ids buffers, the logprobs rows' copies, the host rows' inputs and
// the event. Two slots suffice: launch N+2 comes after finish N, which waited for N's event,
// recorded after N's upload and downloads, so slot N % 2 is idle; N+1's may not be. The device
// buffers stay single: every launch in flight is on the same stream, which orders sampler N's
// kernels, the next step's use of device_ids(), and sampler N+1's kernels.
#pragma once

#include <span>
#include <vector>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/sample_pack.h"
#include "sample/sampler.h"

namespace loom::cuda {

class DeviceSampler {
 public:
  // Allocates the device and pinned buffers for max_rows rows (the staging grows on demand with
  // the penalty list, synchronising the stream once; the logprobs rows' copies grow per slot,
  // without). Call on the device that holds the logits.
  DeviceSampler(int32_t vocab_size, int32_t max_rows);
  ~DeviceSampler();
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;

  // logits: device pointer, [rows.size()][vocab] f32, ordered on `stream`; rows that are not
  // sampled on the host may be modified in place. rows[i] is the SampleInput of row i (its
  // .logits is ignored). Fills out[i].token for every row; rows whose params->logprobs >= 0 are
  // sampled on the host instead: their logits row is copied back and loom::sample_token runs on
  // it (which also fills out[i].logprobs); the other rows get empty logprobs. launch + finish:
  // nothing may be in flight; returns when the ids are on the host.
  void sample(float* logits, std::span<const SampleInput> rows, std::span<SampleOutput> out,
              cudaStream_t stream);

  // The first half of sample(): enqueues the upload, the kernels and the downloads on `stream`
  // and returns. At most one other launch may be in flight, on the same stream. The rows'
  // SampleInputs are copied (the device rows are packed now; the host rows' inputs are kept for
  // finish, so what their spans and params point at must stay valid until then); the logits are
  // read (and the logprobs rows copied) by work queued now, before anything queued after.
  // argmax_ready (optional): a device int32 that already holds row 0's greedy argmax when the
  // step's work queued before runs (the persistent decode kernel computes it with its logits):
  // a launch of that one argmax row then needs no upload and no kernel, only the id's download.
  void launch(float* logits, std::span<const SampleInput> rows, cudaStream_t stream,
              const int32_t* argmax_ready = nullptr);
  // The second half: waits for the oldest launch in flight (its event only) and writes its
  // tokens, out.size() == that launch's rows; host rows are sampled here.
  void finish(std::span<SampleOutput> out);
  int32_t in_flight() const { return static_cast<int32_t>(launches_ - finishes_); }

  // The ids of the last launch on the device, [its rows] int32, written by the work queued on
  // its stream, for the rows sampled on the device (last_row_on_device): the sampler's own
  // buffer, or the launch's argmax_ready. Read it before the next launch's work overwrites it
  // (stream order does that for work queued before the next launch).
  const int32_t* device_ids() const { return last_ids_; }
  // Rows of the last launch (0 before the first), and whether row r of it is sampled on the
  // device (so that device_ids()[r] holds its token); host rows are decided only by finish.
  int32_t last_rows() const;
  bool last_row_on_device(int32_t r) const;

  // Tests: when on, every launch first poisons the device ids (so a row the kernels miss fails)
  // and records how each row was sampled (cuts()[i], row i of the last launch); such a launch
  // synchronises its stream before returning.
  void set_debug(bool on) { debug_ = on; }
  const std::vector<SampleCut>& cuts() const { return cuts_; }

  int32_t vocab_size() const { return vocab_; }
  int32_t max_rows() const { return max_rows_; }

 private:
  // What one launch leaves for its finish, and the pinned buffers its queued copies use.
  struct Slot {
    uint8_t* stage_host = nullptr;  // pinned [stage_capacity_]: this launch's upload
    int32_t* ids_host = nullptr;    // pinned [max_rows]: the downloaded ids
    float* rows_host = nullptr;     // pinned [rows_capacity][vocab]: logprobs rows
    size_t rows_capacity = 0;
    cudaEvent_t done = nullptr;  // recorded after the launch's downloads
    int32_t num_rows = 0;
    bool debug = false;
    std::vector<int32_t> kinds;            // [num_rows] SampleRowKind
    std::vector<int32_t> host_rows;        // row indices sampled on the host, ascending
    std::vector<SampleInput> host_inputs;  // [host_rows] copies, read by finish
  };

  void ensure_stage(size_t bytes, cudaStream_t stream);
  void ensure_host_rows(Slot& slot, size_t rows);

  int32_t vocab_;
  int32_t max_rows_;
  SamplePacker packer_;
  SamplerScratch scratch_;  // logprobs rows, on the host

  // Staging: params, argmax rows, device rows, entries (16-byte aligned sections); the host side
  // per slot, the device side single (stream-ordered).
  uint8_t* stage_dev_ = nullptr;
  size_t stage_capacity_ = 0;          // bytes of stage_dev_ and of each slot's stage_host
  int32_t* ids_dev_ = nullptr;         // [max_rows]
  const int32_t* last_ids_ = nullptr;  // device_ids(): ids_dev_ or the last launch's argmax_ready
  SampleCut* cuts_dev_ = nullptr;      // [max_rows]
  Slot slots_[2];
  uint64_t launches_ = 0, finishes_ = 0;  // slot of launch n: n % 2
  cudaStream_t stream_ = nullptr;         // of the launches in flight

  bool debug_ = false;
  std::vector<SampleCut> cuts_;
};

}  // namespace loom::cuda
