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
  std::vector<const float*> self_rows, cross_rows;  // per step row: its K|V base for this layer
  std::vector<int32_t> self_len, cross_len;
};
thread_local Scratch t_s;

template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// x = LN(x + y) in place. When `tap` is set, the normalised rows before gamma and beta are written there first
// (and tap advances): calibration reads them to fit gamma/beta corrections. When `next` is an int8 linear, the
// normalised rows are also quantised for it (the same quantize_row on the same floats linear_any would
// quantise, so results are identical) and the call returns true: run `next` with linear_prequantized.
bool add_norm(const NormW& ln, float* x, const float* y, size_t rows, size_t d, float*& tap, const LinearW* next = nullptr) {
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
  const bool fuse = next && next->s8 && next->k == d;
  if (fuse) {
    a.q_stride = next->s8->kp;
    a.q = grow(t_s.q, rows * a.q_stride);
    a.q_scales = grow(t_s.q_scales, rows);
    a.q_sums = grow(t_s.q_sums, rows);
  }
  norm(a);
  return fuse;
}

// The int8 linear over rows that add_norm already quantised into the scratch.
void linear_prequantized(const LinearW& w, size_t rows, Activation act, float* out) {
  linear_s8(*w.s8, t_s.q.data(), w.s8->kp, t_s.q_scales.data(), t_s.q_sums.data(), rows, w.bias, act, out);
}

// linear_any, or the pre-quantised int8 linear when add_norm fused the quantisation.
void linear_next(bool prequantized, const LinearW& w, const float* x, size_t rows, Activation act, float* out);

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

namespace {
void linear_next(bool prequantized, const LinearW& w, const float* x, size_t rows, Activation act, float* out) {
  if (prequantized) linear_prequantized(w, rows, act, out);
  else linear_any(w, x, rows, act, out);
}
}  // namespace

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
  EncoderAttention attn;  // every layer's q|k|v rows land in the same qkv buffer
  attn.ld = 3 * d;
  attn.len = lens;
  attn.o = ctx;
  attn.ldo = d;
  attn.batch = batch;
  attn.s = s;
  attn.heads = heads;
  attn.hd = hd;
  for (const EncoderLayer& l : m.encoder) {
    linear_any(l.qkv, x, rows, Activation::None, qkv);
    attn.q = qkv;
    attn.k = qkv + d;
    attn.v = qkv + 2 * d;
    encoder_attention(attn);
    linear_any(l.out, ctx, rows, Activation::None, tmp);
    const bool pq = add_norm(l.ln_attn, x, tmp, rows, d, taps, &l.fc1);
    linear_next(pq, l.fc1, x, rows, m.dims.act, h);
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
                 const int32_t* src, size_t rows, float* logits, float* taps, const LinearW* head) {
  const size_t d = m.dims.d, heads = m.dims.heads, hd = d / heads;
  const LinearW& lm = head ? *head : m.lm_head;
  float* x = grow(t_s.x, rows * d);
  float* qkv = grow(t_s.qkv, rows * 3 * d);
  float* ctx = grow(t_s.ctx, rows * d);
  float* tmp = grow(t_s.tmp, rows * d);
  size_t ffn = 0;
  for (const auto& l : m.decoder) ffn = std::max(ffn, l.fc1.n);
  float* h = grow(t_s.h, rows * ffn);
  const float** self_rows = grow(t_s.self_rows, rows);
  const float** cross_rows = grow(t_s.cross_rows, rows);
  int32_t* self_len = grow(t_s.self_len, rows);
  int32_t* cross_len = grow(t_s.cross_len, rows);
  for (size_t r = 0; r < rows; ++r) {
    self_len[r] = pos[r] + 1;
    cross_len[r] = st.src_len[static_cast<size_t>(src[r])];
  }
  // Self attention reads q from the fused qkv rows; cross attention reads the cross-q projection in tmp.
  DecodeAttention self_attn;
  self_attn.q = qkv;
  self_attn.ldq = 3 * d;
  self_attn.kv = self_rows;
  self_attn.ldkv = 2 * d;
  self_attn.v_off = d;
  self_attn.len = self_len;
  self_attn.o = ctx;
  self_attn.ldo = d;
  self_attn.heads = heads;
  self_attn.hd = hd;
  DecodeAttention cross_attn = self_attn;
  cross_attn.q = tmp;
  cross_attn.ldq = d;
  cross_attn.kv = cross_rows;
  cross_attn.len = cross_len;
  embed_rows(m, token, pos, rows, x);
  bool pq = false;  // whether x's rows are already quantised for the next int8 linear
  for (size_t li = 0; li < m.decoder.size(); ++li) {
    const DecoderLayer& l = m.decoder[li];
    linear_next(pq, l.qkv, x, rows, Activation::None, qkv);
    for (size_t r = 0; r < rows; ++r) {  // append this step's K|V to the row's slot
      float* base = st.self_kv.data() + (static_cast<size_t>(slot[r]) * st.layers + li) * st.max_len * 2 * d;
      std::memcpy(base + static_cast<size_t>(pos[r]) * 2 * d, qkv + r * 3 * d + d, 2 * d * sizeof(float));
      self_rows[r] = base;
      cross_rows[r] = st.cross_kv.data() + (static_cast<size_t>(src[r]) * st.layers + li) * st.max_src * 2 * d;
    }
    decode_attention(self_attn, rows);
    linear_any(l.out, ctx, rows, Activation::None, tmp);
    pq = add_norm(l.ln_self, x, tmp, rows, d, taps, &l.cross_q);
    linear_next(pq, l.cross_q, x, rows, Activation::None, tmp);
    decode_attention(cross_attn, rows);
    linear_any(l.cross_out, ctx, rows, Activation::None, tmp);
    pq = add_norm(l.ln_cross, x, tmp, rows, d, taps, &l.fc1);
    linear_next(pq, l.fc1, x, rows, m.dims.act, h);
    linear_any(l.fc2, h, rows, Activation::None, tmp);
    const LinearW* next = li + 1 < m.decoder.size() ? &m.decoder[li + 1].qkv : &lm;
    pq = add_norm(l.ln_ffn, x, tmp, rows, d, taps, next);
  }
  linear_next(pq, lm, x, rows, Activation::None, logits);
}

