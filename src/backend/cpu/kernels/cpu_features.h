// Which SIMD instruction sets this CPU has, and which kernel family matmul uses.
// Kernels are compiled once per ISA (files *_avx2.cpp / *_avx512.cpp) and chosen at run time:
// a binary built here must still run on a CPU with less.
#pragma once

namespace loom::cpu {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false;
  bool avx_vnni = false;  // the VEX (256-bit) encoding of vpdpbusd
};

enum class Isa { kScalar, kAvx2, kAvx512 };

// Detected once (cpuid) and cached.
const CpuFeatures& cpu_features();

// Whether the CPU can run the kernels of `isa` (kAvx512 needs F+BW+VL+DQ+VNNI and the AVX2 set).
bool isa_supported(Isa isa);

// The ISA the kernels use: the best supported one, or LOOM_CPU_ISA=scalar|avx2|avx512 when set
// and supported (an unsupported or unknown value logs a warning and falls back to the best).
// Read once; tests and benchmarks may override it with set_active_isa.
Isa active_isa();

// Forces an ISA (must be supported: checked). Not thread-safe against running kernels.
void set_active_isa(Isa isa);

const char* isa_name(Isa isa);

}  // namespace loom::cpu
