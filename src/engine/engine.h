// The engine: one thread runs schedule -> execute -> update every iteration. Any thread may
// submit and abort; each request's deltas arrive on its own RequestStream.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/request.h"
#include "engine/engine_metrics.h"
#include "engine/request_stream.h"
#include "model/model_config.h"
#include "sched/scheduler_config.h"
#include "tokenizer/tokenizer.h"

namespace loom {

struct EngineConfig {
  SchedulerConfig scheduler;  // num_device_blocks / num_host_blocks are filled from the backend
  // Plan and launch step N+1 while the device runs step N (backends that support it, and only
  // while no live request uses penalties or logprobs): the CPU's scheduling, batch building,
  // detokenization and streaming leave the critical path. A sequence that stops at step N
  // (EOS, a stop string) has computed one more token in step N+1, which is dropped.
  bool overlap_steps = true;
};

enum class SubmitErrorCode {
  kNone,
  kInvalid,      // bad parameters (HTTP 400)
  kTooLong,      // can never fit: longer than the context or the whole KV pool (HTTP 400)
  kQueueFull,    // waiting queue at its request or token bound (HTTP 429, retry later)
  kShuttingDown  // not accepting work (HTTP 503)
};

struct SubmitResult {
  std::shared_ptr<RequestStream> stream;  // set on success
  SubmitErrorCode code = SubmitErrorCode::kNone;
  std::string error;  // a sentence naming the problem
  bool ok() const { return code == SubmitErrorCode::kNone; }
};

class Engine {
 public:
  Engine(std::unique_ptr<Backend> backend, std::shared_ptr<const Tokenizer> tokenizer,
         ModelConfig model_config, EngineConfig config);
  ~Engine();  // shuts down (aborting whatever still runs) and joins the engine thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void start();  // spawns the engine thread
  // Stops accepting, lets running and queued work finish until `drain_deadline`, aborts the
  // rest (their streams get FinishReason::kAbort), then joins the engine thread.
  void shutdown(std::chrono::milliseconds drain_deadline);

  // Thread-safe. Validates and checks limits at once; on success the request is queued.
  SubmitResult submit(Request request);
  // Thread-safe. The sequence leaves the batch at the next iteration and its blocks are freed;
  // its stream gets a final delta with FinishReason::kAbort. Unknown / finished ids are ignored.
  void abort(SeqId id);

  bool accepting() const;
  EngineMetrics& metrics();
  const Tokenizer& tokenizer() const;
  const ModelConfig& model_config() const;
  const EngineConfig& config() const;
  const KvPoolInfo& kv_pool() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom
