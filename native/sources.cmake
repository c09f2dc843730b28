# The per-ISA kernel builds and the CPU baseline flags, shared by the addon (CMakeLists.txt) and the standalone
# CUDA driver (bench/cuda/CMakeLists.txt), so that the two builds compile the CPU kernels identically.
# Sets CHIMERA_ISA_KERNEL_SOURCES (absolute paths; kernels_scalar.cpp is not among them: every build lists it
# itself) with their per-file flags, and CHIMERA_BASELINE_FLAGS; off x86 it adds -DCHIMERA_SCALAR_ONLY to the
# including directory.
set(CHIMERA_ISA_KERNEL_SOURCES "")
set(_chimera_k ${CMAKE_CURRENT_LIST_DIR}/kernels)

# Each ISA build of the kernels gets its own flags; nothing else is compiled beyond the baseline, and
# -march=native is never used: the dispatch table picks the path at run time.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  list(APPEND CHIMERA_ISA_KERNEL_SOURCES ${_chimera_k}/kernels_avx2.cpp ${_chimera_k}/kernels_avxvnni.cpp ${_chimera_k}/kernels_avx512.cpp ${_chimera_k}/kernels_amx.cpp)
  if(MSVC)
    set_source_files_properties(${_chimera_k}/kernels_avx2.cpp ${_chimera_k}/kernels_avxvnni.cpp PROPERTIES COMPILE_OPTIONS "/arch:AVX2")
    set_source_files_properties(${_chimera_k}/kernels_avx512.cpp ${_chimera_k}/kernels_amx.cpp PROPERTIES COMPILE_OPTIONS "/arch:AVX512")
  else()
    set_source_files_properties(${_chimera_k}/kernels_avx2.cpp PROPERTIES
      COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
    set_source_files_properties(${_chimera_k}/kernels_avxvnni.cpp PROPERTIES
      COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-mavxvnni")
    # GCC's -W(maybe-)uninitialized fires inside its own AVX-512 intrinsic headers (registers that start as
    # _mm512_undefined_*() and are then fully written): false positives in <immintrin.h>, not in our code.
    set(CHIMERA_AVX512_QUIET "-Wno-uninitialized;-Wno-maybe-uninitialized")
    set_source_files_properties(${_chimera_k}/kernels_avx512.cpp PROPERTIES
      COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx2;-mfma;-mf16c;${CHIMERA_AVX512_QUIET}")
    set_source_files_properties(${_chimera_k}/kernels_amx.cpp PROPERTIES
      COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx2;-mfma;-mf16c;-mamx-tile;-mamx-int8;${CHIMERA_AVX512_QUIET}")
  endif()
else()
  add_definitions(-DCHIMERA_SCALAR_ONLY)
endif()

# The CPU baseline of everything outside the per-ISA kernel files (scripts/platform.js CPU_BASELINE, which the
# loader checks before it loads the addon), pinned so that a compiler whose default -march is newer cannot
# raise it. Apple's arm64 default (apple-m1) is what every Apple silicon Mac has.
set(CHIMERA_BASELINE_FLAGS "")
if(NOT MSVC)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    set(CHIMERA_BASELINE_FLAGS -march=x86-64 -mtune=generic)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64|ARM64" AND NOT APPLE)
    set(CHIMERA_BASELINE_FLAGS -march=armv8-a)
  endif()
endif()
