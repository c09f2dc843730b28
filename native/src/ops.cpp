// Device-neutral entry points: they split work over the thread pool and call the current ISA's table.
// Packing lives here too: the packed layouts are the same for every ISA.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "chimera/half.h"
#include "chimera/kernel_table.h"
#include "chimera/layout.h"
#include "chimera/thread_pool.h"

namespace chimera {

namespace {

void* aligned_alloc64(size_t bytes) {
  void* p = nullptr;
#if defined(_MSC_VER)
  p = _aligned_malloc(bytes, 64);
#else
  // Large weight buffers are streamed end to end on every step: on 2 MiB pages they cost far fewer TLB misses.
  constexpr size_t kHuge = size_t(2) << 20;
  const bool huge = bytes >= kHuge;
  if (posix_memalign(&p, huge ? kHuge : 64, std::max<size_t>(bytes, 64)) != 0) p = nullptr;
#if defined(__linux__)
  if (p && huge) madvise(p, (bytes + kHuge - 1) & ~(kHuge - 1), MADV_HUGEPAGE);
#endif
#endif
  if (!p) throw std::bad_alloc();
  return p;
}

void aligned_free64(void* p) {
#if defined(_MSC_VER)
  _aligned_free(p);
#else
  std::free(p);
#endif
}

// Scratch that grows once per calling thread and is then reused: the hot path never allocates.
template <typename T>
T* scratch(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Work below this many multiply-adds runs on the calling thread: waking a worker costs more.
constexpr size_t kParallelMacs = 1u << 17;
// The same for memory-bound row passes (quantisation, log-softmax, top-k): tasks of at least this many
// elements, so each thread streams enough of the rows to pay for its wake-up.
constexpr size_t kRowGrainElems = 65536;
// A norm reads each row twice (its statistics, then the normalised output), so half as many elements pay.
constexpr size_t kNormGrainElems = kRowGrainElems / 2;
// Scratch slack past a row of scores: a whole vector of the widest ISA (16 floats), for full-width loads.
constexpr size_t kVectorFloats = 16;
// A peak-probe run shorter than this is dominated by timer resolution and the clock ramp.
constexpr double kProbeMinRunMs = 5.0;

}  // namespace

PackedS8::~PackedS8() {
  if (!owned) return;
  aligned_free64(data);
  delete[] scales;
}

PackedF32::~PackedF32() {
  if (!owned) return;
  aligned_free64(data);
  aligned_free64(half);
}

void* alloc_aligned(size_t bytes) { return aligned_alloc64(bytes); }
void free_aligned(void* p) { aligned_free64(p); }

// ------------------------------------------------------------------------------------------------ norms

bool norm(const NormArgs& a) {
  const KernelTable& t = kernels();
  const size_t grain = std::max<size_t>(1, kNormGrainElems / a.cols);
  std::atomic<bool> ok{true};
  parallel_for(a.rows, grain, [&](size_t r0, size_t r1) {
    if (!t.norm_rows(a, r0, r1)) ok = false;
  });
  return ok;
}

void log_softmax(float* x, size_t rows, size_t cols) {
  const KernelTable& t = kernels();
  parallel_for(rows, std::max<size_t>(1, kRowGrainElems / cols), [&](size_t r0, size_t r1) { t.log_softmax_rows(x, cols, r0, r1); });
}

void topk_rows(const float* x, size_t rows, size_t cols, size_t k, bool log_sm, int32_t* idx, float* val) {
  const KernelTable& t = kernels();
  parallel_for(rows, std::max<size_t>(1, kRowGrainElems / cols), [&](size_t r0, size_t r1) { t.topk_rows(x, cols, k, log_sm, idx, val, r0, r1); });
}

void topk_rows_ragged(const float* x, size_t rows, size_t stride, const int32_t* lens, size_t k, bool log_sm,
                      int32_t* idx, float* val) {
  const KernelTable& t = kernels();
  parallel_for(rows, std::max<size_t>(1, kRowGrainElems / stride), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const size_t len = static_cast<size_t>(lens[r]), kk = std::min(k, len);
      // one row at a time through the table: the row's arithmetic is exactly that of a row of `len` columns
      t.topk_rows(x + r * stride, len, kk, log_sm, idx + r * k, val + r * k, 0, 1);
      for (size_t i = kk; i < k; ++i) {
        idx[r * k + i] = -1;
        val[r * k + i] = -INFINITY;
      }
    }
  });
}

