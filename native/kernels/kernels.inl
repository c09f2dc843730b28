// The kernels, written once over simd.inl and compiled once per ISA by kernels_<isa>.cpp, which defines
// CHIMERA_LEVEL and CHIMERA_NS before including this file. Only the int8 GEMM microkernel differs in kind
// between ISAs (VNNI u8 x s8 dot products versus the AVX2 sign trick); everything else is the same code.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "chimera/half.h"
#include "chimera/kernel_table.h"
#include "simd.inl"

namespace chimera {
namespace CHIMERA_NS {

using namespace simd;
// Register tiles are arrays indexed by compile-time loops; without a forced full unroll GCC keeps copies of
// the accumulators on the stack inside the k loop and loses most of the throughput.
#if defined(__clang__)
#define CHIMERA_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define CHIMERA_UNROLL _Pragma("GCC unroll 16")
#else
#define CHIMERA_UNROLL
#endif
// The ISA this build is counted as: the AMX build is the AVX-512 code plus AMX tiles in the int8 GEMM.
#ifndef CHIMERA_ISA_ID
#define CHIMERA_ISA_ID CHIMERA_LEVEL
#endif
constexpr Isa kIsa = static_cast<Isa>(CHIMERA_ISA_ID);

// ------------------------------------------------------------------------------------------------ norms

// Fallback for rows whose float mean or variance overflows (|x| around 1e19 and beyond): fp64 throughout.
// NaN or Inf inputs also land here and come out as an all-NaN row, the documented policy.
static void norm_row_f64(const NormArgs& a, const float* s, float* out) {
  const size_t n = a.cols;
  double mean = 0, var = 0;
  if (!a.rms) {
    for (size_t i = 0; i < n; ++i) mean += s[i];
    mean /= static_cast<double>(n);
  }
  for (size_t i = 0; i < n; ++i) var += (s[i] - mean) * (s[i] - mean);
  var /= static_cast<double>(n);
  const double rstd = 1.0 / std::sqrt(var + a.eps);
  for (size_t i = 0; i < n; ++i) {
    double v = (s[i] - mean) * rstd * a.gamma[i];
    if (a.beta) v += a.beta[i];
    out[i] = static_cast<float>(v);
  }
}

static bool quantize_row(const float* x, size_t n, int8_t* q, size_t stride, float* scale_out, int32_t* sum_out);

static bool norm_rows(const NormArgs& a, size_t r0, size_t r1) {
  count_kernel(a.rms ? Op::RmsNorm : Op::LayerNorm, kIsa);
  const size_t n = a.cols;
  const size_t nv = n - n % W;
  bool ok = true;
  for (size_t r = r0; r < r1; ++r) {
    const float* x = a.x + r * n;
    float* out = a.out + r * n;
    // s = x + residual + bias, written where the caller wants the pre-norm sum, else into out
    const float* s = x;
    vf acc0 = zero(), acc1 = zero();
    if (a.residual || a.bias || a.sum_out) {
      float* dst = a.sum_out ? a.sum_out + r * n : out;
      const float* res = a.residual ? a.residual + r * n : nullptr;
      size_t i = 0;
      for (; i < nv; i += W) {
        vf v = load(x + i);
        if (res) v = add(v, load(res + i));
        if (a.bias) v = add(v, load(a.bias + i));
        store(dst + i, v);
        acc0 = add(acc0, v);
      }
      if (i < n) {
        vf v = load_tail(x + i, n - i);
        if (res) v = add(v, load_tail(res + i, n - i));
        if (a.bias) v = add(v, load_tail(a.bias + i, n - i));
        store_tail(dst + i, v, n - i);
        acc1 = add(acc1, v);
      }
      s = dst;
    } else if (!a.rms) {
      size_t i = 0;
      for (; i + 2 * W <= n; i += 2 * W) {
        acc0 = add(acc0, load(x + i));
        acc1 = add(acc1, load(x + i + W));
      }
      for (; i < nv; i += W) acc0 = add(acc0, load(x + i));
      if (i < n) acc1 = add(acc1, load_tail(x + i, n - i));
    }
    const float mean = a.rms ? 0.0f : hsum(add(acc0, acc1)) / static_cast<float>(n);
    // second pass: centred sum of squares (two-pass for accuracy when |mean| >> std)
    const vf vm = set1(mean);
    vf s0 = zero(), s1 = zero();
    size_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
      const vf d0 = sub(load(s + i), vm), d1 = sub(load(s + i + W), vm);
      s0 = fmadd(d0, d0, s0);
      s1 = fmadd(d1, d1, s1);
    }
    for (; i < nv; i += W) {
      const vf d = sub(load(s + i), vm);
      s0 = fmadd(d, d, s0);
    }
    if (i < n) {
      const vf d = sub(load_tail(s + i, n - i), set1(mean));
#if CHIMERA_LEVEL == 2
      const vf dm = _mm512_maskz_mov_ps(tail_mask(n - i), d);  // masked-out lanes loaded 0, so 0 - mean: clear
#elif CHIMERA_LEVEL == 1
      const vf dm = _mm256_and_ps(d, _mm256_castsi256_ps(tail_mask(n - i)));
#else
      const vf dm = d;
#endif
      s1 = fmadd(dm, dm, s1);
    }
    const float var = hsum(add(s0, s1)) / static_cast<float>(n);
    if (!std::isfinite(mean) || !std::isfinite(var)) {
      norm_row_f64(a, s, out);
    } else {
      const float rstd = 1.0f / std::sqrt(var + a.eps);
      const vf vr = set1(rstd);
      size_t j = 0;
      for (; j < nv; j += W) {
        const vf v = mul(sub(load(s + j), vm), vr);
        const vf b = a.beta ? load(a.beta + j) : zero();
        store(out + j, fmadd(v, load(a.gamma + j), b));
      }
      if (j < n) {
        const size_t t = n - j;
        const vf v = mul(sub(load_tail(s + j, t), vm), vr);
        const vf b = a.beta ? load_tail(a.beta + j, t) : zero();
        store_tail(out + j, fmadd(v, load_tail(a.gamma + j, t), b), t);
      }
    }
    if (a.q && !quantize_row(out, n, a.q + r * a.q_stride, a.q_stride, a.q_scales + r, a.q_sums + r)) ok = false;
  }
  return ok;
}

// ------------------------------------------------------------------------------------------------ quantisation

static bool abs_max(const float* x, size_t n, float* out) {
  vf m0 = zero(), m1 = zero();
  bool nan = false;
  size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const vf a = load(x + i), b = load(x + i + W);
    nan |= any_nan(add(a, b));  // any NaN operand makes the sum NaN
    m0 = max(m0, abs(a));
    m1 = max(m1, abs(b));
  }
  for (; i + W <= n; i += W) {
    const vf a = load(x + i);
    nan |= any_nan(a);
    m0 = max(m0, abs(a));
  }
  if (i < n) {
    const vf a = load_tail(x + i, n - i);
    nan |= any_nan(a);
    m1 = max(m1, abs(a));
  }
  *out = hmax(max(m0, m1));
  return !nan && std::isfinite(*out);
}

// x / scale rounded half to even (the current rounding mode), clamped to [-127, 127], stored as int8;
// returns the sum of the stored values.
static int32_t quantize_store(const float* x, size_t n, float scale, int8_t* q) {
  size_t i = 0;
  int32_t sum = 0;
#if CHIMERA_LEVEL == 2
  const vf vs = set1(scale);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  __m512i vsum = _mm512_setzero_si512();
  for (; i < n; i += 16) {
    const size_t t = std::min<size_t>(16, n - i);
    const __mmask16 m = tail_mask(t);
    __m512i v = _mm512_cvtps_epi32(_mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
    v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
    vsum = _mm512_add_epi32(vsum, v);
    _mm_mask_storeu_epi8(q + i, m, _mm512_cvtepi32_epi8(v));
  }
  sum = _mm512_reduce_add_epi32(vsum);
#elif CHIMERA_LEVEL == 1
  const vf vs = set1(scale);
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  __m256i vsum = _mm256_setzero_si256();
  for (; i + 8 <= n; i += 8) {
    __m256i v = _mm256_cvtps_epi32(_mm256_div_ps(_mm256_loadu_ps(x + i), vs));
    v = _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
    vsum = _mm256_add_epi32(vsum, v);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(w, w));
  }
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), vsum);
  for (int l = 0; l < 8; ++l) sum += lanes[l];
#endif
  for (; i < n; ++i) {
    int v = static_cast<int>(std::nearbyint(x[i] / scale));
    v = std::min(127, std::max(-127, v));
    q[i] = static_cast<int8_t>(v);
    sum += v;
  }
  return sum;
}

static bool quantize_row(const float* x, size_t n, int8_t* q, size_t stride, float* scale_out, int32_t* sum_out) {
  float amax;
  if (!abs_max(x, n, &amax)) return false;
  std::memset(q + n, 0, stride - n);
  if (amax == 0.0f) {
    std::memset(q, 0, n);
    *scale_out = 0.0f;
    *sum_out = 0;
    return true;
  }
  const float scale = amax / 127.0f;
  *scale_out = scale;
  *sum_out = quantize_store(x, n, scale, q);
  return true;
}

