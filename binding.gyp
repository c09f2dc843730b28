{
  "variables": {
    "napi_defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
    "common_cflags": ["-O3", "-std=c++17", "-fexceptions", "-fvisibility=hidden"],
    # GCC's -W(maybe-)uninitialized fires inside its own AVX-512 intrinsic headers (registers that start as
    # _mm512_undefined_*() and are then fully written): false positives in <immintrin.h>, not in our code.
    "avx512_quiet": ["-Wno-uninitialized", "-Wno-maybe-uninitialized"]
  },
  "target_defaults": {
    "include_dirs": ["native/include"],
    "defines": ["<@(napi_defines)"],
    "cflags_cc": ["<@(common_cflags)"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "conditions": [
      ["OS=='win'", {
        "msvs_settings": {
          "VCCLCompilerTool": { "ExceptionHandling": 1, "RuntimeTypeInfo": "true", "AdditionalOptions": ["/std:c++17", "/O2"] }
        }
      }],
      ["OS=='mac'", {
        "xcode_settings": {
          "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
          "GCC_ENABLE_CPP_RTTI": "YES",
          "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
          "CLANG_CXX_LIBRARY": "libc++",
          "MACOSX_DEPLOYMENT_TARGET": "11.0",
          "GCC_SYMBOLS_PRIVATE_EXTERN": "YES",
          "GCC_OPTIMIZATION_LEVEL": "3"
        }
      }],
      ["OS!='win' and OS!='mac' and target_arch=='x64'", { "cflags_cc": ["-march=x86-64", "-mtune=generic"] }],
      ["OS!='win' and OS!='mac' and target_arch=='arm64'", { "cflags_cc": ["-march=armv8-a"] }]
    ]
  },
  "targets": [
    {
      # node-gyp builds the CPU paths only: the CUDA sources (native/cuda) are built by CMake (CHIMERA_CUDA);
      # here native/src/cuda_stub.cpp answers every CUDA call with E_DEVICE and the reason.
      "target_name": "chimera",
      "sources": [
        "native/src/cpu.cpp",
        "native/src/dispatch.cpp",
        "native/src/ops.cpp",
        "native/src/thread_pool.cpp",
        "native/src/marian.cpp",
        "native/src/probe.cpp",
        "native/kernels/kernels_scalar.cpp",
        "native/binding/addon.cpp",
        "native/binding/kernels_api.cpp",
        "native/binding/model_io.cpp",
        "native/binding/marian_api.cpp",
        "native/binding/cuda_api.cpp",
        "native/src/cuda_stub.cpp"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "conditions": [
        ["target_arch=='x64'",
          { "dependencies": ["kernels_avx2", "kernels_avxvnni", "kernels_avx512", "kernels_amx"] },
          { "defines": ["CHIMERA_SCALAR_ONLY"] }]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "kernels_avx2",
          "type": "static_library",
          "sources": ["native/kernels/kernels_avx2.cpp"],
          "cflags_cc": ["-fPIC", "-mavx2", "-mfma", "-mf16c"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-mavx2", "-mfma", "-mf16c"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["/arch:AVX2"] } }
        },
        {
          "target_name": "kernels_avxvnni",
          "type": "static_library",
          "sources": ["native/kernels/kernels_avxvnni.cpp"],
          "cflags_cc": ["-fPIC", "-mavx2", "-mfma", "-mf16c", "-mavxvnni"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-mavx2", "-mfma", "-mf16c", "-mavxvnni"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["/arch:AVX2"] } }
        },
        {
          "target_name": "kernels_avx512",
          "type": "static_library",
          "sources": ["native/kernels/kernels_avx512.cpp"],
          "cflags_cc": ["-fPIC", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c",
                        "<@(avx512_quiet)"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["/arch:AVX512"] } }
        },
        {
          "target_name": "kernels_amx",
          "type": "static_library",
          "sources": ["native/kernels/kernels_amx.cpp"],
          "cflags_cc": ["-fPIC", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c",
                        "-mamx-tile", "-mamx-int8", "<@(avx512_quiet)"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c", "-mamx-tile", "-mamx-int8"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["/arch:AVX512"] } }
        }
      ]
    }]
  ]
}
