// The standalone CUDA driver: checks every kernel of the CUDA backend (native/include/chimera/cuda.h) against the
// CPU kernels, checks greedy output on a real model against the package's own (bench/cuda/fixture.ts), and times
// the device and the CPU, without Node (the GPU machine has none). bench/cuda/README.md says how to run it.
//
//   chimera-cuda-driver check [--fixture FILE] [--json FILE] [--quick] [--only GROUP,...]
//   chimera-cuda-driver bench [--json FILE] [--quick] [--cpu-threads LIST] [--no-cpu]
//   chimera-cuda-driver info
//
// Exit status: 0 every check passed (and the device side ran); 1 a check failed; 2 bad usage or unreadable
// input; 3 the CPU side passed but there is no usable CUDA device (the dry run), the reason printed.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "chimera/cpu.h"
#include "chimera/cuda.h"
#include "chimera/kernels.h"
#include "chimera/marian.h"
#include "chimera/thread_pool.h"

using namespace chimera;

namespace {

constexpr int kExitFail = 1, kExitUsage = 2, kExitNoDevice = 3;
// The bound for fp32 paths: normalised mean squared error against the CPU kernel.
constexpr double kNmseFp32 = 1e-7;
// fp16 tier: the device may round activations to fp16 for its tensor cores (relative error 2^-11 per operand),
// which the CPU fp16 tier (fp16 weights widened to fp32, fp32 activations) does not; 1e-5 leaves a wide margin
// over that rounding (about 1e-7 in NMSE) and still catches a wrong tile or a lost k slice.
constexpr double kNmseFp16 = 1e-5;

// ------------------------------------------------------------------------------------------------ utilities

struct Rng {  // xorshift64*: deterministic data, the same on every machine
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ULL + 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1DULL;
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * static_cast<float>((next() >> 40) * (1.0 / 16777216.0)); }
  int range(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<uint64_t>(hi - lo + 1)); }
  void fill(std::vector<float>& v, float lo, float hi) {
    for (float& x : v) x = uniform(lo, hi);
  }
};

double nmse(const float* ref, const float* got, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(got[i]) - ref[i];
    num += e * e;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  if (!std::isfinite(num)) return INFINITY;
  return den > 0 ? num / den : num;
}

template <typename T>
size_t mismatches(const T* a, const T* b, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; ++i) c += a[i] != b[i];
  return c;
}
size_t float_bits_mismatches(const float* a, const float* b, size_t n) {
  return mismatches(reinterpret_cast<const uint32_t*>(a), reinterpret_cast<const uint32_t*>(b), n);
}

size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) o += fmt("\\u%04x", c);
    else o += c;
  }
  return o + "\"";
}
std::string json_num(double v) { return std::isfinite(v) ? fmt("%.6g", v) : "null"; }

// A JSON object built field by field (values already serialised).
struct JObj {
  std::vector<std::pair<std::string, std::string>> f;
  JObj& num(const std::string& k, double v) { return raw(k, json_num(v)); }
  JObj& str(const std::string& k, const std::string& v) { return raw(k, json_str(v)); }
  JObj& boolean(const std::string& k, bool v) { return raw(k, v ? "true" : "false"); }
  JObj& raw(const std::string& k, const std::string& v) {
    f.emplace_back(k, v);
    return *this;
  }
  std::string dump() const {
    std::string o = "{";
    for (size_t i = 0; i < f.size(); ++i) o += (i ? ", " : "") + json_str(f[i].first) + ": " + f[i].second;
    return o + "}";
  }
};
std::string json_arr(const std::vector<std::string>& items) {
  std::string o = "[";
  for (size_t i = 0; i < items.size(); ++i) o += (i ? ",\n  " : "\n  ") + items[i];
  return o + (items.empty() ? "]" : "\n]");
}

// ------------------------------------------------------------------------------------------------ results

enum class Verdict { Pass, Fail, Skip, Info };
struct Result {
  std::string group, name;
  Verdict v;
  std::string detail;
};

struct Report {
  std::vector<Result> rows;
  std::string skip_reason;  // why device checks were skipped
  void add(const std::string& group, const std::string& name, Verdict v, const std::string& detail) {
    rows.push_back({group, name, v, detail});
    static const char* const tag[] = {"PASS", "FAIL", "SKIP", "INFO"};
    std::printf("%-4s %-10s %-44s %s\n", tag[static_cast<int>(v)], group.c_str(), name.c_str(), detail.c_str());
    std::fflush(stdout);
  }
  void check(const std::string& group, const std::string& name, bool ok, const std::string& detail) {
    add(group, name, ok ? Verdict::Pass : Verdict::Fail, detail);
  }
  size_t count(Verdict v) const {
    return static_cast<size_t>(std::count_if(rows.begin(), rows.end(), [&](const Result& r) { return r.v == v; }));
  }
};

// Runs a device check; a DeviceError or any other exception is that check's failure, not the run's end.
template <typename F>
void guarded(Report& rep, const std::string& group, const std::string& name, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    rep.add(group, name, Verdict::Fail, std::string("threw: ") + e.what());
  }
}

bool device_ok() { return cuda::info().available; }

// ------------------------------------------------------------------------------------------------ model building

// Pointers into one float array laid out in the fixture's documented order (bench/cuda/fixture.ts), so the fixture
// reader and the random OPUS-MT model share one layout.
struct RawLinear {
  const float* w = nullptr;
  const float* b = nullptr;
  size_t n = 0, k = 0;
};
struct RawNorm {
  const float* g = nullptr;
  const float* b = nullptr;
};
struct RawEnc {
  RawLinear qkv, out, fc1, fc2;
  RawNorm ln_attn, ln_ffn;
};
struct RawDec {
  RawLinear qkv, out, cross_q, cross_kv, cross_out, fc1, fc2;
  RawNorm ln_self, ln_cross, ln_ffn;
};
struct Geometry {
  size_t d = 0, heads = 0, vocab = 0, max_pos = 0, enc_layers = 0, dec_layers = 0, enc_ffn = 0, dec_ffn = 0;
  float embed_scale = 1.0f;
  Activation act = Activation::Silu;
};
struct RawModel {
  Geometry g;
  std::vector<float> storage;
  const float* embed = nullptr;
  RawLinear lm_head;
  std::vector<RawEnc> enc;
  std::vector<RawDec> dec;
};

size_t weight_floats(const Geometry& g) {
  const size_t d = g.d;
  auto lin = [](size_t n, size_t k) { return n * k + n; };
  const size_t ln = 2 * d;
  const size_t enc = lin(3 * d, d) + lin(d, d) + ln + lin(g.enc_ffn, d) + lin(d, g.enc_ffn) + ln;
  const size_t dec = lin(3 * d, d) + lin(d, d) + ln + lin(d, d) + lin(2 * d, d) + lin(d, d) + ln + lin(g.dec_ffn, d) + lin(d, g.dec_ffn) + ln;
  return g.vocab * d + lin(g.vocab, d) + g.enc_layers * enc + g.dec_layers * dec;
}

// Points the model's tensors into its storage, in the documented order.
void assign_layout(RawModel& m) {
  const Geometry& g = m.g;
  const size_t d = g.d;
  const float* p = m.storage.data();
  auto take = [&](size_t n) {
    const float* r = p;
    p += n;
    return r;
  };
  auto lin = [&](size_t n, size_t k) {
    RawLinear l;
    l.n = n;
    l.k = k;
    l.w = take(n * k);
    l.b = take(n);
    return l;
  };
  auto norm = [&]() {
    RawNorm r;
    r.g = take(d);
    r.b = take(d);
    return r;
  };
  m.embed = take(g.vocab * d);
  m.lm_head = lin(g.vocab, d);
  m.enc.clear();
  m.dec.clear();
  for (size_t i = 0; i < g.enc_layers; ++i) {
    RawEnc e;
    e.qkv = lin(3 * d, d);
    e.out = lin(d, d);
    e.ln_attn = norm();
    e.fc1 = lin(g.enc_ffn, d);
    e.fc2 = lin(d, g.enc_ffn);
    e.ln_ffn = norm();
    m.enc.push_back(e);
  }
  for (size_t i = 0; i < g.dec_layers; ++i) {
    RawDec e;
    e.qkv = lin(3 * d, d);
    e.out = lin(d, d);
    e.ln_self = norm();
    e.cross_q = lin(d, d);
    e.cross_kv = lin(2 * d, d);
    e.cross_out = lin(d, d);
    e.ln_cross = norm();
    e.fc1 = lin(g.dec_ffn, d);
    e.fc2 = lin(d, g.dec_ffn);
    e.ln_ffn = norm();
    m.dec.push_back(e);
  }
  if (static_cast<size_t>(p - m.storage.data()) != m.storage.size()) throw std::logic_error("weight layout size mismatch");
}

