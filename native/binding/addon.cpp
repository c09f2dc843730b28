// The Node-API layer: unwraps typed arrays (no copies), re-checks sizes so that a call that bypasses the
// TypeScript checks still cannot read or write out of bounds, and runs heavy calls either inline or on the
// libuv pool (returning a Promise) while holding references to every array involved.
#include <napi.h>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define CHIMERA_HAVE_MMAP 1
#endif

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "chimera/kernels.h"
#include "chimera/marian.h"
#include "chimera/thread_pool.h"

using namespace chimera;

namespace {

// An error raised inside a binding function: a plain C++ exception that the boundary below (guarded) turns
// into a JavaScript Error with a `code`. No JS object is created while the function body runs, so a failure
// cannot depend on whether the environment can still run JavaScript.
struct NativeError {
  const char* code;
  std::string message;
};

[[noreturn]] void throw_code(Napi::Env, const char* code, const std::string& msg) { throw NativeError{code, msg}; }

// Throws a JS Error {message, code} with raw Node-API calls whose statuses are checked: never a C++ exception,
// and nothing at all when the environment is shutting down (a worker being terminated) or an exception is
// already pending.
void throw_js(napi_env env, const char* code, const std::string& msg) noexcept {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || pending) return;
  napi_value m = nullptr, c = nullptr, err = nullptr;
  if (napi_create_string_utf8(env, msg.data(), msg.size(), &m) != napi_ok) return;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) != napi_ok) return;
  if (napi_create_error(env, c, m, &err) != napi_ok) return;
  napi_throw(env, err);
}

// The native error boundary. Every exported function runs inside it, so no C++ exception ever reaches
// Node-API: NativeError keeps its code, std::bad_alloc becomes E_RANGE, any other exception E_NATIVE, and a
// Napi::Error (a JS exception met while reading arguments) is rethrown as it is when that is still possible.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  try {
    return F(info);
  } catch (const NativeError& e) {
    throw_js(env, e.code, e.message);
  } catch (const Napi::Error& e) {
    try {
      e.ThrowAsJavaScriptException();  // swallowed when unthrowable (NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS)
    } catch (...) {
      throw_js(env, "E_NATIVE", "a JavaScript exception could not be rethrown");
    }
  } catch (const std::bad_alloc&) {
    throw_js(env, "E_RANGE", "out of memory: the native layer could not allocate what this call needs");
  } catch (const std::exception& e) {
    throw_js(env, "E_NATIVE", std::string("native failure: ") + e.what());
  } catch (...) {
    throw_js(env, "E_NATIVE", "native failure: an unknown exception");
  }
  return Napi::Value();
}

template <typename T>
struct ArrayType;
template <> struct ArrayType<float> { static constexpr napi_typedarray_type value = napi_float32_array; static constexpr const char* name = "Float32Array"; };
template <> struct ArrayType<int8_t> { static constexpr napi_typedarray_type value = napi_int8_array; static constexpr const char* name = "Int8Array"; };
template <> struct ArrayType<uint8_t> { static constexpr napi_typedarray_type value = napi_uint8_array; static constexpr const char* name = "Uint8Array"; };
template <> struct ArrayType<uint16_t> { static constexpr napi_typedarray_type value = napi_uint16_array; static constexpr const char* name = "Uint16Array"; };
template <> struct ArrayType<int32_t> { static constexpr napi_typedarray_type value = napi_int32_array; static constexpr const char* name = "Int32Array"; };

// A typed array of element type T and at least `min_len` elements (exactly, when exact), or null if allowed.
template <typename T>
T* arr(const Napi::CallbackInfo& info, size_t i, const char* name, size_t len, bool nullable = false, bool exact = true,
       size_t* got_len = nullptr) {
  Napi::Env env = info.Env();
  const Napi::Value v = info[i];
  if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != ArrayType<T>::value)
    throw_code(env, "E_DTYPE", std::string(name) + " must be a " + ArrayType<T>::name);
  auto ta = v.As<Napi::TypedArrayOf<T>>();
  if (got_len) *got_len = ta.ElementLength();
  if ((exact && ta.ElementLength() != len) || ta.ElementLength() < len)
    throw_code(env, "E_SHAPE", std::string(name) + " has length " + std::to_string(ta.ElementLength()) + ", expected " +
                                   std::to_string(len));
  return ta.Data();
}

size_t dim(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) throw_code(info.Env(), "E_ARG", std::string(name) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 1 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw_code(info.Env(), "E_ARG", std::string(name) + " must be a positive integer");
  return static_cast<size_t>(d);
}

bool flag(const Napi::CallbackInfo& info, size_t i) { return info[i].ToBoolean().Value(); }
// A number argument, NaN when it is not one: never coerced, since ToNumber could run user code (valueOf) that
// resizes or detaches a buffer already unwrapped.
double num(const Napi::CallbackInfo& info, size_t i) {
  return info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : std::nan("");
}

size_t checked_mul(Napi::Env env, size_t a, size_t b) {
  if (a != 0 && b > SIZE_MAX / a) throw_code(env, "E_SHAPE", "dimensions overflow");
  return a * b;
}

Activation activation(const Napi::CallbackInfo& info, size_t i) {
  const double d = num(info, i);
  if (!(d >= 0 && d <= 4) || d != std::floor(d)) throw_code(info.Env(), "E_ARG", "unknown activation");
  const int a = static_cast<int>(d);
  return static_cast<Activation>(a);
}

