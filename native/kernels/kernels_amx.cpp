// The AMX build: the AVX-512 kernels of kernels.inl, counted as "amx", with AMX-INT8 tiles in the int8 GEMM.
#define CHIMERA_LEVEL 2
#define CHIMERA_AMX 1
#define CHIMERA_ISA_ID 4  // Isa::Amx
#define CHIMERA_NS isa_amx
#define CHIMERA_TABLE kernels_amx
#include "kernels.inl"
