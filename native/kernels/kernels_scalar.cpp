// The scalar build of kernels.inl; compiled with its own ISA flags (see CMakeLists.txt / binding.gyp).
#define CHIMERA_LEVEL 0
#define CHIMERA_NS isa_scalar
#define CHIMERA_TABLE kernels_scalar
#include "kernels.inl"
