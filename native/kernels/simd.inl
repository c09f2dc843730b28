// A minimal vector abstraction so that kernels.inl is written once and compiled per ISA. CHIMERA_LEVEL
// selects it: 0 = scalar (the reference path), 1 = AVX2 + FMA, 2 = AVX-512 (F/BW/VL/DQ + VNNI).
#if CHIMERA_LEVEL > 0
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdint>
#include <cstring>

// Inside the ISA's own namespace: the AVX2 and AVX-512 builds define functions of the same name and
// signature (tail_mask, say) with different bodies, which must never be merged by the linker.
namespace chimera {
namespace CHIMERA_NS {
namespace simd {

#if CHIMERA_LEVEL == 2
using vf = __m512;
constexpr int W = 16;
inline vf load(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline __mmask16 tail_mask(size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
inline vf load_tail(const float* p, size_t n) { return _mm512_maskz_loadu_ps(tail_mask(n), p); }
inline void store_tail(float* p, vf v, size_t n) { _mm512_mask_storeu_ps(p, tail_mask(n), v); }
inline vf set1(float x) { return _mm512_set1_ps(x); }
inline vf zero() { return _mm512_setzero_ps(); }
inline vf add(vf a, vf b) { return _mm512_add_ps(a, b); }
inline vf sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
inline vf mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
inline vf div(vf a, vf b) { return _mm512_div_ps(a, b); }
inline vf fmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline vf max(vf a, vf b) { return _mm512_max_ps(a, b); }
inline vf min(vf a, vf b) { return _mm512_min_ps(a, b); }
inline vf abs(vf a) { return _mm512_abs_ps(a); }
inline float hsum(vf a) { return _mm512_reduce_add_ps(a); }
inline float hmax(vf a) { return _mm512_reduce_max_ps(a); }
inline float hmin(vf a) { return _mm512_reduce_min_ps(a); }
inline bool any_nan(vf a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q) != 0; }
// e^x for x in float range; ~2 ulp
inline vf exp(vf x) {
  x = _mm512_min_ps(_mm512_max_ps(x, set1(-87.3f)), set1(88.7f));
  const vf n = _mm512_roundscale_ps(_mm512_mul_ps(x, set1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  vf r = _mm512_fnmadd_ps(n, set1(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
  vf p = set1(1.0f / 5040);
  p = fmadd(p, r, set1(1.0f / 720));
  p = fmadd(p, r, set1(1.0f / 120));
  p = fmadd(p, r, set1(1.0f / 24));
  p = fmadd(p, r, set1(1.0f / 6));
  p = fmadd(p, r, set1(0.5f));
  p = fmadd(p, r, set1(1.0f));
  p = fmadd(p, r, set1(1.0f));
  return _mm512_scalef_ps(p, n);
}
#elif CHIMERA_LEVEL == 1
using vf = __m256;
constexpr int W = 8;
inline __m256i tail_mask(size_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline vf load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, vf v) { _mm256_storeu_ps(p, v); }
inline vf load_tail(const float* p, size_t n) { return _mm256_maskload_ps(p, tail_mask(n)); }
inline void store_tail(float* p, vf v, size_t n) { _mm256_maskstore_ps(p, tail_mask(n), v); }
inline vf set1(float x) { return _mm256_set1_ps(x); }
inline vf zero() { return _mm256_setzero_ps(); }
inline vf add(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
inline vf mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf div(vf a, vf b) { return _mm256_div_ps(a, b); }
inline vf fmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf max(vf a, vf b) { return _mm256_max_ps(a, b); }
inline vf min(vf a, vf b) { return _mm256_min_ps(a, b); }
inline vf abs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline float hsum(vf a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(vf a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmin(vf a) {
  __m128 s = _mm_min_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_min_ps(s, _mm_movehl_ps(s, s));
  s = _mm_min_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline bool any_nan(vf a) { return _mm256_movemask_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)) != 0; }
inline vf exp(vf x) {
  x = _mm256_min_ps(_mm256_max_ps(x, set1(-87.3f)), set1(88.7f));
  const vf n = _mm256_round_ps(_mm256_mul_ps(x, set1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf r = _mm256_fnmadd_ps(n, set1(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
  vf p = set1(1.0f / 5040);
  p = fmadd(p, r, set1(1.0f / 720));
  p = fmadd(p, r, set1(1.0f / 120));
  p = fmadd(p, r, set1(1.0f / 24));
  p = fmadd(p, r, set1(1.0f / 6));
  p = fmadd(p, r, set1(0.5f));
  p = fmadd(p, r, set1(1.0f));
  p = fmadd(p, r, set1(1.0f));
  // 2^n through the exponent field; n is in [-126, 128] after the clamp, so split it to stay normal
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i h = _mm256_srai_epi32(ni, 1);
  const vf s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
  const vf s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), _mm256_set1_epi32(127)), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
#else
using vf = float;
constexpr int W = 1;
inline vf load(const float* p) { return *p; }
inline void store(float* p, vf v) { *p = v; }
inline vf load_tail(const float* p, size_t) { return *p; }
inline void store_tail(float* p, vf v, size_t) { *p = v; }
inline vf set1(float x) { return x; }
inline vf zero() { return 0.0f; }
inline vf add(vf a, vf b) { return a + b; }
inline vf sub(vf a, vf b) { return a - b; }
inline vf mul(vf a, vf b) { return a * b; }
inline vf div(vf a, vf b) { return a / b; }
inline vf fmadd(vf a, vf b, vf c) { return a * b + c; }
// NaN-propagating like the SIMD max/min when the NaN is in the second operand; callers check NaN separately.
inline vf max(vf a, vf b) { return a > b ? a : b; }
inline vf min(vf a, vf b) { return a < b ? a : b; }
inline vf abs(vf a) { return std::fabs(a); }
inline float hsum(vf a) { return a; }
inline float hmax(vf a) { return a; }
inline float hmin(vf a) { return a; }
inline bool any_nan(vf a) { return a != a; }
inline vf exp(vf x) { return std::exp(x); }
#endif

#if CHIMERA_LEVEL > 0
// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), odd-extended.
inline vf erf(vf x) {
  const vf ax = abs(x);
  const vf t = div(set1(1.0f), fmadd(set1(0.3275911f), ax, set1(1.0f)));
  vf p = set1(1.061405429f);
  p = fmadd(p, t, set1(-1.453152027f));
  p = fmadd(p, t, set1(1.421413741f));
  p = fmadd(p, t, set1(-0.284496736f));
  p = fmadd(p, t, set1(0.254829592f));
  p = mul(p, t);
  const vf e = exp(mul(mul(ax, ax), set1(-1.0f)));
  const vf y = sub(set1(1.0f), mul(p, e));
  // copy the sign of x
#if CHIMERA_LEVEL == 2
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y),
                                             _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN))));
#else
  return _mm256_or_ps(y, _mm256_and_ps(x, _mm256_set1_ps(-0.0f)));
#endif
}
inline vf tanh(vf x) {
  // 1 - 2 / (e^{2x} + 1): saturates correctly at both ends
  return sub(set1(1.0f), div(set1(2.0f), add(exp(add(x, x)), set1(1.0f))));
}
#else
inline vf erf(vf x) { return std::erf(x); }
inline vf tanh(vf x) { return std::tanh(x); }
#endif

inline vf activate(vf x, chimera::Activation act) {
  switch (act) {
    case chimera::Activation::None: return x;
    case chimera::Activation::Relu: return max(x, zero());
    case chimera::Activation::Silu: return div(x, add(set1(1.0f), exp(sub(zero(), x))));
    case chimera::Activation::Gelu: return mul(mul(set1(0.5f), x), add(set1(1.0f), erf(mul(x, set1(0.70710678118654752f)))));
    case chimera::Activation::GeluTanh: {
      const vf inner = mul(set1(0.79788456080286536f), fmadd(mul(set1(0.044715f), mul(x, x)), x, x));
      return mul(mul(set1(0.5f), x), add(set1(1.0f), tanh(inner)));
    }
  }
  return x;
}

}  // namespace simd
}  // namespace CHIMERA_NS
}  // namespace chimera
