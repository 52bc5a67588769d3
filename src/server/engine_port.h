// What the HTTP layer needs from the engine, as an interface: the real Engine behind an
// adapter (run_server.cpp), a scripted fake in the unit tests.
#pragma once

#include <chrono>

#include "backend/backend.h"
#include "core/request.h"
#include "engine/engine.h"
#include "engine/engine_metrics.h"
#include "tokenizer/tokenizer.h"

namespace loom {

class EnginePort {
 public:
  virtual ~EnginePort() = default;
  virtual SubmitResult submit(Request request) = 0;  // thread-safe, never blocks on the engine
  virtual void abort(SeqId id) = 0;                  // thread-safe
  virtual bool accepting() const = 0;
  virtual EngineMetrics& metrics() = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  virtual int32_t max_context() const = 0;  // tokens, prompt + output
  virtual int32_t kv_block_size() const = 0;
};

}  // namespace loom