// Seeded random weights of a geometry: linears uniform in +-1/sqrt(k) (unit-variance activations stay bounded),
// LN gamma near 1, small biases. The values only need to be realistic in scale: the model is timed, not read.
RawModel random_model(const Geometry& g, uint64_t seed) {
  RawModel m;
  m.g = g;
  m.storage.assign(weight_floats(g), 0.0f);
  assign_layout(m);
  Rng r(seed);
  auto fill = [&](const float* p, size_t n, float lo, float hi) {
    float* q = const_cast<float*>(p);
    for (size_t i = 0; i < n; ++i) q[i] = r.uniform(lo, hi);
  };
  auto lin = [&](const RawLinear& l) {
    const float a = 1.0f / std::sqrt(static_cast<float>(l.k));
    fill(l.w, l.n * l.k, -a, a);
    fill(l.b, l.n, -0.02f, 0.02f);
  };
  auto norm = [&](const RawNorm& n) {
    fill(n.g, g.d, 0.9f, 1.1f);
    fill(n.b, g.d, -0.05f, 0.05f);
  };
  fill(m.embed, g.vocab * g.d, -0.1f, 0.1f);
  lin(m.lm_head);
  for (auto& e : m.enc) {
    lin(e.qkv), lin(e.out), lin(e.fc1), lin(e.fc2);
    norm(e.ln_attn), norm(e.ln_ffn);
  }
  for (auto& e : m.dec) {
    lin(e.qkv), lin(e.out), lin(e.cross_q), lin(e.cross_kv), lin(e.cross_out), lin(e.fc1), lin(e.fc2);
    norm(e.ln_self), norm(e.ln_cross), norm(e.ln_ffn);
  }
  return m;
}

enum class Tier { Fp32, Int8 };
const char* tier_name(Tier t) { return t == Tier::Int8 ? "int8" : "fp32"; }

// A CPU MarianModel packed from raw weights the way the binding builds one from MarianModel.load's description:
// every linear packed at the tier (pack_f32 / pack_s8 of the same [n][k] floats), the fp16 embedding copy for the
// lookup when the LM head is not fp32, live gamma/beta pointing at the raw storage.
struct HostModel {
  MarianModel m;
  std::vector<std::unique_ptr<PackedS8>> s8;
  std::vector<std::unique_ptr<PackedF32>> f32;
  std::vector<uint16_t> embed_half;
};

std::unique_ptr<HostModel> build_host(const RawModel& raw, Tier tier) {
  auto h = std::make_unique<HostModel>();
  MarianModel& m = h->m;
  const Geometry& g = raw.g;
  m.dims.d = g.d;
  m.dims.heads = g.heads;
  m.dims.vocab = g.vocab;
  m.dims.max_pos = g.max_pos;
  m.dims.embed_scale = g.embed_scale;
  m.dims.act = g.act;
  auto lin = [&](const RawLinear& l) {
    LinearW w;
    w.n = l.n;
    w.k = l.k;
    w.bias = l.b;
    if (tier == Tier::Int8) {
      h->s8.emplace_back(pack_s8(l.w, l.n, l.k));
      w.s8 = h->s8.back().get();
    } else {
      h->f32.emplace_back(pack_f32(l.w, l.n, l.k, false));
      w.f32 = h->f32.back().get();
    }
    return w;
  };
  auto norm = [](const RawNorm& n) {
    NormW w;
    w.gamma = n.g;
    w.beta = n.b;
    return w;
  };
  if (tier == Tier::Fp32) {
    m.embed = raw.embed;
  } else {
    h->embed_half.resize(g.vocab * g.d);
    to_half(raw.embed, g.vocab * g.d, h->embed_half.data());
    m.embed_half = h->embed_half.data();
  }
  m.lm_head = lin(raw.lm_head);
  for (const RawEnc& e : raw.enc) {
    EncoderLayer l;
    l.qkv = lin(e.qkv);
    l.out = lin(e.out);
    l.ln_attn = norm(e.ln_attn);
    l.fc1 = lin(e.fc1);
    l.fc2 = lin(e.fc2);
    l.ln_ffn = norm(e.ln_ffn);
    m.encoder.push_back(l);
  }
  for (const RawDec& e : raw.dec) {
    DecoderLayer l;
    l.qkv = lin(e.qkv);
    l.out = lin(e.out);
    l.ln_self = norm(e.ln_self);
    l.cross_q = lin(e.cross_q);
    l.cross_kv = lin(e.cross_kv);
    l.cross_out = lin(e.cross_out);
    l.ln_cross = norm(e.ln_cross);
    l.fc1 = lin(e.fc1);
    l.fc2 = lin(e.fc2);
    l.ln_ffn = norm(e.ln_ffn);
    m.decoder.push_back(l);
  }
  marian_fill_positions(m);
  return h;
}

// ------------------------------------------------------------------------------------------------ fixture

struct Sentence {
  std::vector<int32_t> src, fp32, int8;
};
struct Fixture {
  RawModel raw;
  int32_t eos = 0, pad = 0, start = 0;
  size_t max_length = 0;  // the search's (start token counted)
  bool force_eos_at_max = false;
  std::vector<int32_t> banned;
  std::string isa;
  std::vector<Sentence> sentences;
};

constexpr char kFixtureMagic[8] = {'C', 'H', 'I', 'M', 'F', 'I', 'X', '1'};
constexpr uint32_t kFixtureVersion = 1;
constexpr uint32_t kFixtureEnd = 0x21444e45;  // "END!"

Fixture load_fixture(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open fixture " + file + " (run npm run bench:cuda:prepare where Node is)");
  std::vector<char> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t o = 0;
  auto need = [&](size_t n) {
    if (o + n > buf.size()) throw std::runtime_error(fmt("fixture truncated at byte %zu", o));
  };
  auto u32 = [&]() {
    need(4);
    uint32_t v;
    std::memcpy(&v, buf.data() + o, 4);
    o += 4;
    return v;
  };
  auto i32s = [&](size_t n) {
    need(4 * n);
    std::vector<int32_t> v(n);
    if (n) std::memcpy(v.data(), buf.data() + o, 4 * n);
    o += 4 * n;
    return v;
  };
  need(8);
  if (std::memcmp(buf.data(), kFixtureMagic, 8) != 0) throw std::runtime_error(file + " is not a chimera CUDA fixture");
  o = 8;
  Fixture f;
  const uint32_t version = u32();
  if (version != kFixtureVersion) throw std::runtime_error(fmt("fixture version %u, this driver reads %u", version, kFixtureVersion));
  Geometry& g = f.raw.g;
  g.d = u32();
  g.heads = u32();
  g.vocab = u32();
  g.max_pos = u32();
  g.enc_layers = u32();
  g.dec_layers = u32();
  g.enc_ffn = u32();
  g.dec_ffn = u32();
  const uint32_t act = u32();
  if (!activation_from_code(act, &g.act)) throw std::runtime_error(fmt("fixture activation code %u unknown", act));
  f.eos = static_cast<int32_t>(u32());
  f.pad = static_cast<int32_t>(u32());
  f.start = static_cast<int32_t>(u32());
  f.max_length = u32();
  f.force_eos_at_max = u32() != 0;
  const uint32_t n_banned = u32(), n_sent = u32(), isa_bytes = u32();
  need(4);
  std::memcpy(&g.embed_scale, buf.data() + o, 4);
  o += 4;
  f.banned = i32s(n_banned);
  need(isa_bytes);
  f.isa.assign(buf.data() + o, isa_bytes);
  o += round_up(isa_bytes, 4);
  if (g.d == 0 || g.heads == 0 || g.d % g.heads || g.vocab == 0) throw std::runtime_error("fixture geometry is invalid");
  const size_t wf = weight_floats(g);
  need(4 * wf);
  f.raw.storage.resize(wf);
  std::memcpy(f.raw.storage.data(), buf.data() + o, 4 * wf);
  o += 4 * wf;
  assign_layout(f.raw);
  for (uint32_t i = 0; i < n_sent; ++i) {
    Sentence s;
    s.src = i32s(u32());
    s.fp32 = i32s(u32());
    s.int8 = i32s(u32());
    f.sentences.push_back(std::move(s));
  }
  if (u32() != kFixtureEnd) throw std::runtime_error("fixture end marker missing");
  if (o != buf.size()) throw std::runtime_error("trailing bytes after the fixture end marker");
  return f;
}

