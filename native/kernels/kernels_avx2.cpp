// The avx2 build of kernels.inl; compiled with its own ISA flags (see CMakeLists.txt / binding.gyp).
#define CHIMERA_LEVEL 1
#define CHIMERA_NS isa_avx2
#define CHIMERA_TABLE kernels_avx2
#include "kernels.inl"
