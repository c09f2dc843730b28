// The CUDA kernels and their launchers (common.cuh). Each operation has a simplest-correct reference kernel (one
// thread per row or per output) and a fast one; tests hold the fast one to the reference and both to the CPU.
// Numerics follow native/kernels/kernels.inl: the two-pass mean / centred variance of the norms, quantisation by
// IEEE division x / (max|x| / 127) rounded half to even, the int8 epilogue (acc * (sa * sw)) + bias as one fma,
// the activation formulas. Explicit __fmul_rn / __fadd_rn / __fdiv_rn where nvcc would otherwise contract.
#include <cfloat>
#include <climits>
#include <cmath>

#include "common.cuh"

namespace chimera::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kWarp = 32;
// Warps per block of the warp-per-row kernels (norm, quantisation, attention).
constexpr int kRowWarps = 4;
// Threads per block of the simple elementwise and reference kernels.
constexpr int kThreads = 256;
// The widest row the register-cached norm holds: 8 float4 per lane (a warp: 1024 cols; a block: 8192).
constexpr int kNormMaxVec = 8;
// Warps per row of the block-per-row norm (rows wider than a warp's registers).
constexpr int kNormBlockWarps = 8;
// The largest head size the warp attention kernel holds (8 dims per lane).
constexpr int kMaxHeadDim = 256;

__host__ __device__ constexpr size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ int warp_sum_i(int v) {
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

// kernels.inl's activate (simd.inl), in scalar form. Relu maps NaN to 0 as the CPU's max(x, 0) does.
__device__ __forceinline__ float activate(float x, Activation act) {
  switch (act) {
    case Activation::None: return x;
    case Activation::Relu: return x > 0.0f ? x : 0.0f;
    case Activation::Silu: return __fdiv_rn(x, __fadd_rn(1.0f, expf(-x)));
    case Activation::Gelu: return __fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, erff(__fmul_rn(x, 0.70710678118654752f))));
    case Activation::GeluTanh: {
      const float inner = __fmul_rn(0.79788456080286536f, __fmaf_rn(__fmul_rn(0.044715f, __fmul_rn(x, x)), x, x));
      return __fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, tanhf(inner)));
    }
  }
  return x;
}

// ------------------------------------------------------------------------------------------------ quantisation

// The CPU's quantize_store on one value: x / scale (IEEE), round half to even, clamp to [-127, 127].
__device__ __forceinline__ int quant1(float x, float scale) {
  const int v = __float2int_rn(__fdiv_rn(x, scale));
  return v < -127 ? -127 : (v > 127 ? 127 : v);
}

// One row by one thread (the reference): kernels.inl quantize_row. Returns false on NaN / Inf (nothing written
// but the padding, as the CPU).
__device__ bool quantize_row_thread(const float* x, size_t n, int8_t* q, size_t stride, float* scale_out,
                                    int32_t* sum_out) {
  float amax = 0.0f;
  bool bad = false;
  for (size_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (!isfinite(v)) bad = true;
    amax = fmaxf(amax, fabsf(v));
  }
  if (bad) return false;
  for (size_t i = n; i < stride; ++i) q[i] = 0;
  if (amax == 0.0f) {
    for (size_t i = 0; i < n; ++i) q[i] = 0;
    *scale_out = 0.0f;
    *sum_out = 0;
    return true;
  }
  const float scale = __fdiv_rn(amax, 127.0f);
  int32_t sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const int v = quant1(x[i], scale);
    q[i] = static_cast<int8_t>(v);
    sum += v;
  }
  *scale_out = scale;
  *sum_out = sum;
  return true;
}

// One row by one warp. max|x| is order-independent and the sum is an integer, so the result is bit for bit the
// thread version's (and the CPU's).
__device__ bool quantize_row_warp(const float* x, size_t n, int8_t* q, size_t stride, float* scale_out,
                                  int32_t* sum_out, int lane) {
  float amax = 0.0f;
  int bad = 0;
  for (size_t i = lane; i < n; i += kWarp) {
    const float v = x[i];
    bad |= !isfinite(v);
    amax = fmaxf(amax, fabsf(v));
  }
  bad = __any_sync(kFull, bad);
  amax = warp_max(amax);
  if (bad) return false;
  for (size_t i = n + lane; i < stride; i += kWarp) q[i] = 0;
  if (amax == 0.0f) {
    for (size_t i = lane; i < n; i += kWarp) q[i] = 0;
    if (lane == 0) {
      *scale_out = 0.0f;
      *sum_out = 0;
    }
    return true;
  }
  const float scale = __fdiv_rn(amax, 127.0f);
  int sum = 0;
  for (size_t i = lane; i < n; i += kWarp) {
    const int v = quant1(x[i], scale);
    q[i] = static_cast<int8_t>(v);
    sum += v;
  }
  sum = warp_sum_i(sum);
  if (lane == 0) {
    *scale_out = scale;
    *sum_out = sum;
  }
  return true;
}

__global__ void quantize_ref_kernel(const float* x, size_t rows, size_t cols, int8_t* q, size_t stride, float* scales,
                                    int32_t* sums, int* bad) {
  const size_t r = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  if (!quantize_row_thread(x + r * cols, cols, q + r * stride, stride, scales + r, sums + r) && bad) *bad = 1;
}

__global__ void quantize_warp_kernel(const float* x, size_t rows, size_t cols, int8_t* q, size_t stride, float* scales,
                                     int32_t* sums, int* bad) {
  const int lane = threadIdx.x % kWarp;
  const size_t r = static_cast<size_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  if (r >= rows) return;  // warp-uniform
  if (!quantize_row_warp(x + r * cols, cols, q + r * stride, stride, scales + r, sums + r, lane) && bad && lane == 0)
    *bad = 1;
}

// ------------------------------------------------------------------------------------------------ norms