// ---- async

// Memory an async call owns. Async entry points never run on the caller's arrays: JavaScript keeps running
// while the promise is pending, and it may resize a resizable ArrayBuffer, transfer (detach) a buffer and let
// the new owner be collected, or write into the inputs; a reference to the typed array keeps none of that
// memory alive. So the inputs are copied when the call is made, the result is computed into owned memory,
// and it is copied into `out` when the promise settles, on the JS thread, only if `out` still has the length
// it had at the call (otherwise the promise rejects with E_ARG and nothing is written).
struct Owned {
  struct Buf {
    void* p = nullptr;
    ~Buf() { if (p) free_aligned(p); }
  };
  std::vector<std::unique_ptr<Buf>> bufs;
  napi_ref out_ref = nullptr;  // the caller's out typed array
  void* out_copy = nullptr;    // the owned output
  size_t out_bytes = 0;

  void* alloc(size_t bytes) {
    auto b = std::make_unique<Buf>();
    b->p = alloc_aligned(std::max<size_t>(bytes, 64));
    void* p = b->p;
    bufs.push_back(std::move(b));
    return p;
  }
  template <typename T>
  const T* in(const T* src, size_t n) {
    if (!src) return nullptr;
    void* p = alloc(n * sizeof(T));
    std::memcpy(p, src, n * sizeof(T));
    return static_cast<const T*>(p);
  }
  // The output: its current contents are copied in too (sgemm's beta reads C).
  template <typename T>
  T* out(Napi::Env env, const Napi::Value& arr, T* dst, size_t n) {
    out_bytes = n * sizeof(T);
    out_copy = alloc(out_bytes);
    std::memcpy(out_copy, dst, out_bytes);
    if (napi_create_reference(env, arr, 1, &out_ref) != napi_ok) throw NativeError{"E_NATIVE", "cannot reference out"};
    return static_cast<T*>(out_copy);
  }
};

// A JS Error {message, code} as a value (nullptr when the environment cannot make one).
napi_value make_error(napi_env env, const char* code, const std::string& msg) noexcept {
  napi_value m = nullptr, c = nullptr, err = nullptr;
  if (napi_create_string_utf8(env, msg.data(), msg.size(), &m) != napi_ok) return nullptr;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) != napi_ok) return nullptr;
  if (napi_create_error(env, c, m, &err) != napi_ok) return nullptr;
  return err;
}

class Task : public Napi::AsyncWorker {
 public:
  Task(Napi::Env env, std::function<void()> fn, const Napi::CallbackInfo& info, std::unique_ptr<Owned> owned)
      : Napi::AsyncWorker(env, "chimera"),
        fn_(std::move(fn)),
        deferred_(env),
        pool_(current_pool()),
        owned_(std::move(owned)) {
    // handles (packed weights) stay alive while the call runs; arrays are not used in place (see Owned)
    for (size_t i = 0; i < info.Length(); ++i)
      if (info[i].IsExternal()) refs_.push_back(Napi::Persistent(info[i].ToObject()));
  }
  ~Task() override {
    if (owned_ && owned_->out_ref) napi_delete_reference(Env(), owned_->out_ref);
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    PoolScope scope(pool_);  // parallel regions use the issuing JS thread's pool, not one of the libuv thread's
    try {
      fn_();
    } catch (const NativeError& e) {
      code_ = e.code;
      SetError(e.message);
    } catch (const std::bad_alloc&) {
      code_ = "E_RANGE";
      SetError("out of memory: the native layer could not allocate what this call needs");
    } catch (const std::exception& e) {
      code_ = "E_NATIVE";
      SetError(std::string("native failure: ") + e.what());
    } catch (...) {
      code_ = "E_NATIVE";
      SetError("native failure: an unknown exception");
    }
  }
  void OnOK() override {
    napi_env env = Env();
    napi_value und = nullptr;
    napi_get_undefined(env, &und);
    if (owned_ && owned_->out_ref) {
      napi_value arr = nullptr;
      napi_typedarray_type type;
      size_t length = 0, offset = 0;
      void* data = nullptr;
      napi_value ab = nullptr;
      bool detached = true;
      if (napi_get_reference_value(env, owned_->out_ref, &arr) != napi_ok || arr == nullptr ||
          napi_get_typedarray_info(env, arr, &type, &length, &data, &ab, &offset) != napi_ok ||
          napi_is_detached_arraybuffer(env, ab, &detached) != napi_ok) {
        return;  // the environment is going away: nobody is waiting for this promise
      }
      size_t elem = 4;
      if (type == napi_int8_array || type == napi_uint8_array) elem = 1;
      if (detached || data == nullptr || length * elem != owned_->out_bytes) {
        napi_value err = make_error(env, "E_ARG",
            "out was detached, transferred or resized while the call was pending; nothing was written "
            "(do not resize or transfer the buffers of a pending async call)");
        if (err) napi_reject_deferred(env, deferred_.Get(), err);
        return;
      }
      std::memcpy(data, owned_->out_copy, owned_->out_bytes);
    }
    napi_resolve_deferred(env, deferred_.Get(), und);
  }
  void OnError(const Napi::Error&) override {
    napi_value err = make_error(Env(), code_, message_);
    if (err) napi_reject_deferred(Env(), deferred_.Get(), err);
  }
  void SetError(const std::string& m) {
    message_ = m;
    Napi::AsyncWorker::SetError(m);
  }

