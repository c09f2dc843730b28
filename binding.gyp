{
  "variables": {
    "napi_defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "common_cflags": ["-O3", "-std=c++17", "-fexceptions", "-fvisibility=hidden"]
  },
  "targets": [
    {
      "target_name": "kernels_avx2",
      "type": "static_library",
      "sources": ["native/kernels/kernels_avx2.cpp"],
      "include_dirs": ["native/include"],
      "cflags_cc": ["<@(common_cflags)", "-fPIC", "-mavx2", "-mfma", "-mf16c"],
      "cflags_cc!": ["-fno-exceptions"]
    },
    {
      "target_name": "kernels_avx512",
      "type": "static_library",
      "sources": ["native/kernels/kernels_avx512.cpp"],
      "include_dirs": ["native/include"],
      "cflags_cc": ["<@(common_cflags)", "-fPIC", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c"],
      "cflags_cc!": ["-fno-exceptions"]
    },
    {
      "target_name": "kernels_amx",
      "type": "static_library",
      "sources": ["native/kernels/kernels_amx.cpp"],
      "include_dirs": ["native/include"],
      "cflags_cc": ["<@(common_cflags)", "-fPIC", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c", "-mamx-tile", "-mamx-int8"],
      "cflags_cc!": ["-fno-exceptions"]
    },
    {
      "target_name": "chimera",
      "dependencies": ["kernels_avx2", "kernels_avx512", "kernels_amx"],
      "sources": [
        "native/src/cpu.cpp",
        "native/src/dispatch.cpp",
        "native/src/ops.cpp",
        "native/src/thread_pool.cpp",
        "native/src/marian.cpp",
        "native/kernels/kernels_scalar.cpp",
        "native/binding/addon.cpp"
      ],
      "include_dirs": ["native/include", "<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["<@(napi_defines)"],
      "cflags_cc": ["<@(common_cflags)"],
      "cflags_cc!": ["-fno-exceptions"]
    }
  ]
}