void decode_attention(const DecodeAttention& a, size_t rows) {
  const KernelTable& t = kernels();
  size_t keys = 0, max_len = 0;
  for (size_t r = 0; r < rows; ++r) {
    keys += static_cast<size_t>(a.len[r]);
    max_len = std::max(max_len, static_cast<size_t>(a.len[r]));
  }
  const size_t tasks = rows * a.heads;
  const size_t macs_per_task = std::max<size_t>(1, 2 * keys * a.hd / rows);  // q.k and p.v over the mean length
  parallel_for(tasks, std::max<size_t>(1, kParallelMacs / macs_per_task), [&](size_t t0, size_t t1) {
    thread_local std::vector<float> scores;  // per thread, grown once
    if (scores.size() < max_len + kVectorFloats) scores.resize(max_len + kVectorFloats);
    t.decode_attention(a, t0, t1, scores.data());
  });
}

void encoder_attention(const EncoderAttention& a) {
  const KernelTable& t = kernels();
  // One task per (source, head): 8 heads give every thread of a small pool whole tasks even at batch 1.
  parallel_for(a.batch * a.heads, 1, [&](size_t t0, size_t t1) {
    thread_local std::vector<float> scores, blocked;  // per thread, grown once
    for (size_t task = t0; task < t1; ++task) {
      const size_t b = task / a.heads, h = task % a.heads, nk = static_cast<size_t>(a.len[b]);
      const size_t row0 = b * a.s, col = h * a.hd;
      const float* q = a.q + row0 * a.ld + col;
      const float* k = a.k + row0 * a.ld + col;
      const float* v = a.v + row0 * a.ld + col;
      float* o = a.o + row0 * a.ldo + col;
      const bool blocked_path = a.path == AttentionPath::Blocked || (a.path == AttentionPath::Auto && nk >= kBlockedAttentionMinKeys);
      if (blocked_path) {
        t.attention_blocked(q, a.ld, k, a.ld, v, a.ld, o, a.ldo, a.s, nk, a.hd,
                            scratch(blocked, BlockedAttentionLayout(nk, a.hd).total));
      } else {
        t.attention(q, a.ld, k, a.ld, v, a.ld, o, a.ldo, a.s, nk, a.hd, -1, scratch(scores, nk + kAttentionScoreSlack));
      }
    }
  });
}

double peak_probe(int kind, double ms) {
  const KernelTable* t = nullptr;
#if !defined(CHIMERA_SCALAR_ONLY)
  if (kind == 0 && isa_supported(Isa::Avx512Vnni) && isa_compiled(Isa::Avx512Vnni)) t = &kernels_avx512();
  if (kind == 1 && isa_supported(Isa::Avx2) && isa_compiled(Isa::Avx2)) t = &kernels_avx2();
  if (kind == 3 && isa_supported(Isa::AvxVnni) && isa_compiled(Isa::AvxVnni)) t = &kernels_avxvnni();
  if (kind == 2) {
    if (isa_supported(Isa::Avx512Vnni) && isa_compiled(Isa::Avx512Vnni)) t = &kernels_avx512();
    else if (isa_supported(Isa::Avx2) && isa_compiled(Isa::Avx2)) t = &kernels_avx2();
  }
#endif
  if (!t) return -1.0;
  alignas(64) float seed[32];
  for (int i = 0; i < 32; ++i) seed[i] = 1.0f + 1e-7f * static_cast<float>(i);  // no overflow in any kind
  // Grow the batch until one run takes a measurable time, then repeat it for `ms`; the best rate wins (a
  // preempted run only ever looks slower).
  uint64_t iters = 1 << 12;
  using clock = std::chrono::steady_clock;
  double best = 0, spent = 0;
  while (spent < ms) {
    const auto t0 = clock::now();
    const uint64_t macs = t->peak_loop(kind, iters, seed);
    const double dt = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    spent += dt;
    if (dt < kProbeMinRunMs) {
      iters *= 2;
      continue;
    }
    best = std::max(best, static_cast<double>(macs) / (dt * 1e-3));
  }
  return best;
}