 private:
  std::function<void()> fn_;
  // a raw deferred, settled with napi_resolve_deferred / napi_reject_deferred (status-checked, never throws)
  struct DeferredBox {
    explicit DeferredBox(Napi::Env env) : env(env) {
      if (napi_create_promise(env, &d, &promise) != napi_ok) throw NativeError{"E_NATIVE", "cannot create a promise"};
    }
    Napi::Promise Promise() const { return Napi::Promise(env, promise); }
    napi_deferred Get() const { return d; }
    napi_env env;
    napi_deferred d = nullptr;
    napi_value promise = nullptr;
  };
  DeferredBox deferred_;
  std::vector<Napi::ObjectReference> refs_;
  std::shared_ptr<void> pool_;
  std::unique_ptr<Owned> owned_;
  const char* code_ = "E_NATIVE";
  std::string message_;
};

// Runs fn now (errors become JS exceptions through the boundary) or on the libuv pool on owned memory
// (errors reject the returned Promise).
Napi::Value run(const Napi::CallbackInfo& info, std::unique_ptr<Owned> owned, std::function<void()> fn) {
  if (!owned) {
    fn();
    return info.Env().Undefined();
  }
  auto* task = new Task(info.Env(), std::move(fn), info, std::move(owned));
  Napi::Promise p = task->promise();
  task->Queue();
  return p;
}

// ---- handles: type-tagged externals, so one kind of handle can never be read as another

const napi_type_tag kS8Tag = {0x6368696d65726131ULL, 0x7061636b65647338ULL};
const napi_type_tag kF32Tag = {0x6368696d65726131ULL, 0x7061636b65646633ULL};

template <typename T>
Napi::Value wrap(Napi::Env env, T* p, const napi_type_tag& tag) {
  auto ext = Napi::External<T>::New(env, p, [](Napi::Env e, T* q) {
    Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(q->bytes));
    delete q;
  });
  napi_type_tag_object(env, ext, &tag);
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(p->bytes));
  return ext;
}

template <typename T>
T* unwrap(const Napi::CallbackInfo& info, size_t i, const napi_type_tag& tag, const char* what) {
  bool ok = false;
  if (info[i].IsExternal()) napi_check_object_type_tag(info.Env(), info[i], &tag, &ok);
  if (!ok) throw_code(info.Env(), "E_ARG", std::string("expected a handle from ") + what);
  return info[i].As<Napi::External<T>>().Data();
}

// Per-thread buffers for activations quantised on the fly; they grow once and are reused.
struct QScratch {
  std::vector<int8_t> q;
  std::vector<float> scales;
  std::vector<int32_t> sums;
};
thread_local QScratch t_scratch;

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
  if (n > 256) throw_code(info.Env(), "E_ARG", "threads must be in 1..256");
  set_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), get_threads()); }

// norm(kind, x, residual, bias, gamma, beta, cols, eps, out, sumOut, qData, qScales, qSums, qStride)
Napi::Value Norm(const Napi::CallbackInfo& info) {
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
  if (!norm(a)) throw_code(env, "E_RANGE", "the normalised output holds NaN or Inf, so it cannot be quantised to int8");
  return env.Undefined();
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
  Napi::Env env = info.Env();
  const size_t rows = dim(info, 1, "rows"), cols = dim(info, 2, "cols"), stride = dim(info, 6, "stride");
  if (stride < cols || stride % 4) throw_code(env, "E_SHAPE", "stride must be cols rounded up to 4");
  const float* x = arr<float>(info, 0, "x", checked_mul(env, rows, cols));
  int8_t* q = arr<int8_t>(info, 3, "data", checked_mul(env, rows, stride));
  float* scales = arr<float>(info, 4, "scales", rows);
  int32_t* sums = arr<int32_t>(info, 5, "sums", rows);
  if (!quantize_rows(x, rows, cols, q, stride, scales, sums)) throw_code(env, "E_RANGE", "x holds NaN or Inf");
  return env.Undefined();
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

// ---- packed weights as bytes: writing a model file, and views into one read back in a single piece

// allocArena(bytes) -> ArrayBuffer over 64-byte aligned native memory
Napi::Value AllocArena(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double bytes = num(info, 0);
  if (!(bytes >= 1 && bytes <= 64.0 * (1ull << 30))) throw_code(env, "E_RANGE", "arena size out of range");
  void* p = alloc_aligned(static_cast<size_t>(bytes));
  return Napi::ArrayBuffer::New(env, p, static_cast<size_t>(bytes), [](Napi::Env, void* q) { free_aligned(q); });
}

// mapFile(path) -> ArrayBuffer over a private (copy-on-write) memory map of the file, or null where memory
// maps are unavailable. Pages load on first touch; the kernel is asked to read ahead now.
Napi::Value MapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef CHIMERA_HAVE_MMAP
  if (!info[0].IsString()) throw_code(env, "E_ARG", "path must be a string");
  const std::string path = info[0].As<Napi::String>();
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) throw_code(env, "E_MODEL", path + ": cannot open");
  struct stat sb;
  if (fstat(fd, &sb) != 0 || sb.st_size <= 0) {
    close(fd);
    throw_code(env, "E_MODEL", path + ": cannot stat, or empty");
  }
  const size_t size = static_cast<size_t>(sb.st_size);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return env.Null();
  madvise(p, size, MADV_WILLNEED);
  return Napi::ArrayBuffer::New(
      env, p, size, [](Napi::Env, void* q, size_t* len) { munmap(q, *len); delete len; }, new size_t(size));
