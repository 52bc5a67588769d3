#include "util/openmp_env.h"

#include <unistd.h>

#include <cstdlib>

namespace loom {

void ensure_openmp_wait_policy(char** argv) {
  if (std::getenv("GOMP_SPINCOUNT") != nullptr || std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (setenv("GOMP_SPINCOUNT", "20000", 0) != 0) return;
  execv("/proc/self/exe", argv);
  // execv failed (no /proc): carry on with libgomp's defaults.
}

}  // namespace loom
