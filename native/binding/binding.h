// What every part of the Node-API layer shares: the native error boundary (guarded), typed-array and
// argument unwrapping with size checks, async calls on owned memory, and type-tagged handles. The binding is
// split by job: addon.cpp (module init and registration), kernels_api.cpp (kernels, threads, dispatch, probes),
// model_io.cpp (packed weights as bytes, memory maps), marian_api.cpp (the model description, state, steps).
#pragma once
#include <napi.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "chimera/cuda.h"
#include "chimera/kernels.h"
#include "chimera/layout.h"
#include "chimera/marian.h"
#include "chimera/thread_pool.h"

namespace chimera::binding {

// An error raised inside a binding function: a plain C++ exception that the boundary below (guarded) turns
// into a JavaScript Error with a `code`. No JS object is created while the function body runs, so a failure
// cannot depend on whether the environment can still run JavaScript.
struct NativeError {
  const char* code;
  std::string message;
};

[[noreturn]] inline void throw_code(Napi::Env, const char* code, const std::string& msg) { throw NativeError{code, msg}; }

// Throws a JS Error {message, code} with raw Node-API calls whose statuses are checked: never a C++ exception,
// and nothing at all when the environment is shutting down (a worker being terminated) or an exception is
// already pending.
inline void throw_js(napi_env env, const char* code, const std::string& msg) noexcept {
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
inline Napi::Value guarded(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  try {
    return F(info);
  } catch (const NativeError& e) {
    throw_js(env, e.code, e.message);
  } catch (const cuda::DeviceError& e) {  // a CUDA failure, or CUDA asked for where it is unavailable
    throw_js(env, "E_DEVICE", e.what());
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

inline size_t dim(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) throw_code(info.Env(), "E_ARG", std::string(name) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 1 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw_code(info.Env(), "E_ARG", std::string(name) + " must be a positive integer");
  return static_cast<size_t>(d);
}

inline bool flag(const Napi::CallbackInfo& info, size_t i) { return info[i].ToBoolean().Value(); }
// A number argument, NaN when it is not one: never coerced, since ToNumber could run user code (valueOf) that
// resizes or detaches a buffer already unwrapped.
inline double num(const Napi::CallbackInfo& info, size_t i) {
  return info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : std::nan("");
}

inline size_t checked_mul(Napi::Env env, size_t a, size_t b) {
  if (a != 0 && b > SIZE_MAX / a) throw_code(env, "E_SHAPE", "dimensions overflow");
  return a * b;
}

inline Activation activation(Napi::Env env, double code) {
  Activation a;
  if (!activation_from_code(code, &a)) throw_code(env, "E_ARG", "unknown activation");
  return a;
}

inline Activation activation(const Napi::CallbackInfo& info, size_t i) { return activation(info.Env(), num(info, i)); }

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
inline napi_value make_error(napi_env env, const char* code, const std::string& msg) noexcept {
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
    } catch (const cuda::DeviceError& e) {
      code_ = "E_DEVICE";
      SetError(e.what());
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
inline Napi::Value run(const Napi::CallbackInfo& info, std::unique_ptr<Owned> owned, std::function<void()> fn) {
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

inline const napi_type_tag kS8Tag = {0x6368696d65726131ULL, 0x7061636b65647338ULL};
inline const napi_type_tag kF32Tag = {0x6368696d65726131ULL, 0x7061636b65646633ULL};

template <typename T>
inline Napi::Value wrap(Napi::Env env, T* p, const napi_type_tag& tag) {
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
inline thread_local QScratch t_scratch;

// The largest single native allocation a call may ask for (a decoder state, an arena, a probe buffer): 64 GiB.
// Far above what a model needs (the TypeScript layer refuses decoder states past 2 GiB by default), it only
// stops a hostile or mistaken size before it reaches the allocator.
constexpr double kMaxNativeBytes = 64.0 * (1ull << 30);

// Argument readers shared by the CPU entry points (kernels_api.cpp) and their `device: 'cuda'` twins
// (cuda_api.cpp), so both check the same arguments the same way. Defined in kernels_api.cpp.
// norm(kind, x, residual, bias, gamma, beta, cols, eps, out, sumOut, qData, qScales, qSums, qStride)
NormArgs norm_args(const Napi::CallbackInfo& info);
// quantizeRows(x, rows, cols, data, scales, sums, stride)
struct QuantizeArgs {
  const float* x;
  size_t rows, cols, stride;
  int8_t* q;
  float* scales;
  int32_t* sums;
};
QuantizeArgs quantize_args(const Napi::CallbackInfo& info);
// decodeAttention(q, kv, rowOffsets, ldkv, vOff, lens, heads, hd, out): every row's key and value reads checked
// against kv's length; `bases` receives each row's first key row (the DecodeAttention points into it), kv/kv_len
// the whole buffer.
DecodeAttention decode_attention_args(const Napi::CallbackInfo& info, std::vector<const float*>& bases,
                                      const float** kv, size_t* kv_len);
// A packed weight handle (packInt8Weights / packFp32Weights / packFp16Weights) as a LinearW without bias, or
// false when v is not one.
bool packed_linear(napi_env env, const Napi::Value& v, LinearW* out);

// The parts of the binding, each registering its functions on the module's exports.
void register_kernels(Napi::Env env, Napi::Object exports);
void register_model_io(Napi::Env env, Napi::Object exports);
void register_marian(Napi::Env env, Napi::Object exports);
void register_cuda(Napi::Env env, Napi::Object exports);

}  // namespace chimera::binding