// ------------------------------------------------------------------------------------------------ quantisation

bool quantize_rows(const float* x, size_t rows, size_t cols, int8_t* q, size_t stride, float* scales, int32_t* sums) {
  const KernelTable& t = kernels();
  std::atomic<bool> ok{true};
  parallel_for(rows, std::max<size_t>(1, kRowGrainElems / cols), [&](size_t r0, size_t r1) {
    if (!t.quantize_rows(x, cols, r0, r1, q, stride, scales, sums)) ok = false;
  });
  return ok;
}

bool dynamic_quantize_linear(const float* x, size_t n, uint8_t* y, float* scale, uint8_t* zero_point) {
  const KernelTable& t = kernels();
  float mn, mx;
  if (!t.min_max(x, n, &mn, &mx)) return false;
  // ONNX: the range always includes 0; scale and zero point are computed in float32.
  const float s = (mx - mn) / 255.0f;
  if (s == 0.0f) {
    // All zeros: onnxruntime reports scale 1 (the ONNX formula would divide by zero), zero point 0.
    std::memset(y, 0, n);
    *scale = 1.0f;
    *zero_point = 0;
    return true;
  }
  const float zp_f = std::nearbyint(-mn / s);
  const int zp = static_cast<int>(std::min(255.0f, std::max(0.0f, zp_f)));
  t.dql_apply(x, n, s, zp, y);
  *scale = s;
  *zero_point = static_cast<uint8_t>(zp);
  return true;
}

void matmul_integer(const void* a, bool a_signed, size_t m, size_t k, const void* b, bool b_signed, size_t n,
                    const int32_t* a_zp, size_t a_zp_len, const int32_t* b_zp, size_t b_zp_len, int32_t* c) {
  // (a - za) and (b - zb) both fit int16 ([-255, 255]); vpmaddwd then sums pairs exactly into int32.
  const size_t kp = (k + 31) & ~size_t(31);
  std::vector<int16_t> a16(m * kp, 0), bt16(n * kp, 0);
  const auto* au = static_cast<const uint8_t*>(a);
  const auto* as = static_cast<const int8_t*>(a);
  const auto* bu = static_cast<const uint8_t*>(b);
  const auto* bs = static_cast<const int8_t*>(b);
  for (size_t i = 0; i < m; ++i) {
    const int32_t z = a_zp[a_zp_len == 1 ? 0 : i];
    for (size_t j = 0; j < k; ++j)
      a16[i * kp + j] = static_cast<int16_t>((a_signed ? as[i * k + j] : au[i * k + j]) - z);
  }
  for (size_t j = 0; j < k; ++j)
    for (size_t col = 0; col < n; ++col) {
      const int32_t z = b_zp[b_zp_len == 1 ? 0 : col];
      bt16[col * kp + j] = static_cast<int16_t>((b_signed ? bs[j * n + col] : bu[j * n + col]) - z);
    }
  const KernelTable& t = kernels();
  parallel_for(m, std::max<size_t>(1, kParallelMacs / std::max<size_t>(1, n * k)),
               [&](size_t m0, size_t m1) { t.dot_s16(a16.data(), bt16.data(), kp, n, c, m0, m1); });
}

// ------------------------------------------------------------------------------------------------ int8 linear