#else
  return env.Null();
#endif
}

// packedInfo(h) -> {kind: 's8'|'f32'|'f16', n, k, bytes}
Napi::Value PackedInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  bool ok = false;
  if (info[0].IsExternal()) napi_check_object_type_tag(env, info[0], &kS8Tag, &ok);
  if (ok) {
    PackedS8* p = info[0].As<Napi::External<PackedS8>>().Data();
    o.Set("kind", "s8");
    o.Set("n", static_cast<double>(p->n));
    o.Set("k", static_cast<double>(p->k));
    o.Set("bytes", static_cast<double>(p->bytes));
    return o;
  }
  PackedF32* p = unwrap<PackedF32>(info, 0, kF32Tag, "a packer");
  o.Set("kind", p->half ? "f16" : "f32");
  o.Set("n", static_cast<double>(p->n));
  o.Set("k", static_cast<double>(p->k));
  o.Set("bytes", static_cast<double>(p->bytes));
  return o;
}

// packedCopy(h, dst Uint8Array [bytes], scales Float32Array [n] | null)
Napi::Value PackedCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool ok = false;
  if (info[0].IsExternal()) napi_check_object_type_tag(env, info[0], &kS8Tag, &ok);
  if (ok) {
    PackedS8* p = info[0].As<Napi::External<PackedS8>>().Data();
    std::memcpy(arr<uint8_t>(info, 1, "dst", p->bytes), p->data, p->bytes);
    std::memcpy(arr<float>(info, 2, "scales", p->n), p->scales, p->n * sizeof(float));
    return env.Undefined();
  }
  PackedF32* p = unwrap<PackedF32>(info, 0, kF32Tag, "a packer");
  std::memcpy(arr<uint8_t>(info, 1, "dst", p->bytes), p->half ? static_cast<void*>(p->half) : static_cast<void*>(p->data), p->bytes);
  return env.Undefined();
}

// packedView(kind, n, k, src Uint8Array (64-byte aligned, exactly the packed bytes), scales Float32Array | null)
// -> a handle that reads the caller's memory in place; the caller keeps that memory alive.
Napi::Value PackedView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_code(env, "E_ARG", "kind must be a string");
  const std::string kind = info[0].As<Napi::String>();
  const size_t n = dim(info, 1, "n"), k = dim(info, 2, "k");
  size_t len = 0;
  uint8_t* src = arr<uint8_t>(info, 3, "src", 0, false, false, &len);
  if (reinterpret_cast<uintptr_t>(src) % 64) throw_code(env, "E_MODEL", "packed weights must start at a 64-byte aligned offset");
  const size_t groups = (n + 63) / 64;
  if (kind == "s8") {
    const size_t kp = (k + 3) & ~size_t(3);
    if (len != groups * kp * 64) throw_code(env, "E_MODEL", "packed int8 weights have the wrong size");
    auto* p = new PackedS8();
    p->owned = false;
    p->n = n; p->k = k; p->kp = kp; p->groups = groups; p->bytes = len;
    p->data = src;
    p->scales = arr<float>(info, 4, "scales", n);
    return wrap(env, p, kS8Tag);
  }
  const size_t elem = kind == "f16" ? 2 : 4;
  if (kind != "f16" && kind != "f32") throw_code(env, "E_MODEL", "unknown packed kind " + kind);
  if (len != groups * 4 * k * 16 * elem) throw_code(env, "E_MODEL", "packed weights have the wrong size");
  auto* p = new PackedF32();
  p->owned = false;
  p->n = n; p->k = k; p->panels = groups * 4; p->bytes = len;
  if (elem == 2) p->half = reinterpret_cast<uint16_t*>(src); else p->data = reinterpret_cast<float*>(src);
  return wrap(env, p, kF32Tag);
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

// ---- Marian engine

const napi_type_tag kModelTag = {0x6368696d65726131ULL, 0x6d617269616e6d6fULL};
const napi_type_tag kStateTag = {0x6368696d65726131ULL, 0x6d617269616e7374ULL};

struct ModelBox {
  MarianModel m;
  Napi::ObjectReference desc;  // keeps every array and packed handle the model points into alive
  size_t bytes = 0;
};
struct StateBox {
  MarianState st;
  size_t bytes = 0;    // what AdjustExternalMemory was told
  size_t max_pos = 0;  // the model's max_position_embeddings, the bound on maxLen / maxSrc
};

Napi::Object obj(Napi::Env env, const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsObject()) throw_code(env, "E_ARG", std::string("model description lacks ") + key);
  return v.As<Napi::Object>();
}

const float* f32_field(Napi::Env env, const Napi::Object& o, const char* key, size_t len, bool nullable) {
  Napi::Value v = o.Get(key);
  if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_code(env, "E_ARG", std::string(key) + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != len)
    throw_code(env, "E_SHAPE", std::string(key) + " has length " + std::to_string(a.ElementLength()) + ", expected " + std::to_string(len));
  return a.Data();
}