static bool quantize_rows(const float* x, size_t cols, size_t r0, size_t r1, int8_t* q, size_t stride, float* scales,
                          int32_t* sums) {
  count_kernel(Op::QuantizeRows, kIsa);
  bool ok = true;
  for (size_t r = r0; r < r1; ++r) ok &= quantize_row(x + r * cols, cols, q + r * stride, stride, scales + r, sums + r);
  return ok;
}

static bool min_max(const float* x, size_t n, float* mn, float* mx) {
  count_kernel(Op::Dql, kIsa);
  vf lo = zero(), hi = zero();  // ONNX DynamicQuantizeLinear always includes 0 in the range
  bool nan = false;
  size_t i = 0;
  for (; i + W <= n; i += W) {
    const vf a = load(x + i);
    nan |= any_nan(a);
    lo = min(lo, a);
    hi = max(hi, a);
  }
  if (i < n) {
    const vf a = load_tail(x + i, n - i);  // zero-filled lanes do not change a range that includes 0
    nan |= any_nan(a);
    lo = min(lo, a);
    hi = max(hi, a);
  }
  *mn = hmin(lo);
  *mx = hmax(hi);
  return !nan && std::isfinite(*mn) && std::isfinite(*mx);
}

static void dql_apply(const float* x, size_t n, float scale, int zp, uint8_t* y) {
  size_t i = 0;
#if CHIMERA_LEVEL == 2
  const vf vs = set1(scale);
  const __m512i vz = _mm512_set1_epi32(zp), lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(255);
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(std::min<size_t>(16, n - i));
    __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), vs)), vz);
    v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
    _mm_mask_storeu_epi8(y + i, m, _mm512_cvtepi32_epi8(v));
  }
#elif CHIMERA_LEVEL == 1
  const vf vs = set1(scale);
  const __m256i vz = _mm256_set1_epi32(zp);
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_div_ps(_mm256_loadu_ps(x + i), vs)), vz);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), _mm_packus_epi16(w, w));  // saturates to [0, 255]
  }
#endif
  for (; i < n; ++i) {
    const int v = static_cast<int>(std::nearbyint(x[i] / scale)) + zp;
    y[i] = static_cast<uint8_t>(std::min(255, std::max(0, v)));
  }
}

// ------------------------------------------------------------------------------------------------ int16 dots

static void dot_s16(const int16_t* a, const int16_t* bt, size_t kp, size_t n, int32_t* c, size_t m0, size_t m1) {
  count_kernel(Op::MatmulInteger, kIsa);
  for (size_t m = m0; m < m1; ++m) {
    const int16_t* ar = a + m * kp;
    for (size_t j = 0; j < n; ++j) {
      const int16_t* br = bt + j * kp;
#if CHIMERA_LEVEL == 2
      __m512i acc = _mm512_setzero_si512();
      for (size_t k = 0; k < kp; k += 32)
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_loadu_si512(ar + k), _mm512_loadu_si512(br + k)));
      c[m * n + j] = _mm512_reduce_add_epi32(acc);
#elif CHIMERA_LEVEL == 1
      __m256i acc = _mm256_setzero_si256();
      for (size_t k = 0; k < kp; k += 16)
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar + k)),
                                                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(br + k))));
      alignas(32) int32_t lanes[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
      int32_t s = 0;
      for (int l = 0; l < 8; ++l) s += lanes[l];
      c[m * n + j] = s;
#else
      int32_t s = 0;
      for (size_t k = 0; k < kp; ++k) s += static_cast<int32_t>(ar[k]) * br[k];
      c[m * n + j] = s;
#endif
    }
  }
}

// ------------------------------------------------------------------------------------------------ GEMM epilogues

// One row of a tile: cols [c0, c0 + w) of the output, from int32 accumulators `acc` (w values).
static inline void s8_store_row(const S8Epilogue& ep, const PackedS8& wt, size_t row, size_t c0, size_t w,
                                const int32_t* acc, int32_t correction) {
  const size_t n = wt.n;
  if (ep.raw) {
    for (size_t c = 0; c < w; ++c) ep.raw[row * n + c0 + c] = acc[c] - correction;
    return;
  }
  const float sa = ep.a_scales[row];
  float* out = ep.out + row * n + c0;
  size_t c = 0;
#if CHIMERA_LEVEL == 2
  const __m512i corr = _mm512_set1_epi32(correction);
  for (; c < w; c += 16) {
    const size_t t = std::min<size_t>(16, w - c);
    const __mmask16 m = tail_mask(t);
    const vf dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_loadu_si512(acc + c), corr));
    const vf sc = mul(set1(sa), _mm512_maskz_loadu_ps(m, wt.scales + c0 + c));
    vf y = ep.bias ? fmadd(dot, sc, _mm512_maskz_loadu_ps(m, ep.bias + c0 + c)) : mul(dot, sc);
    _mm512_mask_storeu_ps(out + c, m, activate(y, ep.act));
  }
#elif CHIMERA_LEVEL == 1
  const __m256i corr = _mm256_set1_epi32(correction);
  for (; c < w; c += 8) {
    const size_t t = std::min<size_t>(8, w - c);
    const vf dot = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + c)), corr));
    const vf sc = mul(set1(sa), load_tail(wt.scales + c0 + c, t));
    vf y = ep.bias ? fmadd(dot, sc, load_tail(ep.bias + c0 + c, t)) : mul(dot, sc);
    store_tail(out + c, activate(y, ep.act), t);
  }
#else
  for (; c < w; ++c) {
    float y = static_cast<float>(acc[c] - correction) * (sa * wt.scales[c0 + c]);
    if (ep.bias) y += ep.bias[c0 + c];
    out[c] = activate(y, ep.act);
  }
#endif
}

static inline void f32_store_row(const F32Epilogue& ep, size_t n, size_t row, size_t c0, size_t w, const float* acc) {
  float* out = ep.out + row * ep.ldo + c0;
  size_t c = 0;
  for (; c < w; c += W) {
    const size_t t = std::min<size_t>(W, w - c);
    vf y = load(acc + c);
    if (ep.alpha != 1.0f) y = mul(y, set1(ep.alpha));
    if (ep.beta != 0.0f) y = fmadd(load_tail(out + c, t), set1(ep.beta), y);
    if (ep.bias) y = add(y, load_tail(ep.bias + c0 + c, t));
    y = activate(y, ep.act);
    if (t == static_cast<size_t>(W)) store(out + c, y); else store_tail(out + c, y, t);
  }
  (void)n;
}

// ------------------------------------------------------------------------------------------------ int8 GEMM
// Layout (see PackedS8): groups of 64 channels; within a group, for each 4 k, 4 panels x 16 channels x 4 k
// bytes. A tile reads one contiguous stream per group, which the hardware prefetchers follow best.

// The next L2 block of weights, requested a few lines per k step while the current block is computed: a
// decoder step's weights (~50 MB at OPUS-MT size) do not fit in L3, so every block comes from DRAM, and the
// first row tile of a block would otherwise wait on it at each group.
struct S8Prefetch {
  const char* p = nullptr;
  const char* end = nullptr;
  size_t lines = 0;  // cache lines per k step
};
constexpr size_t kLine = 64;  // bytes per cache line
#if CHIMERA_LEVEL > 0
static inline void s8_prefetch_step(const char*& p, const char* end, size_t lines) {
  if (p < end) {
    for (size_t l = 0; l < lines; ++l) _mm_prefetch(p + l * kLine, _MM_HINT_T1);
    p += lines * kLine;
  }
}
#endif