PackedS8* pack_s8(const float* w, size_t n, size_t k) {
  auto* p = new PackedS8();
  p->n = n;
  p->k = k;
  p->kp = packed_s8_kp(k);
  p->groups = packed_groups(n);
  p->bytes = packed_s8_bytes(n, k);
  p->data = static_cast<uint8_t*>(aligned_alloc64(p->bytes));
  p->scales = new float[n];
  std::memset(p->data, 128, p->bytes);  // u8 128 = s8 0: padding contributes nothing
  for (size_t row = 0; row < n; ++row) {
    const float* wr = w + row * k;
    float amax = 0.0f;
    for (size_t j = 0; j < k; ++j) amax = std::max(amax, std::fabs(wr[j]));
    const float scale = amax / 127.0f;
    p->scales[row] = scale;
    for (size_t j = 0; j < k; ++j) {
      int v = scale == 0.0f ? 0 : static_cast<int>(std::nearbyint(wr[j] / scale));
      v = std::min(127, std::max(-127, v));
      p->data[s8_offset(p->kp, row, j)] = static_cast<uint8_t>(v + 128);
    }
  }
  return p;
}

namespace {
// An empty packed weight of n channels with w's k (and tier): what the gathers below fill.
PackedS8* new_s8_like(const PackedS8& w, size_t n) {
  auto* p = new PackedS8();
  p->n = n;
  p->k = w.k;
  p->kp = w.kp;
  p->groups = packed_groups(n);
  p->bytes = packed_s8_bytes(n, w.k);
  p->data = static_cast<uint8_t*>(aligned_alloc64(p->bytes));
  p->scales = new float[n];
  return p;
}
PackedF32* new_f32_like(const PackedF32& w, size_t n) {
  const size_t elem = w.half ? sizeof(uint16_t) : sizeof(float);
  auto* p = new PackedF32();
  p->n = n;
  p->k = w.k;
  p->panels = packed_f32_panels(n);
  p->bytes = packed_f32_bytes(n, w.k, elem);
  void* dst = aligned_alloc64(p->bytes);
  std::memset(dst, 0, p->bytes);
  if (w.half) p->half = static_cast<uint16_t*>(dst);
  else p->data = static_cast<float*>(dst);
  return p;
}
}  // namespace

PackedS8* gather_s8(const PackedS8& w, const int32_t* cols, size_t n) {
  auto* p = new_s8_like(w, n);
  std::memset(p->data, 128, p->bytes);  // padding channels stay zero
  for (size_t c = 0; c < n; ++c) {
    const size_t src = static_cast<size_t>(cols[c]);
    p->scales[c] = w.scales[src];
    // kS8KStep consecutive k of one channel are contiguous in the layout
    for (size_t j = 0; j < w.kp; j += kS8KStep)
      std::memcpy(p->data + s8_offset(p->kp, c, j), w.data + s8_offset(w.kp, src, j), kS8KStep);
  }
  return p;
}

PackedS8* gather_s8_rows(const PackedS8& w, const uint8_t* rows, const int32_t* cols, size_t n) {
  auto* p = new_s8_like(w, n);
  std::memset(p->data, 128, p->bytes);
  for (size_t c = 0; c < n; ++c) p->scales[c] = w.scales[cols[c]];
  // destination group by group and k step by k step: sequential writes (see gather_f32_rows)
  for (size_t g = 0; g * kGroupCols < n; ++g) {
    const size_t c1 = std::min(n, (g + 1) * kGroupCols);
    for (size_t j = 0; j < w.kp; j += kS8KStep)
      for (size_t c = g * kGroupCols; c < c1; ++c)
        std::memcpy(p->data + s8_offset(p->kp, c, j), rows + static_cast<size_t>(cols[c]) * w.kp + j, kS8KStep);
  }
  return p;
}

