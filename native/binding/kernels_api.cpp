// Kernels through Node-API: CPU / ISA / threads, norms, quantisation, int8 and fp32 GEMMs (sync and async),
// log-softmax, top-k, decode and encoder attention, the peak and bandwidth probes, thread priority.
#include "binding.h"

namespace chimera::binding {
namespace {

// ---- functions

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("isa", isa_name(current_isa()));
  Napi::Object f = Napi::Object::New(env);
  for (const auto& kv : cpu_features().list()) f.Set(kv.first, kv.second);
  o.Set("features", f);
  Napi::Array supported = Napi::Array::New(env);
  Napi::Array compiled = Napi::Array::New(env);
  for (int i = 0; i < kIsaCount; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (isa_compiled(isa)) compiled.Set(compiled.Length(), isa_name(isa));
    if (isa_compiled(isa) && isa_supported(isa)) supported.Set(supported.Length(), isa_name(isa));
  }
  o.Set("supported", supported);
  o.Set("compiled", compiled);
  return o;
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_code(env, "E_ARG", "isa must be a string");
  const std::string name = info[0].As<Napi::String>();
  Isa isa = best_isa();
  if (name != "auto" && !isa_from_name(name, &isa))
    throw_code(env, "E_ISA", "unknown instruction set '" + name + "'; use scalar, avx2, avx512vnni, amx or auto");
  if (!set_isa(isa))
    throw_code(env, "E_ISA", "this CPU (or this build) cannot run " + name + "; best available: " + isa_name(best_isa()));
  return Napi::String::New(env, isa_name(current_isa()));
}

Napi::Value GetIsa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), isa_name(current_isa())); }

Napi::Value KernelCounters(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  for (int op = 0; op < static_cast<int>(Op::kCount); ++op)
    for (int i = 0; i < kIsaCount; ++i) {
      const std::string key = std::string(op_name(static_cast<Op>(op))) + ":" + isa_name(static_cast<Isa>(i));
      o.Set(key, static_cast<double>(kernel_count(static_cast<Op>(op), static_cast<Isa>(i))));
    }
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  const size_t n = dim(info, 0, "threads");
  if (n > kMaxThreads) throw_code(info.Env(), "E_ARG", "threads must be in 1.." + std::to_string(kMaxThreads));
  set_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), get_threads()); }

// norm(kind, x, residual, bias, gamma, beta, cols, eps, out, sumOut, qData, qScales, qSums, qStride)
Napi::Value Norm(const Napi::CallbackInfo& info) {
  if (!norm(norm_args(info))) throw_code(info.Env(), "E_RANGE", "the normalised output holds NaN or Inf, so it cannot be quantised to int8");
  return info.Env().Undefined();
}

Napi::Value DynamicQuantizeLinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t n = 0;
  const float* x = arr<float>(info, 0, "x", 0, false, false, &n);
  uint8_t* y = arr<uint8_t>(info, 1, "y", n);
  float scale = 0;
  uint8_t zp = 0;
  if (n == 0) throw_code(env, "E_SHAPE", "x must not be empty");
  if (!dynamic_quantize_linear(x, n, y, &scale, &zp)) throw_code(env, "E_RANGE", "x holds NaN or Inf");
  Napi::Array r = Napi::Array::New(env, 2);
  r.Set(0u, Napi::Number::New(env, scale));
  r.Set(1u, Napi::Number::New(env, zp));
  return r;
}

// quantizeRows(x, rows, cols, data, scales, sums, stride)
Napi::Value QuantizeRows(const Napi::CallbackInfo& info) {
  const QuantizeArgs a = quantize_args(info);
  if (!quantize_rows(a.x, a.rows, a.cols, a.q, a.stride, a.scales, a.sums)) throw_code(info.Env(), "E_RANGE", "x holds NaN or Inf");
  return info.Env().Undefined();
}