// ------------------------------------------------------------------------------------------------ runners

// One model on one device behind the calls a search loop makes.
struct Runner {
  virtual ~Runner() = default;
  virtual void reserve(size_t slots, size_t max_len, size_t sources, size_t max_src) = 0;
  virtual void encode(const int32_t* ids, const int32_t* lens, size_t batch, size_t s, const int32_t* src_slots, float* enc_out) = 0;
  // logits [rows, vocab], or when topk > 0 the top-k ids / log-softmax values per row.
  virtual void step(const int32_t* tok, const int32_t* slot, const int32_t* pos, const int32_t* src, size_t rows, float* logits,
                    size_t topk = 0, int32_t* top_idx = nullptr, float* top_val = nullptr) = 0;
};

struct CpuRunner : Runner {
  const MarianModel& m;
  MarianState st;
  explicit CpuRunner(const MarianModel& model) : m(model) {
    st.layers = m.decoder.size();
    st.d = m.dims.d;
  }
  void reserve(size_t slots, size_t max_len, size_t sources, size_t max_src) override {
    st.slots = slots;
    st.max_len = max_len;
    st.sources = sources;
    st.max_src = max_src;
    st.self_kv.assign(slots * st.layers * max_len * 2 * st.d, 0.0f);
    st.cross_kv.assign(sources * st.layers * max_src * 2 * st.d, 0.0f);
    st.src_len.assign(sources, 0);
  }
  void encode(const int32_t* ids, const int32_t* lens, size_t batch, size_t s, const int32_t* src_slots, float* enc_out) override {
    marian_encode(m, st, ids, lens, batch, s, src_slots, enc_out);
  }
  std::vector<float> scratch;
  void step(const int32_t* tok, const int32_t* slot, const int32_t* pos, const int32_t* src, size_t rows, float* logits, size_t topk = 0,
            int32_t* top_idx = nullptr, float* top_val = nullptr) override {
    if (topk == 0) {
      marian_step(m, st, tok, slot, pos, src, rows, logits);
      return;
    }
    // the host-side equivalent of the device's top-k return: logits, then the native top-k kernel
    if (scratch.size() < rows * m.dims.vocab) scratch.resize(rows * m.dims.vocab);
    marian_step(m, st, tok, slot, pos, src, rows, scratch.data());
    topk_rows(scratch.data(), rows, m.dims.vocab, topk, true, top_idx, top_val);
  }
};

struct DevModelDel {
  void operator()(cuda::Model* p) const { cuda::free_model(p); }
};
struct DevStateDel {
  void operator()(cuda::State* p) const { cuda::free_state(p); }
};
struct DevLinearDel {
  void operator()(cuda::Linear* p) const { cuda::free_linear(p); }
};
using DevModel = std::unique_ptr<cuda::Model, DevModelDel>;
using DevState = std::unique_ptr<cuda::State, DevStateDel>;
using DevLinear = std::unique_ptr<cuda::Linear, DevLinearDel>;

struct CudaRunner : Runner {
  cuda::Model& m;
  DevState st;
  explicit CudaRunner(cuda::Model& model) : m(model) {}
  void reserve(size_t slots, size_t max_len, size_t sources, size_t max_src) override {
    st.reset();
    st.reset(cuda::create_state(m, slots, max_len, sources, max_src));
  }
  void encode(const int32_t* ids, const int32_t* lens, size_t batch, size_t s, const int32_t* src_slots, float* enc_out) override {
    cuda::encode(m, *st, ids, lens, batch, s, src_slots, enc_out);
  }
  void step(const int32_t* tok, const int32_t* slot, const int32_t* pos, const int32_t* src, size_t rows, float* logits, size_t topk = 0,
            int32_t* top_idx = nullptr, float* top_val = nullptr) override {
    cuda::step(m, *st, tok, slot, pos, src, rows, logits, topk, top_idx, top_val);
  }
};

// Greedy search exactly as the package's GreedySequence (src/engine/sequence.ts) runs it: start token at position
// 0; per step the banned ids (pad, bad_words_ids) at -Infinity, or only eos left when the next token is the last
// the length allows (forced_eos_token_id = eos); the top-1 by the native top-k kernel (ties to the lower id); stop
// at eos or at maxLength - 1 generated tokens. All sources run as one batch, as MarianModel.generate does.
std::vector<std::vector<int32_t>> greedy(Runner& r, const Fixture& f, const std::vector<const std::vector<int32_t>*>& srcs, size_t max_length) {
  const size_t n = srcs.size(), V = f.raw.g.vocab;
  size_t s = 0;
  for (auto* x : srcs) s = std::max(s, x->size());
  std::vector<int32_t> ids(n * s, f.pad), lens(n), slots(n);
  for (size_t i = 0; i < n; ++i) {
    std::copy(srcs[i]->begin(), srcs[i]->end(), ids.begin() + static_cast<ptrdiff_t>(i * s));
    lens[i] = static_cast<int32_t>(srcs[i]->size());
    slots[i] = static_cast<int32_t>(i);
  }
  r.reserve(n, max_length, n, s);
  r.encode(ids.data(), lens.data(), n, s, slots.data(), nullptr);
  std::vector<std::vector<int32_t>> out(n);
  std::vector<int32_t> last(n, f.start), pos(n, 0);
  std::vector<bool> done(n, false);
  std::vector<int32_t> tok, slot, p, src;
  std::vector<float> logits;
  std::vector<size_t> which;
  for (;;) {
    tok.clear(), slot.clear(), p.clear(), src.clear(), which.clear();
    for (size_t i = 0; i < n; ++i)
      if (!done[i]) {
        tok.push_back(last[i]);
        slot.push_back(static_cast<int32_t>(i));
        p.push_back(pos[i]);
        src.push_back(static_cast<int32_t>(i));
        which.push_back(i);
      }
    if (which.empty()) break;
    const size_t rows = which.size();
    logits.resize(rows * V);
    r.step(tok.data(), slot.data(), p.data(), src.data(), rows, logits.data());
    for (size_t j = 0; j < rows; ++j) {
      const size_t i = which[j];
      float* row = logits.data() + j * V;
      // a shortened run (--quick) cuts the package's output instead of forcing eos where the package did not
      const bool force = f.force_eos_at_max && max_length == f.max_length && static_cast<size_t>(pos[i]) + 2 >= max_length;
      if (force) {
        const float keep = row[f.eos];
        std::fill(row, row + V, -INFINITY);
        row[f.eos] = std::isfinite(keep) ? keep : 0.0f;
      } else {
        for (int32_t b : f.banned) row[b] = -INFINITY;
      }
      int32_t best = 0;
      float val = 0;
      topk_rows(row, 1, V, 1, false, &best, &val);
      out[i].push_back(best);
      last[i] = best;
      if (best == f.eos || static_cast<size_t>(pos[i]) + 2 >= max_length) done[i] = true;
      pos[i]++;
    }
  }
  return out;
}

std::string ids_str(const std::vector<int32_t>& v, size_t max = 12) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + (v.size() > max ? ",...]" : "]");
}

// ------------------------------------------------------------------------------------------------ kernel checks

const char* act_name(Activation a) {
  static const char* const n[] = {"none", "relu", "silu", "gelu", "gelu_tanh"};
  return n[static_cast<int>(a)];
}

