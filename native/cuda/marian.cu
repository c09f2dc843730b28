// The Marian forward pass on the device, mirroring native/src/marian.cpp step for step: fused qkv (q rows
// pre-scaled), post-LN layers, cross K|V computed once per source, each layer norm quantising its output for
// the next int8 linear, final_logits_bias as the LM head's bias. Weights are resident, the KV cache lives in
// device memory (cuda::State), each model runs on its own stream with scratch that grows once and is reused,
// and a step copies its per-row indices in once and its logits (or top-k) out once.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "common.cuh"

namespace chimera::cuda {

namespace {

struct DNorm {
  float* gamma = nullptr;
  float* beta = nullptr;
};
struct DEncoderLayer {
  Linear *qkv = nullptr, *out = nullptr, *fc1 = nullptr, *fc2 = nullptr;
  DNorm ln_attn, ln_ffn;
};
struct DDecoderLayer {
  Linear *qkv = nullptr, *out = nullptr, *cross_q = nullptr, *cross_kv = nullptr, *cross_out = nullptr;
  Linear *fc1 = nullptr, *fc2 = nullptr;
  DNorm ln_self, ln_cross, ln_ffn;
};

// Pinned host memory for the per-call indices: one asynchronous copy in per encode / step.
struct Pinned {
  unsigned char* p = nullptr;
  size_t bytes = 0;
  ~Pinned() {
    if (p) cudaFreeHost(p);
  }
  void reserve(size_t n) {
    if (n <= bytes) return;
    if (p) cudaFreeHost(p);
    p = nullptr;
    bytes = 0;
    check(cudaMallocHost(reinterpret_cast<void**>(&p), n + n / 2), "cudaMallocHost");
    bytes = n + n / 2;
  }
};

// Offsets of the arrays packed into one index block (8-byte aligned each).
struct MetaLayout {
  size_t used = 0;
  size_t take(size_t bytes) {
    used = (used + 7) & ~static_cast<size_t>(7);
    const size_t o = used;
    used += bytes;
    return o;
  }
};

}  // namespace

struct Model {
  MarianDims dims;
  size_t ffn = 0, kp_max = 0;
  float* embed = nullptr;
  __half* embed_half = nullptr;
  float* positions = nullptr;
  std::vector<DEncoderLayer> encoder;
  std::vector<DDecoderLayer> decoder;
  Linear* lm_head = nullptr;
  cudaStream_t stream = nullptr;
  size_t weight_bytes = 0;
  // encode / step / sync_norms of one model run one at a time (they share the scratch below)
  std::mutex mu;
  Buf x, qkv, ctx, tmp, h, q, q_scales, q_sums, logits, top_idx, top_val, meta;
  Pinned host_meta;
  std::vector<float> host_logits;  // only for a top-k past kMaxDeviceTopK