// matmulInteger(a, aSigned, m, k, b, bSigned, n, aZp, bZp, out, async)
Napi::Value MatmulInteger(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool as = flag(info, 1), bs = flag(info, 5);
  const size_t m = dim(info, 2, "m"), k = dim(info, 3, "k"), n = dim(info, 6, "n");
  const void* a = as ? static_cast<const void*>(arr<int8_t>(info, 0, "a", checked_mul(env, m, k)))
                     : static_cast<const void*>(arr<uint8_t>(info, 0, "a", checked_mul(env, m, k)));
  const void* b = bs ? static_cast<const void*>(arr<int8_t>(info, 4, "b", checked_mul(env, k, n)))
                     : static_cast<const void*>(arr<uint8_t>(info, 4, "b", checked_mul(env, k, n)));
  size_t az_len = 0, bz_len = 0;
  const int32_t* az = arr<int32_t>(info, 7, "aZeroPoint", 1, false, false, &az_len);
  const int32_t* bz = arr<int32_t>(info, 8, "bZeroPoint", 1, false, false, &bz_len);
  if (az_len != 1 && az_len != m) throw_code(env, "E_SHAPE", "aZeroPoint must have 1 or M entries");
  if (bz_len != 1 && bz_len != n) throw_code(env, "E_SHAPE", "bZeroPoint must have 1 or N entries");
  int32_t* c = arr<int32_t>(info, 9, "out", checked_mul(env, m, n));
  std::unique_ptr<Owned> o;
  if (flag(info, 10)) {
    o = std::make_unique<Owned>();
    a = o->in(static_cast<const uint8_t*>(a), m * k);
    b = o->in(static_cast<const uint8_t*>(b), k * n);
    az = o->in(az, az_len);
    bz = o->in(bz, bz_len);
    c = o->out(env, info[9], c, m * n);
  }
  return run(info, std::move(o), [=] { matmul_integer(a, as, m, k, b, bs, n, az, az_len, bz, bz_len, c); });
}

Napi::Value PackS8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t n = dim(info, 1, "n"), k = dim(info, 2, "k");
  const float* w = arr<float>(info, 0, "w", checked_mul(env, n, k));
  return wrap(env, pack_s8(w, n, k), kS8Tag);
}

Napi::Value PackedS8Info(const Napi::CallbackInfo& info) {
  PackedS8* p = unwrap<PackedS8>(info, 0, kS8Tag, "packInt8Weights");
  float* scales = arr<float>(info, 1, "scales", p->n);
  std::copy(p->scales, p->scales + p->n, scales);
  return Napi::Number::New(info.Env(), static_cast<double>(p->bytes + p->n * sizeof(float)));
}

Napi::Value UnpackS8(const Napi::CallbackInfo& info) {
  PackedS8* p = unwrap<PackedS8>(info, 0, kS8Tag, "packInt8Weights");
  unpack_s8(*p, arr<int8_t>(info, 1, "out", p->n * p->k));
  return info.Env().Undefined();
}