// kernels.inl norm_row_f64: rows whose float mean or variance overflow, and non-finite rows (which come out NaN).
__device__ void norm_row_f64_thread(const NormArgs& a, const float* s, float* out) {
  const size_t n = a.cols;
  double mean = 0, var = 0;
  if (!a.rms) {
    for (size_t i = 0; i < n; ++i) mean += s[i];
    mean /= static_cast<double>(n);
  }
  for (size_t i = 0; i < n; ++i) var += (s[i] - mean) * (s[i] - mean);
  var /= static_cast<double>(n);
  const double rstd = 1.0 / sqrt(var + a.eps);
  for (size_t i = 0; i < n; ++i) {
    double v = (s[i] - mean) * rstd * a.gamma[i];
    if (a.beta) v += a.beta[i];
    out[i] = static_cast<float>(v);
  }
}

// The reference: one thread per row, the CPU's loop in scalar form.
__global__ void norm_ref_kernel(NormArgs a, int* q_bad) {
  const size_t r = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= a.rows) return;
  const size_t n = a.cols;
  const float* x = a.x + r * n;
  float* out = a.out + r * n;
  const float* s = x;
  float sum = 0.0f;
  if (a.residual || a.bias || a.sum_out) {
    float* dst = a.sum_out ? a.sum_out + r * n : out;
    const float* res = a.residual ? a.residual + r * n : nullptr;
    for (size_t i = 0; i < n; ++i) {
      float v = x[i];
      if (res) v = __fadd_rn(v, res[i]);
      if (a.bias) v = __fadd_rn(v, a.bias[i]);
      dst[i] = v;
      sum = __fadd_rn(sum, v);
    }
    s = dst;
  } else if (!a.rms) {
    for (size_t i = 0; i < n; ++i) sum = __fadd_rn(sum, x[i]);
  }
  const float mean = a.rms ? 0.0f : __fdiv_rn(sum, static_cast<float>(n));
  float var = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    const float d = __fsub_rn(s[i], mean);
    var = __fmaf_rn(d, d, var);
  }
  var = __fdiv_rn(var, static_cast<float>(n));
  if (!isfinite(mean) || !isfinite(var)) {
    norm_row_f64_thread(a, s, out);
  } else {
    const float rstd = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, a.eps)));
    for (size_t i = 0; i < n; ++i) {
      const float v = __fmul_rn(__fsub_rn(s[i], mean), rstd);
      out[i] = __fmaf_rn(v, a.gamma[i], a.beta ? a.beta[i] : 0.0f);
    }
  }
  if (a.q && !quantize_row_thread(out, n, a.q + r * a.q_stride, a.q_stride, a.q_scales + r, a.q_sums + r) && q_bad)
    *q_bad = 1;
}

// fp64 fallback by a warp, on the row sum s (in global memory).
__device__ void norm_row_f64_warp(const NormArgs& a, const float* s, float* out, int lane) {
  const size_t n = a.cols;
  double mean = 0, var = 0;
  if (!a.rms) {
    for (size_t i = lane; i < n; i += kWarp) mean += s[i];
    mean = warp_sum_d(mean) / static_cast<double>(n);
  }
  for (size_t i = lane; i < n; i += kWarp) var += (s[i] - mean) * (s[i] - mean);
  var = warp_sum_d(var) / static_cast<double>(n);
  const double rstd = 1.0 / sqrt(var + a.eps);
  for (size_t i = lane; i < n; i += kWarp) {
    double v = (s[i] - mean) * rstd * a.gamma[i];
    if (a.beta) v += a.beta[i];
    out[i] = static_cast<float>(v);
  }
}

// A warp per row for any width and alignment: the sum goes to sum_out (or out) and is read back by the same lane.
__global__ void norm_warp_kernel(NormArgs a, int* q_bad) {
  const int lane = threadIdx.x % kWarp;
  const size_t r = static_cast<size_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  if (r >= a.rows) return;  // warp-uniform
  const size_t n = a.cols;
  const float* x = a.x + r * n;
  float* out = a.out + r * n;
  const float* s = x;
  float sum = 0.0f;
  if (a.residual || a.bias || a.sum_out) {
    float* dst = a.sum_out ? a.sum_out + r * n : out;
    const float* res = a.residual ? a.residual + r * n : nullptr;
    for (size_t i = lane; i < n; i += kWarp) {
      float v = x[i];
      if (res) v = __fadd_rn(v, res[i]);
      if (a.bias) v = __fadd_rn(v, a.bias[i]);
      dst[i] = v;
      sum = __fadd_rn(sum, v);
    }
    s = dst;
  } else if (!a.rms) {
    for (size_t i = lane; i < n; i += kWarp) sum = __fadd_rn(sum, x[i]);
  }
  const float mean = a.rms ? 0.0f : __fdiv_rn(warp_sum(sum), static_cast<float>(n));
  float var = 0.0f;
  for (size_t i = lane; i < n; i += kWarp) {
    const float d = __fsub_rn(s[i], mean);
    var = __fmaf_rn(d, d, var);
  }
  var = __fdiv_rn(warp_sum(var), static_cast<float>(n));
  if (!isfinite(mean) || !isfinite(var)) {
    __syncwarp();  // every lane's sum is written before lanes read each other's elements
    norm_row_f64_warp(a, s, out, lane);
  } else {
    const float rstd = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, a.eps)));
    for (size_t i = lane; i < n; i += kWarp) {
      const float v = __fmul_rn(__fsub_rn(s[i], mean), rstd);
      out[i] = __fmaf_rn(v, a.gamma[i], a.beta ? a.beta[i] : 0.0f);
    }
  }
  if (a.q) {
    __syncwarp();  // the quantisation reads the whole row
    if (!quantize_row_warp(out, n, a.q + r * a.q_stride, a.q_stride, a.q_scales + r, a.q_sums + r, lane) && q_bad &&
        lane == 0)
      *q_bad = 1;
  }
}