void s8_rows(const PackedS8& w, uint8_t* rows) {
  // group by group, so each 256-byte block of the packed layout is read once while its 64 rows are written
  for (size_t g = 0; g < w.groups; ++g)
    for (size_t j = 0; j < w.kp; j += kS8KStep)
      for (size_t c = g * kGroupCols; c < std::min(w.n, (g + 1) * kGroupCols); ++c)
        std::memcpy(rows + c * w.kp + j, w.data + s8_offset(w.kp, c, j), kS8KStep);
}

void unpack_s8(const PackedS8& p, int8_t* out) {
  for (size_t row = 0; row < p.n; ++row) {
    for (size_t j = 0; j < p.k; ++j)
      out[row * p.k + j] = static_cast<int8_t>(static_cast<int>(p.data[s8_offset(p.kp, row, j)]) - 128);
  }
}

void linear_s8(const PackedS8& w, const int8_t* q, size_t q_stride, const float* q_scales, const int32_t* q_sums,
               size_t rows, const float* bias, Activation act, float* out, int32_t* raw) {
  const KernelTable& t = kernels();
  const S8Epilogue ep{q_scales, q_sums, bias, act, out, raw};
  const size_t macs_per_group = rows * w.kp * 64;
  parallel_for(w.groups, std::max<size_t>(1, kParallelMacs / macs_per_group),
               [&](size_t g0, size_t g1) { t.gemm_s8(w, q, q_stride, rows, g0, g1, ep); });
}

// ------------------------------------------------------------------------------------------------ fp32

// Packs w ([n, k] when !k_major, else [k, n]) into groups of 64 columns x k, zero padded.
static void pack_f32_into(const float* w, size_t n, size_t k, bool k_major, float* dst) {
  const size_t groups = (n + 63) / 64;
  std::memset(dst, 0, groups * k * 64 * sizeof(float));
  for (size_t col = 0; col < n; ++col) {
    float* d = dst + (col / 64) * k * 64 + col % 64;
    if (k_major)
      for (size_t j = 0; j < k; ++j) d[j * 64] = w[j * n + col];
    else
      for (size_t j = 0; j < k; ++j) d[j * 64] = w[col * k + j];
  }
}

PackedF32* pack_f32(const float* w, size_t n, size_t k, bool k_major) {
  auto* p = new PackedF32();
  p->n = n;
  p->k = k;
  p->panels = packed_f32_panels(n);
  p->bytes = packed_f32_bytes(n, k, sizeof(float));
  p->data = static_cast<float*>(aligned_alloc64(p->bytes));
  pack_f32_into(w, n, k, k_major, p->data);
  return p;
}

void to_half(const float* x, size_t n, uint16_t* y) {
  for (size_t i = 0; i < n; ++i) y[i] = float_to_half(x[i]);
}

PackedF32* pack_f16(const float* w, size_t n, size_t k) {
  auto* p = new PackedF32();
  p->n = n;
  p->k = k;
  p->panels = packed_f32_panels(n);
  p->bytes = packed_f32_bytes(n, k, sizeof(uint16_t));
  p->half = static_cast<uint16_t*>(aligned_alloc64(p->bytes));
  std::memset(p->half, 0, p->bytes);
  for (size_t col = 0; col < n; ++col) {
    uint16_t* d = p->half + (col / 64) * k * 64 + col % 64;
    for (size_t j = 0; j < k; ++j) d[j * 64] = float_to_half(w[col * k + j]);
  }
  return p;
}

PackedF32* gather_f32(const PackedF32& w, const int32_t* cols, size_t n) {
  auto* p = new_f32_like(w, n);
  // column c of a packed weight: group c / kGroupCols, lane c % kGroupCols of each k row (kGroupCols apart)
  auto at = [&](size_t col, size_t j) { return (col / kGroupCols) * w.k * kGroupCols + j * kGroupCols + col % kGroupCols; };
  for (size_t c = 0; c < n; ++c) {
    const size_t src = static_cast<size_t>(cols[c]);
    for (size_t j = 0; j < w.k; ++j) {
      if (w.half) p->half[at(c, j)] = w.half[at(src, j)];
      else p->data[at(c, j)] = w.data[at(src, j)];
    }
  }
  return p;
}