#if CHIMERA_LEVEL == 2
#ifndef CHIMERA_PF
#define CHIMERA_PF 4096
#endif
// MR rows x NG groups (64 channels each): acc += u8(W) . s8(x) four k at a time with vpdpbusd. The weights
// are u8 = s8 + 128, so the result carries 128 * sum_k x[k], removed per row in the epilogue.
template <int MR, int NG>
static void s8_tile(const PackedS8& wt, const int8_t* q, size_t stride, size_t row0, size_t g, const S8Epilogue& ep,
                    S8Prefetch& pf) {
  constexpr int NR = 4 * NG;
  const size_t kq = wt.kp / 4;
  const size_t gstride = wt.kp * 64;
  const char* pfp = pf.p;
  const char* const pfe = pf.end;
  const size_t pfl = pf.lines;
  const uint8_t* b = wt.data + g * gstride;
  const int8_t* a = q + row0 * stride;
  __m512i acc[MR][NR];
  CHIMERA_UNROLL
  for (int r = 0; r < MR; ++r)
    CHIMERA_UNROLL
    for (int j = 0; j < NR; ++j) acc[r][j] = _mm512_setzero_si512();
  for (size_t k = 0; k < kq; ++k) {
    __m512i bv[NR];
    CHIMERA_UNROLL
    for (int j = 0; j < NR; ++j) bv[j] = _mm512_load_si512(b + (j / 4) * gstride + k * 256 + (j % 4) * 64);
    if constexpr (MR <= 2) {
      // Few rows: the tile streams weights faster than the L2 prefetcher ramps up on each new group.
      CHIMERA_UNROLL
      for (int j = 0; j < NR; ++j) _mm_prefetch(reinterpret_cast<const char*>(b + (j / 4) * gstride + k * 256 + (j % 4) * 64 + CHIMERA_PF), _MM_HINT_T0);
    }
    s8_prefetch_step(pfp, pfe, pfl);
    CHIMERA_UNROLL
    for (int r = 0; r < MR; ++r) {
      int32_t a4;
      std::memcpy(&a4, a + r * stride + k * 4, 4);
      const __m512i av = _mm512_set1_epi32(a4);
      CHIMERA_UNROLL
      for (int j = 0; j < NR; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], bv[j], av);
    }
  }
  // Spill the whole tile with fully unrolled stores first: indexing acc by a run-time row in the epilogue
  // loop would force the accumulators into memory for the whole k loop.
  alignas(64) int32_t tile[MR][NR * 16];
  CHIMERA_UNROLL
  for (int r = 0; r < MR; ++r)
    CHIMERA_UNROLL
    for (int j = 0; j < NR; ++j) _mm512_store_si512(tile[r] + j * 16, acc[r][j]);
  pf.p = pfp;
  const size_t c0 = g * 64;
  const size_t w = std::min<size_t>(NR * 16, wt.n - c0);
  for (int r = 0; r < MR; ++r) s8_store_row(ep, wt, row0 + r, c0, w, tile[r], 128 * ep.a_sums[row0 + r]);
}
// Rows per tile, and groups per tile for a given row count: MR x 16 NG accumulators within 32 registers.
constexpr int kS8MaxRows = 6;
constexpr int s8_groups(int mr) { return mr <= 2 ? 2 : 1; }
#elif CHIMERA_LEVEL == 1 && defined(CHIMERA_AVXVNNI)
// AVX-VNNI: the VNNI scheme of the AVX-512 path on 256-bit registers. One tile is MR rows x one 16-channel
// panel (two ymm of 8 channels x 4 k); a group's four panels are done in turn.
template <int MR>
static void s8_panel(const PackedS8& wt, const int8_t* q, size_t stride, size_t row0, size_t g, int j0,
                     const S8Epilogue& ep, S8Prefetch& pf) {
  const size_t kq = wt.kp / 4;
  const uint8_t* b = wt.data + g * wt.kp * 64 + j0 * 64;
  const int8_t* a = q + row0 * stride;
  const char* pfp = pf.p;
  const char* const pfe = pf.end;
  const size_t pfl = pf.lines;
  __m256i acc[MR][2];
  CHIMERA_UNROLL
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (size_t k = 0; k < kq; ++k) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + k * 256));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + k * 256 + 32));
    s8_prefetch_step(pfp, pfe, pfl);
    CHIMERA_UNROLL
    for (int r = 0; r < MR; ++r) {
      int32_t a4;
      std::memcpy(&a4, a + r * stride + k * 4, 4);
      const __m256i av = _mm256_set1_epi32(a4);
      acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], b0, av);
      acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], b1, av);
    }
  }
  pf.p = pfp;
  alignas(32) int32_t tile[MR][16];
  CHIMERA_UNROLL
  for (int r = 0; r < MR; ++r) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(tile[r]), acc[r][0]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(tile[r] + 8), acc[r][1]);
  }
  const size_t c0 = g * 64 + j0 * 16;
  if (c0 >= wt.n) return;
  const size_t w = std::min<size_t>(16, wt.n - c0);
  for (int r = 0; r < MR; ++r) s8_store_row(ep, wt, row0 + r, c0, w, tile[r], 128 * ep.a_sums[row0 + r]);
}
template <int MR, int NG>
static void s8_tile(const PackedS8& wt, const int8_t* q, size_t stride, size_t row0, size_t g, const S8Epilogue& ep,
                    S8Prefetch& pf) {
  for (int j = 0; j < 4 * NG; ++j) s8_panel<MR>(wt, q, stride, row0, g + j / 4, j % 4, ep, pf);
}
// 6 rows x 2 accumulators + 2 weight vectors + the broadcast: 15 of the 16 ymm registers.
constexpr int kS8MaxRows = 6;
constexpr int s8_groups(int) { return 1; }
#elif CHIMERA_LEVEL == 1
// AVX2 has no u8 x s8 dot product into int32. vpmaddubsw (u8 x s8 -> saturating int16 pairs) is exact when
// both operands stay within 7 bits of magnitude: |x| * sign(w, x) keeps each pair <= 2 * 127 * 127 = 32258.
// One tile is MR rows x one 16-channel panel; a group's four panels are done in turn.
template <int MR>
static void s8_panel(const PackedS8& wt, const int8_t* q, size_t stride, size_t row0, size_t g, int j0,
                     const S8Epilogue& ep, S8Prefetch& pf) {
  const char* pfp = pf.p;
  const char* const pfe = pf.end;
  const size_t pfl = pf.lines;
  const size_t kq = wt.kp / 4;
  const uint8_t* b = wt.data + g * wt.kp * 64 + j0 * 64;
  const int8_t* a = q + row0 * stride;
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[MR][2];
  CHIMERA_UNROLL
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (size_t k = 0; k < kq; ++k) {
    const __m256i b0 = _mm256_xor_si256(_mm256_load_si256(reinterpret_cast<const __m256i*>(b + k * 256)), flip);
    const __m256i b1 = _mm256_xor_si256(_mm256_load_si256(reinterpret_cast<const __m256i*>(b + k * 256 + 32)), flip);
    s8_prefetch_step(pfp, pfe, pfl);
    CHIMERA_UNROLL
    for (int r = 0; r < MR; ++r) {
      int32_t a4;
      std::memcpy(&a4, a + r * stride + k * 4, 4);
      const __m256i av = _mm256_set1_epi32(a4);
      const __m256i aa = _mm256_abs_epi8(av);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(b0, av)), ones));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(b1, av)), ones));
    }
  }
  pf.p = pfp;
  alignas(32) int32_t tile[MR][16];
  CHIMERA_UNROLL
  for (int r = 0; r < MR; ++r) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(tile[r]), acc[r][0]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(tile[r] + 8), acc[r][1]);
  }
  const size_t c0 = g * 64 + j0 * 16;
  if (c0 >= wt.n) return;
  const size_t w = std::min<size_t>(16, wt.n - c0);
  for (int r = 0; r < MR; ++r) s8_store_row(ep, wt, row0 + r, c0, w, tile[r], 0);
}
template <int MR, int NG>
static void s8_tile(const PackedS8& wt, const int8_t* q, size_t stride, size_t row0, size_t g, const S8Epilogue& ep,
                    S8Prefetch& pf) {
  for (int j = 0; j < 4 * NG; ++j) s8_panel<MR>(wt, q, stride, row0, g + j / 4, j % 4, ep, pf);
}
constexpr int kS8MaxRows = 4;
constexpr int s8_groups(int) { return 1; }
#else
template <int MR, int NG>
static void s8_tile(const PackedS8& wt, const int8_t* q, size_t stride, size_t row0, size_t g, const S8Epilogue& ep,
                    S8Prefetch&) {
  static_assert(MR == 1 && NG == 1, "the scalar path works one row and one group at a time");
  const size_t kq = wt.kp / 4;
  const uint8_t* b = wt.data + g * wt.kp * 64;
  const int8_t* a = q + row0 * stride;
  int32_t tile[64] = {0};
  for (size_t k = 0; k < kq; ++k)
    for (int c = 0; c < 64; ++c)
      for (int i = 0; i < 4; ++i)
        tile[c] += a[k * 4 + i] * (static_cast<int32_t>(b[k * 256 + (c / 16) * 64 + (c % 16) * 4 + i]) - 128);
  const size_t c0 = g * 64;
  s8_store_row(ep, wt, row0, c0, std::min<size_t>(64, wt.n - c0), tile, 0);
}
constexpr int kS8MaxRows = 1;
constexpr int s8_groups(int) { return 1; }
#endif

// Rows [row0, row0 + MR) over groups [g0, g1), several groups per tile when few rows leave registers free.
template <int MR>
static void s8_rows(const PackedS8& wt, const int8_t* q, size_t stride, size_t row0, size_t g0, size_t g1,
                    const S8Epilogue& ep, S8Prefetch& pf) {
  constexpr int NG = s8_groups(MR);
  size_t g = g0;
  if constexpr (NG > 1)
    for (; g + NG <= g1; g += NG) s8_tile<MR, NG>(wt, q, stride, row0, g, ep, pf);
  for (; g < g1; ++g) s8_tile<MR, 1>(wt, q, stride, row0, g, ep, pf);
}

template <int MR>
static void s8_dispatch_rows(int mr, const PackedS8& wt, const int8_t* q, size_t stride, size_t row0, size_t g0,
                             size_t g1, const S8Epilogue& ep, S8Prefetch& pf) {
  if constexpr (MR >= 1) {
    if (mr == MR) return s8_rows<MR>(wt, q, stride, row0, g0, g1, ep, pf);
    if constexpr (MR > 1) return s8_dispatch_rows<MR - 1>(mr, wt, q, stride, row0, g0, g1, ep, pf);
  }
}

#if defined(CHIMERA_AMX)
// AMX-INT8: a 32 x 32 output block per k step from two 16-row tiles of x (signed) and two 16-channel panels
// of weights (unsigned, u8 = s8 + 128, corrected per row as on the VNNI path). A panel of our layout is
// already the tile's "VNNI" form: each row holds 4 k for 16 channels, rows 256 bytes apart.
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

