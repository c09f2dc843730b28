// Packed weights as bytes: an aligned arena for writing a model file, a memory map for reading one, and
// handles that read packed weights in place (their sizes from chimera/layout.h, as the packers compute them).
#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define CHIMERA_HAVE_MMAP 1
#endif

#include "binding.h"

namespace chimera::binding {
namespace {

// ---- packed weights as bytes: writing a model file, and views into one read back in a single piece

// allocArena(bytes) -> ArrayBuffer over 64-byte aligned native memory
Napi::Value AllocArena(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double bytes = num(info, 0);
  if (!(bytes >= 1 && bytes <= kMaxNativeBytes)) throw_code(env, "E_RANGE", "arena size out of range");
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
  const size_t groups = packed_groups(n);
  if (kind == "s8") {
    const size_t kp = packed_s8_kp(k);
    if (len != packed_s8_bytes(n, k)) throw_code(env, "E_MODEL", "packed int8 weights have the wrong size");
    auto* p = new PackedS8();
    p->owned = false;
    p->n = n; p->k = k; p->kp = kp; p->groups = groups; p->bytes = len;
    p->data = src;
    p->scales = arr<float>(info, 4, "scales", n);
    return wrap(env, p, kS8Tag);
  }
  const size_t elem = kind == "f16" ? 2 : 4;
  if (kind != "f16" && kind != "f32") throw_code(env, "E_MODEL", "unknown packed kind " + kind);
  if (len != packed_f32_bytes(n, k, elem)) throw_code(env, "E_MODEL", "packed weights have the wrong size");
  auto* p = new PackedF32();
  p->owned = false;
  p->n = n; p->k = k; p->panels = packed_f32_panels(n); p->bytes = len;
  if (elem == 2) p->half = reinterpret_cast<uint16_t*>(src); else p->data = reinterpret_cast<float*>(src);
  return wrap(env, p, kF32Tag);
}

}  // namespace

void register_model_io(Napi::Env env, Napi::Object exports) {
  exports.Set("allocArena", Napi::Function::New(env, guarded<AllocArena>));
  exports.Set("mapFile", Napi::Function::New(env, guarded<MapFile>));
  exports.Set("packedInfo", Napi::Function::New(env, guarded<PackedInfo>));
  exports.Set("packedCopy", Napi::Function::New(env, guarded<PackedCopy>));
  exports.Set("packedView", Napi::Function::New(env, guarded<PackedView>));
}

}  // namespace chimera::binding