// Caps on a model description, checked before anything is allocated (the TypeScript loaders check the same
// and more; these hold for any caller of the raw binding).
constexpr double kMaxDim = 65536;           // d, heads, FFN width
constexpr double kMaxVocab = 4194304;       // 2^22 tokens
constexpr double kMaxPositions = 65536;     // max_position_embeddings
constexpr double kMaxPositionFloats = 268435456;  // the sinusoid table: 1 GiB of fp32 at most
constexpr uint32_t kMaxLayers = 1024;

size_t num_field(Napi::Env env, const Napi::Object& o, const char* key, double cap = kMaxDim) {
  Napi::Value v = o.Get(key);
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
  if (!(d >= 1 && d <= cap) || d != std::floor(d))
    throw_code(env, "E_ARG", std::string(key) + " must be an integer in 1.." + std::to_string(static_cast<int64_t>(cap)));
  return static_cast<size_t>(d);
}

LinearW linear_field(Napi::Env env, const Napi::Object& parent, const char* key, size_t n, size_t k) {
  Napi::Object o = obj(env, parent, key);
  Napi::Value w = o.Get("w");
  LinearW l;
  bool ok = false;
  if (w.IsExternal()) {
    napi_check_object_type_tag(env, w, &kS8Tag, &ok);
    if (ok) l.s8 = w.As<Napi::External<PackedS8>>().Data();
    else {
      napi_check_object_type_tag(env, w, &kF32Tag, &ok);
      if (ok) l.f32 = w.As<Napi::External<PackedF32>>().Data();
    }
  }
  if (!ok) throw_code(env, "E_ARG", std::string(key) + ".w must be a packed weight handle");
  const size_t pn = l.s8 ? l.s8->n : l.f32->n, pk = l.s8 ? l.s8->k : l.f32->k;
  if (pn != n || pk != k)
    throw_code(env, "E_SHAPE", std::string(key) + " is " + std::to_string(pn) + "x" + std::to_string(pk) + ", expected " +
                                   std::to_string(n) + "x" + std::to_string(k));
  l.n = n;
  l.k = k;
  l.bias = f32_field(env, o, "bias", n, true);
  return l;
}

NormW norm_field(Napi::Env env, const Napi::Object& parent, const char* key, size_t d) {
  Napi::Object o = obj(env, parent, key);
  NormW n;
  n.gamma = f32_field(env, o, "gamma", d, false);
  n.beta = f32_field(env, o, "beta", d, true);
  return n;
}

// The FFN width of a layer, read off its fc1 bias.
size_t ffn_width(Napi::Env env, const Napi::Object& layer) {
  Napi::Value b = obj(env, layer, "fc1").Get("bias");
  if (!b.IsTypedArray() || b.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || b.As<Napi::TypedArray>().ElementLength() == 0 ||
      b.As<Napi::TypedArray>().ElementLength() > kMaxDim * 8)
    throw_code(env, "E_ARG", "fc1 needs a Float32Array bias");
  return b.As<Napi::TypedArray>().ElementLength();
}

Napi::Value MarianCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw_code(env, "E_ARG", "expected a model description");
  Napi::Object o = info[0].As<Napi::Object>();
  auto box = std::make_unique<ModelBox>();
  MarianModel& m = box->m;
  m.dims.d = num_field(env, o, "d");
  m.dims.heads = num_field(env, o, "heads");
  m.dims.vocab = num_field(env, o, "vocab", kMaxVocab);
  m.dims.max_pos = num_field(env, o, "maxPos", kMaxPositions);
  if (static_cast<double>(m.dims.max_pos) * static_cast<double>(m.dims.d) > kMaxPositionFloats)
    throw_code(env, "E_ARG", "maxPos x d is too large for a position table");
  Napi::Value es = o.Get("embedScale");
  if (!es.IsNumber() || !std::isfinite(es.As<Napi::Number>().DoubleValue()))
    throw_code(env, "E_ARG", "embedScale must be a finite number");
  m.dims.embed_scale = static_cast<float>(es.As<Napi::Number>().DoubleValue());
  Napi::Value av = o.Get("act");
  const double actd = av.IsNumber() ? av.As<Napi::Number>().DoubleValue() : -1;
  if (!(actd >= 0 && actd <= 4) || actd != std::floor(actd)) throw_code(env, "E_ARG", "unknown activation");
  m.dims.act = static_cast<Activation>(static_cast<int>(actd));
  const size_t d = m.dims.d;
  if (d % m.dims.heads || d % 2) throw_code(env, "E_SHAPE", "d must be even and divisible by heads");
  Napi::Value eh = o.Get("embedHalf");
  if (eh.IsTypedArray() && eh.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array) {
    auto a = eh.As<Napi::Uint16Array>();
    if (a.ElementLength() != m.dims.vocab * d) throw_code(env, "E_SHAPE", "embedHalf has the wrong length");
    m.embed_half = a.Data();
  } else {
    m.embed = f32_field(env, o, "embed", checked_mul(env, m.dims.vocab, d), false);
  }
  m.lm_head = linear_field(env, o, "lmHead", m.dims.vocab, d);
  Napi::Value enc = o.Get("encoder"), dec = o.Get("decoder");
  if (!enc.IsArray() || !dec.IsArray()) throw_code(env, "E_ARG", "encoder and decoder must be arrays of layers");
  auto ea = enc.As<Napi::Array>(), da = dec.As<Napi::Array>();
  if (ea.Length() > kMaxLayers || da.Length() > kMaxLayers) throw_code(env, "E_ARG", "too many layers");
  auto layer = [&](Napi::Array a, uint32_t i) {
    Napi::Value v = a.Get(i);
    if (!v.IsObject()) throw_code(env, "E_ARG", "each layer must be an object");
    return v.As<Napi::Object>();
  };
  for (uint32_t i = 0; i < ea.Length(); ++i) {
    Napi::Object l = layer(ea, i);
    EncoderLayer e;
    e.qkv = linear_field(env, l, "qkv", 3 * d, d);
    e.out = linear_field(env, l, "out", d, d);
    e.ln_attn = norm_field(env, l, "lnAttn", d);
    const size_t ffn = ffn_width(env, l);
    e.fc1 = linear_field(env, l, "fc1", ffn, d);
    e.fc2 = linear_field(env, l, "fc2", d, ffn);
    e.ln_ffn = norm_field(env, l, "lnFfn", d);
    m.encoder.push_back(e);
  }
  for (uint32_t i = 0; i < da.Length(); ++i) {
    Napi::Object l = layer(da, i);
    DecoderLayer e;
    e.qkv = linear_field(env, l, "qkv", 3 * d, d);
    e.out = linear_field(env, l, "out", d, d);
    e.ln_self = norm_field(env, l, "lnSelf", d);
    e.cross_q = linear_field(env, l, "crossQ", d, d);
    e.cross_kv = linear_field(env, l, "crossKv", 2 * d, d);
    e.cross_out = linear_field(env, l, "crossOut", d, d);
    e.ln_cross = norm_field(env, l, "lnCross", d);
    const size_t ffn = ffn_width(env, l);
    e.fc1 = linear_field(env, l, "fc1", ffn, d);
    e.fc2 = linear_field(env, l, "fc2", d, ffn);
    e.ln_ffn = norm_field(env, l, "lnFfn", d);
    m.decoder.push_back(e);
  }
  if (m.encoder.empty() || m.decoder.empty()) throw_code(env, "E_SHAPE", "the model needs encoder and decoder layers");
  marian_fill_positions(m);
  box->desc = Napi::Persistent(o);
  ModelBox* raw = box.release();
  auto ext = Napi::External<ModelBox>::New(env, raw, [](Napi::Env, ModelBox* b) { delete b; });
  napi_type_tag_object(env, ext, &kModelTag);
  return ext;
}

