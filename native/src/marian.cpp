#include "chimera/marian.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "chimera/half.h"
#include "chimera/kernel_table.h"
#include "chimera/thread_pool.h"

namespace chimera {

namespace {

// Scratch that grows once per thread and is then reused: a decode step allocates nothing once warm.
struct Scratch {
  std::vector<float> x, qkv, ctx, tmp, h, scores;
  std::vector<int8_t> q;
  std::vector<float> q_scales;
  std::vector<int32_t> q_sums;
};
thread_local Scratch t_s;

template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// x = LN(x + y) in place. When `tap` is set, the normalised rows before gamma and beta are written there first
// (and tap advances): calibration reads them to fit gamma/beta corrections.
void add_norm(const NormW& ln, float* x, const float* y, size_t rows, size_t d, float*& tap) {
  if (tap) {
    thread_local std::vector<float> ones;
    if (ones.size() != d) ones.assign(d, 1.0f);
    NormArgs u;
    u.x = x;
    u.residual = y;
    u.gamma = ones.data();
    u.rows = rows;
    u.cols = d;
    u.out = tap;
    norm(u);
    tap += rows * d;
  }
  NormArgs a;
  a.x = x;
  a.residual = y;
  a.gamma = ln.gamma;
  a.beta = ln.beta;
  a.rows = rows;
  a.cols = d;
  a.out = x;  // in place: each row's sum is formed before that row is written
  norm(a);
}

}  // namespace

void linear_any(const LinearW& w, const float* x, size_t rows, Activation act, float* out) {
  if (w.s8) {
    const size_t stride = w.s8->kp;
    int8_t* q = grow(t_s.q, rows * stride);
    float* sc = grow(t_s.q_scales, rows);
    int32_t* su = grow(t_s.q_sums, rows);
    quantize_rows(x, rows, w.k, q, stride, sc, su);
    linear_s8(*w.s8, q, stride, sc, su, rows, w.bias, act, out);
  } else {
    linear_f32(*w.f32, x, rows, w.bias, act, out);
  }
}

void marian_fill_positions(MarianModel& m) {
  const size_t d = m.dims.d, half = d / 2;
  m.positions.assign(m.dims.max_pos * d, 0.0f);
  for (size_t pos = 0; pos < m.dims.max_pos; ++pos)
    for (size_t j = 0; j < half; ++j) {
      const double angle = static_cast<double>(pos) / std::pow(10000.0, 2.0 * static_cast<double>(j) / static_cast<double>(d));
      m.positions[pos * d + j] = static_cast<float>(std::sin(angle));
      m.positions[pos * d + half + j] = static_cast<float>(std::cos(angle));
    }
}

static void embed_rows(const MarianModel& m, const int32_t* ids, const int32_t* pos, size_t rows, float* x) {
  const size_t d = m.dims.d;
  for (size_t r = 0; r < rows; ++r) {
    const size_t off = static_cast<size_t>(ids[r]) * d;
    const float* p = m.positions.data() + static_cast<size_t>(pos[r]) * d;
    float* xr = x + r * d;
    if (m.embed_half)
      for (size_t j = 0; j < d; ++j) xr[j] = half_to_float(m.embed_half[off + j]) * m.dims.embed_scale + p[j];
    else
      for (size_t j = 0; j < d; ++j) xr[j] = m.embed[off + j] * m.dims.embed_scale + p[j];
  }
}

void marian_encode(const MarianModel& m, MarianState& st, const int32_t* ids, const int32_t* lens, size_t batch,
                   size_t s, const int32_t* src_slots, float* enc_out, float* taps) {
  const size_t d = m.dims.d, heads = m.dims.heads, hd = d / heads, rows = batch * s;
  const KernelTable& kt = kernels();
  float* x = enc_out ? enc_out : grow(t_s.x, rows * d);
  std::vector<int32_t> pos(rows);
  for (size_t r = 0; r < rows; ++r) pos[r] = static_cast<int32_t>(r % s);
  embed_rows(m, ids, pos.data(), rows, x);
  float* qkv = grow(t_s.qkv, rows * 3 * d);
  float* ctx = grow(t_s.ctx, rows * d);
  float* tmp = grow(t_s.tmp, rows * d);
  size_t ffn = 0;
  for (const auto& l : m.encoder) ffn = std::max(ffn, l.fc1.n);
  for (const auto& l : m.decoder) ffn = std::max(ffn, l.fc1.n);
  float* h = grow(t_s.h, rows * std::max(ffn, 2 * d));
  for (const EncoderLayer& l : m.encoder) {
    linear_any(l.qkv, x, rows, Activation::None, qkv);
    parallel_for(batch * heads, 1, [&](size_t t0, size_t t1) {
      thread_local std::vector<float> scores;  // per worker thread, grown once
      if (scores.size() < s + 128) scores.resize(s + 128);  // room for a whole last block of scores
      for (size_t t = t0; t < t1; ++t) {
        const size_t b = t / heads, hh = t % heads;
        const float* base = qkv + b * s * 3 * d;
        kt.attention(base + hh * hd, 3 * d, base + d + hh * hd, 3 * d, base + 2 * d + hh * hd, 3 * d,
                     ctx + b * s * d + hh * hd, d, s, static_cast<size_t>(lens[b]), hd, -1, scores.data());
      }
    });
    linear_any(l.out, ctx, rows, Activation::None, tmp);
    add_norm(l.ln_attn, x, tmp, rows, d, taps);
    linear_any(l.fc1, x, rows, m.dims.act, h);
    linear_any(l.fc2, h, rows, Activation::None, tmp);
    add_norm(l.ln_ffn, x, tmp, rows, d, taps);
  }
  // Cross-attention K|V of every decoder layer, computed once per source.
  for (size_t li = 0; li < m.decoder.size(); ++li) {
    linear_any(m.decoder[li].cross_kv, x, rows, Activation::None, h);
    for (size_t b = 0; b < batch; ++b) {
      const size_t slot = static_cast<size_t>(src_slots[b]);
      float* dst = st.cross_kv.data() + ((slot * st.layers + li) * st.max_src) * 2 * d;
      std::memcpy(dst, h + b * s * 2 * d, static_cast<size_t>(lens[b]) * 2 * d * sizeof(float));
    }
  }
  for (size_t b = 0; b < batch; ++b) st.src_len[static_cast<size_t>(src_slots[b])] = lens[b];
}

void marian_step(const MarianModel& m, MarianState& st, const int32_t* token, const int32_t* slot, const int32_t* pos,
                 const int32_t* src, size_t rows, float* logits, float* hidden, float* taps) {
  const size_t d = m.dims.d, heads = m.dims.heads, hd = d / heads;
  const KernelTable& kt = kernels();
  float* x = grow(t_s.x, rows * d);
  float* qkv = grow(t_s.qkv, rows * 3 * d);
  float* ctx = grow(t_s.ctx, rows * d);
  float* tmp = grow(t_s.tmp, rows * d);
  size_t ffn = 0;
  for (const auto& l : m.decoder) ffn = std::max(ffn, l.fc1.n);
  float* h = grow(t_s.h, rows * ffn);
  float* scores = grow(t_s.scores, std::max(st.max_len, st.max_src) + 128);
  embed_rows(m, token, pos, rows, x);
  for (size_t li = 0; li < m.decoder.size(); ++li) {
    const DecoderLayer& l = m.decoder[li];
    linear_any(l.qkv, x, rows, Activation::None, qkv);
    for (size_t r = 0; r < rows; ++r) {  // append this step's K|V to the row's slot
      float* kv = st.self_kv.data() + ((static_cast<size_t>(slot[r]) * st.layers + li) * st.max_len + pos[r]) * 2 * d;
      std::memcpy(kv, qkv + r * 3 * d + d, 2 * d * sizeof(float));
    }
    for (size_t r = 0; r < rows; ++r) {
      const float* kv = st.self_kv.data() + (static_cast<size_t>(slot[r]) * st.layers + li) * st.max_len * 2 * d;
      for (size_t hh = 0; hh < heads; ++hh)
        kt.attention(qkv + r * 3 * d + hh * hd, 3 * d, kv + hh * hd, 2 * d, kv + d + hh * hd, 2 * d, ctx + r * d + hh * hd,
                     d, 1, static_cast<size_t>(pos[r]) + 1, hd, -1, scores);
    }
    linear_any(l.out, ctx, rows, Activation::None, tmp);
    add_norm(l.ln_self, x, tmp, rows, d, taps);
    linear_any(l.cross_q, x, rows, Activation::None, tmp);
    for (size_t r = 0; r < rows; ++r) {
      const size_t sv = static_cast<size_t>(src[r]);
      const float* kv = st.cross_kv.data() + (sv * st.layers + li) * st.max_src * 2 * d;
      for (size_t hh = 0; hh < heads; ++hh)
        kt.attention(tmp + r * d + hh * hd, d, kv + hh * hd, 2 * d, kv + d + hh * hd, 2 * d, ctx + r * d + hh * hd, d, 1,
                     static_cast<size_t>(st.src_len[sv]), hd, -1, scores);
    }
    linear_any(l.cross_out, ctx, rows, Activation::None, tmp);
    add_norm(l.ln_cross, x, tmp, rows, d, taps);
    linear_any(l.fc1, x, rows, m.dims.act, h);
    linear_any(l.fc2, h, rows, Activation::None, tmp);
    add_norm(l.ln_ffn, x, tmp, rows, d, taps);
  }
  if (hidden) std::memcpy(hidden, x, rows * d * sizeof(float));
  linear_any(m.lm_head, x, rows, Activation::None, logits);
}

void marian_copy_slot(MarianState& st, size_t from, size_t to, size_t len) {
  if (from == to) return;
  const size_t row = 2 * st.d;
  for (size_t li = 0; li < st.layers; ++li) {
    const float* a = st.self_kv.data() + ((from * st.layers + li) * st.max_len) * row;
    float* b = st.self_kv.data() + ((to * st.layers + li) * st.max_len) * row;
    std::memcpy(b, a, len * row * sizeof(float));
  }
}

}  // namespace chimera
