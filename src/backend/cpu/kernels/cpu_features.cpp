#include "backend/cpu/kernels/cpu_features.h"

#include <cstdlib>
#include <cstring>

#include "util/check.h"
#include "util/log.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define LOOM_X86 1
#endif

namespace loom::cpu {
namespace {

#ifdef LOOM_X86
// XCR0 says which register states the OS saves: without it the ISA is unusable even if cpuid
// lists it (bits 1,2 = SSE/AVX state; 5,6,7 = opmask and the upper zmm halves).
unsigned long long read_xcr0() {
  unsigned int eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#ifdef LOOM_X86
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1;
  const bool avx = (ecx >> 28) & 1;
  f.fma = (ecx >> 12) & 1;
  f.f16c = (ecx >> 29) & 1;
  if (!osxsave || !avx) return CpuFeatures{};
  const unsigned long long xcr0 = read_xcr0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = (xcr0 & 0xE6) == 0xE6;
  if (!os_avx) return CpuFeatures{};
  if (__get_cpuid_max(0, nullptr) >= 7) {
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    f.avx2 = (ebx >> 5) & 1;
    if (os_avx512) {
      f.avx512f = (ebx >> 16) & 1;
      f.avx512dq = (ebx >> 17) & 1;
      f.avx512bw = (ebx >> 30) & 1;
      f.avx512vl = (ebx >> 31) & 1;
      f.avx512vnni = (ecx >> 11) & 1;
    }
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    f.avx_vnni = (eax >> 4) & 1;
    if (os_avx512) f.avx512bf16 = (eax >> 5) & 1;
  }
#endif
  return f;
}

Isa best_isa() {
  if (isa_supported(Isa::kAvx512)) return Isa::kAvx512;
  if (isa_supported(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kScalar;
}

Isa isa_from_env() {
  const Isa best = best_isa();
  const char* env = std::getenv("LOOM_CPU_ISA");
  if (env == nullptr || *env == '\0') return best;
  Isa wanted;
  if (std::strcmp(env, "scalar") == 0) {
    wanted = Isa::kScalar;
  } else if (std::strcmp(env, "avx2") == 0) {
    wanted = Isa::kAvx2;
  } else if (std::strcmp(env, "avx512") == 0) {
    wanted = Isa::kAvx512;
  } else {
    LOOM_LOG_WARN("LOOM_CPU_ISA=%s is not one of scalar|avx2|avx512; using %s", env,
                  isa_name(best));
    return best;
  }
  if (!isa_supported(wanted)) {
    LOOM_LOG_WARN("LOOM_CPU_ISA=%s is not supported by this CPU; using %s", env, isa_name(best));
    return best;
  }
  return wanted;
}

Isa& active_isa_slot() {
  static Isa isa = isa_from_env();
  return isa;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

bool isa_supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  const bool avx2_set = f.avx2 && f.fma && f.f16c;
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return avx2_set;
    case Isa::kAvx512:
      return avx2_set && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni;
  }
  return false;
}

Isa active_isa() {
  return active_isa_slot();
}

void set_active_isa(Isa isa) {
  LOOM_CHECK(isa_supported(isa), "ISA %s is not supported by this CPU", isa_name(isa));
  active_isa_slot() = isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "?";
}

}  // namespace loom::cpu