constexpr double kMaxStateBytes = 64.0 * (1ull << 30);  // the largest decoder state one handle may hold
double state_bytes(size_t d, size_t layers, size_t slots, size_t max_len, size_t sources, size_t max_src);

// marianState(model, slots, maxLen, sources, maxSrc)
Napi::Value MarianStateNew(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelBox* mb = unwrap<ModelBox>(info, 0, kModelTag, "marianCreate");
  auto sb = std::make_unique<StateBox>();
  MarianState& st = sb->st;
  st.layers = mb->m.decoder.size();
  st.d = mb->m.dims.d;
  st.slots = dim(info, 1, "slots");
  st.max_len = dim(info, 2, "maxLen");
  st.sources = dim(info, 3, "sources");
  st.max_src = dim(info, 4, "maxSrc");
  if (st.max_len > mb->m.dims.max_pos || st.max_src > mb->m.dims.max_pos)
    throw_code(env, "E_RANGE", "maxLen and maxSrc cannot exceed the model's max_position_embeddings (" +
                                   std::to_string(mb->m.dims.max_pos) + ")");
  if (state_bytes(st.d, st.layers, st.slots, st.max_len, st.sources, st.max_src) > kMaxStateBytes)
    throw_code(env, "E_RANGE", "decoder state would need more than 64 GiB");
  sb->max_pos = mb->m.dims.max_pos;
  st.self_kv.assign(st.slots * st.layers * st.max_len * 2 * st.d, 0.0f);
  st.cross_kv.assign(st.sources * st.layers * st.max_src * 2 * st.d, 0.0f);
  st.src_len.assign(st.sources, 0);
  sb->bytes = st.bytes();
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(sb->bytes));
  StateBox* raw = sb.release();
  auto ext = Napi::External<StateBox>::New(env, raw, [](Napi::Env e, StateBox* b) {
    Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(b->bytes));
    delete b;
  });
  napi_type_tag_object(env, ext, &kStateTag);
  return ext;
}

