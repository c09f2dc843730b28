// The CUDA backend's host interface: the one contract between the CPU side (binding, standalone driver) and the
// device code. Always declared and always linked: native/cuda/*.cu implement it when the build has CUDA
// (CHIMERA_HAVE_CUDA, CMake option CHIMERA_CUDA=auto|on|off), native/src/cuda_stub.cpp otherwise, where info()
// says why and every other function throws DeviceError. Nothing here falls back to the CPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "chimera/kernels.h"
#include "chimera/marian.h"

namespace chimera::cuda {

// A CUDA failure, or CUDA asked for where it is unavailable. The binding maps it to ChimeraError E_DEVICE; the
// message carries the reason (no driver, no device, too old a device, the CUDA error string).
struct DeviceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;  // compute capability
  size_t memory_bytes = 0;
};
struct Info {
  bool compiled = false;   // this build contains device code
  bool available = false;  // compiled, a driver answered, and device 0 has compute capability >= 8.0
  std::vector<DeviceInfo> devices;
  std::string reason;      // why not available; empty when available
};
// Probed once (the statically linked runtime looks for the driver library at this point, not at load time),
// then cached. Never throws.
const Info& info() noexcept;
// Throws DeviceError(info().reason) unless available.
void require();

// ---- device memory and streams (all synchronous helpers throw DeviceError on failure)
void* alloc(size_t bytes);
void release(void* p) noexcept;
void upload(void* dst, const void* src, size_t bytes);
void download(void* dst, const void* src, size_t bytes);
void synchronize();

// ---- weights resident on the device, made from the CPU-packed ones (PackedS8 / PackedF32, fp32 or fp16).
// int8: s8 [n][kp] row-major with kp = k rounded up to 32 (zero padded: one mma.sync k-step), per-channel
// scales [n]; fp16: half [n][k]; fp32: float [n][k]; bias [n] or none.
struct Linear;
Linear* upload_linear(const LinearW& w);
void free_linear(Linear* w) noexcept;
size_t linear_bytes(const Linear& w) noexcept;  // device bytes held

// ---- kernels on host memory: copy in, run on the device, copy out, synchronise. The `device: 'cuda'` kernel
// entry points of the binding and the tests use these. `reference` picks the simplest correct kernel, which the
// fast one is tested against (the CPU kernels are the reference for both).
// Same semantics as chimera::norm (add + LayerNorm/RMSNorm, live gamma/beta, sum_out, fused quantisation).
bool norm(const NormArgs& a, bool reference);
// Same semantics as chimera::quantize_rows (symmetric per-row int8, round half to even, zero padding to stride).
bool quantize_rows(const float* x, size_t rows, size_t cols, int8_t* q, size_t stride, float* scales, int32_t* sums,
                   bool reference);
// c[m, n] = a[m, k] . b[n, k]^T exactly in int32 (reference: dp4a; fast: mma.sync s8 tensor cores).
void gemm_s8(const int8_t* a, const int8_t* b, size_t m, size_t n, size_t k, int32_t* c, bool reference);
// out[rows, n] = act(x . W^T + bias) through the weights' tier: int8 quantises x per row on the device exactly as
// the CPU does, then the int8 GEMM with the per-channel scale, bias and activation epilogue; fp16 runs an fp16
// GEMM with fp32 accumulation; fp32 an fp32 GEMM. raw (int8 only, may be null): the exact int32 accumulators.
void linear(const Linear& w, const float* x, size_t rows, Activation act, float* out, int32_t* raw, bool reference);
// Same semantics as chimera::decode_attention, with the kv row pointers given as offsets into one host buffer
// `kv` of kv_floats floats (the kernel copies it in whole).
void decode_attention(const DecodeAttention& a, size_t rows, const float* kv, size_t kv_floats, bool reference);

// ---- device-resident timing (for bench/cuda): each runs `iters` launches on device buffers it allocates once
// and returns the median seconds per launch, measured with CUDA events.
double time_norm(size_t rows, size_t cols, bool fused_quantize, int iters);
double time_gemm_s8(size_t m, size_t n, size_t k, bool reference, int iters);
double time_gemm_f16(size_t m, size_t n, size_t k, int iters);
double copy_bandwidth(size_t bytes, int iters);  // device-to-device bytes moved (read + write) per second

// ---- the Marian model on the device: weights resident, KV cache on the device, one stream per model, logits
// (or the top-k result) copied back once per step.
struct Model;
Model* upload_model(const MarianModel& m);  // copies every weight; m must outlive nothing (all data is copied)
void free_model(Model* m) noexcept;
size_t model_bytes(const Model& m) noexcept;
// Re-copies every layer norm's gamma/beta from the host model: the CPU reads them live, the device keeps copies,
// so whoever edits them (Translator.adjustLayerNorm, quality tuning) calls this before the next encode/step.
void sync_norms(Model& dev, const MarianModel& host);

struct State;
State* create_state(const Model& m, size_t slots, size_t max_len, size_t sources, size_t max_src);
void free_state(State* s) noexcept;
// As marian_state_resize: keeps live rows, allocates first, leaves the state as it was when that fails.
void resize_state(State& s, size_t slots, size_t max_len, size_t sources, size_t max_src);
size_t state_bytes(const State& s) noexcept;

// The same contracts as chimera::marian_encode / marian_step / marian_copy_slot, with host arguments and host
// outputs (enc_out, logits, taps may be null where the CPU versions allow it). When topk > 0 the step returns
// per row the top-k token ids and log-softmax values (ties to the lower index, as chimera::topk_rows) into
// top_idx / top_val instead of the logits, so only rows * topk values cross the bus.
void encode(Model& m, State& st, const int32_t* ids, const int32_t* lens, size_t batch, size_t s,
            const int32_t* src_slots, float* enc_out);
void step(Model& m, State& st, const int32_t* token, const int32_t* slot, const int32_t* pos, const int32_t* src,
          size_t rows, float* logits, size_t topk = 0, int32_t* top_idx = nullptr, float* top_val = nullptr);
void copy_slot(State& st, size_t from, size_t to, size_t len);
// Marks a source slot as not encoded (marianReleaseSource): its length becomes 0 until it is encoded again.
void release_source(State& st, size_t src);

}  // namespace chimera::cuda
