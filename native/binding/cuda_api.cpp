// The CUDA backend through Node-API: cudaInfo, and the `device: 'cuda'` kernel entry points (host arrays in,
// host arrays out; chimera/cuda.h copies them to the device and back). Arguments are checked exactly as the CPU
// entry points of kernels_api.cpp check them; the trailing `reference` flag runs the simplest-correct kernel
// instead of the fast one. A CUDA failure, or CUDA where it is unavailable, is E_DEVICE (binding.h).
#include <stdexcept>

#include "binding.h"
#include "chimera/cuda.h"

namespace chimera::binding {
namespace {

// cudaInfo() -> { compiled, available, devices: [{ name, computeCapability, memoryBytes }], reason }
Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::Info& i = cuda::info();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", i.compiled);
  o.Set("available", i.available);
  Napi::Array devs = Napi::Array::New(env, i.devices.size());
  for (size_t d = 0; d < i.devices.size(); ++d) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("name", i.devices[d].name);
    e.Set("computeCapability", std::to_string(i.devices[d].major) + "." + std::to_string(i.devices[d].minor));
    e.Set("memoryBytes", static_cast<double>(i.devices[d].memory_bytes));
    devs.Set(static_cast<uint32_t>(d), e);
  }
  o.Set("devices", devs);
  o.Set("reason", i.reason);
  return o;
}

// cudaNorm(kind, x, residual, bias, gamma, beta, cols, eps, out, sumOut, qData, qScales, qSums, qStride, reference)
Napi::Value CudaNorm(const Napi::CallbackInfo& info) {
  if (!cuda::norm(norm_args(info), flag(info, 14)))
    throw_code(info.Env(), "E_RANGE", "the normalised output holds NaN or Inf, so it cannot be quantised to int8");
  return info.Env().Undefined();
}

// cudaQuantizeRows(x, rows, cols, data, scales, sums, stride, reference)
Napi::Value CudaQuantizeRows(const Napi::CallbackInfo& info) {
  const QuantizeArgs a = quantize_args(info);
  if (!cuda::quantize_rows(a.x, a.rows, a.cols, a.q, a.stride, a.scales, a.sums, flag(info, 7)))
    throw_code(info.Env(), "E_RANGE", "x holds NaN or Inf");
  return info.Env().Undefined();
}

// cudaGemmS8(a Int8Array [m, k], b Int8Array [n, k], m, n, k, out Int32Array [m, n], reference): exact int32.
Napi::Value CudaGemmS8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t m = dim(info, 2, "m"), n = dim(info, 3, "n"), k = dim(info, 4, "k");
  const int8_t* a = arr<int8_t>(info, 0, "a", checked_mul(env, m, k));
  const int8_t* b = arr<int8_t>(info, 1, "b", checked_mul(env, n, k));
  int32_t* c = arr<int32_t>(info, 5, "out", checked_mul(env, m, n));
  cuda::gemm_s8(a, b, m, n, k, c, flag(info, 6));
  return env.Undefined();
}

// cudaLinear(h, x, rows, bias, act, out|null, raw|null, reference): out = act(x . W^T + bias) through the
// weights' tier; raw (int8 only) receives the exact int32 accumulators. The weights are uploaded for the call.
Napi::Value CudaLinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LinearW w;
  if (!packed_linear(env, info[0], &w)) throw_code(env, "E_ARG", "expected a handle from packInt8Weights or packFp32Weights");
  const size_t rows = dim(info, 2, "rows");
  const float* x = arr<float>(info, 1, "x", checked_mul(env, rows, w.k));
  w.bias = arr<float>(info, 3, "bias", w.n, true);
  const Activation act = activation(info, 4);
  float* out = arr<float>(info, 5, "out", checked_mul(env, rows, w.n), true);
  int32_t* raw = arr<int32_t>(info, 6, "raw", checked_mul(env, rows, w.n), true);
  if (raw && !w.s8) throw_code(env, "E_ARG", "raw int32 output needs int8 weights");
  if (!out && !raw) throw_code(env, "E_ARG", "give out, raw or both");
  std::unique_ptr<cuda::Linear, void (*)(cuda::Linear*)> dw(cuda::upload_linear(w), cuda::free_linear);
  try {
    cuda::linear(*dw, x, rows, act, out, raw, flag(info, 7));
  } catch (const std::domain_error& e) {
    throw_code(env, "E_RANGE", e.what());
  }
  return env.Undefined();
}

// cudaDecodeAttention(q, kv, rowOffsets, ldkv, vOff, lens, heads, hd, out, reference): as decodeAttention.
Napi::Value CudaDecodeAttention(const Napi::CallbackInfo& info) {
  std::vector<const float*> bases;
  const float* kv = nullptr;
  size_t kv_len = 0;
  const DecodeAttention a = decode_attention_args(info, bases, &kv, &kv_len);
  cuda::decode_attention(a, bases.size(), kv, kv_len, flag(info, 9));
  return info.Env().Undefined();
}

}  // namespace

void register_cuda(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaInfo", Napi::Function::New(env, guarded<CudaInfo>));
  exports.Set("cudaNorm", Napi::Function::New(env, guarded<CudaNorm>));
  exports.Set("cudaQuantizeRows", Napi::Function::New(env, guarded<CudaQuantizeRows>));
  exports.Set("cudaGemmS8", Napi::Function::New(env, guarded<CudaGemmS8>));
  exports.Set("cudaLinear", Napi::Function::New(env, guarded<CudaLinear>));
  exports.Set("cudaDecodeAttention", Napi::Function::New(env, guarded<CudaDecodeAttention>));
}

}  // namespace chimera::binding