// linearS8(h, x, qData, qScales, qSums, qStride, rows, bias, act, out, async)
Napi::Value LinearS8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PackedS8* w = unwrap<PackedS8>(info, 0, kS8Tag, "packInt8Weights");
  const size_t rows = dim(info, 6, "rows");
  const float* bias = arr<float>(info, 7, "bias", w->n, true);
  const Activation act = activation(info, 8);
  float* out = arr<float>(info, 9, "out", checked_mul(env, rows, w->n));
  const bool async = flag(info, 10);
  std::unique_ptr<Owned> o;
  if (async) {
    o = std::make_unique<Owned>();
    bias = o->in(bias, w->n);
  }
  const float* x = arr<float>(info, 1, "x", checked_mul(env, rows, w->k), true);
  if (x) {
    const size_t stride = w->kp, k = w->k;
    if (o) {
      x = o->in(x, rows * k);
      out = o->out(env, info[9], out, rows * w->n);
    }
    return run(info, std::move(o), [=] {
      QScratch& s = t_scratch;
      if (s.q.size() < rows * stride) s.q.resize(rows * stride);
      if (s.scales.size() < rows) s.scales.resize(rows), s.sums.resize(rows);
      if (!quantize_rows(x, rows, k, s.q.data(), stride, s.scales.data(), s.sums.data()))
        throw NativeError{"E_RANGE", "x holds NaN or Inf, which int8 cannot represent"};
      linear_s8(*w, s.q.data(), stride, s.scales.data(), s.sums.data(), rows, bias, act, out);
    });
  }
  const size_t stride = dim(info, 5, "qStride");
  if (stride < w->kp || stride % 4) throw_code(env, "E_SHAPE", "quantised rows have the wrong stride");
  const int8_t* q = arr<int8_t>(info, 2, "x.data", checked_mul(env, rows, stride));
  const float* qs = arr<float>(info, 3, "x.scales", rows);
  const int32_t* qsum = arr<int32_t>(info, 4, "x.sums", rows);
  if (o) {
    q = o->in(q, rows * stride);
    qs = o->in(qs, rows);
    qsum = o->in(qsum, rows);
    out = o->out(env, info[9], out, rows * w->n);
  }
  return run(info, std::move(o), [=] { linear_s8(*w, q, stride, qs, qsum, rows, bias, act, out); });
}

// gemmS8Raw(h, qData, qSums, qStride, rows, out)
Napi::Value GemmS8Raw(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PackedS8* w = unwrap<PackedS8>(info, 0, kS8Tag, "packInt8Weights");
  const size_t stride = dim(info, 3, "qStride"), rows = dim(info, 4, "rows");
  if (stride < w->kp || stride % 4) throw_code(env, "E_SHAPE", "quantised rows have the wrong stride");
  const int8_t* q = arr<int8_t>(info, 1, "q.data", checked_mul(env, rows, stride));
  const int32_t* sums = arr<int32_t>(info, 2, "q.sums", rows);
  int32_t* out = arr<int32_t>(info, 5, "out", checked_mul(env, rows, w->n));
  std::vector<float> ones(rows, 1.0f);
  linear_s8(*w, q, stride, ones.data(), sums, rows, nullptr, Activation::None, nullptr, out);
  return env.Undefined();
}

Napi::Value PackF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t n = dim(info, 1, "n"), k = dim(info, 2, "k");
  const float* w = arr<float>(info, 0, "w", checked_mul(env, n, k));
  return wrap(env, pack_f32(w, n, k, false), kF32Tag);
}

// linearF32(h, x, rows, bias, act, out, async)
Napi::Value LinearF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PackedF32* w = unwrap<PackedF32>(info, 0, kF32Tag, "packFp32Weights");
  const size_t rows = dim(info, 2, "rows");
  const float* x = arr<float>(info, 1, "x", checked_mul(env, rows, w->k));
  const float* bias = arr<float>(info, 3, "bias", w->n, true);
  const Activation act = activation(info, 4);
  float* out = arr<float>(info, 5, "out", checked_mul(env, rows, w->n));
  std::unique_ptr<Owned> o;
  if (flag(info, 6)) {
    o = std::make_unique<Owned>();
    x = o->in(x, rows * w->k);
    bias = o->in(bias, w->n);
    out = o->out(env, info[5], out, rows * w->n);
  }
  return run(info, std::move(o), [=] { linear_f32(*w, x, rows, bias, act, out); });
}

