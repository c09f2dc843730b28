#include "chimera/cpu.h"

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(_M_X64)
#define CHIMERA_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace chimera {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::AvxVnni: return "avxvnni";
    case Isa::Avx512Vnni: return "avx512vnni";
    case Isa::Amx: return "amx";
  }
  return "unknown";
}

bool isa_from_name(const std::string& name, Isa* out) {
  for (int i = 0; i < kIsaCount; ++i) {
    if (name == isa_name(static_cast<Isa>(i))) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

#ifdef CHIMERA_X86
static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER)
  __cpuidex(reinterpret_cast<int*>(r), leaf, sub);
#else
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

static unsigned long long xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
#endif
}
#endif

static CpuFeatures detect() {
  CpuFeatures f;
#ifdef CHIMERA_X86
  unsigned r[4];
  cpuid(0, 0, r);
  const unsigned max_leaf = r[0];
  cpuid(1, 0, r);
  const bool osxsave = (r[2] >> 27) & 1;
  f.fma = (r[2] >> 12) & 1;
  f.avx = (r[2] >> 28) & 1;
  f.f16c = (r[2] >> 29) & 1;
  unsigned long long xcr0 = 0;
  if (osxsave) {
    // The CPU may support AVX while the OS does not save the wider registers on a context switch.
    xcr0 = xgetbv0();
    f.os_avx = (xcr0 & 0x6) == 0x6;
    f.os_avx512 = f.os_avx && (xcr0 & 0xE0) == 0xE0;
  }
  if (max_leaf >= 7) {
    cpuid(7, 0, r);
    f.avx2 = (r[1] >> 5) & 1;
    f.avx512f = (r[1] >> 16) & 1;
    f.avx512dq = (r[1] >> 17) & 1;
    f.avx512cd = (r[1] >> 28) & 1;
    f.avx512bw = (r[1] >> 30) & 1;
    f.avx512vl = (r[1] >> 31) & 1;
    f.avx512vbmi = (r[2] >> 1) & 1;
    f.avx512vnni = (r[2] >> 11) & 1;
    f.avx512fp16 = (r[3] >> 23) & 1;
    f.amx_bf16 = (r[3] >> 22) & 1;
    f.amx_tile = (r[3] >> 24) & 1;
    f.amx_int8 = (r[3] >> 25) & 1;
    const unsigned sub_leaves = r[0];
    if (sub_leaves >= 1) {
      cpuid(7, 1, r);
      f.avxvnni = (r[0] >> 4) & 1;
      f.avx512bf16 = (r[0] >> 5) & 1;
    }
  }
  // Tile state (XCR0 bits 17, 18) must be enabled, and on Linux each process must ask for tile data.
  if (f.amx_tile && f.amx_int8 && (xcr0 & 0x60000) == 0x60000) {
#if defined(__linux__)
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    f.os_amx = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#endif
  }
#endif
  return f;
}

std::vector<std::pair<const char*, bool>> CpuFeatures::list() const {
  return {{"avx", avx && os_avx},       {"avx2", avx2 && os_avx},         {"fma", fma && os_avx},
          {"f16c", f16c && os_avx},     {"avx512f", avx512f && os_avx512}, {"avx512bw", avx512bw && os_avx512},
          {"avx512vl", avx512vl && os_avx512}, {"avx512dq", avx512dq && os_avx512}, {"avx512cd", avx512cd && os_avx512},
          {"avx512vnni", avx512vnni && os_avx512}, {"avx512vbmi", avx512vbmi && os_avx512},
          {"avx512bf16", avx512bf16 && os_avx512}, {"avx512fp16", avx512fp16 && os_avx512},
          {"avxvnni", avxvnni && os_avx}, {"amx_tile", amx_tile && os_amx}, {"amx_int8", amx_int8 && os_amx}, {"amx_bf16", amx_bf16 && os_amx}};
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

bool isa_compiled(Isa isa) {
#if defined(CHIMERA_X86) && !defined(CHIMERA_SCALAR_ONLY)
  (void)isa;
  return true;
#else
  return isa == Isa::Scalar;
#endif
}

bool isa_supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return f.os_avx && f.avx && f.avx2 && f.fma && f.f16c;
    case Isa::AvxVnni: return isa_supported(Isa::Avx2) && f.avxvnni;  // VEX-encoded: YMM state is enough
    case Isa::Avx512Vnni:
      return isa_supported(Isa::Avx2) && f.os_avx512 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq &&
             f.avx512vnni;
    case Isa::Amx: return isa_supported(Isa::Avx512Vnni) && f.amx_tile && f.amx_int8 && f.os_amx;
  }
  return false;
}

Isa best_isa() {
  for (int i = kIsaCount - 1; i > 0; --i) {
    const Isa isa = static_cast<Isa>(i);
    if (isa_supported(isa) && isa_compiled(isa)) return isa;
  }
  return Isa::Scalar;
}

}  // namespace chimera