__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ void st4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
__device__ __forceinline__ float4 add4(float4 a, float4 b) {
  return make_float4(__fadd_rn(a.x, b.x), __fadd_rn(a.y, b.y), __fadd_rn(a.z, b.z), __fadd_rn(a.w, b.w));
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Block-wide sums over W warps (deterministic order: each warp's shuffle sum, then the warps in turn). `sh` holds
// W values; the call ends with every thread holding the total and `sh` free again.
template <int W, typename T>
__device__ __forceinline__ T block_sum(T v, T* sh) {
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  if (threadIdx.x % kWarp == 0) sh[threadIdx.x / kWarp] = v;
  __syncthreads();
  T t = 0;
#pragma unroll
  for (int w = 0; w < W; ++w) t += sh[w];
  __syncthreads();
  return t;
}
template <int W>
__device__ __forceinline__ float block_max(float v, float* sh) {
  v = warp_max(v);
  if (threadIdx.x % kWarp == 0) sh[threadIdx.x / kWarp] = v;
  __syncthreads();
  float t = 0.0f;  // only used for max |x| >= 0
#pragma unroll
  for (int w = 0; w < W; ++w) t = fmaxf(t, sh[w]);
  __syncthreads();
  return t;
}

// The thread group that normalises one row in registers: one warp (norm_vec_kernel) or a block of W warps
// (norm_rowblock_kernel). t is the thread's index in the group; the reductions are the group's own.
struct WarpGroup {
  static constexpr int kSize = kWarp;
  int t;
  __device__ __forceinline__ float sum(float v) const { return warp_sum(v); }
  __device__ __forceinline__ int sum(int v) const { return warp_sum_i(v); }
  __device__ __forceinline__ float max(float v) const { return warp_max(v); }
  __device__ __forceinline__ int any(int v) const { return __any_sync(kFull, v); }
  __device__ __forceinline__ void sync() const { __syncwarp(); }
};
template <int W>
struct BlockGroup {
  static constexpr int kSize = W * kWarp;
  int t;
  float* shf;  // W floats of shared memory
  int* shi;    // W ints
  __device__ __forceinline__ float sum(float v) const { return block_sum<W>(v, shf); }
  __device__ __forceinline__ int sum(int v) const { return block_sum<W>(v, shi); }
  __device__ __forceinline__ float max(float v) const { return block_max<W>(v, shf); }
  __device__ __forceinline__ int any(int v) const { return __syncthreads_or(v); }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
};

// Row r of the fast norm, by group g: V float4 per thread held in registers (cols % 4 == 0, cols <= 4 V kSize), so
// x and the residual are read once and out written once; float4 loads; the fused quantisation reads the registers
// (quantize_row_warp's arithmetic). Every branch below is group-uniform (mean, var, bad and a.q are the same for
// the whole group).
template <int V, typename G>
__device__ __forceinline__ void norm_row_regs(const NormArgs& a, int* q_bad, size_t r, const G& g) {
  constexpr int kT = G::kSize;
  const int tid = g.t;
  const size_t n = a.cols, nv = n / 4;
  const float* x = a.x + r * n;
  const float* res = a.residual ? a.residual + r * n : nullptr;
  float* out = a.out + r * n;
  float4 v[V];
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const size_t c = tid + static_cast<size_t>(i) * kT;
    v[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (c < nv) {
      float4 t = ld4(x + 4 * c);
      if (res) t = add4(t, ld4(res + 4 * c));
      if (a.bias) t = add4(t, ld4(a.bias + 4 * c));
      if (a.sum_out) st4(a.sum_out + r * n + 4 * c, t);
      v[i] = t;
      sum = __fadd_rn(sum, __fadd_rn(__fadd_rn(t.x, t.y), __fadd_rn(t.z, t.w)));
    }
  }
  const float mean = a.rms ? 0.0f : __fdiv_rn(g.sum(sum), static_cast<float>(n));
  float var = 0.0f;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const size_t c = tid + static_cast<size_t>(i) * kT;
    if (c < nv) {
      const float d0 = __fsub_rn(v[i].x, mean), d1 = __fsub_rn(v[i].y, mean);
      const float d2 = __fsub_rn(v[i].z, mean), d3 = __fsub_rn(v[i].w, mean);
      var = __fmaf_rn(d0, d0, var);
      var = __fmaf_rn(d1, d1, var);
      var = __fmaf_rn(d2, d2, var);
      var = __fmaf_rn(d3, d3, var);
    }
  }
  var = __fdiv_rn(g.sum(var), static_cast<float>(n));
  if (!isfinite(mean) || !isfinite(var)) {
    // rare: spill the sums to out, the group's first warp takes the fp64 path over them, everyone reloads
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const size_t c = tid + static_cast<size_t>(i) * kT;
      if (c < nv) st4(out + 4 * c, v[i]);
    }
    g.sync();
    if (tid < kWarp) norm_row_f64_warp(a, out, out, tid);
    g.sync();
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const size_t c = tid + static_cast<size_t>(i) * kT;
      if (c < nv) v[i] = ld4(out + 4 * c);
    }
  } else {
    const float rstd = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, a.eps)));
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const size_t c = tid + static_cast<size_t>(i) * kT;
      if (c < nv) {
        const float4 gm = ld4(a.gamma + 4 * c);
        const float4 b = a.beta ? ld4(a.beta + 4 * c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        float4 o;
        o.x = __fmaf_rn(__fmul_rn(__fsub_rn(v[i].x, mean), rstd), gm.x, b.x);
        o.y = __fmaf_rn(__fmul_rn(__fsub_rn(v[i].y, mean), rstd), gm.y, b.y);
        o.z = __fmaf_rn(__fmul_rn(__fsub_rn(v[i].z, mean), rstd), gm.z, b.z);
        o.w = __fmaf_rn(__fmul_rn(__fsub_rn(v[i].w, mean), rstd), gm.w, b.w);
        st4(out + 4 * c, o);
        v[i] = o;
      }
    }
  }
  if (!a.q) return;
  float amax = 0.0f;
  int bad = 0;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const size_t c = tid + static_cast<size_t>(i) * kT;
    if (c < nv) {
      bad |= !isfinite(v[i].x) | !isfinite(v[i].y) | !isfinite(v[i].z) | !isfinite(v[i].w);
      amax = fmaxf(fmaxf(amax, fmaxf(fabsf(v[i].x), fabsf(v[i].y))), fmaxf(fabsf(v[i].z), fabsf(v[i].w)));
    }
  }
  bad = g.any(bad);
  amax = g.max(amax);
  if (bad) {
    if (q_bad && tid == 0) *q_bad = 1;
    return;
  }
  int8_t* q = a.q + r * a.q_stride;
  for (size_t i = n + tid; i < a.q_stride; i += kT) q[i] = 0;
  const float scale = amax == 0.0f ? 0.0f : __fdiv_rn(amax, 127.0f);
  int sum_q = 0;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const size_t c = tid + static_cast<size_t>(i) * kT;
    if (c < nv) {
      char4 t = make_char4(0, 0, 0, 0);
      if (amax != 0.0f) {
        const int q0 = quant1(v[i].x, scale), q1 = quant1(v[i].y, scale);
        const int q2 = quant1(v[i].z, scale), q3 = quant1(v[i].w, scale);
        t = make_char4(static_cast<signed char>(q0), static_cast<signed char>(q1), static_cast<signed char>(q2),
                       static_cast<signed char>(q3));
        sum_q += q0 + q1 + q2 + q3;
      }
      *reinterpret_cast<char4*>(q + 4 * c) = t;
    }
  }
  sum_q = g.sum(sum_q);
  if (tid == 0) {
    a.q_scales[r] = scale;
    a.q_sums[r] = sum_q;
  }
}

