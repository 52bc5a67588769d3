#include "model/model_config.h"

namespace loom {

const char* arch_name(Arch arch) {
  switch (arch) {
    case Arch::kLlama:
      return "llama";
    case Arch::kQwen2:
      return "qwen2";
  }
  return "?";
}

}  // namespace loom