static void amx_block(const PackedS8& wt, const int8_t* q, size_t stride, size_t row0, size_t g, int j0,
                      const S8Epilogue& ep) {
  const size_t kblocks = wt.kp / 64;
  const uint8_t* b = wt.data + g * wt.kp * 64 + j0 * 64;
  const int8_t* a = q + row0 * stride;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (size_t kb = 0; kb < kblocks; ++kb) {
    _tile_loadd(4, a + kb * 64, stride);
    _tile_loadd(5, a + 16 * stride + kb * 64, stride);
    _tile_loadd(6, b + kb * 16 * 256, 256);
    _tile_loadd(7, b + kb * 16 * 256 + 64, 256);
    _tile_dpbsud(0, 4, 6);
    _tile_dpbsud(1, 4, 7);
    _tile_dpbsud(2, 5, 6);
    _tile_dpbsud(3, 5, 7);
  }
  alignas(64) int32_t c[32][32];
  _tile_stored(0, &c[0][0], 128);
  _tile_stored(1, &c[0][16], 128);
  _tile_stored(2, &c[16][0], 128);
  _tile_stored(3, &c[16][16], 128);
  const size_t c0 = g * 64 + j0 * 16;
  if (c0 >= wt.n) return;
  const size_t w = std::min<size_t>(32, wt.n - c0);
  for (int r = 0; r < 32; ++r) s8_store_row(ep, wt, row0 + r, c0, w, c[r], 128 * ep.a_sums[row0 + r]);
}

// Runs whole 32-row blocks on AMX and returns how many rows it did (0 when the shape does not suit tiles).
static size_t gemm_s8_amx(const PackedS8& wt, const int8_t* q, size_t stride, size_t rows, size_t g0, size_t g1,
                          const S8Epilogue& ep) {
  if (wt.kp % 64 != 0 || rows < 32) return 0;
  TileConfig cfg{};
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
  const size_t done = rows / 32 * 32;
  const size_t block = std::max<size_t>(1, (256 * 1024) / (wt.kp * 64));
  for (size_t gb = g0; gb < g1; gb += block) {
    const size_t ge = std::min(g1, gb + block);
    for (size_t r = 0; r < done; r += 32)
      for (size_t g = gb; g < ge; ++g) {
        amx_block(wt, q, stride, r, g, 0, ep);
        amx_block(wt, q, stride, r, g, 2, ep);
      }
  }
  _tile_release();  // drop the tile state so context switches stay cheap
  return done;
}
#endif

// Weights per block of groups: with the activations they stay in a 1 MiB L2 across all row tiles, and one
// block in flight from memory fits beside them.
constexpr size_t kS8BlockBytes = 256 * 1024;
// A few rows cannot spread a whole block over their k steps; beyond this many lines per step the prefetches
// crowd the loads of the tile itself.
constexpr size_t kS8MaxPrefetchLines = 4;
// With fewer row tiles per block a tile streams its weights faster than memory delivers them anyway (the
// hardware prefetchers already run flat out): requests for the next block would only compete with them.
constexpr size_t kS8PrefetchMinTiles = 4;
static void gemm_s8(const PackedS8& wt, const int8_t* q, size_t stride, size_t rows, size_t g0, size_t g1,
                    const S8Epilogue& ep) {
  count_kernel(Op::GemmS8, kIsa);
  size_t first = 0;
#if defined(CHIMERA_AMX)
  first = gemm_s8_amx(wt, q, stride, rows, g0, g1, ep);
#endif
  // Groups outermost in blocks that fit in L2 beside the activations, so each block of weights is read
  // from memory once for all row tiles.
  const size_t gstride = wt.kp * 64;
  const size_t block = std::max<size_t>(2, kS8BlockBytes / gstride);
  const size_t row_tiles = rows > first ? (rows - first + kS8MaxRows - 1) / kS8MaxRows : 0;
  for (size_t gb = g0; gb < g1; gb += block) {
    const size_t ge = std::min(g1, gb + block);
    // Spread the next block's lines evenly over this block's k steps (every row tile, every group).
    S8Prefetch pf;
    const size_t next = std::min(g1, ge + block) - ge;
    const size_t steps = row_tiles * (ge - gb) * (wt.kp / 4);
    if (next > 0 && row_tiles >= kS8PrefetchMinTiles) {
      pf.p = reinterpret_cast<const char*>(wt.data + ge * gstride);
      pf.end = pf.p + next * gstride;
      pf.lines = std::min(kS8MaxPrefetchLines, (next * gstride / kLine + steps - 1) / steps);
    }
    size_t r = first;
    for (; r + kS8MaxRows <= rows; r += kS8MaxRows) s8_rows<kS8MaxRows>(wt, q, stride, r, gb, ge, ep, pf);
    if (r < rows) s8_dispatch_rows<kS8MaxRows>(static_cast<int>(rows - r), wt, q, stride, r, gb, ge, ep, pf);
  }
}

// ------------------------------------------------------------------------------------------------ fp32 GEMM
// Packed b (see PackedF32): groups of 64 columns, each k row of a group holding 4 panels of 16 floats.

// The same layout holds fp16 weights (the fp16 tier: half the bytes, converted to fp32 as they are loaded).

// Start of panel p's row 0; row kk is 64 elements further.
template <typename WT>
static inline const WT* f32_panel(const WT* b, size_t k, size_t p) { return b + (p / 4) * k * 64 + (p % 4) * 16; }


#if CHIMERA_LEVEL == 2
static inline __m512 load16(const float* p) { return _mm512_load_ps(p); }
static inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)));
}
constexpr int kF32MaxRows = 6;
constexpr int f32_group(int mr) { return mr <= 2 ? 8 : 4; }
template <int MR, int NR, typename WT>
static void f32_tile(const float* a, size_t lda, const WT* b, size_t k, size_t n, size_t row0, size_t p,
                     const F32Epilogue& ep) {
  const WT* bp[NR];
  CHIMERA_UNROLL
  for (int j = 0; j < NR; ++j) bp[j] = f32_panel(b, k, p + j);
  const float* ar = a + row0 * lda;
  __m512 acc[MR][NR];
  CHIMERA_UNROLL
  for (int r = 0; r < MR; ++r)
    CHIMERA_UNROLL
    for (int j = 0; j < NR; ++j) acc[r][j] = _mm512_setzero_ps();
  for (size_t kk = 0; kk < k; ++kk) {
    __m512 bv[NR];
    CHIMERA_UNROLL
    for (int j = 0; j < NR; ++j) bv[j] = load16(bp[j] + kk * 64);
    CHIMERA_UNROLL
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(ar[r * lda + kk]);
      CHIMERA_UNROLL
      for (int j = 0; j < NR; ++j) acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
    }
  }
  alignas(64) float tile[MR][NR * 16];
  CHIMERA_UNROLL
  for (int r = 0; r < MR; ++r)
    CHIMERA_UNROLL
    for (int j = 0; j < NR; ++j) _mm512_store_ps(tile[r] + j * 16, acc[r][j]);
  const size_t c0 = p * 16;
  if (c0 >= n) return;
  for (int r = 0; r < MR; ++r) f32_store_row(ep, n, row0 + r, c0, std::min<size_t>(NR * 16, n - c0), tile[r]);
}
#elif CHIMERA_LEVEL == 1
static inline __m256 load8(const float* p) { return _mm256_load_ps(p); }
static inline __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(p))); }
constexpr int kF32MaxRows = 6;
constexpr int f32_group(int mr) { return mr <= 2 ? 2 : 1; }
template <int MR, int NR, typename WT>
static void f32_tile(const float* a, size_t lda, const WT* b, size_t k, size_t n, size_t row0, size_t p,
                     const F32Epilogue& ep) {
  const WT* bp[NR];
  CHIMERA_UNROLL
  for (int j = 0; j < NR; ++j) bp[j] = f32_panel(b, k, p + j);
  const float* ar = a + row0 * lda;
  __m256 acc[MR][2 * NR];
  CHIMERA_UNROLL
  for (int r = 0; r < MR; ++r)
    CHIMERA_UNROLL
    for (int j = 0; j < 2 * NR; ++j) acc[r][j] = _mm256_setzero_ps();
  for (size_t kk = 0; kk < k; ++kk) {
    __m256 bv[2 * NR];
    CHIMERA_UNROLL
    for (int j = 0; j < NR; ++j) {
      bv[2 * j] = load8(bp[j] + kk * 64);
      bv[2 * j + 1] = load8(bp[j] + kk * 64 + 8);
    }
    CHIMERA_UNROLL
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(ar + r * lda + kk);
      CHIMERA_UNROLL
      for (int j = 0; j < 2 * NR; ++j) acc[r][j] = _mm256_fmadd_ps(av, bv[j], acc[r][j]);
    }
  }
  alignas(32) float tile[MR][NR * 16];
  CHIMERA_UNROLL
  for (int r = 0; r < MR; ++r)
    CHIMERA_UNROLL
    for (int j = 0; j < 2 * NR; ++j) _mm256_store_ps(tile[r] + j * 8, acc[r][j]);
  const size_t c0 = p * 16;
  if (c0 >= n) return;
  for (int r = 0; r < MR; ++r) f32_store_row(ep, n, row0 + r, c0, std::min<size_t>(NR * 16, n - c0), tile[r]);
}
#else
static inline float to_float(float x) { return x; }
static inline float to_float(uint16_t h) { return half_to_float(h); }
constexpr int f32_group(int) { return 1; }
#if defined(__GNUC__)
// Two rows share each loaded panel row, in 4-float vectors that the compiler maps to SSE2 or NEON registers. Written
// with 16 scalar accumulators, GCC spills some of them and the k loop runs at the store-forwarding latency (the
// blocked attention ran ~1 GFMA/s here). Each element is still one multiply-add chain over k in order, the same
// operations as before, so results do not depend on how rows are grouped.
constexpr int kF32MaxRows = 2;
typedef float f32x4 __attribute__((vector_size(16)));
template <int MR, int NR, typename WT>
static void f32_tile(const float* a, size_t lda, const WT* b, size_t k, size_t n, size_t row0, size_t p,
                     const F32Epilogue& ep) {
  const WT* bp = f32_panel(b, k, p);
  const float* ar = a + row0 * lda;
  f32x4 acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = f32x4{0.0f, 0.0f, 0.0f, 0.0f};
  for (size_t kk = 0; kk < k; ++kk) {
    float bs[16];
    for (int c = 0; c < 16; ++c) bs[c] = to_float(bp[kk * 64 + c]);
    f32x4 bv[4];
    std::memcpy(bv, bs, sizeof bv);
    for (int r = 0; r < MR; ++r) {
      const float x = ar[r * lda + kk];
      const f32x4 av = {x, x, x, x};
      for (int c = 0; c < 4; ++c) acc[r][c] += av * bv[c];
    }
  }
  const size_t c0 = p * 16;
  if (c0 >= n) return;
  for (int r = 0; r < MR; ++r) {
    float tile[16];
    std::memcpy(tile, acc[r], sizeof tile);
    f32_store_row(ep, n, row0 + r, c0, std::min<size_t>(16, n - c0), tile);
  }
}
#else
constexpr int kF32MaxRows = 1;
template <int MR, int NR, typename WT>
static void f32_tile(const float* a, size_t lda, const WT* b, size_t k, size_t n, size_t row0, size_t p,
                     const F32Epilogue& ep) {
  const WT* bp = f32_panel(b, k, p);
  const float* ar = a + row0 * lda;
  float tile[16] = {0};
  for (size_t kk = 0; kk < k; ++kk)
    for (int c = 0; c < 16; ++c) tile[c] += ar[kk] * to_float(bp[kk * 64 + c]);
  const size_t c0 = p * 16;
  if (c0 >= n) return;
  f32_store_row(ep, n, row0, c0, std::min<size_t>(16, n - c0), tile);
}
#endif
#endif