  ~Model() {
    for (auto& l : encoder) {
      for (Linear* w : {l.qkv, l.out, l.fc1, l.fc2}) free_linear(w);
      for (DNorm* n : {&l.ln_attn, &l.ln_ffn}) {
        release(n->gamma);
        release(n->beta);
      }
    }
    for (auto& l : decoder) {
      for (Linear* w : {l.qkv, l.out, l.cross_q, l.cross_kv, l.cross_out, l.fc1, l.fc2}) free_linear(w);
      for (DNorm* n : {&l.ln_self, &l.ln_cross, &l.ln_ffn}) {
        release(n->gamma);
        release(n->beta);
      }
    }
    free_linear(lm_head);
    release(embed);
    release(embed_half);
    release(positions);
    if (stream) cudaStreamDestroy(stream);
  }
};

struct State {
  const Model* model = nullptr;
  size_t layers = 0, d = 0;
  size_t slots = 0, max_len = 0, sources = 0, max_src = 0;
  float* self_kv = nullptr;   // [slots][layers][max_len][2d]
  float* cross_kv = nullptr;  // [sources][layers][max_src][2d]
  std::vector<int32_t> src_len;
  ~State() {
    release(self_kv);
    release(cross_kv);
  }
};

namespace {

template <typename T>
T* dev_copy(const T* src, size_t n, size_t& bytes) {
  if (!src) return nullptr;
  void* p = nullptr;
  check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
  try {
    upload(p, src, n * sizeof(T));
  } catch (...) {
    cudaFree(p);
    throw;
  }
  bytes += n * sizeof(T);
  return static_cast<T*>(p);
}

Linear* up_linear(const LinearW& w, Model& m) {
  Linear* l = upload_linear(w);
  m.weight_bytes += l->bytes;
  if (l->tier == Tier::S8) m.kp_max = std::max(m.kp_max, l->kp);
  return l;
}

void up_norm(DNorm& dn, const NormW& n, size_t d, Model& m) {
  dn.gamma = dev_copy(n.gamma, d, m.weight_bytes);
  dn.beta = dev_copy(n.beta, d, m.weight_bytes);
}

void resync_norm(const DNorm& dn, const NormW& n, size_t d, cudaStream_t s) {
  check(cudaMemcpyAsync(dn.gamma, n.gamma, d * sizeof(float), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  if (n.beta && dn.beta)
    check(cudaMemcpyAsync(dn.beta, n.beta, d * sizeof(float), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
}

// Scratch for `rows` rows (grows, never shrinks; each call ends synchronised, so a grow never frees memory a
// kernel still uses).
void reserve_scratch(Model& m, size_t rows) {
  const size_t d = m.dims.d;
  m.x.reserve(rows * d * sizeof(float));
  m.qkv.reserve(rows * 3 * d * sizeof(float));
  m.ctx.reserve(rows * d * sizeof(float));
  m.tmp.reserve(rows * d * sizeof(float));
  m.h.reserve(rows * std::max(m.ffn, 2 * d) * sizeof(float));
  m.q.reserve(rows * std::max<size_t>(m.kp_max, kS8KAlign));
  m.q_scales.reserve(rows * sizeof(float));
  m.q_sums.reserve(rows * sizeof(int32_t));
}

// marian.cpp linear_any / linear_prequantized: int8 quantises x per row into the scratch unless the preceding
// norm already did (prequantized).
void run_linear(Model& m, const Linear& w, const float* x, size_t rows, Activation act, float* out, bool prequantized) {
  if (w.tier == Tier::S8) {
    if (!prequantized)
      launch_quantize(x, rows, w.k, m.q.as<int8_t>(), w.kp, m.q_scales.as<float>(), m.q_sums.as<int32_t>(), nullptr,
                      false, m.stream);
    S8Out ep;
    ep.a_scales = m.q_scales.as<float>();
    ep.w_scales = w.scales;
    ep.bias = w.bias;
    ep.act = act;
    ep.out = out;
    launch_gemm_s8(m.q.as<int8_t>(), static_cast<const int8_t*>(w.w), rows, w.n, w.kp, ep, false, m.stream);
  } else if (w.tier == Tier::F16) {
    launch_gemm_f16(x, static_cast<const __half*>(w.w), rows, w.n, w.k, w.bias, act, out, false, m.stream);
  } else {
    launch_gemm_f32(x, static_cast<const float*>(w.w), rows, w.n, w.k, w.bias, act, out, false, m.stream);
  }
}

// marian.cpp add_norm: x = LN(x + y) in place; quantises the output for `next` when it is an int8 linear of width d.
bool add_norm(Model& m, const DNorm& ln, float* x, const float* y, size_t rows, const Linear* next) {
  NormArgs a;
  a.x = x;
  a.residual = y;
  a.gamma = ln.gamma;
  a.beta = ln.beta;
  a.rows = rows;
  a.cols = m.dims.d;
  a.out = x;
  const bool fuse = next && next->tier == Tier::S8 && next->k == m.dims.d;
  if (fuse) {
    a.q = m.q.as<int8_t>();
    a.q_stride = next->kp;
    a.q_scales = m.q_scales.as<float>();
    a.q_sums = m.q_sums.as<int32_t>();
  }
  launch_norm(a, nullptr, false, m.stream);
  return fuse;
}

void sync(cudaStream_t s) { check(cudaStreamSynchronize(s), "cudaStreamSynchronize"); }

// Copies the index block (laid out by `lay`, written into m.host_meta) to the device in one transfer.
unsigned char* send_meta(Model& m, const MetaLayout& lay) {
  m.meta.reserve(lay.used);
  check(cudaMemcpyAsync(m.meta.p, m.host_meta.p, lay.used, cudaMemcpyHostToDevice, m.stream), "cudaMemcpyAsync");
  return m.meta.as<unsigned char>();
}

}  // namespace

Model* upload_model(const MarianModel& host) {
  require();
  auto* m = new Model();
  try {
    check(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    m->dims = host.dims;
    const size_t d = host.dims.d;
    if (host.embed_half)
      m->embed_half = reinterpret_cast<__half*>(dev_copy(host.embed_half, host.dims.vocab * d, m->weight_bytes));
    else
      m->embed = dev_copy(host.embed, host.dims.vocab * d, m->weight_bytes);
    m->positions = dev_copy(host.positions.data(), host.positions.size(), m->weight_bytes);
    for (const EncoderLayer& l : host.encoder) {
      m->encoder.emplace_back();
      DEncoderLayer& e = m->encoder.back();
      e.qkv = up_linear(l.qkv, *m);
      e.out = up_linear(l.out, *m);
      e.fc1 = up_linear(l.fc1, *m);
      e.fc2 = up_linear(l.fc2, *m);
      up_norm(e.ln_attn, l.ln_attn, d, *m);
      up_norm(e.ln_ffn, l.ln_ffn, d, *m);
      m->ffn = std::max(m->ffn, l.fc1.n);
    }
    for (const DecoderLayer& l : host.decoder) {
      m->decoder.emplace_back();
      DDecoderLayer& e = m->decoder.back();
      e.qkv = up_linear(l.qkv, *m);
      e.out = up_linear(l.out, *m);
      e.cross_q = up_linear(l.cross_q, *m);
      e.cross_kv = up_linear(l.cross_kv, *m);
      e.cross_out = up_linear(l.cross_out, *m);
      e.fc1 = up_linear(l.fc1, *m);
      e.fc2 = up_linear(l.fc2, *m);
      up_norm(e.ln_self, l.ln_self, d, *m);
      up_norm(e.ln_cross, l.ln_cross, d, *m);
      up_norm(e.ln_ffn, l.ln_ffn, d, *m);
      m->ffn = std::max(m->ffn, l.fc1.n);
    }
    m->lm_head = up_linear(host.lm_head, *m);
  } catch (...) {
    delete m;
    throw;
  }
  return m;
}

void free_model(Model* m) noexcept { delete m; }

size_t model_bytes(const Model& m) noexcept {
  size_t b = m.weight_bytes;
  for (const Buf* s : {&m.x, &m.qkv, &m.ctx, &m.tmp, &m.h, &m.q, &m.q_scales, &m.q_sums, &m.logits, &m.top_idx,
                       &m.top_val, &m.meta})
    b += s->bytes;
  return b;
}

void sync_norms(Model& dev, const MarianModel& host) {
  std::lock_guard<std::mutex> lock(dev.mu);
  const size_t d = dev.dims.d;
  for (size_t i = 0; i < dev.encoder.size() && i < host.encoder.size(); ++i) {
    resync_norm(dev.encoder[i].ln_attn, host.encoder[i].ln_attn, d, dev.stream);
    resync_norm(dev.encoder[i].ln_ffn, host.encoder[i].ln_ffn, d, dev.stream);
  }
  for (size_t i = 0; i < dev.decoder.size() && i < host.decoder.size(); ++i) {
    resync_norm(dev.decoder[i].ln_self, host.decoder[i].ln_self, d, dev.stream);
    resync_norm(dev.decoder[i].ln_cross, host.decoder[i].ln_cross, d, dev.stream);
    resync_norm(dev.decoder[i].ln_ffn, host.decoder[i].ln_ffn, d, dev.stream);
  }
  sync(dev.stream);
}

// ---- state

namespace {
float* alloc_zeroed(size_t floats) {
  void* p = nullptr;
  check(cudaMalloc(&p, std::max<size_t>(floats, 1) * sizeof(float)), "cudaMalloc");
  const cudaError_t e = cudaMemset(p, 0, std::max<size_t>(floats, 1) * sizeof(float));
  if (e != cudaSuccess) {
    cudaFree(p);
    fail(e, "cudaMemset");
  }
  return static_cast<float*>(p);
}
}  // namespace

State* create_state(const Model& m, size_t slots, size_t max_len, size_t sources, size_t max_src) {
  require();
  auto* st = new State();
  try {
    st->model = &m;
    st->layers = m.decoder.size();
    st->d = m.dims.d;
    st->slots = slots;
    st->max_len = max_len;
    st->sources = sources;
    st->max_src = max_src;
    st->self_kv = alloc_zeroed(slots * st->layers * max_len * 2 * st->d);
    st->cross_kv = alloc_zeroed(sources * st->layers * max_src * 2 * st->d);
    st->src_len.assign(sources, 0);
  } catch (...) {
    delete st;
    throw;
  }
  return st;
}

void free_state(State* s) noexcept { delete s; }

size_t state_bytes(const State& s) noexcept {
  return (s.slots * s.max_len + s.sources * s.max_src) * s.layers * 2 * s.d * sizeof(float);
}

void resize_state(State& st, size_t slots, size_t max_len, size_t sources, size_t max_src) {
  require();
  const size_t row = 2 * st.d * sizeof(float);  // bytes of one position's K|V
  // Allocate both new buffers first: a failure leaves the state as it was.
  float* self_kv = alloc_zeroed(slots * st.layers * max_len * 2 * st.d);
  float* cross_kv = nullptr;
  try {
    cross_kv = alloc_zeroed(sources * st.layers * max_src * 2 * st.d);
    const size_t keep_slots = std::min(st.slots, slots), keep_len = std::min(st.max_len, max_len);
    const size_t keep_src = std::min(st.sources, sources), keep_src_len = std::min(st.max_src, max_src);
    // [slot][layer] blocks of positions: one 2D copy, each (slot, layer) a "row" of keep_len positions
    if (keep_slots && keep_len && st.layers)
      check(cudaMemcpy2D(self_kv, max_len * row, st.self_kv, st.max_len * row, keep_len * row, keep_slots * st.layers,
                         cudaMemcpyDeviceToDevice),
            "cudaMemcpy2D");
    if (keep_src && keep_src_len && st.layers)
      check(cudaMemcpy2D(cross_kv, max_src * row, st.cross_kv, st.max_src * row, keep_src_len * row,
                         keep_src * st.layers, cudaMemcpyDeviceToDevice),
            "cudaMemcpy2D");
  } catch (...) {
    release(self_kv);
    release(cross_kv);
    throw;
  }
  release(st.self_kv);
  release(st.cross_kv);
  st.self_kv = self_kv;
  st.cross_kv = cross_kv;
  st.src_len.resize(sources, 0);
  st.slots = slots;
  st.max_len = max_len;
  st.sources = sources;
  st.max_src = max_src;
}

void copy_slot(State& st, size_t from, size_t to, size_t len) {
  require();
  if (from == to || len == 0) return;
  const size_t row = 2 * st.d, pitch = st.max_len * row * sizeof(float);
  check(cudaMemcpy2DAsync(st.self_kv + to * st.layers * st.max_len * row, pitch,
                          st.self_kv + from * st.layers * st.max_len * row, pitch, len * row * sizeof(float), st.layers,
                          cudaMemcpyDeviceToDevice, st.model->stream),
        "cudaMemcpy2DAsync");
  sync(st.model->stream);
}

void release_source(State& st, size_t src) {
  if (src < st.src_len.size()) st.src_len[src] = 0;
}

// ---- encode and step

void encode(Model& m, State& st, const int32_t* ids, const int32_t* lens, size_t batch, size_t s,
            const int32_t* src_slots, float* enc_out) {
  require();
  std::lock_guard<std::mutex> lock(m.mu);
  const size_t d = m.dims.d, heads = m.dims.heads, hd = d / heads, rows = batch * s;
  reserve_scratch(m, rows);
  // indices: ids and positions per row, the attention's key offset and length per row, per source its length
  // and the offset of its cross K|V slot
  MetaLayout lay;
  const size_t o_ids = lay.take(rows * 4), o_pos = lay.take(rows * 4), o_alen = lay.take(rows * 4);
  const size_t o_aoff = lay.take(rows * 8), o_lens = lay.take(batch * 4), o_dst = lay.take(batch * 8);
  m.host_meta.reserve(lay.used);
  unsigned char* hm = m.host_meta.p;
  auto* h_pos = reinterpret_cast<int32_t*>(hm + o_pos);
  auto* h_alen = reinterpret_cast<int32_t*>(hm + o_alen);
  auto* h_aoff = reinterpret_cast<int64_t*>(hm + o_aoff);
  auto* h_dst = reinterpret_cast<int64_t*>(hm + o_dst);
  std::memcpy(hm + o_ids, ids, rows * 4);
  std::memcpy(hm + o_lens, lens, batch * 4);
  for (size_t r = 0; r < rows; ++r) {
    const size_t b = r / s;
    h_pos[r] = static_cast<int32_t>(r % s);
    h_alen[r] = lens[b];
    h_aoff[r] = static_cast<int64_t>(b * s * 3 * d + d);  // this source's first key in the fused qkv rows
  }
  for (size_t b = 0; b < batch; ++b)
    h_dst[b] = static_cast<int64_t>(static_cast<size_t>(src_slots[b]) * st.layers * st.max_src * 2 * d);
  unsigned char* dm = send_meta(m, lay);
  float* x = m.x.as<float>();
  float* qkv = m.qkv.as<float>();
  float* ctx = m.ctx.as<float>();
  float* tmp = m.tmp.as<float>();
  float* h = m.h.as<float>();
  launch_embed(m.embed, m.embed_half, m.positions, reinterpret_cast<const int32_t*>(dm + o_ids),
               reinterpret_cast<const int32_t*>(dm + o_pos), rows, d, m.dims.embed_scale, x, m.stream);
  AttnArgs at;
  at.q = qkv;
  at.ldq = 3 * d;
  at.kv = qkv;
  at.row_off = reinterpret_cast<const int64_t*>(dm + o_aoff);
  at.ldkv = 3 * d;
  at.v_off = d;
  at.len = reinterpret_cast<const int32_t*>(dm + o_alen);
  at.o = ctx;
  at.ldo = d;
  at.rows = rows;
  at.heads = heads;
  at.hd = hd;
  at.off4 = d % 4 == 0;
  for (const DEncoderLayer& l : m.encoder) {
    run_linear(m, *l.qkv, x, rows, Activation::None, qkv, false);
    launch_attention(at, false, m.stream);
    run_linear(m, *l.out, ctx, rows, Activation::None, tmp, false);
    const bool pq = add_norm(m, l.ln_attn, x, tmp, rows, l.fc1);
    run_linear(m, *l.fc1, x, rows, m.dims.act, h, pq);
    run_linear(m, *l.fc2, h, rows, Activation::None, tmp, false);
    add_norm(m, l.ln_ffn, x, tmp, rows, nullptr);
  }
  // cross-attention K|V of every decoder layer, computed once per source, into each source's slot
  for (size_t li = 0; li < m.decoder.size(); ++li) {
    run_linear(m, *m.decoder[li].cross_kv, x, rows, Activation::None, h, false);
    launch_scatter_rows(h, batch, s, 2 * d, reinterpret_cast<const int32_t*>(dm + o_lens),
                        reinterpret_cast<const int64_t*>(dm + o_dst), st.cross_kv + li * st.max_src * 2 * d, m.stream);
  }
  if (enc_out)
    check(cudaMemcpyAsync(enc_out, x, rows * d * sizeof(float), cudaMemcpyDeviceToHost, m.stream), "cudaMemcpyAsync");
  sync(m.stream);
  for (size_t b = 0; b < batch; ++b) st.src_len[static_cast<size_t>(src_slots[b])] = lens[b];
}

void step(Model& m, State& st, const int32_t* token, const int32_t* slot, const int32_t* pos, const int32_t* src,
          size_t rows, float* logits, size_t topk, int32_t* top_idx, float* top_val) {
  require();
  std::lock_guard<std::mutex> lock(m.mu);
  const size_t d = m.dims.d, heads = m.dims.heads, hd = d / heads, vocab = m.dims.vocab;
  reserve_scratch(m, rows);
  m.logits.reserve(rows * vocab * sizeof(float));
  MetaLayout lay;
  const size_t o_tok = lay.take(rows * 4), o_pos = lay.take(rows * 4), o_slen = lay.take(rows * 4);
  const size_t o_clen = lay.take(rows * 4), o_soff = lay.take(rows * 8), o_coff = lay.take(rows * 8);
  m.host_meta.reserve(lay.used);
  unsigned char* hm = m.host_meta.p;
  auto* h_slen = reinterpret_cast<int32_t*>(hm + o_slen);
  auto* h_clen = reinterpret_cast<int32_t*>(hm + o_clen);
  auto* h_soff = reinterpret_cast<int64_t*>(hm + o_soff);
  auto* h_coff = reinterpret_cast<int64_t*>(hm + o_coff);
  std::memcpy(hm + o_tok, token, rows * 4);
  std::memcpy(hm + o_pos, pos, rows * 4);
  for (size_t r = 0; r < rows; ++r) {
    h_slen[r] = pos[r] + 1;
    h_clen[r] = st.src_len[static_cast<size_t>(src[r])];
    h_soff[r] = static_cast<int64_t>(static_cast<size_t>(slot[r]) * st.layers * st.max_len * 2 * d);
    h_coff[r] = static_cast<int64_t>(static_cast<size_t>(src[r]) * st.layers * st.max_src * 2 * d);
  }
  unsigned char* dm = send_meta(m, lay);
  float* x = m.x.as<float>();
  float* qkv = m.qkv.as<float>();
  float* ctx = m.ctx.as<float>();
  float* tmp = m.tmp.as<float>();
  float* h = m.h.as<float>();
  const auto* d_pos = reinterpret_cast<const int32_t*>(dm + o_pos);
  const auto* d_soff = reinterpret_cast<const int64_t*>(dm + o_soff);
  launch_embed(m.embed, m.embed_half, m.positions, reinterpret_cast<const int32_t*>(dm + o_tok), d_pos, rows, d,
               m.dims.embed_scale, x, m.stream);
  // self attention reads q from the fused qkv rows; cross attention reads the cross-q projection in tmp
  AttnArgs self_attn;
  self_attn.q = qkv;
  self_attn.ldq = 3 * d;
  self_attn.row_off = d_soff;
  self_attn.ldkv = 2 * d;
  self_attn.v_off = d;
  self_attn.len = reinterpret_cast<const int32_t*>(dm + o_slen);
  self_attn.o = ctx;
  self_attn.ldo = d;
  self_attn.rows = rows;
  self_attn.heads = heads;
  self_attn.hd = hd;
  self_attn.off4 = (2 * d) % 4 == 0;
  AttnArgs cross_attn = self_attn;
  cross_attn.q = tmp;
  cross_attn.ldq = d;
  cross_attn.row_off = reinterpret_cast<const int64_t*>(dm + o_coff);
  cross_attn.len = reinterpret_cast<const int32_t*>(dm + o_clen);
  bool pq = false;  // whether x's rows are already quantised for the next int8 linear
  for (size_t li = 0; li < m.decoder.size(); ++li) {
    const DDecoderLayer& l = m.decoder[li];
    float* self_kv = st.self_kv + li * st.max_len * 2 * d;
    run_linear(m, *l.qkv, x, rows, Activation::None, qkv, pq);
    launch_append_kv(qkv, rows, d, self_kv, d_soff, d_pos, m.stream);
    self_attn.kv = self_kv;
    launch_attention(self_attn, false, m.stream);
    run_linear(m, *l.out, ctx, rows, Activation::None, tmp, false);
    pq = add_norm(m, l.ln_self, x, tmp, rows, l.cross_q);
    run_linear(m, *l.cross_q, x, rows, Activation::None, tmp, pq);
    cross_attn.kv = st.cross_kv + li * st.max_src * 2 * d;
    launch_attention(cross_attn, false, m.stream);
    run_linear(m, *l.cross_out, ctx, rows, Activation::None, tmp, false);
    pq = add_norm(m, l.ln_cross, x, tmp, rows, l.fc1);
    run_linear(m, *l.fc1, x, rows, m.dims.act, h, pq);
    run_linear(m, *l.fc2, h, rows, Activation::None, tmp, false);
    const Linear* next = li + 1 < m.decoder.size() ? m.decoder[li + 1].qkv : m.lm_head;
    pq = add_norm(m, l.ln_ffn, x, tmp, rows, next);
  }
  float* dl = m.logits.as<float>();
  run_linear(m, *m.lm_head, x, rows, Activation::None, dl, pq);
  if (topk > 0 && topk <= kMaxDeviceTopK) {
    m.top_idx.reserve(rows * topk * sizeof(int32_t));
    m.top_val.reserve(rows * topk * sizeof(float));
    launch_topk(dl, rows, vocab, topk, m.top_idx.as<int32_t>(), m.top_val.as<float>(), m.stream);
    check(cudaMemcpyAsync(top_idx, m.top_idx.p, rows * topk * sizeof(int32_t), cudaMemcpyDeviceToHost, m.stream),
          "cudaMemcpyAsync");
    check(cudaMemcpyAsync(top_val, m.top_val.p, rows * topk * sizeof(float), cudaMemcpyDeviceToHost, m.stream),
          "cudaMemcpyAsync");
    if (logits)
      check(cudaMemcpyAsync(logits, dl, rows * vocab * sizeof(float), cudaMemcpyDeviceToHost, m.stream),
            "cudaMemcpyAsync");
    sync(m.stream);
  } else if (topk > 0) {
    // a k past the device kernel's: the logits come back once and the CPU picks
    float* hl = logits;
    if (!hl) {
      if (m.host_logits.size() < rows * vocab) m.host_logits.resize(rows * vocab);
      hl = m.host_logits.data();
    }
    check(cudaMemcpyAsync(hl, dl, rows * vocab * sizeof(float), cudaMemcpyDeviceToHost, m.stream), "cudaMemcpyAsync");
    sync(m.stream);
    topk_rows(hl, rows, vocab, topk, true, top_idx, top_val);
  } else {
    if (logits)
      check(cudaMemcpyAsync(logits, dl, rows * vocab * sizeof(float), cudaMemcpyDeviceToHost, m.stream),
            "cudaMemcpyAsync");
    sync(m.stream);
  }
}

}  // namespace chimera::cuda