// sgemm(a, b, m, n, k, transA, transB, alpha, beta, out, async)
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t m = dim(info, 2, "m"), n = dim(info, 3, "n"), k = dim(info, 4, "k");
  const float* a = arr<float>(info, 0, "a", checked_mul(env, m, k));
  const float* b = arr<float>(info, 1, "b", checked_mul(env, k, n));
  const bool ta = flag(info, 5), tb = flag(info, 6);
  const float alpha = static_cast<float>(num(info, 7)), beta = static_cast<float>(num(info, 8));
  float* c = arr<float>(info, 9, "out", checked_mul(env, m, n));
  std::unique_ptr<Owned> o;
  if (flag(info, 10)) {
    o = std::make_unique<Owned>();
    a = o->in(a, m * k);
    b = o->in(b, k * n);
    c = o->out(env, info[9], c, m * n);
  }
  return run(info, std::move(o), [=] { sgemm(a, b, m, n, k, ta, tb, alpha, beta, c); });
}


// logSoftmax(x Float32Array [rows * cols], cols): in place, per row
Napi::Value LogSoftmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t cols = dim(info, 1, "cols");
  size_t n = 0;
  float* x = arr<float>(info, 0, "x", 0, false, false, &n);
  if (n == 0 || n % cols) throw_code(env, "E_SHAPE", "x length is not a positive multiple of cols");
  log_softmax(x, n / cols, cols);
  return env.Undefined();
}

// toHalf(src Float32Array, dst Uint16Array)
Napi::Value ToHalf(const Napi::CallbackInfo& info) {
  size_t n = 0;
  const float* x = arr<float>(info, 0, "src", 0, false, false, &n);
  to_half(x, n, arr<uint16_t>(info, 1, "dst", n));
  return info.Env().Undefined();
}

Napi::Value PackF16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t n = dim(info, 1, "n"), k = dim(info, 2, "k");
  const float* w = arr<float>(info, 0, "w", checked_mul(env, n, k));
  for (size_t i = 0; i < n * k; ++i)
    if (!(std::fabs(w[i]) <= 65504.0f)) throw_code(env, "E_RANGE", "w holds a value outside the fp16 range (or NaN)");
  return wrap(env, pack_f16(w, n, k), kF32Tag);
}


// topkRows(x, rows, cols, k, logSoftmax, outIdx Int32Array [rows*k], outVal Float32Array [rows*k])
Napi::Value TopkRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t rows = dim(info, 1, "rows"), cols = dim(info, 2, "cols"), k = dim(info, 3, "k");
  if (k > cols) throw_code(env, "E_RANGE", "k must be in 1..cols (" + std::to_string(cols) + "), got " + std::to_string(k));
  const float* x = arr<float>(info, 0, "x", checked_mul(env, rows, cols));
  int32_t* idx = arr<int32_t>(info, 5, "outIdx", checked_mul(env, rows, k));
  float* val = arr<float>(info, 6, "outVal", rows * k);
  topk_rows(x, rows, cols, k, flag(info, 4), idx, val);
  return env.Undefined();
}

// packedGather(h, cols Int32Array) -> a new packed handle of h's kind holding the channels cols, in that order
// (what a vocabulary shortlist's sub-LM-head is built with; tests compare it with h channel by channel).
Napi::Value PackedGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t n = 0;
  const int32_t* cols = arr<int32_t>(info, 1, "cols", 0, false, false, &n);
  bool s8 = false;
  if (info[0].IsExternal()) napi_check_object_type_tag(env, info[0], &kS8Tag, &s8);
  const size_t full = s8 ? info[0].As<Napi::External<PackedS8>>().Data()->n : unwrap<PackedF32>(info, 0, kF32Tag, "a packer")->n;
  if (n == 0) throw_code(env, "E_SHAPE", "cols is empty");
  for (size_t i = 0; i < n; ++i)
    if (cols[i] < 0 || static_cast<size_t>(cols[i]) >= full) throw_code(env, "E_RANGE", "a channel index is outside the weight");
  if (s8) return wrap(env, gather_s8(*info[0].As<Napi::External<PackedS8>>().Data(), cols, n), kS8Tag);
  return wrap(env, gather_f32(*info[0].As<Napi::External<PackedF32>>().Data(), cols, n), kF32Tag);
}