PackedF32* gather_f32_rows(const PackedF32& w, const void* rows, const int32_t* cols, size_t n) {
  auto* p = new_f32_like(w, n);
  // destination group by group and k row by k row, so the writes are sequential; a group's 64 source rows stay in
  // cache while their k values are read one after the other
  auto copy = [&](auto* out, const auto* in) {
    for (size_t g = 0; g * kGroupCols < n; ++g) {
      const size_t c1 = std::min(n, (g + 1) * kGroupCols);
      for (size_t j = 0; j < w.k; ++j) {
        auto* d = out + g * w.k * kGroupCols + j * kGroupCols;
        for (size_t c = g * kGroupCols; c < c1; ++c) d[c - g * kGroupCols] = in[static_cast<size_t>(cols[c]) * w.k + j];
      }
    }
  };
  if (w.half) copy(p->half, static_cast<const uint16_t*>(rows));
  else copy(p->data, static_cast<const float*>(rows));
  return p;
}

bool rows_match(const PackedF32& w, const void* rows) {
  for (size_t g = 0; g * kGroupCols < w.n; ++g)
    for (size_t j = 0; j < w.k; ++j)
      for (size_t c = g * kGroupCols; c < std::min(w.n, (g + 1) * kGroupCols); ++c) {
        const size_t at = g * w.k * kGroupCols + j * kGroupCols + c % kGroupCols;
        const bool same = w.half ? w.half[at] == static_cast<const uint16_t*>(rows)[c * w.k + j]
                                 : std::memcmp(&w.data[at], static_cast<const float*>(rows) + c * w.k + j, sizeof(float)) == 0;
        if (!same) return false;
      }
  return true;
}

// Splits the panels of an fp32 GEMM over threads in whole 64-column groups.
static void run_f32(const float* a, size_t rows, const PackedF32& w, const F32Epilogue& ep) {
  const KernelTable& t = kernels();
  const size_t groups = (w.n + 63) / 64;
  parallel_for(groups, std::max<size_t>(1, kParallelMacs / (rows * w.k * 64)), [&](size_t g0, size_t g1) {
    if (w.half)
      t.gemm_f16(a, w.k, rows, w.half, w.k, w.n, g0 * 4, g1 * 4, ep);
    else
      t.gemm_f32(a, w.k, rows, w.data, w.k, w.n, g0 * 4, g1 * 4, ep);
  });
}

void linear_f32(const PackedF32& w, const float* x, size_t rows, const float* bias, Activation act, float* out) {
  run_f32(x, rows, w, F32Epilogue{1.0f, 0.0f, bias, act, out, w.n, w.half ? Op::GemmF16 : Op::GemmF32});
}

void sgemm(const float* a, const float* b, size_t m, size_t n, size_t k, bool trans_a, bool trans_b, float alpha,
           float beta, float* c) {
  thread_local std::vector<float> a_buf;
  thread_local PackedF32 b_pack;  // reused packing buffer: `bytes` is its capacity
  const float* ar = a;
  if (trans_a) {
    float* t = scratch(a_buf, m * k);
    for (size_t i = 0; i < m; ++i)
      for (size_t j = 0; j < k; ++j) t[i * k + j] = a[j * m + i];
    ar = t;
  }
  // Repack b into the panel layout, in this thread's buffer (grown once, then reused).
  const size_t need = (n + 63) / 64 * k * 64 * sizeof(float);
  if (b_pack.bytes < need) {
    aligned_free64(b_pack.data);
    b_pack.data = nullptr;
    b_pack.data = static_cast<float*>(aligned_alloc64(need));
    b_pack.bytes = need;
  }
  pack_f32_into(b, n, k, !trans_b, b_pack.data);
  b_pack.n = n;
  b_pack.k = k;
  run_f32(ar, m, b_pack, F32Epilogue{alpha, beta, nullptr, Activation::None, c, n, Op::Sgemm});
}

}  // namespace chimera