void check_norms(Report& rep, bool quick) {
  struct Case {
    size_t rows, cols;
    bool rms, residual, bias, beta, sum, quant;
  };
  std::vector<Case> cases = {
      {1, 512, false, true, true, true, true, false},   {7, 1024, false, true, false, true, false, false},
      {33, 4096, false, true, true, true, true, true},  {64, 512, false, false, false, true, false, true},
      {5, 100, false, true, true, true, true, true},    {3, 257, true, true, false, false, true, true},
      {128, 512, true, false, false, false, false, false}, {1, 1, false, true, true, true, true, true},
  };
  if (!quick) cases.push_back({1000, 1024, false, true, true, true, true, true});
  Rng r(11);
  for (const Case& c : cases) {
    const size_t n = c.rows * c.cols, stride = round_up(c.cols, 32);
    std::vector<float> x(n), res(n), bias(c.cols), gamma(c.cols), beta(c.cols);
    r.fill(x, -3, 3), r.fill(res, -1, 1), r.fill(bias, -0.5f, 0.5f), r.fill(gamma, 0.5f, 1.5f), r.fill(beta, -0.5f, 0.5f);
    auto args = [&](std::vector<float>& out, std::vector<float>& sum, std::vector<int8_t>& q, std::vector<float>& qs, std::vector<int32_t>& qsum) {
      NormArgs a;
      a.rms = c.rms;
      a.x = x.data();
      a.residual = c.residual ? res.data() : nullptr;
      a.bias = c.bias ? bias.data() : nullptr;
      a.gamma = gamma.data();
      a.beta = c.beta ? beta.data() : nullptr;
      a.rows = c.rows;
      a.cols = c.cols;
      out.assign(n, 0.0f);
      a.out = out.data();
      if (c.sum) {
        sum.assign(n, 0.0f);
        a.sum_out = sum.data();
      }
      if (c.quant) {
        q.assign(c.rows * stride, 99);
        qs.assign(c.rows, 0.0f);
        qsum.assign(c.rows, 0);
        a.q = q.data();
        a.q_scales = qs.data();
        a.q_sums = qsum.data();
        a.q_stride = stride;
      }
      return a;
    };
    std::vector<float> out0, sum0, qs0;
    std::vector<int8_t> q0;
    std::vector<int32_t> qsum0;
    const bool ok0 = norm(args(out0, sum0, q0, qs0, qsum0));
    const std::string name = fmt("%s %zux%zu%s%s%s%s", c.rms ? "rms" : "ln", c.rows, c.cols, c.residual ? " +res" : "", c.bias ? " +bias" : "",
                                 c.sum ? " sum" : "", c.quant ? " q" : "");
    for (bool reference : {true, false}) {
      const std::string nm = name + (reference ? " ref" : " fast");
      if (!device_ok()) {
        rep.add("norm", nm, Verdict::Skip, "no device");
        continue;
      }
      guarded(rep, "norm", nm, [&] {
        std::vector<float> out1, sum1, qs1;
        std::vector<int8_t> q1;
        std::vector<int32_t> qsum1;
        const bool ok1 = cuda::norm(args(out1, sum1, q1, qs1, qsum1), reference);
        const double e = nmse(out0.data(), out1.data(), n);
        const double es = c.sum ? nmse(sum0.data(), sum1.data(), n) : 0.0;
        bool good = ok0 == ok1 && e <= kNmseFp32 && es <= kNmseFp32;
        std::string det = fmt("nmse %.2e%s", e, c.sum ? fmt(" sum nmse %.2e", es).c_str() : "");
        if (c.quant) {
          // the device quantises the floats it wrote exactly as the CPU quantiser would quantise them
          std::vector<int8_t> qe(c.rows * stride, 99);
          std::vector<float> qse(c.rows);
          std::vector<int32_t> qsume(c.rows);
          quantize_rows(out1.data(), c.rows, c.cols, qe.data(), stride, qse.data(), qsume.data());
          const size_t bad = mismatches(qe.data(), q1.data(), qe.size()) + float_bits_mismatches(qse.data(), qs1.data(), c.rows) +
                             mismatches(qsume.data(), qsum1.data(), c.rows);
          const size_t vs_cpu = mismatches(q0.data(), q1.data(), q0.size());
          good = good && bad == 0;
          det += fmt(", fused q %zu mismatches vs quantize_rows(own out), %zu q differ from the CPU's", bad, vs_cpu);
        }
        rep.check("norm", nm, good, det);
      });
    }
  }
}

void check_quantize(Report& rep, bool quick) {
  struct Case {
    size_t rows, cols, stride;
  };
  std::vector<Case> cases = {{1, 512, 512}, {5, 100, 128}, {33, 513, 544}, {3, 7, 32}, {64, 2048, 2048}};
  if (!quick) cases.push_back({512, 4096, 4096});
  Rng r(12);
  for (const Case& c : cases) {
    std::vector<float> x(c.rows * c.cols);
    r.fill(x, -4, 4);
    // row 0: exact halves after scaling (max 127 -> scale 1): round half to even must match bit for bit
    if (c.cols >= 7) {
      const float ties[7] = {127.0f, 2.5f, -3.5f, 0.5f, -0.5f, 1.5f, -126.5f};
      std::copy(ties, ties + 7, x.begin());
    }
    if (c.rows > 2) std::fill(x.begin() + static_cast<ptrdiff_t>(c.cols), x.begin() + static_cast<ptrdiff_t>(2 * c.cols), 0.0f);  // zero row
    std::vector<int8_t> q0(c.rows * c.stride, 99);
    std::vector<float> s0(c.rows);
    std::vector<int32_t> u0(c.rows);
    const bool ok0 = quantize_rows(x.data(), c.rows, c.cols, q0.data(), c.stride, s0.data(), u0.data());
    for (bool reference : {true, false}) {
      const std::string nm = fmt("%zux%zu stride %zu%s", c.rows, c.cols, c.stride, reference ? " ref" : " fast");
      if (!device_ok()) {
        rep.add("quantize", nm, Verdict::Skip, "no device");
        continue;
      }
      guarded(rep, "quantize", nm, [&] {
        std::vector<int8_t> q1(c.rows * c.stride, 99);
        std::vector<float> s1(c.rows);
        std::vector<int32_t> u1(c.rows);
        const bool ok1 = cuda::quantize_rows(x.data(), c.rows, c.cols, q1.data(), c.stride, s1.data(), u1.data(), reference);
        const size_t bq = mismatches(q0.data(), q1.data(), q0.size()), bs = float_bits_mismatches(s0.data(), s1.data(), c.rows),
                     bu = mismatches(u0.data(), u1.data(), c.rows);
        rep.check("quantize", nm, ok0 == ok1 && bq + bs + bu == 0, fmt("bit-identical: q %zu, scales %zu, sums %zu mismatches", bq, bs, bu));
      });
    }
  }
  // a non-finite input is reported, as on the CPU
  std::vector<float> x(2 * 64, 1.0f);
  x[70] = NAN;
  std::vector<int8_t> q(2 * 64);
  std::vector<float> s(2);
  std::vector<int32_t> u(2);
  const bool ok0 = quantize_rows(x.data(), 2, 64, q.data(), 64, s.data(), u.data());
  for (bool reference : {true, false}) {
    const std::string nm = std::string("NaN row reported") + (reference ? " ref" : " fast");
    if (!device_ok()) {
      rep.add("quantize", nm, Verdict::Skip, "no device");
      continue;
    }
    guarded(rep, "quantize", nm, [&] {
      const bool ok1 = cuda::quantize_rows(x.data(), 2, 64, q.data(), 64, s.data(), u.data(), reference);
      rep.check("quantize", nm, ok0 == ok1 && !ok1, fmt("cpu %s, device %s", ok0 ? "ok" : "false", ok1 ? "ok" : "false"));
    });
  }
}

void check_gemm_s8(Report& rep, bool quick) {
  struct Case {
    size_t m, n, k;
  };
  std::vector<Case> cases = {{1, 512, 512}, {1, 1001, 100}, {7, 33, 33}, {17, 129, 2047}, {32, 1536, 512}, {1, 2048, 2048}, {128, 2048, 512}};
  if (!quick) {
    cases.push_back({256, 2048, 2048});
    cases.push_back({2048, 64, 2048});
    cases.push_back({2048, 2048, 96});
  }
  Rng r(13);
  for (const Case& c : cases) {
    std::vector<int8_t> a(c.m * c.k), b(c.n * c.k), bt(c.k * c.n);
    for (auto& v : a) v = static_cast<int8_t>(r.range(-128, 127));
    for (auto& v : b) v = static_cast<int8_t>(r.range(-128, 127));
    for (size_t i = 0; i < c.n; ++i)
      for (size_t j = 0; j < c.k; ++j) bt[j * c.n + i] = b[i * c.k + j];
    std::vector<int32_t> c0(c.m * c.n);
    const int32_t zp = 0;
    matmul_integer(a.data(), true, c.m, c.k, bt.data(), true, c.n, &zp, 1, &zp, 1, c0.data());
    std::string indep;
    if (c.m * c.n * c.k <= (size_t(1) << 22)) {  // an independent scalar int64 check of the CPU reference itself
      size_t bad = 0;
      for (size_t i = 0; i < c.m; ++i)
        for (size_t j = 0; j < c.n; ++j) {
          int64_t s = 0;
          for (size_t t = 0; t < c.k; ++t) s += static_cast<int64_t>(a[i * c.k + t]) * b[j * c.k + t];
          bad += s != c0[i * c.n + j];
        }
      rep.check("gemm_s8", fmt("%zux%zux%zu cpu ref vs int64", c.m, c.n, c.k), bad == 0, fmt("%zu mismatches", bad));
    }
    for (bool reference : {true, false}) {
      const std::string nm = fmt("%zux%zux%zu %s", c.m, c.n, c.k, reference ? "dp4a ref" : "mma fast");
      if (!device_ok()) {
        rep.add("gemm_s8", nm, Verdict::Skip, "no device");
        continue;
      }
      guarded(rep, "gemm_s8", nm, [&] {
        std::vector<int32_t> c1(c.m * c.n, 0x7f7f7f7f);
        cuda::gemm_s8(a.data(), b.data(), c.m, c.n, c.k, c1.data(), reference);
        const size_t bad = mismatches(c0.data(), c1.data(), c0.size());
        rep.check("gemm_s8", nm, bad == 0, fmt("exact int32: %zu of %zu differ", bad, c0.size()));
      });
    }
  }
}

