// What the CUDA sources share: error checking (every failure becomes chimera::cuda::DeviceError with the CUDA
// error string), device buffers, and the device-side launchers of kernels.cu that runtime.cu (host-memory entry
// points, timing) and marian.cu (the model) call. Launchers take device pointers and a stream and never
// synchronise; the caller decides when to wait.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "chimera/cuda.h"

namespace chimera::cuda {

[[noreturn]] void fail(cudaError_t e, const char* what);
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(e, what);
}
// After a launch: a bad configuration is reported here, a fault in the kernel at the next synchronisation.
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

// One device allocation, freed when it goes out of scope (host-memory entry points and timing use these).
struct Buf {
  void* p = nullptr;
  size_t bytes = 0;
  Buf() = default;
  explicit Buf(size_t n) { alloc_bytes(n); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf() { reset(); }
  void alloc_bytes(size_t n) {
    reset();
    if (n == 0) n = 1;
    check(cudaMalloc(&p, n), "cudaMalloc");
    bytes = n;
  }
  // Grows (never shrinks) to at least n bytes; contents are not kept.
  void reserve(size_t n) {
    if (n > bytes) alloc_bytes(n + n / 2);
  }
  void reset() noexcept {
    if (p) cudaFree(p);
    p = nullptr;
    bytes = 0;
  }
  template <typename T>
  T* as() const { return static_cast<T*>(p); }
};

// k rounded up to one mma.sync m16n8k32 k-step: the device int8 row stride of weights and activations.
constexpr size_t kS8KAlign = 32;
constexpr size_t s8_kp(size_t k) { return (k + kS8KAlign - 1) / kS8KAlign * kS8KAlign; }

enum class Tier : int { S8, F16, F32 };

// Weights resident on the device (cuda.h: int8 s8 [n][kp] + scales [n]; fp16 half [n][k]; fp32 float [n][k]).
struct Linear {
  Tier tier = Tier::F32;
  size_t n = 0, k = 0, kp = 0;
  void* w = nullptr;
  float* scales = nullptr;  // int8 only
  float* bias = nullptr;    // [n] or null
  size_t bytes = 0;
};

// ---- launchers (kernels.cu)

// Norm on device pointers (NormArgs semantics, pointers on the device). q_bad, when not null, is set to 1 if a
// row met a non-finite value during the fused quantisation.
void launch_norm(const NormArgs& a, int* q_bad, bool reference, cudaStream_t s);
// quantize_rows on the device; bad as above.
void launch_quantize(const float* x, size_t rows, size_t cols, int8_t* q, size_t stride, float* scales, int32_t* sums,
                     int* bad, bool reference, cudaStream_t s);

// The int8 GEMM: acc[m, n] = a[m, :kp] . b[n, :kp] (both s8, rows kp bytes apart, kp a multiple of 32 and the
// padding zero). Epilogue: raw (when set) gets acc; out (when set) gets act(acc * a_scales[row] * w_scales[col]
// + bias[col]).
struct S8Out {
  const float* a_scales = nullptr;
  const float* w_scales = nullptr;
  const float* bias = nullptr;
  Activation act = Activation::None;
  float* out = nullptr;
  int32_t* raw = nullptr;
};
void launch_gemm_s8(const int8_t* a, const int8_t* b, size_t m, size_t n, size_t kp, const S8Out& ep, bool reference,
                    cudaStream_t s);
// out[m, n] = act(x[m, k] . W[n, k]^T + bias), W fp32 or fp16 (half), fp32 accumulation.
void launch_gemm_f32(const float* x, const float* w, size_t m, size_t n, size_t k, const float* bias, Activation act,
                     float* out, bool reference, cudaStream_t s);
void launch_gemm_f16(const float* x, const __half* w, size_t m, size_t n, size_t k, const float* bias, Activation act,
                     float* out, bool reference, cudaStream_t s);

// Attention of single query rows against their own keys, every head (decode_attention semantics): row r's query
// for head h at q + r * ldq + h * hd; its keys at kv + row_off[r] + j * ldkv + h * hd (j < len[r]), values v_off
// further; output at o + r * ldo + h * hd. The encoder's self-attention is the same with one row per source
// position, all rows of a source sharing its keys.
struct AttnArgs {
  const float* q = nullptr;
  size_t ldq = 0;
  const float* kv = nullptr;
  const int64_t* row_off = nullptr;  // device, [rows]
  size_t ldkv = 0, v_off = 0;
  const int32_t* len = nullptr;      // device, [rows]
  float* o = nullptr;
  size_t ldo = 0;
  size_t rows = 0, heads = 0, hd = 0;
  bool off4 = false;  // every row_off is a multiple of 4 floats (the caller knows): keys may be read as float4
};
void launch_attention(const AttnArgs& a, bool reference, cudaStream_t s);

// x[r] = embed[ids[r]] * scale + positions[pos[r]] (embed fp32, or fp16 when embed_half is set).
void launch_embed(const float* embed, const __half* embed_half, const float* positions, const int32_t* ids,
                  const int32_t* pos, size_t rows, size_t d, float scale, float* x, cudaStream_t s);
// Appends this step's K|V (qkv row r, columns [d, 3d)) to kv + row_off[r] + pos[r] * 2d.
void launch_append_kv(const float* qkv, size_t rows, size_t d, float* kv, const int64_t* row_off, const int32_t* pos,
                      cudaStream_t s);
// Copies each source's first lens[b] rows of src ([batch * s][2d]) to kv + dst_off[b] + i * 2d.
void launch_scatter_rows(const float* src, size_t batch, size_t s, size_t d2, const int32_t* lens, const int64_t* dst_off,
                         float* kv, cudaStream_t st);
// Per row of x [rows, cols]: top k (descending, ties to the lower index, NaN as -Infinity) with log-softmax values.
void launch_topk(const float* x, size_t rows, size_t cols, size_t k, int32_t* idx, float* val, cudaStream_t s);
// The largest k launch_topk takes: it makes one pass over the row per pick.
constexpr size_t kMaxDeviceTopK = 64;

}  // namespace chimera::cuda