// marianEncode(model, state, ids Int32Array [batch*s], lens Int32Array [batch], s, srcSlots Int32Array [batch], encOut|null)
Napi::Value MarianEncode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelBox* mb = unwrap<ModelBox>(info, 0, kModelTag, "marianCreate");
  StateBox* sb = unwrap<StateBox>(info, 1, kStateTag, "marianState");
  const size_t s = dim(info, 4, "s");
  size_t batch = 0;
  const int32_t* lens = arr<int32_t>(info, 3, "lens", 0, false, false, &batch);
  if (batch == 0) throw_code(env, "E_SHAPE", "empty batch");
  const int32_t* ids = arr<int32_t>(info, 2, "ids", checked_mul(env, batch, s));
  const int32_t* slots = arr<int32_t>(info, 5, "srcSlots", batch);
  float* enc_out = arr<float>(info, 6, "encOut", checked_mul(env, batch * s, mb->m.dims.d), true);
  float* taps = arr<float>(info, 7, "taps", checked_mul(env, mb->m.encoder.size() * 2 * batch * s, mb->m.dims.d), true);
  const MarianState& st = sb->st;
  if (s > st.max_src) throw_code(env, "E_INPUT", "source length " + std::to_string(s) + " exceeds the state's maxSrc " + std::to_string(st.max_src));
  for (size_t b = 0; b < batch; ++b) {
    if (lens[b] < 1 || static_cast<size_t>(lens[b]) > s) throw_code(env, "E_INPUT", "source lengths must be in 1..s");
    if (slots[b] < 0 || static_cast<size_t>(slots[b]) >= st.sources) throw_code(env, "E_RANGE", "source slot out of range");
  }
  for (size_t i = 0; i < batch * s; ++i)
    if (ids[i] < 0 || static_cast<size_t>(ids[i]) >= mb->m.dims.vocab)
      throw_code(env, "E_INPUT", "token id " + std::to_string(ids[i]) + " is outside the vocabulary (0.." + std::to_string(mb->m.dims.vocab - 1) + ")");
  marian_encode(mb->m, sb->st, ids, lens, batch, s, slots, enc_out, taps);
  return env.Undefined();
}

// marianStep(model, state, tokens, slots, pos, srcs, logits, hidden|null)
Napi::Value MarianStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelBox* mb = unwrap<ModelBox>(info, 0, kModelTag, "marianCreate");
  StateBox* sb = unwrap<StateBox>(info, 1, kStateTag, "marianState");
  size_t rows = 0;
  const int32_t* tok = arr<int32_t>(info, 2, "tokens", 0, false, false, &rows);
  if (rows == 0) throw_code(env, "E_SHAPE", "no rows to step");
  const int32_t* slot = arr<int32_t>(info, 3, "slots", rows);
  const int32_t* pos = arr<int32_t>(info, 4, "positions", rows);
  const int32_t* src = arr<int32_t>(info, 5, "sources", rows);
  float* logits = arr<float>(info, 6, "logits", checked_mul(env, rows, mb->m.dims.vocab));
  float* hidden = arr<float>(info, 7, "hidden", checked_mul(env, rows, mb->m.dims.d), true);
  float* taps = arr<float>(info, 8, "taps", checked_mul(env, mb->m.decoder.size() * 3 * rows, mb->m.dims.d), true);
  const MarianState& st = sb->st;
  for (size_t r = 0; r < rows; ++r) {
    if (tok[r] < 0 || static_cast<size_t>(tok[r]) >= mb->m.dims.vocab) throw_code(env, "E_INPUT", "token id out of range");
    if (slot[r] < 0 || static_cast<size_t>(slot[r]) >= st.slots) throw_code(env, "E_RANGE", "slot out of range");
    if (pos[r] < 0 || static_cast<size_t>(pos[r]) >= st.max_len) throw_code(env, "E_RANGE", "position past the state's maxLen");
    if (src[r] < 0 || static_cast<size_t>(src[r]) >= st.sources || st.src_len[static_cast<size_t>(src[r])] <= 0)
      throw_code(env, "E_RANGE", "source slot out of range or not encoded");
  }
  marian_step(mb->m, sb->st, tok, slot, pos, src, rows, logits, hidden, taps);
  return env.Undefined();
}

// marianCopySlot(state, from, to, len)
Napi::Value MarianCopySlot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  StateBox* sb = unwrap<StateBox>(info, 0, kStateTag, "marianState");
  const double from = num(info, 1), to = num(info, 2), len = num(info, 3);
  const MarianState& st = sb->st;
  if (!(from >= 0 && from < st.slots && to >= 0 && to < st.slots && len >= 0 && len <= st.max_len))
    throw_code(env, "E_RANGE", "copySlot arguments out of range");
  marian_copy_slot(sb->st, static_cast<size_t>(from), static_cast<size_t>(to), static_cast<size_t>(len));
  return env.Undefined();
}

double state_bytes(size_t d, size_t layers, size_t slots, size_t max_len, size_t sources, size_t max_src) {
  return 2.0 * static_cast<double>(d) * static_cast<double>(layers) *
         (static_cast<double>(slots) * static_cast<double>(max_len) + static_cast<double>(sources) * static_cast<double>(max_src)) *
         sizeof(float);
}

// marianStateResize(state, slots, maxLen, sources, maxSrc): in place; the handle stays valid.
Napi::Value MarianStateResize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  StateBox* sb = unwrap<StateBox>(info, 0, kStateTag, "marianState");
  MarianState& st = sb->st;
  const size_t slots = dim(info, 1, "slots"), max_len = dim(info, 2, "maxLen");
  const size_t sources = dim(info, 3, "sources"), max_src = dim(info, 4, "maxSrc");
  if (max_len > sb->max_pos || max_src > sb->max_pos)
    throw_code(env, "E_RANGE", "maxLen and maxSrc cannot exceed the model's max_position_embeddings (" + std::to_string(sb->max_pos) + ")");
  for (size_t s = 0; s < std::min(sources, st.sources); ++s)
    if (static_cast<size_t>(st.src_len[s]) > max_src)
      throw_code(env, "E_RANGE", "source slot " + std::to_string(s) + " holds " + std::to_string(st.src_len[s]) +
                                     " positions, more than maxSrc " + std::to_string(max_src) + "; release it first");
  if (state_bytes(st.d, st.layers, slots, max_len, sources, max_src) > kMaxStateBytes)
    throw_code(env, "E_RANGE", "decoder state would need more than 64 GiB");
  try {
    marian_state_resize(st, slots, max_len, sources, max_src);
  } catch (const std::bad_alloc&) {
    throw_code(env, "E_RANGE", "out of memory for a decoder state of that size (the old state is kept)");
  }
  const size_t bytes = st.bytes();
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes) - static_cast<int64_t>(sb->bytes));
  sb->bytes = bytes;
  return env.Undefined();
}