void check_linear(Report& rep, bool quick) {
  struct Case {
    size_t m, n, k;
    Activation act;
  };
  std::vector<Case> cases = {{1, 512, 512, Activation::None}, {32, 1536, 512, Activation::None}, {1, 2048, 512, Activation::Silu},
                             {129, 512, 2048, Activation::Relu}, {3, 1001, 100, Activation::Gelu}, {17, 77, 33, Activation::GeluTanh}};
  if (!quick) cases.push_back({128, 8001, 512, Activation::None});
  Rng r(14);
  for (const Case& c : cases) {
    std::vector<float> w(c.n * c.k), bias(c.n), x(c.m * c.k);
    r.fill(w, -0.1f, 0.1f), r.fill(bias, -0.2f, 0.2f), r.fill(x, -2, 2);
    LinearW lw;
    lw.n = c.n;
    lw.k = c.k;
    lw.bias = bias.data();
    const std::string shape = fmt("%zux%zux%zu %s", c.m, c.n, c.k, act_name(c.act));
    // ---- int8: the CPU quantises x per row, then the packed GEMM; raw is the exact int32 accumulator
    std::unique_ptr<PackedS8> ps8(pack_s8(w.data(), c.n, c.k));
    const size_t kp = ps8->kp;
    std::vector<int8_t> q(c.m * kp);
    std::vector<float> qs(c.m);
    std::vector<int32_t> qsum(c.m);
    quantize_rows(x.data(), c.m, c.k, q.data(), kp, qs.data(), qsum.data());
    std::vector<float> out0(c.m * c.n);
    std::vector<int32_t> raw0(c.m * c.n);
    linear_s8(*ps8, q.data(), kp, qs.data(), qsum.data(), c.m, bias.data(), c.act, out0.data());
    linear_s8(*ps8, q.data(), kp, qs.data(), qsum.data(), c.m, nullptr, c.act, nullptr, raw0.data());
    // ---- fp32 and fp16
    std::unique_ptr<PackedF32> pf32(pack_f32(w.data(), c.n, c.k, false)), pf16(pack_f16(w.data(), c.n, c.k));
    std::vector<float> o32(c.m * c.n), o16(c.m * c.n);
    linear_f32(*pf32, x.data(), c.m, bias.data(), c.act, o32.data());
    linear_f32(*pf16, x.data(), c.m, bias.data(), c.act, o16.data());
    for (bool reference : {true, false}) {
      const char* kind = reference ? " ref" : " fast";
      if (!device_ok()) {
        for (const char* t : {"int8 ", "fp32 ", "fp16 "}) rep.add("linear", t + shape + kind, Verdict::Skip, "no device");
        continue;
      }
      guarded(rep, "linear", "int8 " + shape + kind, [&] {
        LinearW l = lw;
        l.s8 = ps8.get();
        DevLinear dl(cuda::upload_linear(l));
        std::vector<float> out1(c.m * c.n), out2(c.m * c.n);
        std::vector<int32_t> raw1(c.m * c.n, 0x7f7f7f7f);
        cuda::linear(*dl, x.data(), c.m, c.act, out1.data(), raw1.data(), reference);
        cuda::linear(*dl, x.data(), c.m, c.act, out2.data(), nullptr, reference);
        const size_t bad = mismatches(raw0.data(), raw1.data(), raw0.size());
        const double e = nmse(out0.data(), out2.data(), out0.size());
        rep.check("linear", "int8 " + shape + kind, bad == 0 && e <= kNmseFp32, fmt("raw int32 %zu differ, out nmse %.2e", bad, e));
      });
      guarded(rep, "linear", "fp32 " + shape + kind, [&] {
        LinearW l = lw;
        l.f32 = pf32.get();
        DevLinear dl(cuda::upload_linear(l));
        std::vector<float> out1(c.m * c.n);
        cuda::linear(*dl, x.data(), c.m, c.act, out1.data(), nullptr, reference);
        const double e = nmse(o32.data(), out1.data(), o32.size());
        rep.check("linear", "fp32 " + shape + kind, e <= kNmseFp32, fmt("nmse %.2e (bound %.0e)", e, kNmseFp32));
      });
      guarded(rep, "linear", "fp16 " + shape + kind, [&] {
        LinearW l = lw;
        l.f32 = pf16.get();
        DevLinear dl(cuda::upload_linear(l));
        std::vector<float> out1(c.m * c.n);
        cuda::linear(*dl, x.data(), c.m, c.act, out1.data(), nullptr, reference);
        const double e = nmse(o16.data(), out1.data(), o16.size());
        rep.check("linear", "fp16 " + shape + kind, e <= kNmseFp16, fmt("nmse %.2e vs the CPU fp16 tier (bound %.0e)", e, kNmseFp16));
      });
    }
  }
}

void check_attention(Report& rep, bool quick) {
  struct Case {
    size_t rows, heads, hd, max_len;
  };
  std::vector<Case> cases = {{1, 8, 64, 1}, {1, 8, 64, 33}, {5, 4, 32, 130}, {32, 8, 64, 300}};
  if (!quick) cases.push_back({64, 8, 64, 512});
  Rng r(15);
  for (const Case& c : cases) {
    const size_t d = c.heads * c.hd, ld = 2 * d;
    std::vector<float> q(c.rows * d), kv(c.rows * c.max_len * ld), o0(c.rows * d);
    r.fill(q, -0.5f, 0.5f), r.fill(kv, -1, 1);
    std::vector<int32_t> len(c.rows);
    std::vector<const float*> base(c.rows);
    for (size_t i = 0; i < c.rows; ++i) {
      len[i] = i == 0 ? static_cast<int32_t>(c.max_len) : r.range(1, static_cast<int>(c.max_len));
      base[i] = kv.data() + i * c.max_len * ld;
    }
    DecodeAttention a;
    a.q = q.data();
    a.ldq = d;
    a.kv = base.data();
    a.ldkv = ld;
    a.v_off = d;
    a.len = len.data();
    a.o = o0.data();
    a.ldo = d;
    a.heads = c.heads;
    a.hd = c.hd;
    decode_attention(a, c.rows);
    for (bool reference : {true, false}) {
      const std::string nm = fmt("rows %zu heads %zu hd %zu len<=%zu%s", c.rows, c.heads, c.hd, c.max_len, reference ? " ref" : " fast");
      if (!device_ok()) {
        rep.add("attention", nm, Verdict::Skip, "no device");
        continue;
      }
      guarded(rep, "attention", nm, [&] {
        std::vector<float> o1(c.rows * d);
        DecodeAttention b = a;
        b.o = o1.data();
        cuda::decode_attention(b, c.rows, kv.data(), kv.size(), reference);
        const double e = nmse(o0.data(), o1.data(), o0.size());
        rep.check("attention", nm, e <= kNmseFp32, fmt("nmse %.2e", e));
      });
    }
  }
}

