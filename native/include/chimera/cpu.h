// CPU feature detection (CPUID + XGETBV) and the instruction-set levels chimera dispatches on.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace chimera {

// Ordered by preference: best_isa() takes the highest one this CPU runs. AvxVnni is the AVX2 build with VEX
// vpdpbusd in the int8 GEMM (CPUs with AVX-VNNI but no AVX-512); an AVX-512 CPU need not have it, so a level
// does not imply the ones below it beyond AVX2. Amx is Avx512Vnni plus AMX-INT8 tiles for the int8 GEMM at
// larger row counts; every other kernel is the AVX-512 one.
enum class Isa : int { Scalar = 0, Avx2 = 1, AvxVnni = 2, Avx512Vnni = 3, Amx = 4 };
constexpr int kIsaCount = 5;

const char* isa_name(Isa isa);
bool isa_from_name(const std::string& name, Isa* out);

struct CpuFeatures {
  bool avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512cd = false;
  bool avx512vnni = false, avx512vbmi = false, avx512bf16 = false, avx512fp16 = false, avxvnni = false;
  bool amx_tile = false, amx_int8 = false, amx_bf16 = false;
  bool os_avx = false;     // XCR0 enables YMM state
  bool os_avx512 = false;  // XCR0 enables opmask + ZMM state
  bool os_amx = false;     // XCR0 enables tile state and the kernel granted this process tile data
  std::vector<std::pair<const char*, bool>> list() const;
};

const CpuFeatures& cpu_features();
// Whether this CPU (and OS) can run `isa`, and whether this binary was built with it.
bool isa_supported(Isa isa);
bool isa_compiled(Isa isa);
Isa best_isa();

}  // namespace chimera