// marianStateInfo(state) -> { slots, maxLen, sources, maxSrc, bytes }
Napi::Value MarianStateInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const MarianState& st = unwrap<StateBox>(info, 0, kStateTag, "marianState")->st;
  Napi::Object o = Napi::Object::New(env);
  o.Set("slots", static_cast<double>(st.slots));
  o.Set("maxLen", static_cast<double>(st.max_len));
  o.Set("sources", static_cast<double>(st.sources));
  o.Set("maxSrc", static_cast<double>(st.max_src));
  o.Set("bytes", static_cast<double>(st.bytes()));
  return o;
}

// marianReleaseSource(state, src): marks the source slot as not encoded, so no step can attend to it.
Napi::Value MarianReleaseSource(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MarianState& st = unwrap<StateBox>(info, 0, kStateTag, "marianState")->st;
  if (!info[1].IsNumber()) throw_code(env, "E_ARG", "src must be a number");
  const double src = info[1].As<Napi::Number>().DoubleValue();
  if (!(src >= 0 && src < static_cast<double>(st.sources)) || src != std::floor(src))
    throw_code(env, "E_RANGE", "source slot out of range");
  st.src_len[static_cast<size_t>(src)] = 0;
  return env.Undefined();
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

// decodeAttention(q [rows, heads*hd], kv, rowOffsets Int32Array [rows], ldkv, vOff, lens Int32Array [rows], heads, hd, out [rows, heads*hd])
Napi::Value DecodeAttentionFn(const Napi::CallbackInfo& info) {
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
  decode_attention(a, rows);
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
  if (!(bytes >= 4096 && bytes <= 64.0 * (1ull << 30))) throw_code(env, "E_RANGE", "bytes must be in 4096..64 GiB");
  if (!(ms >= 1 && ms <= 10000)) throw_code(env, "E_RANGE", "ms must be in 1..10000");
  if (!(threads >= 1 && threads <= 256 && threads == static_cast<int>(threads))) throw_code(env, "E_RANGE", "threads must be an integer in 1..256");
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#if defined(__GLIBC__)
  // Fix glibc's mmap threshold at its default (128 KiB) instead of letting it rise after the first large free
  // (up to 32 MiB). Risen, every weight and activation buffer of a model loaded in a worker thread came from
  // that thread's malloc arena, whose freed space stayed resident after the worker exited: each
  // load -> translate -> close cycle of a Translator grew the process by ~1.5 MB (test/leak.test.ts).
  static const bool malloc_tuned = mallopt(M_MMAP_THRESHOLD, 128 * 1024) != 0;
  (void)malloc_tuned;
#endif
  const char* err = init_isa_from_env();
  if (*err) {  // module init is outside guarded(): a Napi::Error is what node-addon-api's init wrapper takes
    Napi::Error e = Napi::Error::New(env, err);
    e.Set("code", Napi::String::New(env, "E_ISA"));
    throw e;
  }
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
  exports.Set("allocArena", Napi::Function::New(env, guarded<AllocArena>));
  exports.Set("mapFile", Napi::Function::New(env, guarded<MapFile>));
  exports.Set("toHalf", Napi::Function::New(env, guarded<ToHalf>));
  exports.Set("logSoftmax", Napi::Function::New(env, guarded<LogSoftmax>));
  exports.Set("packedInfo", Napi::Function::New(env, guarded<PackedInfo>));
  exports.Set("packedCopy", Napi::Function::New(env, guarded<PackedCopy>));
  exports.Set("packedView", Napi::Function::New(env, guarded<PackedView>));
  exports.Set("marianCreate", Napi::Function::New(env, guarded<MarianCreate>));
  exports.Set("marianState", Napi::Function::New(env, guarded<MarianStateNew>));
  exports.Set("marianEncode", Napi::Function::New(env, guarded<MarianEncode>));
  exports.Set("marianStep", Napi::Function::New(env, guarded<MarianStep>));
  exports.Set("marianCopySlot", Napi::Function::New(env, guarded<MarianCopySlot>));
  exports.Set("marianStateResize", Napi::Function::New(env, guarded<MarianStateResize>));
  exports.Set("marianStateInfo", Napi::Function::New(env, guarded<MarianStateInfo>));
  exports.Set("marianReleaseSource", Napi::Function::New(env, guarded<MarianReleaseSource>));
  exports.Set("topkRows", Napi::Function::New(env, guarded<TopkRows>));
  exports.Set("decodeAttention", Napi::Function::New(env, guarded<DecodeAttentionFn>));
  exports.Set("peakProbe", Napi::Function::New(env, guarded<PeakProbe>));
  exports.Set("bandwidthProbe", Napi::Function::New(env, guarded<BandwidthProbe>));
  exports.Set("setThreadNice", Napi::Function::New(env, guarded<SetThreadNice>));
  return exports;
}

}  // namespace

NODE_API_MODULE(chimera, Init)