// The fast norm: a warp per row (rows up to 4 V kWarp columns).
template <int V>
__global__ void __launch_bounds__(kRowWarps * kWarp) norm_vec_kernel(NormArgs a, int* q_bad) {
  const size_t r = static_cast<size_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  if (r >= a.rows) return;  // warp-uniform
  norm_row_regs<V>(a, q_bad, r, WarpGroup{static_cast<int>(threadIdx.x % kWarp)});
}

// The fast norm for wide rows (more than a warp's registers hold): a block of W warps per row.
template <int V, int W>
__global__ void __launch_bounds__(W * kWarp) norm_rowblock_kernel(NormArgs a, int* q_bad) {
  __shared__ float shf[W];
  __shared__ int shi[W];
  norm_row_regs<V>(a, q_bad, blockIdx.x, BlockGroup<W>{static_cast<int>(threadIdx.x), shf, shi});
}


// ------------------------------------------------------------------------------------------------ int8 GEMM

__device__ __forceinline__ void s8_store(const S8Out& ep, size_t n, size_t row, size_t col, int acc) {
  if (ep.raw) ep.raw[row * n + col] = acc;
  if (ep.out) {
    const float sc = __fmul_rn(ep.a_scales[row], ep.w_scales[col]);
    const float d = __int2float_rn(acc);
    const float y = ep.bias ? __fmaf_rn(d, sc, ep.bias[col]) : __fmul_rn(d, sc);
    ep.out[row * n + col] = activate(y, ep.act);
  }
}

