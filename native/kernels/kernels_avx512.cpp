// The avx512 build of kernels.inl; compiled with its own ISA flags (see CMakeLists.txt / binding.gyp).
#define CHIMERA_LEVEL 2
#define CHIMERA_ISA_ID 3  // Isa::Avx512Vnni
#define CHIMERA_NS isa_avx512
#define CHIMERA_TABLE kernels_avx512
#include "kernels.inl"
