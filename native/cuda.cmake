# The CUDA backend's configuration, shared by the addon (CMakeLists.txt) and the standalone CUDA driver
# (bench/cuda/CMakeLists.txt), so both build the same device code with the same runtime.
#
# CHIMERA_CUDA=auto compiles the device code whenever nvcc is found, so it always compiles where a toolkit exists
# (CI included) and is never dead text; on fails the configure without nvcc; off never builds it. Without it
# native/src/cuda_stub.cpp implements the contract (native/include/chimera/cuda.h): info() says why, everything
# else throws DeviceError (E_DEVICE).
set(CHIMERA_CUDA "auto" CACHE STRING "build the CUDA backend: auto (when nvcc is found), on (required), off")
set_property(CACHE CHIMERA_CUDA PROPERTY STRINGS auto on off)

# Sets CHIMERA_HAVE_CUDA in the including scope (a macro: enable_language must run at file scope, not in a function).
macro(chimera_enable_cuda)
  set(CHIMERA_HAVE_CUDA OFF)
  if(NOT CHIMERA_CUDA STREQUAL "off")
    include(CheckLanguage)
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
      # Real SASS for Ampere (sm_80; also runs on 8.6 / 8.9) and Hopper (sm_90), plus compute_90 PTX that the
      # driver compiles for newer GPUs. Set before enable_language, which would otherwise pick its own default.
      if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
        set(CMAKE_CUDA_ARCHITECTURES "80-real;90-real;90-virtual")
      endif()
      # The runtime is linked statically: cudart_static loads the driver library (libcuda.so.1) itself at the first
      # CUDA call, not at load time, so the same addon loads and passes every CPU test on a machine with no NVIDIA
      # driver, and one binary and one loader serve both. The cost, measured: about 1.1 MB of addon for the runtime
      # and the host code, 0.8 MB for the compressed device code (README, CUDA).
      set(CMAKE_CUDA_RUNTIME_LIBRARY Static)
      enable_language(CUDA)
      set(CMAKE_CUDA_STANDARD 17)
      set(CMAKE_CUDA_STANDARD_REQUIRED ON)
      set(CHIMERA_HAVE_CUDA ON)
    elseif(CHIMERA_CUDA STREQUAL "on")
      message(FATAL_ERROR "CHIMERA_CUDA=on but no CUDA compiler (nvcc) was found; install the CUDA toolkit or use CHIMERA_CUDA=auto|off")
    endif()
  endif()
endmacro()