// The reference: one thread per output, 4 k per __dp4a.
__global__ void gemm_s8_ref_kernel(const int8_t* a, const int8_t* b, size_t m, size_t n, size_t kp, S8Out ep) {
  const size_t col = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= n) return;
  const int* br = reinterpret_cast<const int*>(b + col * kp);
  for (size_t row = blockIdx.y; row < m; row += gridDim.y) {
    const int* ar = reinterpret_cast<const int*>(a + row * kp);
    int acc = 0;
    for (size_t w = 0; w < kp / 4; ++w) acc = __dp4a(ar[w], br[w], acc);
    s8_store(ep, n, row, col, acc);
  }
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// d += a (16x32 s8, row) . b (32x8 s8, col), exact int32.
__device__ __forceinline__ void mma_s8(int* d, const unsigned* a, const unsigned* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Tensor-core int8 GEMM: a BM x BN block per CTA, k in steps of kBK bytes through two shared-memory stages
// filled by cp.async (the next stage loads while this one computes); each warp owns a (BM / WARPS_M) x
// (BN / WARPS_N) tile of m16n8k32 fragments read from shared memory as 32-bit words. Rows outside m / n and k
// past kp are zero-filled by cp.async (src-size 0), so any m, n and any kp that is a multiple of 32 work.
constexpr int kBK = 64;
// Shared-memory row pitch: 64 bytes of k plus 16 of padding, so the 8 rows a fragment load touches fall in
// distinct banks (80 bytes = 20 words; 20 g mod 32 differs for g = 0..7), and rows stay 16-byte aligned for
// cp.async.
constexpr int kLds = kBK + 16;

template <int BM, int BN, int WARPS_M, int WARPS_N>
__global__ void __launch_bounds__(WARPS_M* WARPS_N* kWarp)
    gemm_s8_mma_kernel(const int8_t* __restrict__ a, const int8_t* __restrict__ b, int m, int n, int kp, S8Out ep) {
  constexpr int kThreadsPerCta = WARPS_M * WARPS_N * kWarp;
  constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;
  constexpr int MT = WTM / 16, NT = WTN / 8;
  static_assert(MT >= 1 && NT >= 1 && WTM % 16 == 0 && WTN % 8 == 0, "warp tile must be whole fragments");
  __shared__ __align__(16) int8_t sa[2][BM * kLds];
  __shared__ __align__(16) int8_t sb[2][BN * kLds];
  const int tid = threadIdx.x, lane = tid % kWarp, warp = tid / kWarp;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const int g = lane >> 2, t = lane & 3;
  const int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
  int acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0;
  const int ktiles = (kp + kBK - 1) / kBK;
  auto load = [&](int stage, int kt) {
    const int k0 = kt * kBK;
    for (int c = tid; c < BM * 4; c += kThreadsPerCta) {
      const int r = c >> 2, kc = (c & 3) * 16, gr = bm + r, gk = k0 + kc;
      const bool ok = gr < m && gk < kp;
      cp_async16(&sa[stage][r * kLds + kc], ok ? a + static_cast<size_t>(gr) * kp + gk : a, ok ? 16 : 0);
    }
    for (int c = tid; c < BN * 4; c += kThreadsPerCta) {
      const int r = c >> 2, kc = (c & 3) * 16, gr = bn + r, gk = k0 + kc;
      const bool ok = gr < n && gk < kp;
      cp_async16(&sb[stage][r * kLds + kc], ok ? b + static_cast<size_t>(gr) * kp + gk : b, ok ? 16 : 0);
    }
    cp_async_commit();
  };
  load(0, 0);
  for (int kt = 0; kt < ktiles; ++kt) {
    if (kt + 1 < ktiles) {
      load((kt + 1) & 1, kt + 1);  // that stage was last read in iteration kt - 1, before its closing barrier
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int8_t* As = sa[kt & 1];
    const int8_t* Bs = sb[kt & 1];
#pragma unroll
    for (int ks = 0; ks < kBK; ks += 32) {
      unsigned af[MT][4], bf[NT][2];
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        const int8_t* p = As + (wm * WTM + i * 16 + g) * kLds + ks + t * 4;
        af[i][0] = *reinterpret_cast<const unsigned*>(p);
        af[i][1] = *reinterpret_cast<const unsigned*>(p + 8 * kLds);
        af[i][2] = *reinterpret_cast<const unsigned*>(p + 16);
        af[i][3] = *reinterpret_cast<const unsigned*>(p + 8 * kLds + 16);
      }
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int8_t* p = Bs + (wn * WTN + j * 8 + g) * kLds + ks + t * 4;
        bf[j][0] = *reinterpret_cast<const unsigned*>(p);
        bf[j][1] = *reinterpret_cast<const unsigned*>(p + 16);
      }
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) mma_s8(acc[i][j], af[i], bf[j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int row = bm + wm * WTM + i * 16 + g + (c >= 2 ? 8 : 0);
        const int col = bn + wn * WTN + j * 8 + t * 2 + (c & 1);
        if (row < m && col < n) s8_store(ep, static_cast<size_t>(n), row, col, acc[i][j][c]);
      }
}

// ------------------------------------------------------------------------------------------------ fp32 / fp16 GEMM

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }

// The reference: one thread per output, k in order.
template <typename WT>
__global__ void gemm_ref_kernel(const float* x, const WT* w, size_t m, size_t n, size_t k, const float* bias,
                                Activation act, float* out) {
  const size_t col = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= n) return;
  const WT* wr = w + col * k;
  for (size_t row = blockIdx.y; row < m; row += gridDim.y) {
    const float* xr = x + row * k;
    float acc = 0.0f;
    for (size_t i = 0; i < k; ++i) acc = __fmaf_rn(xr[i], to_f(wr[i]), acc);
    if (bias) acc = __fadd_rn(acc, bias[col]);
    out[row * n + col] = activate(acc, act);
  }
}

