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
  Napi::Env env = info.Env();
  NormArgs a;
  a.rms = num(info, 0) == 1;
  const size_t cols = dim(info, 6, "cols");
  size_t len = 0;
  a.x = arr<float>(info, 1, "x", 0, false, false, &len);
  if (len == 0 || len % cols) throw_code(env, "E_SHAPE", "x length is not a positive multiple of cols");
  a.rows = len / cols;
  a.cols = cols;
  a.residual = arr<float>(info, 2, "residual", len, true);
  a.bias = arr<float>(info, 3, "bias", cols, true);
  a.gamma = arr<float>(info, 4, "gamma", cols);
  a.beta = arr<float>(info, 5, "beta", cols, true);
  a.eps = static_cast<float>(num(info, 7));
  a.out = arr<float>(info, 8, "out", len);
  a.sum_out = arr<float>(info, 9, "sumOut", len, true);
  if (!(info[10].IsNull() || info[10].IsUndefined())) {
    a.q_stride = dim(info, 13, "qStride");
    if (a.q_stride < cols || a.q_stride % 4) throw_code(env, "E_SHAPE", "qStride must be cols rounded up to 4");
    a.q = arr<int8_t>(info, 10, "quantizeTo.data", checked_mul(env, a.rows, a.q_stride));
    a.q_scales = arr<float>(info, 11, "quantizeTo.scales", a.rows);
    a.q_sums = arr<int32_t>(info, 12, "quantizeTo.sums", a.rows);
  }
  if (!cuda::norm(a, flag(info, 14)))
    throw_code(env, "E_RANGE", "the normalised output holds NaN or Inf, so it cannot be quantised to int8");
  return env.Undefined();
}

// cudaQuantizeRows(x, rows, cols, data, scales, sums, stride, reference)
Napi::Value CudaQuantizeRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t rows = dim(info, 1, "rows"), cols = dim(info, 2, "cols"), stride = dim(info, 6, "stride");
  if (stride < cols || stride % 4) throw_code(env, "E_SHAPE", "stride must be cols rounded up to 4");
  const float* x = arr<float>(info, 0, "x", checked_mul(env, rows, cols));
  int8_t* q = arr<int8_t>(info, 3, "data", checked_mul(env, rows, stride));
  float* scales = arr<float>(info, 4, "scales", rows);
  int32_t* sums = arr<int32_t>(info, 5, "sums", rows);
  if (!cuda::quantize_rows(x, rows, cols, q, stride, scales, sums, flag(info, 7)))
    throw_code(env, "E_RANGE", "x holds NaN or Inf");
  return env.Undefined();
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

// A packed weight (int8, fp32 or fp16 handle) as a LinearW.
LinearW packed_linear(const Napi::CallbackInfo& info, size_t i) {
  LinearW w;
  bool ok = false;
  if (info[i].IsExternal()) {
    napi_check_object_type_tag(info.Env(), info[i], &kS8Tag, &ok);
    if (ok) {
      w.s8 = info[i].As<Napi::External<PackedS8>>().Data();
    } else {
      napi_check_object_type_tag(info.Env(), info[i], &kF32Tag, &ok);
      if (ok) w.f32 = info[i].As<Napi::External<PackedF32>>().Data();
    }
  }
  if (!ok) throw_code(info.Env(), "E_ARG", "expected a handle from packInt8Weights or packFp32Weights");
  w.n = w.s8 ? w.s8->n : w.f32->n;
  w.k = w.s8 ? w.s8->k : w.f32->k;
  return w;
}

// cudaLinear(h, x, rows, bias, act, out|null, raw|null, reference): out = act(x . W^T + bias) through the
// weights' tier; raw (int8 only) receives the exact int32 accumulators. The weights are uploaded for the call.
Napi::Value CudaLinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LinearW w = packed_linear(info, 0);
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
  Napi::Env env = info.Env();
  size_t kv_len = 0, rows = 0;
  const int32_t* offs = arr<int32_t>(info, 2, "rowOffsets", 0, false, false, &rows);
  if (rows == 0) throw_code(env, "E_SHAPE", "no rows");
  const size_t ldkv = dim(info, 3, "ldkv"), heads = dim(info, 6, "heads"), hd = dim(info, 7, "hd");
  if (!info[4].IsNumber() || info[4].As<Napi::Number>().DoubleValue() < 0) throw_code(env, "E_ARG", "vOff must be a number >= 0");
  const size_t v_off = static_cast<size_t>(info[4].As<Napi::Number>().DoubleValue());
  const size_t width = checked_mul(env, heads, hd);
  const float* q = arr<float>(info, 0, "q", checked_mul(env, rows, width));
  const float* kv = arr<float>(info, 1, "kv", 0, false, false, &kv_len);
  const int32_t* lens = arr<int32_t>(info, 5, "lens", rows);
  float* out = arr<float>(info, 8, "out", rows * width);
  std::vector<const float*> bases(rows);
  for (size_t r = 0; r < rows; ++r) {
    if (offs[r] < 0 || lens[r] < 1) throw_code(env, "E_RANGE", "row offsets must be >= 0 and lengths >= 1");
    const double last = static_cast<double>(offs[r]) + static_cast<double>(lens[r] - 1) * static_cast<double>(ldkv) +
                        static_cast<double>(v_off) + static_cast<double>(width);
    const double last_k = static_cast<double>(offs[r]) + static_cast<double>(lens[r] - 1) * static_cast<double>(ldkv) +
                          static_cast<double>(width);
    if (last > static_cast<double>(kv_len) || last_k > static_cast<double>(kv_len))
      throw_code(env, "E_RANGE", "row " + std::to_string(r) + " reads past the end of kv");
    bases[r] = kv + offs[r];
  }
  DecodeAttention a;
  a.q = q;
  a.ldq = width;
  a.kv = bases.data();
  a.ldkv = ldkv;
  a.v_off = v_off;
  a.len = lens;
  a.o = out;
  a.ldo = width;
  a.heads = heads;
  a.hd = hd;
  cuda::decode_attention(a, rows, kv, kv_len, flag(info, 9));
  return env.Undefined();
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