SubHead* marian_sub_head(const MarianModel& m, const int32_t* ids, size_t n, const void* rows) {
  auto h = std::make_unique<SubHead>();
  const LinearW& full = m.lm_head;
  if (full.s8) {
    h->s8.reset(rows ? gather_s8_rows(*full.s8, static_cast<const uint8_t*>(rows), ids, n) : gather_s8(*full.s8, ids, n));
    h->w.s8 = h->s8.get();
    h->bytes = h->s8->bytes + n * sizeof(float);
  } else {
    h->f32.reset(rows ? gather_f32_rows(*full.f32, rows, ids, n) : gather_f32(*full.f32, ids, n));
    h->w.f32 = h->f32.get();
    h->bytes = h->f32->bytes;
  }
  if (full.bias) {
    h->bias.resize(n);
    for (size_t c = 0; c < n; ++c) h->bias[c] = full.bias[ids[c]];
    h->w.bias = h->bias.data();
    h->bytes += n * sizeof(float);
  }
  h->w.n = n;
  h->w.k = full.k;
  return h.release();
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

namespace chimera {

void marian_state_resize(MarianState& st, size_t slots, size_t max_len, size_t sources, size_t max_src) {
  const size_t row = 2 * st.d;
  // Build the new buffers first: if an allocation fails, the old state is untouched.
  std::vector<float> self_kv(slots * st.layers * max_len * row, 0.0f);
  std::vector<float> cross_kv(sources * st.layers * max_src * row, 0.0f);
  std::vector<int32_t> src_len(sources, 0);
  const size_t keep_len = std::min(st.max_len, max_len), keep_src = std::min(st.max_src, max_src);
  for (size_t s = 0; s < std::min(st.slots, slots); ++s)
    for (size_t li = 0; li < st.layers; ++li)
      std::memcpy(self_kv.data() + (s * st.layers + li) * max_len * row,
                  st.self_kv.data() + (s * st.layers + li) * st.max_len * row, keep_len * row * sizeof(float));
  for (size_t s = 0; s < std::min(st.sources, sources); ++s) {
    for (size_t li = 0; li < st.layers; ++li)
      std::memcpy(cross_kv.data() + (s * st.layers + li) * max_src * row,
                  st.cross_kv.data() + (s * st.layers + li) * st.max_src * row, keep_src * row * sizeof(float));
    src_len[s] = st.src_len[s];
  }
  st.self_kv.swap(self_kv);
  st.cross_kv.swap(cross_kv);
  st.src_len.swap(src_len);
  st.slots = slots;
  st.max_len = max_len;
  st.sources = sources;
  st.max_src = max_src;
}

}  // namespace chimera
