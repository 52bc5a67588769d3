// Factories of the CUDA backend when the project is built without CUDA (LOOM_CUDA=OFF).
#include "backend/cuda/cuda_backend.h"

#ifndef LOOM_HAVE_CUDA
namespace loom {

bool cuda_device_available() {
  return false;
}

Result<std::unique_ptr<Backend>> create_cuda_backend(std::shared_ptr<const ModelFile>,
                                                     const CudaBackendOptions&) {
  return make_error("this build of loom has no CUDA backend (configure with -DLOOM_CUDA=ON)");
}

Result<std::unique_ptr<Backend>> create_cuda_backend_dummy(const ModelConfig&,
                                                           const CudaBackendOptions&) {
  return make_error("this build of loom has no CUDA backend (configure with -DLOOM_CUDA=ON)");
}

}  // namespace loom
#endif