// topkRowsRagged(x, rows, stride, lens Int32Array [rows], k, logSoftmax, outIdx [rows*k], outVal [rows*k]): row r
// is its first lens[r] entries at x + r * stride (the vocabulary shortlist: each row over its own candidates).
Napi::Value TopkRowsRagged(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t rows = dim(info, 1, "rows"), stride = dim(info, 2, "stride"), k = dim(info, 4, "k");
  const float* x = arr<float>(info, 0, "x", checked_mul(env, rows, stride), false, false);
  const int32_t* lens = arr<int32_t>(info, 3, "lens", rows, false, false);
  for (size_t r = 0; r < rows; ++r)
    if (lens[r] < 1 || static_cast<size_t>(lens[r]) > stride) throw_code(env, "E_RANGE", "row lengths must be in 1..stride");
  int32_t* idx = arr<int32_t>(info, 6, "outIdx", checked_mul(env, rows, k), false, false);
  float* val = arr<float>(info, 7, "outVal", rows * k, false, false);
  topk_rows_ragged(x, rows, stride, lens, k, flag(info, 5), idx, val);
  return env.Undefined();
}

// decodeAttention(q [rows, heads*hd], kv, rowOffsets Int32Array [rows], ldkv, vOff, lens Int32Array [rows], heads, hd, out [rows, heads*hd])
Napi::Value DecodeAttentionFn(const Napi::CallbackInfo& info) {
  std::vector<const float*> bases;
  const float* kv = nullptr;
  size_t kv_len = 0;
  const DecodeAttention a = decode_attention_args(info, bases, &kv, &kv_len);
  decode_attention(a, bases.size());
  return info.Env().Undefined();
}

// encoderAttention(qkv [batch*s, ld], ld, lens Int32Array [batch], s, heads, hd, out [batch*s, heads*hd], path
// 'auto' | 'rows' | 'blocked'): the encoder's self-attention over q|k|v rows laid out as the fused projection writes
// them (q of head h at column h*hd, k heads*hd further, v 2*heads*hd further).
Napi::Value EncoderAttentionFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t batch = 0;
  const int32_t* lens = arr<int32_t>(info, 2, "lens", 0, false, false, &batch);
  if (batch == 0) throw_code(env, "E_SHAPE", "no sources");
  const size_t ld = dim(info, 1, "ld"), s = dim(info, 3, "s"), heads = dim(info, 4, "heads"), hd = dim(info, 5, "hd");
  const size_t width = checked_mul(env, heads, hd);
  if (ld < checked_mul(env, 3, width)) throw_code(env, "E_RANGE", "ld must be at least 3 * heads * hd");
  const size_t rows = checked_mul(env, batch, s);
  const float* qkv = arr<float>(info, 0, "qkv", checked_mul(env, rows, ld));
  float* out = arr<float>(info, 6, "out", checked_mul(env, rows, width));
  for (size_t b = 0; b < batch; ++b)
    if (lens[b] < 1 || static_cast<size_t>(lens[b]) > s) throw_code(env, "E_RANGE", "lens must be in 1..s");
  if (!info[7].IsString()) throw_code(env, "E_ARG", "path must be 'auto', 'rows' or 'blocked'");
  const std::string path = info[7].As<Napi::String>();
  EncoderAttention a;
  if (path == "auto") a.path = AttentionPath::Auto;
  else if (path == "rows") a.path = AttentionPath::Rows;
  else if (path == "blocked") a.path = AttentionPath::Blocked;
  else throw_code(env, "E_ARG", "path must be 'auto', 'rows' or 'blocked', got '" + path + "'");
  a.q = qkv;
  a.k = qkv + width;
  a.v = qkv + 2 * width;
  a.ld = ld;
  a.len = lens;
  a.o = out;
  a.ldo = width;
  a.batch = batch;
  a.s = s;
  a.heads = heads;
  a.hd = hd;
  encoder_attention(a);
  return env.Undefined();
}