// A 64 x 64 block per CTA, k in steps of 16 through shared memory, 4 x 4 outputs per thread, fp32 accumulation
// (fp16 weights are widened as they are staged).
constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kTileThreads = 256;
template <typename WT>
__global__ void __launch_bounds__(kTileThreads)
    gemm_tiled_kernel(const float* __restrict__ x, const WT* __restrict__ w, int m, int n, int k,
                      const float* __restrict__ bias, Activation act, float* __restrict__ out) {
  __shared__ float xs[kTileK][kTileM + 4];
  __shared__ float ws[kTileK][kTileN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int bm = blockIdx.y * kTileM, bn = blockIdx.x * kTileN;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  for (int k0 = 0; k0 < k; k0 += kTileK) {
#pragma unroll
    for (int i = 0; i < (kTileM * kTileK) / kTileThreads; ++i) {
      const int e = tid + i * kTileThreads, r = e / kTileK, kk = e % kTileK;
      const int gr = bm + r, gk = k0 + kk;
      xs[kk][r] = (gr < m && gk < k) ? x[static_cast<size_t>(gr) * k + gk] : 0.0f;
      const int gc = bn + r;
      ws[kk][r] = (gc < n && gk < k) ? to_f(w[static_cast<size_t>(gc) * k + gk]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      float xa[4], wb[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) xa[i] = xs[kk][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) wb[j] = ws[kk][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = __fmaf_rn(xa[i], wb[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int row = bm + ty * 4 + i, col = bn + tx * 4 + j;
      if (row < m && col < n) {
        float y = acc[i][j];
        if (bias) y = __fadd_rn(y, bias[col]);
        out[static_cast<size_t>(row) * n + col] = activate(y, act);
      }
    }
}

// ------------------------------------------------------------------------------------------------ attention

// The reference: one thread per (row, head, output dim), an exact softmax over all keys in three passes.
__global__ void attention_ref_kernel(AttnArgs a) {
  const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= a.rows * a.heads * a.hd) return;
  const size_t dd = idx % a.hd, task = idx / a.hd, h = task % a.heads, r = task / a.heads;
  const float* q = a.q + r * a.ldq + h * a.hd;
  const float* k = a.kv + a.row_off[r] + h * a.hd;
  const float* v = k + a.v_off;
  const int n = a.len[r];
  auto score = [&](int j) {
    float s = 0.0f;
    for (size_t i = 0; i < a.hd; ++i) s = __fmaf_rn(q[i], k[j * a.ldkv + i], s);
    return s;
  };
  float mx = -INFINITY;
  for (int j = 0; j < n; ++j) mx = fmaxf(mx, score(j));
  float sum = 0.0f, acc = 0.0f;
  for (int j = 0; j < n; ++j) {
    const float p = expf(__fsub_rn(score(j), mx));
    sum = __fadd_rn(sum, p);
    acc = __fmaf_rn(p, v[j * a.ldkv + dd], acc);
  }
  a.o[r * a.ldo + h * a.hd + dd] = __fmul_rn(acc, __fdiv_rn(1.0f, sum));
}

// A warp per (row, head): keys 32 at a time, one per lane (score by a float4 dot product when aligned), an online
// softmax (running max and sum, earlier terms rescaled when the max rises), and P . V with each lane owning
// DPL output dims, the chunk's probabilities broadcast by shuffles. No scratch memory, any key count.
template <int DPL>
__global__ void __launch_bounds__(kRowWarps * kWarp) attention_warp_kernel(AttnArgs a, bool vec4) {
  __shared__ float qs[kRowWarps][kMaxHeadDim];
  const int lane = threadIdx.x % kWarp, wi = threadIdx.x / kWarp;
  const size_t task = static_cast<size_t>(blockIdx.x) * kRowWarps + wi;
  if (task >= a.rows * a.heads) return;  // warp-uniform
  const size_t h = task % a.heads, r = task / a.heads, hd = a.hd;
  const float* q = a.q + r * a.ldq + h * hd;
  for (size_t i = lane; i < hd; i += kWarp) qs[wi][i] = q[i];
  __syncwarp();
  const float* kb = a.kv + a.row_off[r] + h * hd;
  const float* vb = kb + a.v_off;
  const int n = a.len[r];
  float m = -INFINITY, l = 0.0f, acc[DPL];
#pragma unroll
  for (int d = 0; d < DPL; ++d) acc[d] = 0.0f;
  for (int j0 = 0; j0 < n; j0 += kWarp) {
    const int j = j0 + lane;
    float s = -INFINITY;
    if (j < n) {
      const float* kr = kb + static_cast<size_t>(j) * a.ldkv;
      float d0 = 0.0f;
      if (vec4) {
        float d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
        for (size_t i = 0; i < hd; i += 4) {
          const float4 kv4 = ld4(kr + i);
          d0 = __fmaf_rn(qs[wi][i], kv4.x, d0);
          d1 = __fmaf_rn(qs[wi][i + 1], kv4.y, d1);
          d2 = __fmaf_rn(qs[wi][i + 2], kv4.z, d2);
          d3 = __fmaf_rn(qs[wi][i + 3], kv4.w, d3);
        }
        d0 = __fadd_rn(__fadd_rn(d0, d1), __fadd_rn(d2, d3));
      } else {
        for (size_t i = 0; i < hd; ++i) d0 = __fmaf_rn(qs[wi][i], kr[i], d0);
      }
      s = d0;
    }
    const float mn = fmaxf(m, warp_max(s));
    const float p = j < n ? expf(__fsub_rn(s, mn)) : 0.0f;
    const float alpha = expf(__fsub_rn(m, mn));  // 0 on the first chunk (m = -Infinity)
    l = __fmaf_rn(l, alpha, warp_sum(p));
#pragma unroll
    for (int d = 0; d < DPL; ++d) acc[d] = __fmul_rn(acc[d], alpha);
    const int cnt = min(kWarp, n - j0);
    for (int jj = 0; jj < cnt; ++jj) {
      const float pj = __shfl_sync(kFull, p, jj);
      const float* vr = vb + static_cast<size_t>(j0 + jj) * a.ldkv;
#pragma unroll
      for (int d = 0; d < DPL; ++d) {
        const size_t c = lane + static_cast<size_t>(d) * kWarp;
        if (c < hd) acc[d] = __fmaf_rn(pj, vr[c], acc[d]);
      }
    }
    m = mn;
  }
  const float inv = __fdiv_rn(1.0f, l);
  float* o = a.o + r * a.ldo + h * hd;
#pragma unroll
  for (int d = 0; d < DPL; ++d) {
    const size_t c = lane + static_cast<size_t>(d) * kWarp;
    if (c < hd) o[c] = __fmul_rn(acc[d], inv);
  }
}

// ------------------------------------------------------------------------------------------------ Marian pieces

__global__ void embed_kernel(const float* embed, const __half* embed_half, const float* positions, const int32_t* ids,
                             const int32_t* pos, size_t rows, size_t d, float scale, float* x) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * d) return;
  const size_t r = i / d, j = i % d;
  const size_t off = static_cast<size_t>(ids[r]) * d + j;
  const float e = embed_half ? __half2float(embed_half[off]) : embed[off];
  // marian.cpp embed_rows: e * scale + p, two roundings (the CPU build does not contract them)
  x[i] = __fadd_rn(__fmul_rn(e, scale), positions[static_cast<size_t>(pos[r]) * d + j]);
}

__global__ void append_kv_kernel(const float* qkv, size_t rows, size_t d, float* kv, const int64_t* row_off,
                                 const int32_t* pos) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * 2 * d) return;
  const size_t r = i / (2 * d), c = i % (2 * d);
  kv[row_off[r] + static_cast<size_t>(pos[r]) * 2 * d + c] = qkv[r * 3 * d + d + c];
}

__global__ void scatter_rows_kernel(const float* src, size_t batch, size_t s, size_t d2, const int32_t* lens,
                                    const int64_t* dst_off, float* kv) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= batch * s * d2) return;
  const size_t row = i / d2, c = i % d2, b = row / s, p = row % s;
  if (p < static_cast<size_t>(lens[b])) kv[dst_off[b] + p * d2 + c] = src[i];
}

// ------------------------------------------------------------------------------------------------ top-k

__device__ __forceinline__ float no_nan(float v) { return v != v ? -INFINITY : v; }
// (va, ia) ranks before (vb, ib): larger value, or the same value at a lower index.
__device__ __forceinline__ bool ranks_before(float va, int ia, float vb, int ib) {
  return va > vb || (va == vb && ia < ib);
}