// The fixture model: the driver's CPU greedy must reproduce the package's (this proves the loader and the
// packing), then the device's must equal it (fp32) or is reported against the CPU's (int8).
void check_model(Report& rep, const std::string& fixture_file, bool quick) {
  Fixture f;
  try {
    f = load_fixture(fixture_file);
  } catch (const std::exception& e) {
    rep.add("model", "load fixture", Verdict::Fail, e.what());
    return;
  }
  Isa isa;
  std::string isa_note = "CPU path " + std::string(isa_name(current_isa()));
  bool same_isa = true;
  if (isa_from_name(f.isa, &isa) && isa != current_isa()) {
    if (set_isa(isa)) {
      isa_note = "CPU path set to the fixture's " + f.isa;
    } else {
      same_isa = false;
      isa_note += " (the fixture was made on " + f.isa + ", which this CPU cannot run: its ids may legitimately differ, so a difference is reported, not failed)";
    }
  }
  size_t n_sent = f.sentences.size(), max_length = f.max_length;
  if (quick) n_sent = std::min<size_t>(n_sent, 2), max_length = std::min<size_t>(max_length, 8);
  rep.add("model", "fixture", Verdict::Info,
          fmt("%s: d=%zu vocab=%zu layers %zu+%zu, %zu sentences, maxLength %zu; %s", fixture_file.c_str(), f.raw.g.d, f.raw.g.vocab,
              f.raw.g.enc_layers, f.raw.g.dec_layers, n_sent, max_length, isa_note.c_str()));
  std::vector<const std::vector<int32_t>*> srcs;
  for (size_t i = 0; i < n_sent; ++i) srcs.push_back(&f.sentences[i].src);
  auto expected = [&](Tier t, size_t i) {
    std::vector<int32_t> e = t == Tier::Fp32 ? f.sentences[i].fp32 : f.sentences[i].int8;
    if (e.size() > max_length - 1) e.resize(max_length - 1);  // --quick: the package's output cut to the shorter limit
    return e;
  };
  auto compare = [&](const std::vector<std::vector<int32_t>>& got, const std::function<std::vector<int32_t>(size_t)>& want, std::string* first_diff) {
    size_t same = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const auto w = want(i);
      if (got[i] == w) ++same;
      else if (first_diff && first_diff->empty()) *first_diff = fmt("; first difference in sentence %zu: %s vs %s", i, ids_str(got[i]).c_str(), ids_str(w).c_str());
    }
    return same;
  };
  std::unique_ptr<HostModel> host[2];
  std::vector<std::vector<int32_t>> cpu_out[2];
  for (Tier t : {Tier::Fp32, Tier::Int8}) {
    const int ti = static_cast<int>(t);
    host[ti] = build_host(f.raw, t);
    CpuRunner cr(host[ti]->m);
    // one batch per sentence, as the fixture's references were made; also the whole set at once
    for (size_t i = 0; i < n_sent; ++i) cpu_out[ti].push_back(greedy(cr, f, {srcs[i]}, max_length)[0]);
    std::string diff;
    const size_t same = compare(cpu_out[ti], [&](size_t i) { return expected(t, i); }, &diff);
    rep.add("model", fmt("cpu %s greedy == package's", tier_name(t)), same == n_sent ? Verdict::Pass : same_isa ? Verdict::Fail : Verdict::Info,
            fmt("%zu/%zu sentences identical%s", same, n_sent, diff.c_str()));
    const auto batched = greedy(cr, f, srcs, max_length);
    diff.clear();
    const size_t same_b = compare(batched, [&](size_t i) { return expected(t, i); }, &diff);
    rep.add("model", fmt("cpu %s greedy, one batch of %zu", tier_name(t), n_sent), same_b == n_sent ? Verdict::Pass : same_isa ? Verdict::Fail : Verdict::Info,
            fmt("%zu/%zu sentences identical%s", same_b, n_sent, diff.c_str()));
  }
  if (!device_ok()) {
    rep.add("model", "device greedy fp32 / int8", Verdict::Skip, "no device");
    return;
  }
  for (Tier t : {Tier::Fp32, Tier::Int8}) {
    const int ti = static_cast<int>(t);
    const char* tn = tier_name(t);
    DevModel dm;
    guarded(rep, "model", fmt("upload %s", tn), [&] {
      dm.reset(cuda::upload_model(host[ti]->m));
      rep.add("model", fmt("upload %s", tn), Verdict::Info, fmt("%.1f MiB on the device", cuda::model_bytes(*dm) / 1048576.0));
    });
    if (!dm) continue;
    // encoder output and first-step logits of sentence 0 against the CPU
    guarded(rep, "model", fmt("%s encoder out + step-0 logits", tn), [&] {
      const auto& src = f.sentences[0].src;
      const size_t s = src.size(), d = f.raw.g.d, V = f.raw.g.vocab;
      const int32_t len = static_cast<int32_t>(s), zero = 0;
      std::vector<float> e0(s * d), e1(s * d), l0(V), l1(V);
      CpuRunner cr(host[ti]->m);
      CudaRunner gr(*dm);
      cr.reserve(1, 4, 1, s);
      gr.reserve(1, 4, 1, s);
      cr.encode(src.data(), &len, 1, s, &zero, e0.data());
      gr.encode(src.data(), &len, 1, s, &zero, e1.data());
      cr.step(&f.start, &zero, &zero, &zero, 1, l0.data());
      gr.step(&f.start, &zero, &zero, &zero, 1, l1.data());
      const double ee = nmse(e0.data(), e1.data(), e0.size()), el = nmse(l0.data(), l1.data(), V);
      // the step again at the same position (it rewrites the same K|V) with the top-k return
      constexpr size_t kTop = 4;
      int32_t ti0[kTop], ti1[kTop];
      float tv0[kTop], tv1[kTop];
      topk_rows(l1.data(), 1, V, kTop, true, ti0, tv0);
      gr.step(&f.start, &zero, &zero, &zero, 1, nullptr, kTop, ti1, tv1);
      const size_t badk = mismatches(ti0, ti1, kTop);
      const double ek = nmse(tv0, tv1, kTop);
      const std::string det = fmt("encoder nmse %.2e, logits nmse %.2e, top-%zu ids %zu differ from top-k of its own logits (values nmse %.2e)", ee, el,
                                  kTop, badk, ek);
      if (t == Tier::Fp32) rep.check("model", fmt("%s encoder out + step-0 logits", tn), ee <= kNmseFp32 && el <= kNmseFp32 && badk == 0 && ek <= kNmseFp32, det);
      else rep.add("model", fmt("%s encoder out + step-0 logits", tn), badk == 0 ? Verdict::Info : Verdict::Fail, det);
    });
    guarded(rep, "model", fmt("device %s greedy", tn), [&] {
      CudaRunner gr(*dm);
      std::vector<std::vector<int32_t>> got;
      for (size_t i = 0; i < n_sent; ++i) got.push_back(greedy(gr, f, {srcs[i]}, max_length)[0]);
      std::string diff;
      if (t == Tier::Fp32) {
        // against this driver's CPU run, which the check above proved equal to the package's (same CPU path)
        const size_t same = compare(got, [&](size_t i) { return cpu_out[ti][i]; }, &diff);
        rep.check("model", "device fp32 greedy == cpu fp32", same == n_sent, fmt("%zu/%zu sentences identical%s", same, n_sent, diff.c_str()));
      } else {
        const size_t same = compare(got, [&](size_t i) { return cpu_out[ti][i]; }, &diff);
        rep.add("model", "device int8 greedy vs cpu int8", Verdict::Info,
                fmt("%zu/%zu sentences identical (%.1f %%)%s", same, n_sent, 100.0 * same / n_sent, diff.c_str()));
      }
      const auto batched = greedy(gr, f, srcs, max_length);
      diff.clear();
      const size_t same_b = compare(batched, [&](size_t i) { return got[i]; }, &diff);
      rep.add("model", fmt("device %s greedy, one batch of %zu", tn, n_sent), Verdict::Info,
              fmt("%zu/%zu identical to the device's batch-1 output%s", same_b, n_sent, diff.c_str()));
    });
  }
}

// ------------------------------------------------------------------------------------------------ benchmarks

struct ModelTimes {
  double ttft_ms = NAN, step_b1_ms = NAN, step_b32_ms = NAN;
  std::string dump() const {
    JObj o;
    o.num("ttft_ms", ttft_ms).num("step_b1_ms", step_b1_ms).num("decode_b1_tok_s", 1e3 / step_b1_ms);
    o.num("step_b32_ms", step_b32_ms).num("decode_b32_tok_s", 32e3 / step_b32_ms);
    return o.dump();
  }
};