// Panels come in whole groups of 4 (padding columns are zero and never stored), so every tile is 4 or 8
// panels wide: never a single accumulator chain per row.
template <int MR, typename WT>
static void f32_rows(const float* a, size_t lda, const WT* b, size_t k, size_t n, size_t row0, size_t p0, size_t p1,
                     const F32Epilogue& ep) {
  constexpr int G = f32_group(MR);
  size_t p = p0;
  for (; p + G <= p1; p += G) f32_tile<MR, G, WT>(a, lda, b, k, n, row0, p, ep);
  if constexpr (G > 4)
    for (; p + 4 <= p1; p += 4) f32_tile<MR, 4, WT>(a, lda, b, k, n, row0, p, ep);
  for (; p < p1; ++p) f32_tile<MR, 1, WT>(a, lda, b, k, n, row0, p, ep);
}

template <int MR, typename WT>
static void f32_dispatch_rows(int mr, const float* a, size_t lda, const WT* b, size_t k, size_t n, size_t row0,
                              size_t p0, size_t p1, const F32Epilogue& ep) {
  if constexpr (MR >= 1) {
    if (mr == MR) return f32_rows<MR, WT>(a, lda, b, k, n, row0, p0, p1, ep);
    if constexpr (MR > 1) return f32_dispatch_rows<MR - 1, WT>(mr, a, lda, b, k, n, row0, p0, p1, ep);
  }
}

template <typename WT>
static void gemm_packed(const float* a, size_t lda, size_t rows, const WT* b, size_t k, size_t n, size_t p0, size_t p1,
                        const F32Epilogue& ep) {
  count_kernel(ep.op, kIsa);
  const size_t block = std::max<size_t>(8, (256 * 1024) / (k * 16 * sizeof(WT)) / 4 * 4);
  for (size_t pb = p0; pb < p1; pb += block) {
    const size_t pe = std::min(p1, pb + block);
    size_t r = 0;
    for (; r + kF32MaxRows <= rows; r += kF32MaxRows) f32_rows<kF32MaxRows, WT>(a, lda, b, k, n, r, pb, pe, ep);
    if (r < rows) f32_dispatch_rows<kF32MaxRows, WT>(static_cast<int>(rows - r), a, lda, b, k, n, r, pb, pe, ep);
  }
}

static void gemm_f32(const float* a, size_t lda, size_t rows, const float* b, size_t k, size_t n, size_t p0, size_t p1,
                     const F32Epilogue& ep) {
  gemm_packed<float>(a, lda, rows, b, k, n, p0, p1, ep);
}

static void gemm_f16(const float* a, size_t lda, size_t rows, const uint16_t* b, size_t k, size_t n, size_t p0,
                     size_t p1, const F32Epilogue& ep) {
  gemm_packed<uint16_t>(a, lda, rows, b, k, n, p0, p1, ep);
}

// ------------------------------------------------------------------------------------------------ attention

