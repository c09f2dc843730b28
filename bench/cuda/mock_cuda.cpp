// A CPU stand-in for the CUDA backend (chimera/cuda.h), for testing the driver itself where there is no GPU:
// built only with -DCHIMERA_CUDA_MOCK=ON (bench/cuda/CMakeLists.txt), never into the addon and never by run.sh.
// Every "device" call runs the CPU kernel, so `check` must pass every device check and `bench` fills every field
// (with CPU timings, or fixed stand-ins for the device timers): it exercises the driver's device-side code paths
// and the report before the one real GPU run. info() names it, so its output cannot be mistaken for a GPU's.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "chimera/cuda.h"

namespace chimera::cuda {

struct Linear {
  LinearW w;
};
struct Model {
  const MarianModel* m = nullptr;
  std::vector<float> logits;
};
struct State {
  MarianState st;
};

const Info& info() noexcept {
  static const Info i = [] {
    Info v;
    v.compiled = true;
    v.available = true;
    DeviceInfo d;
    d.name = "CPU mock of the CUDA backend (bench/cuda/mock_cuda.cpp)";
    d.major = 9;
    d.minor = 0;
    v.devices.push_back(d);
    return v;
  }();
  return i;
}
void require() {}

void* alloc(size_t bytes) { return std::malloc(bytes ? bytes : 1); }
void release(void* p) noexcept { std::free(p); }
void upload(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void download(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void synchronize() {}

// The mock keeps pointers to the caller's packed weights (the driver keeps them alive) instead of copies.
Linear* upload_linear(const LinearW& w) { return new Linear{w}; }
void free_linear(Linear* w) noexcept { delete w; }
size_t linear_bytes(const Linear& w) noexcept { return w.w.s8 ? w.w.s8->bytes : w.w.f32 ? w.w.f32->bytes : 0; }

bool norm(const NormArgs& a, bool) { return chimera::norm(a); }
bool quantize_rows(const float* x, size_t rows, size_t cols, int8_t* q, size_t stride, float* scales, int32_t* sums, bool) {
  return chimera::quantize_rows(x, rows, cols, q, stride, scales, sums);
}
void gemm_s8(const int8_t* a, const int8_t* b, size_t m, size_t n, size_t k, int32_t* c, bool) {
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < n; ++j) {
      int32_t s = 0;
      for (size_t t = 0; t < k; ++t) s += static_cast<int32_t>(a[i * k + t]) * b[j * k + t];
      c[i * n + j] = s;
    }
}
void linear(const Linear& l, const float* x, size_t rows, Activation act, float* out, int32_t* raw, bool) {
  const LinearW& w = l.w;
  if (!w.s8) {
    chimera::linear_f32(*w.f32, x, rows, w.bias, act, out);
    return;
  }
  const size_t kp = w.s8->kp;
  std::vector<int8_t> q(rows * kp);
  std::vector<float> sc(rows);
  std::vector<int32_t> su(rows);
  chimera::quantize_rows(x, rows, w.k, q.data(), kp, sc.data(), su.data());
  if (out) linear_s8(*w.s8, q.data(), kp, sc.data(), su.data(), rows, w.bias, act, out);
  if (raw) linear_s8(*w.s8, q.data(), kp, sc.data(), su.data(), rows, nullptr, act, nullptr, raw);
}
void decode_attention(const DecodeAttention& a, size_t rows, const float*, size_t, bool) { chimera::decode_attention(a, rows); }

// Stand-ins with plausible magnitudes: only the plumbing around them is under test.
double time_norm(size_t rows, size_t cols, bool, int) { return static_cast<double>(rows) * cols * 12 / 4e12; }
double time_gemm_s8(size_t m, size_t n, size_t k, bool reference, int) { return 2.0 * m * n * k / (reference ? 50e12 : 900e12) + 3e-6; }
double time_gemm_f16(size_t m, size_t n, size_t k, int) { return 2.0 * m * n * k / 400e12 + 3e-6; }
double copy_bandwidth(size_t, int) { return 4.0e12; }

Model* upload_model(const MarianModel& m) { return new Model{&m, {}}; }
void free_model(Model* m) noexcept { delete m; }
size_t model_bytes(const Model&) noexcept { return 0; }
void sync_norms(Model&, const MarianModel&) {}

State* create_state(const Model& m, size_t slots, size_t max_len, size_t sources, size_t max_src) {
  auto s = std::make_unique<State>();
  s->st.layers = m.m->decoder.size();
  s->st.d = m.m->dims.d;
  resize_state(*s, slots, max_len, sources, max_src);
  return s.release();
}
void free_state(State* s) noexcept { delete s; }
void resize_state(State& s, size_t slots, size_t max_len, size_t sources, size_t max_src) {
  marian_state_resize(s.st, slots, max_len, sources, max_src);
}
size_t state_bytes(const State& s) noexcept { return s.st.bytes(); }

void encode(Model& m, State& st, const int32_t* ids, const int32_t* lens, size_t batch, size_t s, const int32_t* src_slots, float* enc_out) {
  marian_encode(*m.m, st.st, ids, lens, batch, s, src_slots, enc_out);
}
void step(Model& m, State& st, const int32_t* token, const int32_t* slot, const int32_t* pos, const int32_t* src, size_t rows, float* logits,
          size_t topk, int32_t* top_idx, float* top_val) {
  const size_t V = m.m->dims.vocab;
  float* l = logits;
  if (!l) {
    if (m.logits.size() < rows * V) m.logits.resize(rows * V);
    l = m.logits.data();
  }
  marian_step(*m.m, st.st, token, slot, pos, src, rows, l);
  if (topk) topk_rows(l, rows, V, topk, true, top_idx, top_val);
}
void copy_slot(State& st, size_t from, size_t to, size_t len) { marian_copy_slot(st.st, from, to, len); }
void release_source(State& st, size_t src) {
  if (src < st.st.src_len.size()) st.st.src_len[src] = 0;
}

}  // namespace chimera::cuda
