#include "core/sequence.h"

namespace loom {

const char* seq_status_name(SeqStatus status) {
  switch (status) {
    case SeqStatus::kWaiting:
      return "waiting";
    case SeqStatus::kRunning:
      return "running";
    case SeqStatus::kSwapped:
      return "swapped";
    case SeqStatus::kFinished:
      return "finished";
  }
  return "?";
}

}  // namespace loom
