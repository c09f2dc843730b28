// The CUDA contract (chimera/cuda.h) in a build without CUDA (CHIMERA_CUDA=off, nvcc not found, or node-gyp):
// info() says why, and every other entry point throws DeviceError, which the binding reports as E_DEVICE.
// Nothing here falls back to the CPU.
#include "chimera/cuda.h"

namespace chimera::cuda {

namespace {
constexpr const char* kReason = "built without CUDA (CHIMERA_CUDA=off or nvcc not found)";
[[noreturn]] void unavailable() { throw DeviceError(std::string("CUDA is unavailable: ") + kReason); }
}  // namespace

// Opaque on this side: nothing ever creates one.
struct Linear {};
struct Model {};
struct State {};

const Info& info() noexcept {
  static const Info i = [] {
    Info v;
    v.reason = kReason;
    return v;
  }();
  return i;
}
void require() { unavailable(); }

void* alloc(size_t) { unavailable(); }
void release(void*) noexcept {}
void upload(void*, const void*, size_t) { unavailable(); }
void download(void*, const void*, size_t) { unavailable(); }
void synchronize() { unavailable(); }

Linear* upload_linear(const LinearW&) { unavailable(); }
void free_linear(Linear*) noexcept {}
size_t linear_bytes(const Linear&) noexcept { return 0; }

bool norm(const NormArgs&, bool) { unavailable(); }
bool quantize_rows(const float*, size_t, size_t, int8_t*, size_t, float*, int32_t*, bool) { unavailable(); }
void gemm_s8(const int8_t*, const int8_t*, size_t, size_t, size_t, int32_t*, bool) { unavailable(); }
void linear(const Linear&, const float*, size_t, Activation, float*, int32_t*, bool) { unavailable(); }
void decode_attention(const DecodeAttention&, size_t, const float*, size_t, bool) { unavailable(); }

double time_norm(size_t, size_t, bool, int) { unavailable(); }
double time_gemm_s8(size_t, size_t, size_t, bool, int) { unavailable(); }
double time_gemm_f16(size_t, size_t, size_t, int) { unavailable(); }
double copy_bandwidth(size_t, int) { unavailable(); }

Model* upload_model(const MarianModel&) { unavailable(); }
void free_model(Model*) noexcept {}
size_t model_bytes(const Model&) noexcept { return 0; }
void sync_norms(Model&, const MarianModel&) { unavailable(); }

State* create_state(const Model&, size_t, size_t, size_t, size_t) { unavailable(); }
void free_state(State*) noexcept {}
void resize_state(State&, size_t, size_t, size_t, size_t) { unavailable(); }
size_t state_bytes(const State&) noexcept { return 0; }

void encode(Model&, State&, const int32_t*, const int32_t*, size_t, size_t, const int32_t*, float*) { unavailable(); }
void step(Model&, State&, const int32_t*, const int32_t*, const int32_t*, const int32_t*, size_t, float*, size_t,
          int32_t*, float*) {
  unavailable();
}
void copy_slot(State&, size_t, size_t, size_t) { unavailable(); }
void release_source(State&, size_t) { unavailable(); }

}  // namespace chimera::cuda