constexpr int kTopkThreads = 256;

// A block per row: the row's log-sum-exp (as kernels.inl row_lse: max, then the sum of exp(x - max) in double),
// then k picks, each the best entry ranking after the previous pick (ties to the lower index, NaN as -Infinity).
__global__ void __launch_bounds__(kTopkThreads) topk_kernel(const float* x, size_t cols, int k, int32_t* idx,
                                                            float* val) {
  __shared__ float s_v[kTopkThreads / kWarp];
  __shared__ int s_i[kTopkThreads / kWarp];
  __shared__ double s_d[kTopkThreads / kWarp];
  __shared__ float s_bv;
  __shared__ int s_bi;
  const int tid = threadIdx.x, lane = tid % kWarp, wi = tid / kWarp;
  constexpr int nw = kTopkThreads / kWarp;
  const float* row = x + static_cast<size_t>(blockIdx.x) * cols;
  float mx = -INFINITY;
  for (size_t j = tid; j < cols; j += kTopkThreads) mx = fmaxf(mx, no_nan(row[j]));
  mx = warp_max(mx);
  if (lane == 0) s_v[wi] = mx;
  __syncthreads();
  mx = -INFINITY;
  for (int w = 0; w < nw; ++w) mx = fmaxf(mx, s_v[w]);
  double sum = 0;
  if (mx != -INFINITY)
    for (size_t j = tid; j < cols; j += kTopkThreads) sum += expf(__fsub_rn(no_nan(row[j]), mx));
  sum = warp_sum_d(sum);
  if (lane == 0) s_d[wi] = sum;
  __syncthreads();
  sum = 0;
  for (int w = 0; w < nw; ++w) sum += s_d[w];
  const float lse = mx == -INFINITY ? -INFINITY : __fadd_rn(mx, static_cast<float>(log(sum)));
  float pv = INFINITY;
  int pi = -1;
  for (int p = 0; p < k; ++p) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (size_t j = tid; j < cols; j += kTopkThreads) {
      const float v = no_nan(row[j]);
      const int ji = static_cast<int>(j);
      if (ranks_before(pv, pi, v, ji) && ranks_before(v, ji, bv, bi)) {
        bv = v;
        bi = ji;
      }
    }
    for (int o = 16; o; o >>= 1) {
      const float ov = __shfl_xor_sync(kFull, bv, o);
      const int oi = __shfl_xor_sync(kFull, bi, o);
      if (ranks_before(ov, oi, bv, bi)) {
        bv = ov;
        bi = oi;
      }
    }
    __syncthreads();  // the previous pick's s_v / s_i reads are done
    if (lane == 0) {
      s_v[wi] = bv;
      s_i[wi] = bi;
    }
    __syncthreads();
    if (tid == 0) {
      float v = s_v[0];
      int i = s_i[0];
      for (int w = 1; w < nw; ++w)
        if (ranks_before(s_v[w], s_i[w], v, i)) {
          v = s_v[w];
          i = s_i[w];
        }
      s_bv = v;
      s_bi = i;
      idx[static_cast<size_t>(blockIdx.x) * k + p] = i;
      val[static_cast<size_t>(blockIdx.x) * k + p] = lse == -INFINITY ? v : __fsub_rn(v, lse);
    }
    __syncthreads();
    pv = s_bv;
    pi = s_bi;
  }
}

unsigned grid1(size_t work, unsigned threads) { return static_cast<unsigned>(ceil_div(work, threads)); }
unsigned grid_rows(size_t rows) { return static_cast<unsigned>(rows < 65535 ? rows : 65535); }

}  // namespace

// ------------------------------------------------------------------------------------------------ launchers

void launch_quantize(const float* x, size_t rows, size_t cols, int8_t* q, size_t stride, float* scales, int32_t* sums,
                     int* bad, bool reference, cudaStream_t s) {
  if (rows == 0) return;
  if (reference)
    quantize_ref_kernel<<<grid1(rows, kThreads), kThreads, 0, s>>>(x, rows, cols, q, stride, scales, sums, bad);
  else
    quantize_warp_kernel<<<grid1(rows, kRowWarps), kRowWarps * kWarp, 0, s>>>(x, rows, cols, q, stride, scales, sums,
                                                                              bad);
  check_launch("quantize kernel");
}

void launch_norm(const NormArgs& a, int* q_bad, bool reference, cudaStream_t s) {
  if (a.rows == 0) return;
  if (reference) {
    norm_ref_kernel<<<grid1(a.rows, kThreads), kThreads, 0, s>>>(a, q_bad);
    check_launch("norm kernel");
    return;
  }
  const unsigned grid = grid1(a.rows, kRowWarps), block = kRowWarps * kWarp;
  const bool vec = a.cols % 4 == 0 && aligned16(a.x) && aligned16(a.residual) && aligned16(a.bias) &&
                   aligned16(a.gamma) && aligned16(a.beta) && aligned16(a.out) && aligned16(a.sum_out) &&
                   (!a.q || (a.q_stride % 4 == 0 && aligned16(a.q)));
  const size_t nv = a.cols / 4;
  if (vec && nv <= kWarp * 1)
    norm_vec_kernel<1><<<grid, block, 0, s>>>(a, q_bad);
  else if (vec && nv <= kWarp * 2)
    norm_vec_kernel<2><<<grid, block, 0, s>>>(a, q_bad);
  else if (vec && nv <= kWarp * 4)
    norm_vec_kernel<4><<<grid, block, 0, s>>>(a, q_bad);
  else if (vec && nv <= kWarp * kNormMaxVec)
    norm_vec_kernel<kNormMaxVec><<<grid, block, 0, s>>>(a, q_bad);
  else if (vec && nv <= kWarp * kNormBlockWarps * 4)  // up to 4096 cols: a block of 8 warps per row
    norm_rowblock_kernel<4, kNormBlockWarps><<<static_cast<unsigned>(a.rows), kNormBlockWarps * kWarp, 0, s>>>(a, q_bad);
  else if (vec && nv <= kWarp * kNormBlockWarps * kNormMaxVec)  // up to 8192 cols
    norm_rowblock_kernel<kNormMaxVec, kNormBlockWarps><<<static_cast<unsigned>(a.rows), kNormBlockWarps * kWarp, 0, s>>>(
        a, q_bad);
  else
    norm_warp_kernel<<<grid, block, 0, s>>>(a, q_bad);
  check_launch("norm kernel");
}