// TTFT at batch 1 (encode S tokens + the first step, wall clock, the call returning its result to the host), then
// decode steps at batch 1 and 32 (median per-step time; each step returns only the top-1 per row).
ModelTimes time_model(Runner& r, size_t vocab, size_t S, size_t reps, size_t steps, bool b32) {
  constexpr size_t kBatch = 32;
  ModelTimes t;
  Rng rng(21);
  std::vector<int32_t> ids(kBatch * S), lens(kBatch, static_cast<int32_t>(S)), slots(kBatch);
  for (auto& v : ids) v = rng.range(0, static_cast<int>(vocab) - 2);
  for (size_t i = 0; i < kBatch; ++i) slots[i] = static_cast<int32_t>(i);
  const size_t max_len = steps + 2;
  r.reserve(kBatch, max_len, kBatch, S);
  std::vector<float> logits;
  std::vector<int32_t> tok(kBatch), pos(kBatch), top(kBatch);
  std::vector<float> topv(kBatch);
  const int32_t zero = 0;
  std::vector<double> ttft;
  for (size_t i = 0; i < reps + 2; ++i) {  // two warm-ups
    const double t0 = now_s();
    r.encode(ids.data(), lens.data(), 1, S, &zero, nullptr);
    tok[0] = static_cast<int32_t>(vocab - 1);
    r.step(tok.data(), &zero, &zero, &zero, 1, nullptr, 1, top.data(), topv.data());
    if (i >= 2) ttft.push_back((now_s() - t0) * 1e3);
  }
  t.ttft_ms = median(ttft);
  auto decode = [&](size_t rows) {
    r.encode(ids.data(), lens.data(), rows, S, slots.data(), nullptr);
    std::vector<double> ms;
    for (size_t p = 0; p < steps; ++p) {
      for (size_t i = 0; i < rows; ++i) {
        tok[i] = p == 0 ? static_cast<int32_t>(vocab - 1) : rng.range(0, static_cast<int>(vocab) - 2);
        pos[i] = static_cast<int32_t>(p);
      }
      const double t0 = now_s();
      r.step(tok.data(), slots.data(), pos.data(), slots.data(), rows, nullptr, 1, top.data(), topv.data());
      if (p >= 2) ms.push_back((now_s() - t0) * 1e3);  // the first steps warm up
    }
    return median(ms);
  };
  t.step_b1_ms = decode(1);
  if (b32) t.step_b32_ms = decode(kBatch);
  return t;
}

Geometry opus_geometry() {
  Geometry g;
  g.d = 512;
  g.heads = 8;
  g.vocab = 58101;
  g.max_pos = 512;
  g.enc_layers = g.dec_layers = 6;
  g.enc_ffn = g.dec_ffn = 2048;
  g.embed_scale = std::sqrt(512.0f);
  g.act = Activation::Silu;
  return g;
}

struct BenchOpts {
  bool quick = false, cpu = true;
  std::vector<int> cpu_threads;
  std::string json;
};

int run_bench(const BenchOpts& o) {
  const cuda::Info& inf = cuda::info();
  const bool dev = inf.available;
  JObj root;
  root.str("schema", "chimera-cuda-bench/1");
  {
    JObj d;
    d.boolean("compiled", inf.compiled).boolean("available", dev).str("reason", inf.reason);
    if (!inf.devices.empty()) {
      d.str("name", inf.devices[0].name).str("cc", fmt("%d.%d", inf.devices[0].major, inf.devices[0].minor));
      d.num("memory_bytes", static_cast<double>(inf.devices[0].memory_bytes));
    }
    root.raw("device", d.dump());
  }
  // the default pool size: CHIMERA_THREADS (run.sh sets it to the CPUs this run may use), else the hardware's
  const int hw = get_threads();
  // the 1-minute load average at the start: CPU figures taken on a busy shared machine are marked as such
  double load1 = NAN;
  std::string cpu_model;
  {
    std::ifstream la("/proc/loadavg");
    if (la) la >> load1;
    std::ifstream ci("/proc/cpuinfo");
    for (std::string l; std::getline(ci, l);)
      if (l.rfind("model name", 0) == 0) {
        cpu_model = l.substr(l.find(':') + 2);
        break;
      }
  }
  root.raw("cpu", JObj().str("isa", isa_name(current_isa())).num("hw_threads", hw).str("model", cpu_model).num("loadavg1", load1).dump());
  if (load1 > 0.5 * hw) std::printf("note: load average %.1f on %d hardware threads: the CPU figures are disturbed\n", load1, hw);
  std::vector<std::string> table;  // the text table, printed last
  auto line = [&](const std::string& s) {
    table.push_back(s);
    std::printf("%s\n", s.c_str());
    std::fflush(stdout);
  };
  const int iters = o.quick ? 5 : 20;
  double copy_bps = NAN;
  if (dev) {
    try {
      copy_bps = cuda::copy_bandwidth(size_t(1) << 30, iters);
      line(fmt("copy D2D 1 GiB: %.0f GB/s (read + write)", copy_bps / 1e9));
    } catch (const std::exception& e) {
      line(std::string("copy_bandwidth failed: ") + e.what());
    }
  }
  root.num("copy_bandwidth_Bps", copy_bps);
  // ---- add + LayerNorm as time_norm runs it (runtime.cu): x and residual read, out written, all fp32, so 12 bytes
  // per element; with the fused quantisation also the int8 rows (k padded to 32) and 8 bytes of scale and sum per
  // row. gamma/beta (2 x cols floats) are noise at these row counts.
  std::vector<std::string> ln;
  if (dev) {
    const size_t rows = 16384;
    for (size_t cols : {512, 1024, 4096})
      for (bool fq : {false, true}) {
        try {
          const double s = cuda::time_norm(rows, cols, fq, iters);
          const double bytes = static_cast<double>(rows) * cols * 4 * 3 + (fq ? static_cast<double>(rows) * (round_up(cols, 32) + 8) : 0.0);
          const double bps = bytes / s;
          ln.push_back(JObj().num("rows", rows).num("cols", cols).boolean("fused_quantize", fq).num("seconds", s).num("bytes", bytes).num("Bps", bps)
                           .num("pct_copy", 100 * bps / copy_bps).dump());
          line(fmt("layernorm %zux%zu%s: %.1f us, %.0f GB/s, %.0f %% of copy", rows, cols, fq ? " +q" : "", s * 1e6, bps / 1e9, 100 * bps / copy_bps));
        } catch (const std::exception& e) {
          line(fmt("layernorm %zux%zu failed: %s", rows, cols, e.what()));
        }
      }
  }
  root.raw("layernorm", json_arr(ln));
  // ---- int8 and fp16 GEMM
  struct Shape {
    size_t m, n, k;
  };
  std::vector<Shape> shapes = {{4096, 4096, 4096}};
  for (size_t m : {1, 32, 128})
    for (size_t n : {512, 1536, 2048, 58101})
      for (size_t k : {512, 2048}) shapes.push_back({m, n, k});
  std::vector<std::string> g8, g16;
  if (dev) {
    for (const Shape& s : shapes) {
      const double ops = 2.0 * s.m * s.n * s.k;
      const int it = s.m * s.n * s.k > (size_t(1) << 30) ? iters : iters * 5;
      try {
        const double t = cuda::time_gemm_s8(s.m, s.n, s.k, false, it);
        g8.push_back(JObj().num("m", s.m).num("n", s.n).num("k", s.k).str("kernel", "fast").num("seconds", t).num("tops", ops / t / 1e12).dump());
        if (s.m == 4096 || s.m == 128) line(fmt("gemm_s8 fast %zux%zux%zu: %.1f us, %.1f TOPS", s.m, s.n, s.k, t * 1e6, ops / t / 1e12));
      } catch (const std::exception& e) {
        line(fmt("gemm_s8 %zux%zux%zu failed: %s", s.m, s.n, s.k, e.what()));
      }
      try {
        const double t = cuda::time_gemm_f16(s.m, s.n, s.k, it);
        g16.push_back(JObj().num("m", s.m).num("n", s.n).num("k", s.k).num("seconds", t).num("tflops", ops / t / 1e12).dump());
        if (s.m == 4096) line(fmt("gemm_f16 %zux%zux%zu: %.1f us, %.1f TFLOPS", s.m, s.n, s.k, t * 1e6, ops / t / 1e12));
      } catch (const std::exception& e) {
        line(fmt("gemm_f16 %zux%zux%zu failed: %s", s.m, s.n, s.k, e.what()));
      }
    }
    try {  // the dp4a reference at the big shape, for scale
      const double t = cuda::time_gemm_s8(4096, 4096, 4096, true, 3);
      g8.push_back(JObj().num("m", 4096).num("n", 4096).num("k", 4096).str("kernel", "reference").num("seconds", t).num("tops", 2.0 * 4096 * 4096 * 4096 / t / 1e12).dump());
      line(fmt("gemm_s8 dp4a ref 4096^3: %.1f TOPS", 2.0 * 4096 * 4096 * 4096 / t / 1e12));
    } catch (const std::exception& e) {
      line(std::string("gemm_s8 reference failed: ") + e.what());
    }
  }
  root.raw("gemm_s8", json_arr(g8));
  root.raw("gemm_f16", json_arr(g16));
  // ---- the OPUS-MT-geometry model
  const size_t S = 32, reps = o.quick ? 3 : 10, steps = o.quick ? 8 : 34;
  const Geometry g = opus_geometry();
  if (!dev && !o.cpu) {
    root.raw("model", "null");
    if (!o.json.empty()) std::ofstream(o.json) << root.dump() << "\n";
    std::printf("no CUDA device: %s\n", inf.reason.c_str());
    return kExitNoDevice;
  }
  std::printf("building the OPUS-MT-geometry model (seeded random weights)...\n");
  std::fflush(stdout);
  const double tb = now_s();
  const RawModel raw = random_model(g, 7);
  std::unique_ptr<HostModel> host[2] = {build_host(raw, Tier::Fp32), build_host(raw, Tier::Int8)};
  std::printf("  built and packed both tiers in %.1f s\n", now_s() - tb);
  JObj model;
  model.raw("geometry", JObj().num("d", g.d).num("heads", g.heads).num("layers", g.enc_layers).num("ffn", g.enc_ffn).num("vocab", g.vocab).num("S", S)
                            .num("decode_steps", steps).dump());
  JObj devm;
  if (dev) {
    for (Tier t : {Tier::Int8, Tier::Fp32}) {
      try {
        DevModel dm(cuda::upload_model(host[static_cast<int>(t)]->m));
        CudaRunner gr(*dm);
        const ModelTimes mt = time_model(gr, g.vocab, S, reps * 2, steps, true);
        devm.raw(tier_name(t), mt.dump());
        line(fmt("device %s: TTFT %.2f ms, decode b1 %.0f tok/s, b32 %.0f tok/s", tier_name(t), mt.ttft_ms, 1e3 / mt.step_b1_ms, 32e3 / mt.step_b32_ms));
      } catch (const std::exception& e) {
        line(fmt("device %s model failed: %s", tier_name(t), e.what()));
      }
    }
  }
  model.raw("device", dev ? devm.dump() : "null");
  std::vector<std::string> cpu;
  if (o.cpu) {
    std::vector<int> threads = o.cpu_threads;
    if (threads.empty()) threads = hw == 2 ? std::vector<int>{2} : std::vector<int>{hw, 2};
    for (int th : threads) {
      set_threads(th);
      for (Tier t : {Tier::Int8, Tier::Fp32}) {
        CpuRunner cr(host[static_cast<int>(t)]->m);
        const ModelTimes mt = time_model(cr, g.vocab, S, reps, o.quick ? 6 : 14, true);
        cpu.push_back(JObj().num("threads", th).str("tier", tier_name(t)).raw("times", mt.dump()).dump());
        line(fmt("cpu %d threads %s: TTFT %.2f ms, decode b1 %.0f tok/s, b32 %.0f tok/s", th, tier_name(t), mt.ttft_ms, 1e3 / mt.step_b1_ms,
                 32e3 / mt.step_b32_ms));
      }
    }
    set_threads(hw);
  }
  model.raw("cpu", json_arr(cpu));
  root.raw("model", model.dump());
  if (!o.json.empty()) {
    std::ofstream out(o.json);
    out << root.dump() << "\n";
  }
  if (!dev) {
    std::printf("no CUDA device: %s\n", inf.reason.c_str());
    return kExitNoDevice;
  }
  return 0;
}

