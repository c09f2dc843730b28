// The avxvnni build of kernels.inl: the AVX2 kernels, counted as "avxvnni", with VEX-encoded 256-bit
// vpdpbusd in the int8 GEMM; compiled with its own ISA flags (see CMakeLists.txt / binding.gyp).
#define CHIMERA_LEVEL 1
#define CHIMERA_AVXVNNI 1
#define CHIMERA_ISA_ID 2  // Isa::AvxVnni
#define CHIMERA_NS isa_avxvnni
#define CHIMERA_TABLE kernels_avxvnni
#include "kernels.inl"
