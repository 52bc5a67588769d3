#include "core/request.h"

namespace loom {

int32_t tier_priority(Tier tier) {
  switch (tier) {
    case Tier::kInteractive:
      return kInteractivePriority;
    case Tier::kStandard:
      return kStandardPriority;
    case Tier::kBatch:
      return kBatchPriority;
  }
  return kStandardPriority;
}

const char* tier_name(Tier tier) {
  switch (tier) {
    case Tier::kInteractive:
      return "interactive";
    case Tier::kStandard:
      return "standard";
    case Tier::kBatch:
      return "batch";
  }
  return "standard";
}

std::optional<Tier> parse_tier(const std::string& name) {
  if (name == "interactive") return Tier::kInteractive;
  if (name == "standard") return Tier::kStandard;
  if (name == "batch") return Tier::kBatch;
  return std::nullopt;
}

Tier tier_of_priority(int32_t priority) {
  if (priority <= -5) return Tier::kInteractive;
  if (priority >= 5) return Tier::kBatch;
  return Tier::kStandard;
}

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "error";
}

}  // namespace loom