static inline float dot(const float* a, const float* b, size_t n) {
  vf acc = zero();
  size_t i = 0;
  for (; i + W <= n; i += W) acc = fmadd(load(a + i), load(b + i), acc);
  float s = hsum(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

static inline void axpy(float alpha, const float* x, float* y, size_t n) {
  const vf va = set1(alpha);
  size_t i = 0;
  for (; i + W <= n; i += W) store(y + i, fmadd(va, load(x + i), load(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// NaN read as -Infinity (x86 max returns its second operand when either is NaN; the scalar max does too).
#if CHIMERA_LEVEL > 0
static inline vf no_nan(vf v) { return max(v, set1(-INFINITY)); }
#endif
static inline float no_nan(float v) { return v != v ? -INFINITY : v; }

// The row's max and log-sum-exp (mx + log sum exp(x - mx)), or -Infinity when every entry is -Infinity.
// log_softmax and top-k both use it, so top-k's log-probabilities are bit for bit what log_softmax writes.
// With kNoNan, NaN entries count as -Infinity; on a row without NaN both variants do identical arithmetic.
template <bool kNoNan>
static inline float row_lse(const float* row, size_t cols) {
  auto ld = [&](size_t j) { return kNoNan ? no_nan(load(row + j)) : load(row + j); };
  auto at = [&](size_t j) { return kNoNan ? no_nan(row[j]) : row[j]; };
  vf m = set1(-INFINITY);
  size_t j = 0;
  for (; j + W <= cols; j += W) m = max(m, ld(j));
  float mx = hmax(m);
  for (; j < cols; ++j) mx = std::max(mx, at(j));
  if (mx == -INFINITY) return -INFINITY;
  const vf vm = set1(mx);
  // Partial sums per 8 vectors, added in double: a 58k-entry row summed in one float loses ~1e-4.
  double sum = 0;
  for (j = 0; j + W <= cols;) {
    vf s = zero();
    for (int u = 0; u < 8 && j + W <= cols; ++u, j += W) s = add(s, simd::exp(sub(ld(j), vm)));
    sum += hsum(s);
  }
  for (; j < cols; ++j) sum += std::exp(at(j) - mx);
  return mx + static_cast<float>(std::log(sum));
}

// x[r] -= logsumexp(x[r]) for rows [r0, r1): beam search scores every token of every beam each step.
static void log_softmax_rows(float* x, size_t cols, size_t r0, size_t r1) {
  count_kernel(Op::LogSoftmax, kIsa);
  for (size_t r = r0; r < r1; ++r) {
    float* row = x + r * cols;
    const float l = row_lse<false>(row, cols);
    if (l == -INFINITY) continue;  // nothing allowed in this row: leave it all -inf
    const vf lse = set1(l);
    size_t j = 0;
    for (j = 0; j + W <= cols; j += W) store(row + j, sub(load(row + j), lse));
    for (; j < cols; ++j) row[j] -= l;
  }
}

// ------------------------------------------------------------------------------------------------ top-k

// Up to this k a sorted list kept by insertion beats sorting indices: a typical row of logits changes the
// list a handful of times, and the scan compares W entries at a time against the current k-th value.
constexpr size_t kInsertionTopK = 64;

// True when any entry of v exceeds t (NaN never does).
static inline bool any_gt(vf v, float t) {
#if CHIMERA_LEVEL == 2
  return _mm512_cmp_ps_mask(v, set1(t), _CMP_GT_OQ) != 0;
#elif CHIMERA_LEVEL == 1
  return _mm256_movemask_ps(_mm256_cmp_ps(v, set1(t), _CMP_GT_OQ)) != 0;
#else
  return v > t;
#endif
}

// Inserts (v, j) into the descending list of n entries (capacity k) after every entry >= v: an equal value
// seen later has a higher index, and ties go to the lower index.
static inline void topk_insert(float* bv, int32_t* bi, size_t& n, size_t k, float v, int32_t j) {
  size_t p = n < k ? n : k - 1;
  while (p > 0 && bv[p - 1] < v) {
    bv[p] = bv[p - 1];
    bi[p] = bi[p - 1];
    --p;
  }
  bv[p] = v;
  bi[p] = j;
  if (n < k) ++n;
}

// Per row: the k largest entries, descending, ties to the lower index, NaN as -Infinity; values are the
// entries themselves or, with log_sm, what log_softmax would write for them. x is only read.
static void topk_rows(const float* x, size_t cols, size_t k, bool log_sm, int32_t* out_idx, float* out_val, size_t r0,
                      size_t r1) {
  count_kernel(Op::TopK, kIsa);
  thread_local std::vector<int32_t> order;  // per thread, grown once: only for k above kInsertionTopK
  for (size_t r = r0; r < r1; ++r) {
    const float* row = x + r * cols;
    int32_t* bi = out_idx + r * k;
    float* bv = out_val + r * k;
    if (k <= kInsertionTopK) {
      size_t n = 0, j = 0;
      for (; j < k; ++j) topk_insert(bv, bi, n, k, no_nan(row[j]), static_cast<int32_t>(j));
      float th = bv[k - 1];
      for (; j < cols && (j % W) != 0; ++j)
        if (row[j] > th) topk_insert(bv, bi, n, k, row[j], static_cast<int32_t>(j)), th = bv[k - 1];
      for (; j + W <= cols; j += W) {
        if (!any_gt(load(row + j), th)) continue;
        for (size_t u = j; u < j + W; ++u)
          if (row[u] > th) topk_insert(bv, bi, n, k, row[u], static_cast<int32_t>(u)), th = bv[k - 1];
      }
      for (; j < cols; ++j)
        if (row[j] > th) topk_insert(bv, bi, n, k, row[j], static_cast<int32_t>(j)), th = bv[k - 1];
    } else {
      if (order.size() < cols) order.resize(cols);
      for (size_t j = 0; j < cols; ++j) order[j] = static_cast<int32_t>(j);
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.begin() + static_cast<std::ptrdiff_t>(cols),
                        [row](int32_t a, int32_t b) {
                          const float va = no_nan(row[a]), vb = no_nan(row[b]);
                          return va > vb || (va == vb && a < b);
                        });
      for (size_t i = 0; i < k; ++i) {
        bi[i] = order[i];
        bv[i] = no_nan(row[order[i]]);
      }
    }
    if (log_sm) {
      const float l = row_lse<true>(row, cols);
      if (l != -INFINITY)
        for (size_t i = 0; i < k; ++i) bv[i] -= l;
    }
  }
}

// Scores of one query against NB blocks of W keys from transposed keys (kt rows nkp apart): NB independent
// accumulators hide the FMA latency that a single chain over hd would expose.
template <int NB>
static inline void score_blocks(const float* qi, const float* kt, size_t nkp, size_t hd, float* out) {
  vf acc[NB];
  CHIMERA_UNROLL
  for (int b = 0; b < NB; ++b) acc[b] = zero();
  for (size_t dd = 0; dd < hd; ++dd) {
    const vf qv = set1(qi[dd]);
    const float* row = kt + dd * nkp;
    CHIMERA_UNROLL
    for (int b = 0; b < NB; ++b) acc[b] = fmadd(qv, load(row + b * W), acc[b]);
  }
  CHIMERA_UNROLL
  for (int b = 0; b < NB; ++b) store(out + b * W, acc[b]);
}

// out[0, C W) = inv * sum_j p[j] v[j][0, C W), with even and odd keys in separate accumulators so that two
// FMA chains run side by side even when C is 1.
template <int C>
static inline void pv_chunk(const float* p, size_t len, const float* v, size_t ldv, float inv, float* out) {
  vf a[2][C];
  CHIMERA_UNROLL
  for (int c = 0; c < C; ++c) a[0][c] = a[1][c] = zero();
  size_t j = 0;
  for (; j + 2 <= len; j += 2) {
    const vf p0 = set1(p[j]), p1 = set1(p[j + 1]);
    const float* v0 = v + j * ldv;
    const float* v1 = v0 + ldv;
    CHIMERA_UNROLL
    for (int c = 0; c < C; ++c) {
      a[0][c] = fmadd(p0, load(v0 + c * W), a[0][c]);
      a[1][c] = fmadd(p1, load(v1 + c * W), a[1][c]);
    }
  }
  if (j < len) {
    const vf p0 = set1(p[j]);
    CHIMERA_UNROLL
    for (int c = 0; c < C; ++c) a[0][c] = fmadd(p0, load(v + j * ldv + c * W), a[0][c]);
  }
  const vf vi = set1(inv);
  CHIMERA_UNROLL
  for (int c = 0; c < C; ++c) store(out + c * W, mul(add(a[0][c], a[1][c]), vi));
}

// softmax(q . k^T) . v for query rows [0, nq) of one head. Query i sees keys [0, min(nk, i + 1 + causal)) when
// causal >= 0, else all nk keys. Scores are not scaled here: the model folds the scale into q.
// With enough keys, K is transposed once so that scores come W keys at a time with no horizontal sums; a few
// keys take dot products directly. The choice depends on nk alone, never on nq, so a query's result is the
// same whether its sequence is encoded alone or padded into a longer batch.
constexpr size_t kTransposeMinKeys = 4;  // below this the transpose costs more than the horizontal sums it saves
static void attention(const float* q, size_t ldq, const float* k, size_t ldk, const float* v, size_t ldv, float* o,
                      size_t ldo, size_t nq, size_t nk, size_t hd, long causal, float* scores) {
  count_kernel(Op::Attention, kIsa);
  thread_local std::vector<float> kt_buf;
  const size_t nkp = (nk + W - 1) / W * W;
  float* kt = nullptr;
  if (nk >= kTransposeMinKeys) {
    if (kt_buf.size() < hd * nkp) kt_buf.resize(hd * nkp);
    kt = kt_buf.data();
    for (size_t j = 0; j < nk; ++j)
      for (size_t dd = 0; dd < hd; ++dd) kt[dd * nkp + j] = k[j * ldk + dd];
    for (size_t j = nk; j < nkp; ++j)
      for (size_t dd = 0; dd < hd; ++dd) kt[dd * nkp + j] = 0.0f;
  }
  for (size_t i = 0; i < nq; ++i) {
    const float* qi = q + i * ldq;
    size_t len = nk;
    if (causal >= 0) len = std::min(nk, i + 1 + static_cast<size_t>(causal));
    if (kt) {
      const size_t blocks = (len + W - 1) / W;
      size_t jb = 0;
      for (; jb + 8 <= blocks; jb += 8) score_blocks<8>(qi, kt + jb * W, nkp, hd, scores + jb * W);
      switch (blocks - jb) {
        case 7: score_blocks<7>(qi, kt + jb * W, nkp, hd, scores + jb * W); break;
        case 6: score_blocks<6>(qi, kt + jb * W, nkp, hd, scores + jb * W); break;
        case 5: score_blocks<5>(qi, kt + jb * W, nkp, hd, scores + jb * W); break;
        case 4: score_blocks<4>(qi, kt + jb * W, nkp, hd, scores + jb * W); break;
        case 3: score_blocks<3>(qi, kt + jb * W, nkp, hd, scores + jb * W); break;
        case 2: score_blocks<2>(qi, kt + jb * W, nkp, hd, scores + jb * W); break;
        case 1: score_blocks<1>(qi, kt + jb * W, nkp, hd, scores + jb * W); break;
        default: break;
      }
    } else {
      for (size_t j = 0; j < len; ++j) scores[j] = dot(qi, k + j * ldk, hd);
    }
    float mx = -INFINITY;
    {
      size_t j = 0;
      vf m0 = set1(-INFINITY), m1 = m0;
      for (; j + 2 * W <= len; j += 2 * W) {
        m0 = max(m0, load(scores + j));
        m1 = max(m1, load(scores + j + W));
      }
      mx = hmax(max(m0, m1));
      for (; j < len; ++j) mx = std::max(mx, scores[j]);
    }
    float sum = 0;
    size_t j = 0;
    const vf vm = set1(mx);
    for (; j + W <= len; j += W) {
      const vf e = simd::exp(sub(load(scores + j), vm));
      store(scores + j, e);
      sum += hsum(e);
    }
    for (; j < len; ++j) {
      scores[j] = std::exp(scores[j] - mx);
      sum += scores[j];
    }
    const float inv = 1.0f / sum;
    float* oi = o + i * ldo;
    // P . V with the output held in registers across all keys, in 4- or 1-vector chunks
    size_t dd = 0;
    for (; dd + 4 * W <= hd; dd += 4 * W) pv_chunk<4>(scores, len, v + dd, ldv, inv, oi + dd);
    for (; dd + W <= hd; dd += W) pv_chunk<1>(scores, len, v + dd, ldv, inv, oi + dd);
    for (; dd < hd; ++dd) {
      float acc = 0;
      for (size_t jj = 0; jj < len; ++jj) acc += scores[jj] * v[jj * ldv + dd];
      oi[dd] = acc * inv;
    }
  }
}

// ------------------------------------------------------------------------------------------------ blocked attention
// softmax(q . k^T) . v for query rows [0, nq) of one head against all nk keys, as two GEMMs through the fp32
// microkernel (f32_tile): K^T and V are packed once into its panel layout (BlockedAttentionLayout), then each block
// of query rows runs scores = Q K^T, a row softmax, O = P V and the 1 / sum scaling, so that a block's scores are
// re-read from cache. A register tile holds up to kF32MaxRows queries against 64 keys (or 64 output columns), so
// each K or V load feeds several queries' FMAs where the per-query kernel (attention) feeds one.
// Every score and output element is one FMA chain over a fixed k order (head dimension, then keys in order), and a
// row's softmax reads only that row: a row's result is the same however many query rows are computed with it, so a
// source encoded alone and padded into a batch gives the same bits. Scores are not scaled (q carries the scale).

// Rows [0, rows) of out = a . b through the fp32 microkernel, b packed (panels of 16 columns, n columns stored).
static void f32_block(const float* a, size_t lda, size_t rows, const float* b, size_t k, size_t n, const F32Epilogue& ep) {
  const size_t panels = (n + 15) / 16;
  size_t r = 0;
  for (; r + kF32MaxRows <= rows; r += kF32MaxRows) f32_rows<kF32MaxRows, float>(a, lda, b, k, n, r, 0, panels, ep);
  if (r < rows) f32_dispatch_rows<kF32MaxRows, float>(static_cast<int>(rows - r), a, lda, b, k, n, r, 0, panels, ep);
}

// K^T in the panel layout: [ceil(nk / 64)][hd][64], keys past nk zero (their scores are computed, never stored).
// SIMD builds transpose 4 keys x 4 dims per _MM_TRANSPOSE4_PS (4 loads, 8 shuffles, 4 stores where element by
// element took 16 loads and 16 stores: a scalar transpose cost ~10 % of the kernel at S = 128).
static void pack_keys_t(const float* k, size_t ldk, size_t nk, size_t hd, float* kp) {
  const size_t nk64 = (nk + 63) / 64 * 64;
  size_t j0 = 0;
#if CHIMERA_LEVEL > 0
  for (; j0 + 4 <= nk; j0 += 4) {
    float* dst = kp + (j0 / 64) * hd * 64 + j0 % 64;
    const float* k0 = k + j0 * ldk;
    size_t dd = 0;
    for (; dd + 4 <= hd; dd += 4) {
      __m128 a0 = _mm_loadu_ps(k0 + dd), a1 = _mm_loadu_ps(k0 + ldk + dd);
      __m128 a2 = _mm_loadu_ps(k0 + 2 * ldk + dd), a3 = _mm_loadu_ps(k0 + 3 * ldk + dd);
      _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
      _mm_store_ps(dst + dd * 64, a0);
      _mm_store_ps(dst + (dd + 1) * 64, a1);
      _mm_store_ps(dst + (dd + 2) * 64, a2);
      _mm_store_ps(dst + (dd + 3) * 64, a3);
    }
    for (; dd < hd; ++dd)
      for (size_t j = 0; j < 4; ++j) dst[dd * 64 + j] = k0[j * ldk + dd];
  }
#endif
  for (; j0 < nk64; j0 += 4) {
    float* dst = kp + (j0 / 64) * hd * 64 + j0 % 64;
    for (size_t dd = 0; dd < hd; ++dd)
      for (size_t j = 0; j < 4; ++j) dst[dd * 64 + j] = j0 + j < nk ? k[(j0 + j) * ldk + dd] : 0.0f;
  }
}

// V in the panel layout: [ceil(hd / 64)][nk][64], columns past hd zero.
static void pack_values(const float* v, size_t ldv, size_t nk, size_t hd, float* vp) {
  for (size_t g = 0; g * 64 < hd; ++g) {
    const size_t w = std::min<size_t>(64, hd - g * 64);
    for (size_t j = 0; j < nk; ++j) {
      const float* src = v + j * ldv + g * 64;
      float* dst = vp + (g * nk + j) * 64;
      size_t c = 0;
      for (; c + W <= w; c += W) store(dst + c, load(src + c));  // not memcpy: its rep movs start-up costs more
      for (; c < w; ++c) dst[c] = src[c];
      for (; c < 64; ++c) dst[c] = 0.0f;
    }
  }
}

static void attention_blocked(const float* q, size_t ldq, const float* k, size_t ldk, const float* v, size_t ldv,
                              float* o, size_t ldo, size_t nq, size_t nk, size_t hd, float* scratch) {
  count_kernel(Op::AttentionBlocked, kIsa);
  const BlockedAttentionLayout L(nk, hd);
  const uintptr_t mis = reinterpret_cast<uintptr_t>(scratch) % (kBlockedAttentionAlign * sizeof(float));
  float* kp = scratch + (mis ? (kBlockedAttentionAlign * sizeof(float) - mis) / sizeof(float) : 0);
  float* vp = kp + L.k_floats;
  float* sc = vp + L.v_floats;
  float* inv = sc + L.score_floats;
  pack_keys_t(k, ldk, nk, hd, kp);
  pack_values(v, ldv, nk, hd, vp);
  F32Epilogue qk{};
  qk.alpha = 1.0f;
  qk.act = Activation::None;
  qk.out = sc;
  qk.ldo = L.ld;
  qk.op = Op::AttentionBlocked;
  F32Epilogue pv = qk;
  pv.ldo = ldo;
  for (size_t i0 = 0; i0 < nq; i0 += L.rows) {
    const size_t rows = std::min(L.rows, nq - i0);
    f32_block(q + i0 * ldq, ldq, rows, kp, hd, nk, qk);
    for (size_t i = 0; i < rows; ++i) {
      float* row = sc + i * L.ld;
      size_t j = 0;
      vf m0 = set1(-INFINITY), m1 = m0;
      for (; j + 2 * W <= nk; j += 2 * W) {
        m0 = max(m0, load(row + j));
        m1 = max(m1, load(row + j + W));
      }
      float mx = hmax(max(m0, m1));
      for (; j < nk; ++j) mx = std::max(mx, row[j]);
      const vf vm = set1(mx);
      vf s0 = zero();
      for (j = 0; j + W <= nk; j += W) {
        const vf e = simd::exp(sub(load(row + j), vm));
        store(row + j, e);
        s0 = add(s0, e);
      }
      float sum = hsum(s0);
      for (; j < nk; ++j) {
        row[j] = std::exp(row[j] - mx);
        sum += row[j];
      }
      inv[i] = 1.0f / sum;
    }
    pv.out = o + i0 * ldo;
    f32_block(sc, L.ld, rows, vp, nk, hd, pv);
    for (size_t i = 0; i < rows; ++i) {
      float* oi = o + (i0 + i) * ldo;
      const vf vi = set1(inv[i]);
      size_t dd = 0;
      for (; dd + W <= hd; dd += W) store(oi + dd, mul(load(oi + dd), vi));
      for (; dd < hd; ++dd) oi[dd] *= inv[i];
    }
  }
}

// ------------------------------------------------------------------------------------------------ decode attention

#if CHIMERA_LEVEL > 0
// out[0..4) = the horizontal sums of a0..a3, reduced together: a fraction of the shuffles four separate
// horizontal sums cost, which dominated the scoring of a decode step's short keys.
static inline void hsum4(vf a0, vf a1, vf a2, vf a3, float* out) {
#if CHIMERA_LEVEL == 2
  // per 128-bit lane: [a0 a1 a0 a1] and [a2 a3 a2 a3] partial sums, then [a0 a1 a2 a3]
  const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
  const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
  const __m512 u = _mm512_add_ps(_mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(u), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(u), 1)));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
#else
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
#endif
}
#endif

// Scores of one query against keys [j, j + KB): KB independent accumulator chains over hd, then the
// horizontal sums.
template <int KB>
static inline void decode_scores(const float* q, const float* k, size_t ldk, size_t hd, size_t j, float* scores) {
  vf acc[KB];
  CHIMERA_UNROLL
  for (int b = 0; b < KB; ++b) acc[b] = zero();
  size_t dd = 0;
  for (; dd + W <= hd; dd += W) {
    const vf qv = load(q + dd);
    CHIMERA_UNROLL
    for (int b = 0; b < KB; ++b) acc[b] = fmadd(qv, load(k + (j + b) * ldk + dd), acc[b]);
  }
#if CHIMERA_LEVEL > 0
  if constexpr (KB == 4) {
    if (dd == hd) {  // the usual case (hd a multiple of W): four sums at once
      hsum4(acc[0], acc[1], acc[2], acc[3], scores + j);
      return;
    }
  }
#endif
  CHIMERA_UNROLL
  for (int b = 0; b < KB; ++b) {
    float s = hsum(acc[b]);
    for (size_t t = dd; t < hd; ++t) s += q[t] * k[(j + b) * ldk + t];
    scores[j + b] = s;
  }
}

constexpr size_t kCacheLine = 64;  // bytes
// Tasks [t0, t1) of a decoder step's attention, task t = row * heads + head: one query row against that row's
// own keys. Each task's result depends only on its own row, never on which other rows are in the batch.
static void decode_attention(const DecodeAttention& a, size_t t0, size_t t1, float* scores) {
  count_kernel(Op::DecodeAttention, kIsa);
  const size_t hd = a.hd;
  for (size_t t = t0; t < t1; ++t) {
    const size_t r = t / a.heads, h = t % a.heads;
    const float* q = a.q + r * a.ldq + h * hd;
    const float* k = a.kv[r] + h * hd;
    const float* v = k + a.v_off;
    const size_t n = static_cast<size_t>(a.len[r]);
#if CHIMERA_LEVEL > 0
    // Each task reads hd floats out of every K|V row, rows a whole state row apart: no stream the hardware
    // prefetchers follow. Ask for the next task's lines now, so they arrive while this one computes.
    if (t + 1 < t1) {
      const size_t rn = (t + 1) / a.heads, hn = (t + 1) % a.heads, nn = static_cast<size_t>(a.len[rn]);
      const char* kn = reinterpret_cast<const char*>(a.kv[rn] + hn * hd);
      for (size_t jj = 0; jj < nn; ++jj)
        for (size_t b = 0; b < hd * sizeof(float); b += kCacheLine) {
          _mm_prefetch(kn + jj * a.ldkv * sizeof(float) + b, _MM_HINT_T0);
          _mm_prefetch(kn + (jj * a.ldkv + a.v_off) * sizeof(float) + b, _MM_HINT_T0);
        }
    }
#endif
    size_t j = 0;
    for (; j + 4 <= n; j += 4) decode_scores<4>(q, k, a.ldkv, hd, j, scores);
    for (; j < n; ++j) decode_scores<1>(q, k, a.ldkv, hd, j, scores);
    vf m = set1(-INFINITY);
    for (j = 0; j + W <= n; j += W) m = max(m, load(scores + j));
    float mx = hmax(m);
    for (; j < n; ++j) mx = std::max(mx, scores[j]);
    const vf vm = set1(mx);
    vf vs = zero();
    for (j = 0; j + W <= n; j += W) {
      const vf e = simd::exp(sub(load(scores + j), vm));
      store(scores + j, e);
      vs = add(vs, e);
    }
    float sum = hsum(vs);
    for (; j < n; ++j) {
      scores[j] = std::exp(scores[j] - mx);
      sum += scores[j];
    }
    const float inv = 1.0f / sum;
    float* o = a.o + r * a.ldo + h * hd;
    size_t dd = 0;
    for (; dd + 4 * W <= hd; dd += 4 * W) pv_chunk<4>(scores, n, v + dd, a.ldkv, inv, o + dd);
    for (; dd + W <= hd; dd += W) pv_chunk<1>(scores, n, v + dd, a.ldkv, inv, o + dd);
    for (; dd < hd; ++dd) {
      float acc = 0;
      for (size_t jj = 0; jj < n; ++jj) acc += scores[jj] * v[jj * a.ldkv + dd];
      o[dd] = acc * inv;
    }
  }
}

// ------------------------------------------------------------------------------------------------ peak probe

// Accumulator chains per probe: more than latency x issue width of any current core (5 cycles x 2 ports for
// VNNI and FMA), so the loop measures throughput, not latency.
constexpr int kProbeChains = 12;
// The 256-bit int8 probes keep their chains, operands and temporaries within the 16 ymm registers (with more,
// GCC moves accumulators through the stack inside the loop); 8 chains still cover vpdpbusd's latency at two
// per cycle, and the AVX2 sequence's chains run through vpaddd alone.
constexpr int kProbeChainsAvx2 = 8;

// Runs `iters` iterations of kProbeChains independent chains of the given kind; returns the multiply-adds done
// (0 when this build cannot run that kind). The operands are opaque to the compiler (read from memory it cannot
// see through), so nothing folds away.
static uint64_t peak_loop(int kind, uint64_t iters, const float* seed) {
#if CHIMERA_LEVEL >= 1
  if (kind == 2) {  // fp32 FMA
    vf acc[kProbeChains];
    const vf x = load(seed), y = load(seed + W);
    CHIMERA_UNROLL
    for (int c = 0; c < kProbeChains; ++c) acc[c] = set1(static_cast<float>(c));
    for (uint64_t i = 0; i < iters; ++i) {
      CHIMERA_UNROLL
      for (int c = 0; c < kProbeChains; ++c) acc[c] = fmadd(acc[c], x, y);
    }
    vf s = zero();
    for (int c = 0; c < kProbeChains; ++c) s = add(s, acc[c]);
    volatile float sink = hsum(s);
    (void)sink;
    return iters * kProbeChains * W;
  }
#endif
#if CHIMERA_LEVEL == 2
  if (kind == 0) {  // VNNI: 64 u8 x s8 products summed into 16 int32 per instruction
    __m512i acc[kProbeChains];
    const __m512i a = _mm512_castps_si512(load(seed)), b = _mm512_castps_si512(load(seed + W));
    CHIMERA_UNROLL
    for (int c = 0; c < kProbeChains; ++c) acc[c] = _mm512_set1_epi32(c);
    for (uint64_t i = 0; i < iters; ++i) {
      CHIMERA_UNROLL
      for (int c = 0; c < kProbeChains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
    }
    __m512i s = _mm512_setzero_si512();
    for (int c = 0; c < kProbeChains; ++c) s = _mm512_add_epi32(s, acc[c]);
    volatile int sink = _mm512_reduce_add_epi32(s);
    (void)sink;
    return iters * kProbeChains * 64;
  }
#endif
#if CHIMERA_LEVEL == 1 && defined(CHIMERA_AVXVNNI)
  if (kind == 3) {  // AVX-VNNI: 32 u8 x s8 products summed into 8 int32 per instruction
    __m256i acc[kProbeChainsAvx2];
    const __m256i a = _mm256_castps_si256(_mm256_loadu_ps(seed)), b = _mm256_castps_si256(_mm256_loadu_ps(seed + 8));
    CHIMERA_UNROLL
    for (int c = 0; c < kProbeChainsAvx2; ++c) acc[c] = _mm256_set1_epi32(c);
    for (uint64_t i = 0; i < iters; ++i) {
      CHIMERA_UNROLL
      for (int c = 0; c < kProbeChainsAvx2; ++c) acc[c] = _mm256_dpbusd_avx_epi32(acc[c], a, b);
    }
    __m256i s = _mm256_setzero_si256();
    CHIMERA_UNROLL
    for (int c = 0; c < kProbeChainsAvx2; ++c) s = _mm256_add_epi32(s, acc[c]);
    alignas(32) int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
    volatile int32_t sink = lanes[0];
    (void)sink;
    return iters * kProbeChainsAvx2 * 32;
  }
#endif
#if CHIMERA_LEVEL >= 1
  if (kind == 1) {  // the AVX2 int8 sequence of s8_panel: maddubs + madd + add, 32 products per triple
    // Only the add depends on the chain; the products would be loop-invariant and hoisted (the loop would
    // time vpaddd alone), so the operand is laundered through an empty asm before every product.
    __m256i acc[kProbeChainsAvx2];
    __m256i a = _mm256_castps_si256(_mm256_loadu_ps(seed));
    const __m256i b = _mm256_castps_si256(_mm256_loadu_ps(seed + 8));
    const __m256i ones = _mm256_set1_epi16(1);
    CHIMERA_UNROLL
    for (int c = 0; c < kProbeChainsAvx2; ++c) acc[c] = _mm256_set1_epi32(c);
    for (uint64_t i = 0; i < iters; ++i) {
      CHIMERA_UNROLL
      for (int c = 0; c < kProbeChainsAvx2; ++c) {
        __asm__ volatile("" : "+x"(a));
        acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
      }
    }
    __m256i s = _mm256_setzero_si256();
    CHIMERA_UNROLL
    for (int c = 0; c < kProbeChainsAvx2; ++c) s = _mm256_add_epi32(s, acc[c]);
    alignas(32) int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
    volatile int32_t sink = lanes[0];
    (void)sink;
    return iters * kProbeChainsAvx2 * 32;
  }
#endif
  (void)kind;
  (void)iters;
  (void)seed;
  return 0;
}
}  // namespace CHIMERA_NS

const KernelTable& CHIMERA_TABLE() {
  static const KernelTable table = {
      CHIMERA_NS::kIsa,          CHIMERA_NS::norm_rows, CHIMERA_NS::quantize_rows, CHIMERA_NS::min_max,
      CHIMERA_NS::dql_apply,     CHIMERA_NS::dot_s16,   CHIMERA_NS::gemm_s8,       CHIMERA_NS::gemm_f32,
      CHIMERA_NS::gemm_f16,      CHIMERA_NS::attention,  CHIMERA_NS::attention_blocked, CHIMERA_NS::log_softmax_rows,
      CHIMERA_NS::decode_attention, CHIMERA_NS::topk_rows, CHIMERA_NS::peak_loop,
  };
  return table;
}

}  // namespace chimera