int run_check(const std::string& fixture, const std::string& json, bool quick, const std::string& only) {
  Report rep;
  const cuda::Info& inf = cuda::info();
  std::printf("cuda: compiled %s, available %s%s%s\n", inf.compiled ? "yes" : "no", inf.available ? "yes" : "no",
              inf.devices.empty() ? "" : (", device 0: " + inf.devices[0].name + fmt(" (cc %d.%d)", inf.devices[0].major, inf.devices[0].minor)).c_str(),
              inf.available ? "" : (", reason: " + inf.reason).c_str());
  std::printf("cpu: %s, %d threads\n", isa_name(current_isa()), get_threads());
  const double t0 = now_s();
  auto want = [&](const char* group) { return only.empty() || ("," + only + ",").find(std::string(",") + group + ",") != std::string::npos; };
  if (want("norm")) check_norms(rep, quick);
  if (want("quantize")) check_quantize(rep, quick);
  if (want("gemm_s8")) check_gemm_s8(rep, quick);
  if (want("linear")) check_linear(rep, quick);
  if (want("attention")) check_attention(rep, quick);
  if (want("model")) check_model(rep, fixture, quick);
  const size_t pass = rep.count(Verdict::Pass), fail = rep.count(Verdict::Fail), skip = rep.count(Verdict::Skip);
  std::printf("check: %zu passed, %zu failed, %zu skipped in %.1f s\n", pass, fail, skip, now_s() - t0);
  if (!json.empty()) {
    std::vector<std::string> rows;
    static const char* const tag[] = {"pass", "fail", "skip", "info"};
    for (const Result& r : rep.rows)
      rows.push_back(JObj().str("group", r.group).str("name", r.name).str("verdict", tag[static_cast<int>(r.v)]).str("detail", r.detail).dump());
    JObj root;
    root.str("schema", "chimera-cuda-check/1").boolean("device", inf.available).str("reason", inf.reason).num("passed", pass).num("failed", fail)
        .num("skipped", skip).raw("results", json_arr(rows));
    std::ofstream out(json);
    out << root.dump() << "\n";
  }
  if (fail) return kExitFail;
  if (!inf.available) {
    std::printf("no CUDA device: %s\n", inf.reason.c_str());
    return kExitNoDevice;
  }
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: chimera-cuda-driver check [--fixture FILE] [--json FILE] [--quick] [--only norm,quantize,gemm_s8,linear,attention,model]\n"
               "       chimera-cuda-driver bench [--json FILE] [--quick] [--cpu-threads N,M] [--no-cpu]\n"
               "       chimera-cuda-driver info\n");
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string mode = argv[1];
  std::string fixture = "bench/cuda/fixture/m30k.bin", json, only;
  BenchOpts bo;
  bool quick = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--fixture") fixture = value();
      else if (a == "--json") json = value();
      else if (a == "--quick") quick = true;
      else if (a == "--only") only = value();
      else if (a == "--no-cpu") bo.cpu = false;
      else if (a == "--cpu-threads") {
        std::stringstream ss(value());
        std::string t;
        while (std::getline(ss, t, ',')) bo.cpu_threads.push_back(std::max(1, std::atoi(t.c_str())));
      } else {
        std::fprintf(stderr, "unknown option %s\n", a.c_str());
        return usage();
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return usage();
    }
  }
  if (const char* err = init_isa_from_env(); err && *err) {
    std::fprintf(stderr, "%s\n", err);
    return kExitUsage;
  }
  try {
    if (mode == "info") {
      const cuda::Info& inf = cuda::info();
      std::printf("compiled %d available %d reason '%s'\n", inf.compiled, inf.available, inf.reason.c_str());
      for (const auto& d : inf.devices) std::printf("  %s cc %d.%d %.1f GiB\n", d.name.c_str(), d.major, d.minor, d.memory_bytes / 1073741824.0);
      std::printf("cpu %s, %u hardware threads\n", isa_name(current_isa()), std::thread::hardware_concurrency());
      return inf.available ? 0 : kExitNoDevice;
    }
    if (mode == "check") return run_check(fixture, json, quick, only);
    if (mode == "bench") {
      bo.quick = quick;
      bo.json = json;
      return run_bench(bo);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fatal: %s\n", e.what());
    return kExitFail;
  }
  return usage();
}