// peakProbe(kind 'vnni' | 'avx2-int8' | 'fma' | 'avxvnni', ms) -> multiply-adds per second / 1e9 on one core
Napi::Value PeakProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_code(env, "E_ARG", "kind must be 'vnni', 'avx2-int8' or 'fma'");
  const std::string kind = info[0].As<Napi::String>();
  const int k = kind == "vnni" ? 0 : kind == "avx2-int8" ? 1 : kind == "fma" ? 2 : kind == "avxvnni" ? 3 : -1;
  if (k < 0) throw_code(env, "E_ARG", "kind must be 'vnni', 'avx2-int8', 'fma' or 'avxvnni', got '" + kind + "'");
  const double ms = num(info, 1);
  if (!(ms >= 1 && ms <= 10000)) throw_code(env, "E_RANGE", "ms must be in 1..10000");
  const double rate = peak_probe(k, ms);
  if (rate < 0) throw_code(env, "E_ISA", "this CPU (or this build) has no " + kind + " instructions");
  return Napi::Number::New(env, rate / 1e9);
}

// bandwidthProbe(bytes, ms, threads = 1) -> streaming read bandwidth in GB/s (1e9 bytes/s) over a buffer of `bytes`
Napi::Value BandwidthProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double bytes = num(info, 0), ms = num(info, 1);
  const double threads = info.Length() > 2 && !info[2].IsUndefined() ? num(info, 2) : 1;
  if (!(bytes >= 4096 && bytes <= kMaxNativeBytes)) throw_code(env, "E_RANGE", "bytes must be in 4096..64 GiB");
  if (!(ms >= 1 && ms <= 10000)) throw_code(env, "E_RANGE", "ms must be in 1..10000");
  if (!(threads >= 1 && threads <= kMaxThreads && threads == static_cast<int>(threads)))
    throw_code(env, "E_RANGE", "threads must be an integer in 1.." + std::to_string(kMaxThreads));
  const double rate = bandwidth_probe(static_cast<size_t>(bytes), ms, static_cast<int>(threads));
  if (rate < 0) throw_code(env, "E_NOMEM", "could not allocate the probe buffer");
  return Napi::Number::New(env, rate / 1e9);
}

// setThreadNice(nice): the calling thread's scheduling priority (and that of the pool threads it starts later).
Napi::Value SetThreadNice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double n = num(info, 0);
  if (!(n >= -20 && n <= 19 && n == static_cast<int>(n))) throw_code(env, "E_RANGE", "nice must be an integer in -20..19");
  return Napi::Boolean::New(env, set_thread_nice(static_cast<int>(n)));
}

}  // namespace

NormArgs norm_args(const Napi::CallbackInfo& info) {
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
  return a;
}

QuantizeArgs quantize_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  QuantizeArgs a;
  a.rows = dim(info, 1, "rows");
  a.cols = dim(info, 2, "cols");
  a.stride = dim(info, 6, "stride");
  if (a.stride < a.cols || a.stride % 4) throw_code(env, "E_SHAPE", "stride must be cols rounded up to 4");
  a.x = arr<float>(info, 0, "x", checked_mul(env, a.rows, a.cols));
  a.q = arr<int8_t>(info, 3, "data", checked_mul(env, a.rows, a.stride));
  a.scales = arr<float>(info, 4, "scales", a.rows);
  a.sums = arr<int32_t>(info, 5, "sums", a.rows);
  return a;
}

