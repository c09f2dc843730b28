// The Node-API module: initialisation (malloc tuning, the ISA from CHIMERA_ISA) and the registration of every
// part of the binding. Each part unwraps typed arrays (no copies), re-checks sizes so that a call that bypasses
// the TypeScript checks still cannot read or write out of bounds, and runs heavy calls either inline or on the
// libuv pool (returning a Promise) on memory it owns. See binding.h for what they share.
#include <napi.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "binding.h"

using namespace chimera;
using namespace chimera::binding;

namespace {

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
  register_kernels(env, exports);
  register_model_io(env, exports);
  register_marian(env, exports);
  register_cuda(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(chimera, Init)