void launch_gemm_s8(const int8_t* a, const int8_t* b, size_t m, size_t n, size_t kp, const S8Out& ep, bool reference,
                    cudaStream_t s) {
  if (m == 0 || n == 0) return;
  if (reference) {
    gemm_s8_ref_kernel<<<dim3(grid1(n, kThreads), grid_rows(m)), kThreads, 0, s>>>(a, b, m, n, kp, ep);
  } else if (m <= 32) {
    // a decoder step's few rows: narrow blocks, so a layer's n spreads over more SMs
    constexpr int BM = 32, BN = 32;
    gemm_s8_mma_kernel<BM, BN, 2, 2><<<dim3(grid1(n, BN), grid1(m, BM)), 4 * kWarp, 0, s>>>(
        a, b, static_cast<int>(m), static_cast<int>(n), static_cast<int>(kp), ep);
  } else {
    constexpr int BM = 128, BN = 128;
    gemm_s8_mma_kernel<BM, BN, 2, 4><<<dim3(grid1(n, BN), grid1(m, BM)), 8 * kWarp, 0, s>>>(
        a, b, static_cast<int>(m), static_cast<int>(n), static_cast<int>(kp), ep);
  }
  check_launch("int8 GEMM kernel");
}

template <typename WT>
static void launch_gemm_any(const float* x, const WT* w, size_t m, size_t n, size_t k, const float* bias,
                            Activation act, float* out, bool reference, cudaStream_t s) {
  if (m == 0 || n == 0) return;
  if (reference)
    gemm_ref_kernel<WT><<<dim3(grid1(n, kThreads), grid_rows(m)), kThreads, 0, s>>>(x, w, m, n, k, bias, act, out);
  else
    gemm_tiled_kernel<WT><<<dim3(grid1(n, kTileN), grid1(m, kTileM)), kTileThreads, 0, s>>>(
        x, w, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), bias, act, out);
  check_launch("GEMM kernel");
}

void launch_gemm_f32(const float* x, const float* w, size_t m, size_t n, size_t k, const float* bias, Activation act,
                     float* out, bool reference, cudaStream_t s) {
  launch_gemm_any(x, w, m, n, k, bias, act, out, reference, s);
}
void launch_gemm_f16(const float* x, const __half* w, size_t m, size_t n, size_t k, const float* bias, Activation act,
                     float* out, bool reference, cudaStream_t s) {
  launch_gemm_any(x, w, m, n, k, bias, act, out, reference, s);
}

void launch_attention(const AttnArgs& a, bool reference, cudaStream_t s) {
  if (a.rows == 0) return;
  if (a.hd == 0 || a.hd > static_cast<size_t>(kMaxHeadDim))
    throw DeviceError("attention: head size " + std::to_string(a.hd) + " is outside 1.." + std::to_string(kMaxHeadDim));
  if (reference) {
    attention_ref_kernel<<<grid1(a.rows * a.heads * a.hd, kThreads), kThreads, 0, s>>>(a);
  } else {
    const bool vec4 = a.off4 && a.hd % 4 == 0 && a.ldkv % 4 == 0 && aligned16(a.kv);
    const unsigned grid = grid1(a.rows * a.heads, kRowWarps), block = kRowWarps * kWarp;
    if (a.hd <= 32)
      attention_warp_kernel<1><<<grid, block, 0, s>>>(a, vec4);
    else if (a.hd <= 64)
      attention_warp_kernel<2><<<grid, block, 0, s>>>(a, vec4);
    else if (a.hd <= 128)
      attention_warp_kernel<4><<<grid, block, 0, s>>>(a, vec4);
    else
      attention_warp_kernel<8><<<grid, block, 0, s>>>(a, vec4);
  }
  check_launch("attention kernel");
}

void launch_embed(const float* embed, const __half* embed_half, const float* positions, const int32_t* ids,
                  const int32_t* pos, size_t rows, size_t d, float scale, float* x, cudaStream_t s) {
  embed_kernel<<<grid1(rows * d, kThreads), kThreads, 0, s>>>(embed, embed_half, positions, ids, pos, rows, d, scale, x);
  check_launch("embedding kernel");
}

void launch_append_kv(const float* qkv, size_t rows, size_t d, float* kv, const int64_t* row_off, const int32_t* pos,
                      cudaStream_t s) {
  append_kv_kernel<<<grid1(rows * 2 * d, kThreads), kThreads, 0, s>>>(qkv, rows, d, kv, row_off, pos);
  check_launch("KV append kernel");
}

void launch_scatter_rows(const float* src, size_t batch, size_t s, size_t d2, const int32_t* lens, const int64_t* dst_off,
                         float* kv, cudaStream_t st) {
  scatter_rows_kernel<<<grid1(batch * s * d2, kThreads), kThreads, 0, st>>>(src, batch, s, d2, lens, dst_off, kv);
  check_launch("cross K|V scatter kernel");
}

void launch_topk(const float* x, size_t rows, size_t cols, size_t k, int32_t* idx, float* val, cudaStream_t s) {
  if (rows == 0) return;
  topk_kernel<<<static_cast<unsigned>(rows), kTopkThreads, 0, s>>>(x, cols, static_cast<int>(k), idx, val);
  check_launch("top-k kernel");
}

}  // namespace chimera::cuda