DecodeAttention decode_attention_args(const Napi::CallbackInfo& info, std::vector<const float*>& bases,
                                      const float** kv_out, size_t* kv_len_out) {
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
  bases.resize(rows);
  for (size_t r = 0; r < rows; ++r) {
    if (offs[r] < 0 || lens[r] < 1) throw_code(env, "E_RANGE", "row offsets must be >= 0 and lengths >= 1");
    const double last = static_cast<double>(offs[r]) + static_cast<double>(lens[r] - 1) * static_cast<double>(ldkv) +
                        static_cast<double>(v_off) + static_cast<double>(width);
    const double last_k = static_cast<double>(offs[r]) + static_cast<double>(lens[r] - 1) * static_cast<double>(ldkv) + static_cast<double>(width);
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
  *kv_out = kv;
  *kv_len_out = kv_len;
  return a;
}

bool packed_linear(napi_env env, const Napi::Value& v, LinearW* out) {
  bool ok = false;
  LinearW w;
  if (v.IsExternal()) {
    napi_check_object_type_tag(env, v, &kS8Tag, &ok);
    if (ok) {
      w.s8 = v.As<Napi::External<PackedS8>>().Data();
    } else {
      napi_check_object_type_tag(env, v, &kF32Tag, &ok);
      if (ok) w.f32 = v.As<Napi::External<PackedF32>>().Data();
    }
  }
  if (!ok) return false;
  w.n = w.s8 ? w.s8->n : w.f32->n;
  w.k = w.s8 ? w.s8->k : w.f32->k;
  *out = w;
  return true;
}


void register_kernels(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuInfo", Napi::Function::New(env, guarded<CpuInfo>));
  exports.Set("setIsa", Napi::Function::New(env, guarded<SetIsa>));
  exports.Set("getIsa", Napi::Function::New(env, guarded<GetIsa>));
  exports.Set("kernelCounters", Napi::Function::New(env, guarded<KernelCounters>));
  exports.Set("setThreads", Napi::Function::New(env, guarded<SetThreads>));
  exports.Set("getThreads", Napi::Function::New(env, guarded<GetThreads>));
  exports.Set("norm", Napi::Function::New(env, guarded<Norm>));
  exports.Set("dynamicQuantizeLinear", Napi::Function::New(env, guarded<DynamicQuantizeLinear>));
  exports.Set("quantizeRows", Napi::Function::New(env, guarded<QuantizeRows>));
  exports.Set("matmulInteger", Napi::Function::New(env, guarded<MatmulInteger>));
  exports.Set("packS8", Napi::Function::New(env, guarded<PackS8>));
  exports.Set("packedS8Info", Napi::Function::New(env, guarded<PackedS8Info>));
  exports.Set("unpackS8", Napi::Function::New(env, guarded<UnpackS8>));
  exports.Set("linearS8", Napi::Function::New(env, guarded<LinearS8>));
  exports.Set("gemmS8Raw", Napi::Function::New(env, guarded<GemmS8Raw>));
  exports.Set("packF32", Napi::Function::New(env, guarded<PackF32>));
  exports.Set("linearF32", Napi::Function::New(env, guarded<LinearF32>));
  exports.Set("sgemm", Napi::Function::New(env, guarded<Sgemm>));
  exports.Set("packF16", Napi::Function::New(env, guarded<PackF16>));
  exports.Set("toHalf", Napi::Function::New(env, guarded<ToHalf>));
  exports.Set("logSoftmax", Napi::Function::New(env, guarded<LogSoftmax>));
  exports.Set("topkRows", Napi::Function::New(env, guarded<TopkRows>));
  exports.Set("packedGather", Napi::Function::New(env, guarded<PackedGather>));
  exports.Set("topkRowsRagged", Napi::Function::New(env, guarded<TopkRowsRagged>));
  exports.Set("decodeAttention", Napi::Function::New(env, guarded<DecodeAttentionFn>));
  exports.Set("encoderAttention", Napi::Function::New(env, guarded<EncoderAttentionFn>));
  exports.Set("peakProbe", Napi::Function::New(env, guarded<PeakProbe>));
  exports.Set("bandwidthProbe", Napi::Function::New(env, guarded<BandwidthProbe>));
  exports.Set("setThreadNice", Napi::Function::New(env, guarded<SetThreadNice>));
}

}  // namespace chimera::binding
