// The CUDA backend's runtime side (cuda.h): the probe, device memory, weights made resident, the kernels on host
// memory (copy in, run, copy out, synchronise) and the device-resident timing that bench/cuda uses.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "common.cuh"

#if defined(__linux__)
#include <dlfcn.h>
#endif

namespace chimera::cuda {

void fail(cudaError_t e, const char* what) {
  cudaGetLastError();  // clear a non-sticky error so that the next call starts clean
  throw DeviceError(std::string(what) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

namespace {

// What the kernels need: mma.sync m16n8k32 s8, cp.async (sm_80) and the SASS this build carries.
constexpr int kMinMajor = 8;

Info probe() noexcept {
  Info i;
  i.compiled = true;
  try {
    int n = 0;
    // The first CUDA call: the static runtime looks for libcuda.so.1 here, so a machine without a driver
    // answers with an error instead of failing to load the addon.
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      cudaGetLastError();
      i.reason = std::string("no usable NVIDIA driver or GPU: cudaGetDeviceCount returned ") + cudaGetErrorName(e) +
                 " (" + cudaGetErrorString(e) + ")";
#if defined(__linux__)
      // The runtime says "insufficient driver" both for an old driver and for none at all: tell them apart.
      if (void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL)) {
        dlclose(h);
        int drv = 0, rt = 0;
        cudaDriverGetVersion(&drv);
        cudaRuntimeGetVersion(&rt);
        i.reason += "; driver supports CUDA " + std::to_string(drv / 1000) + "." + std::to_string(drv % 1000 / 10) +
                    ", this build needs " + std::to_string(rt / 1000) + "." + std::to_string(rt % 1000 / 10);
      } else {
        i.reason = "no NVIDIA driver: libcuda.so.1 could not be loaded (this build has the CUDA kernels; a machine "
                   "with an NVIDIA GPU and driver runs them)";
      }
#endif
      return i;
    }
    if (n <= 0) {
      i.reason = "the NVIDIA driver reports no CUDA device (check CUDA_VISIBLE_DEVICES)";
      return i;
    }
    for (int d = 0; d < n; ++d) {
      cudaDeviceProp p;
      if (cudaGetDeviceProperties(&p, d) != cudaSuccess) {
        cudaGetLastError();
        continue;
      }
      DeviceInfo di;
      di.name = p.name;
      di.major = p.major;
      di.minor = p.minor;
      di.memory_bytes = p.totalGlobalMem;
      i.devices.push_back(di);
    }
    if (i.devices.empty()) {
      i.reason = "cudaGetDeviceProperties failed for every device";
      return i;
    }
    if (i.devices[0].major < kMinMajor) {
      i.reason = "device 0 (" + i.devices[0].name + ") has compute capability " + std::to_string(i.devices[0].major) +
                 "." + std::to_string(i.devices[0].minor) + "; chimera's CUDA kernels need 8.0 or newer";
      return i;
    }
    i.available = true;
  } catch (const std::exception& e) {
    i.reason = std::string("CUDA probe failed: ") + e.what();
  } catch (...) {
    i.reason = "CUDA probe failed";
  }
  return i;
}

cudaStream_t host_stream() { return cudaStreamPerThread; }

void up(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync (to device)");
}
void down(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (to host)");
}
void sync(cudaStream_t s) { check(cudaStreamSynchronize(s), "cudaStreamSynchronize"); }

// An optional input copied to the device: null stays null.
template <typename T>
T* opt_in(Buf& b, const T* src, size_t n, cudaStream_t s) {
  if (!src) return nullptr;
  b.alloc_bytes(n * sizeof(T));
  up(b.p, src, n * sizeof(T), s);
  return b.as<T>();
}

// Median seconds per launch of fn over iters launches (one warm-up), each bracketed by CUDA events.
template <typename F>
double median_seconds(int iters, cudaStream_t s, F fn) {
  if (iters < 1) iters = 1;
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  std::vector<double> t;
  try {
    fn();
    sync(s);
    for (int i = 0; i < iters; ++i) {
      check(cudaEventRecord(a, s), "cudaEventRecord");
      fn();
      check(cudaEventRecord(b, s), "cudaEventRecord");
      check(cudaEventSynchronize(b), "cudaEventSynchronize");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
      t.push_back(ms * 1e-3);
    }
  } catch (...) {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    throw;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Deterministic fill for the timing buffers (values only matter for not being denormal / NaN).
__global__ void fill_kernel(float* p, size_t n, float scale) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = scale * static_cast<float>(static_cast<int>((i * 2654435761u) % 2001) - 1000) / 1000.0f;
}
__global__ void fill_s8_kernel(int8_t* p, size_t n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = static_cast<int8_t>(static_cast<int>((i * 2654435761u) % 255) - 127);
}
void fill(float* p, size_t n, float scale, cudaStream_t s) {
  fill_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, s>>>(p, n, scale);
  check_launch("fill kernel");
}
void fill_s8(int8_t* p, size_t n, cudaStream_t s) {
  fill_s8_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, s>>>(p, n);
  check_launch("fill kernel");
}

}  // namespace

const Info& info() noexcept {
  static const Info i = probe();
  return i;
}

void require() {
  const Info& i = info();
  if (!i.available) throw DeviceError("CUDA is unavailable: " + i.reason);
}

// ---- device memory

void* alloc(size_t bytes) {
  require();
  void* p = nullptr;
  check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc");
  return p;
}
void release(void* p) noexcept {
  if (p) cudaFree(p);
}
void upload(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (to device)");
}
void download(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (to host)");
}
void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

// ---- weights

Linear* upload_linear(const LinearW& w) {
  require();
  auto* l = new Linear();
  try {
    l->n = w.n;
    l->k = w.k;
    if (w.s8) {
      l->tier = Tier::S8;
      l->kp = s8_kp(w.k);
      // the CPU layout (u8 = s8 + 128, 64-channel groups) back to s8 rows, zero padded to kp (device.h)
      std::vector<int8_t> flat(w.n * w.k), rows(w.n * l->kp, 0);
      unpack_s8(*w.s8, flat.data());
      for (size_t c = 0; c < w.n; ++c) std::memcpy(rows.data() + c * l->kp, flat.data() + c * w.k, w.k);
      check(cudaMalloc(&l->w, rows.size()), "cudaMalloc");
      upload(l->w, rows.data(), rows.size());
      check(cudaMalloc(reinterpret_cast<void**>(&l->scales), w.n * sizeof(float)), "cudaMalloc");
      upload(l->scales, w.s8->scales, w.n * sizeof(float));
      l->bytes = rows.size() + w.n * sizeof(float);
    } else if (w.f32) {
      // the CPU's 64-column panels ([group][k][64]) back to rows [n][k]
      const PackedF32& p = *w.f32;
      const size_t elem = p.half ? sizeof(uint16_t) : sizeof(float);
      l->tier = p.half ? Tier::F16 : Tier::F32;
      std::vector<unsigned char> rows(w.n * w.k * elem);
      for (size_t c = 0; c < w.n; ++c)
        for (size_t j = 0; j < w.k; ++j) {
          const size_t src = (c / 64) * w.k * 64 + j * 64 + c % 64;
          if (p.half)
            std::memcpy(rows.data() + (c * w.k + j) * elem, p.half + src, elem);
          else
            std::memcpy(rows.data() + (c * w.k + j) * elem, p.data + src, elem);
        }
      check(cudaMalloc(&l->w, rows.size()), "cudaMalloc");
      upload(l->w, rows.data(), rows.size());
      l->bytes = rows.size();
    } else {
      throw DeviceError("upload_linear: the layer has no weights");
    }
    if (w.bias) {
      check(cudaMalloc(reinterpret_cast<void**>(&l->bias), w.n * sizeof(float)), "cudaMalloc");
      upload(l->bias, w.bias, w.n * sizeof(float));
      l->bytes += w.n * sizeof(float);
    }
  } catch (...) {
    free_linear(l);
    throw;
  }
  return l;
}

void free_linear(Linear* w) noexcept {
  if (!w) return;
  release(w->w);
  release(w->scales);
  release(w->bias);
  delete w;
}

size_t linear_bytes(const Linear& w) noexcept { return w.bytes; }

// ---- kernels on host memory

bool norm(const NormArgs& a, bool reference) {
  require();
  const cudaStream_t s = host_stream();
  const size_t n = a.rows * a.cols;
  Buf bx, bres, bbias, bgamma, bbeta, bout(n * sizeof(float)), bsum, bq, bqs, bqsum, bbad(sizeof(int));
  NormArgs d = a;
  d.x = opt_in(bx, a.x, n, s);
  d.residual = opt_in(bres, a.residual, n, s);
  d.bias = opt_in(bbias, a.bias, a.cols, s);
  d.gamma = opt_in(bgamma, a.gamma, a.cols, s);
  d.beta = opt_in(bbeta, a.beta, a.cols, s);
  d.out = bout.as<float>();
  if (a.sum_out) {
    bsum.alloc_bytes(n * sizeof(float));
    d.sum_out = bsum.as<float>();
  }
  if (a.q) {
    // the current contents go in too: a row the quantisation refuses (NaN / Inf) is left as it was, as on the CPU
    d.q = opt_in(bq, a.q, a.rows * a.q_stride, s);
    d.q_scales = opt_in(bqs, a.q_scales, a.rows, s);
    d.q_sums = opt_in(bqsum, a.q_sums, a.rows, s);
  }
  check(cudaMemsetAsync(bbad.p, 0, sizeof(int), s), "cudaMemsetAsync");
  launch_norm(d, bbad.as<int>(), reference, s);
  int bad = 0;
  down(a.out, d.out, n * sizeof(float), s);
  if (a.sum_out) down(a.sum_out, d.sum_out, n * sizeof(float), s);
  if (a.q) {
    down(a.q, d.q, a.rows * a.q_stride, s);
    down(a.q_scales, d.q_scales, a.rows * sizeof(float), s);
    down(a.q_sums, d.q_sums, a.rows * sizeof(int32_t), s);
  }
  down(&bad, bbad.p, sizeof(int), s);
  sync(s);
  return bad == 0;
}

bool quantize_rows(const float* x, size_t rows, size_t cols, int8_t* q, size_t stride, float* scales, int32_t* sums,
                   bool reference) {
  require();
  const cudaStream_t s = host_stream();
  Buf bx, bq, bs, bsum, bbad(sizeof(int));
  const float* dx = opt_in(bx, x, rows * cols, s);
  int8_t* dq = opt_in(bq, q, rows * stride, s);
  float* ds = opt_in(bs, scales, rows, s);
  int32_t* dsum = opt_in(bsum, sums, rows, s);
  check(cudaMemsetAsync(bbad.p, 0, sizeof(int), s), "cudaMemsetAsync");
  launch_quantize(dx, rows, cols, dq, stride, ds, dsum, bbad.as<int>(), reference, s);
  int bad = 0;
  down(q, dq, rows * stride, s);
  down(scales, ds, rows * sizeof(float), s);
  down(sums, dsum, rows * sizeof(int32_t), s);
  down(&bad, bbad.p, sizeof(int), s);
  sync(s);
  return bad == 0;
}

void gemm_s8(const int8_t* a, const int8_t* b, size_t m, size_t n, size_t k, int32_t* c, bool reference) {
  require();
  const cudaStream_t s = host_stream();
  const size_t kp = s8_kp(k);
  Buf ba(m * kp), bb(n * kp), bc(m * n * sizeof(int32_t));
  check(cudaMemsetAsync(ba.p, 0, m * kp, s), "cudaMemsetAsync");
  check(cudaMemsetAsync(bb.p, 0, n * kp, s), "cudaMemsetAsync");
  check(cudaMemcpy2DAsync(ba.p, kp, a, k, k, m, cudaMemcpyHostToDevice, s), "cudaMemcpy2DAsync");
  check(cudaMemcpy2DAsync(bb.p, kp, b, k, k, n, cudaMemcpyHostToDevice, s), "cudaMemcpy2DAsync");
  S8Out ep;
  ep.raw = bc.as<int32_t>();
  launch_gemm_s8(ba.as<int8_t>(), bb.as<int8_t>(), m, n, kp, ep, reference, s);
  down(c, bc.p, m * n * sizeof(int32_t), s);
  sync(s);
}

void linear(const Linear& w, const float* x, size_t rows, Activation act, float* out, int32_t* raw, bool reference) {
  require();
  const cudaStream_t s = host_stream();
  Buf bx(rows * w.k * sizeof(float)), bout(rows * w.n * sizeof(float)), braw;
  up(bx.p, x, rows * w.k * sizeof(float), s);
  if (w.tier == Tier::S8) {
    Buf bq(rows * w.kp), bs(rows * sizeof(float)), bsum(rows * sizeof(int32_t)), bbad(sizeof(int));
    check(cudaMemsetAsync(bbad.p, 0, sizeof(int), s), "cudaMemsetAsync");
    launch_quantize(bx.as<float>(), rows, w.k, bq.as<int8_t>(), w.kp, bs.as<float>(), bsum.as<int32_t>(),
                    bbad.as<int>(), reference, s);
    int bad = 0;
    down(&bad, bbad.p, sizeof(int), s);
    sync(s);
    if (bad) throw std::domain_error("x holds NaN or Inf, which int8 cannot represent");
    S8Out ep;
    ep.a_scales = bs.as<float>();
    ep.w_scales = w.scales;
    ep.bias = w.bias;
    ep.act = act;
    ep.out = out ? bout.as<float>() : nullptr;
    if (raw) {
      braw.alloc_bytes(rows * w.n * sizeof(int32_t));
      ep.raw = braw.as<int32_t>();
    }
    launch_gemm_s8(bq.as<int8_t>(), static_cast<const int8_t*>(w.w), rows, w.n, w.kp, ep, reference, s);
    if (raw) down(raw, braw.p, rows * w.n * sizeof(int32_t), s);
    if (out) down(out, bout.p, rows * w.n * sizeof(float), s);
    sync(s);
    return;
  }
  if (raw) throw DeviceError("raw int32 output exists only for int8 weights");
  if (w.tier == Tier::F16)
    launch_gemm_f16(bx.as<float>(), static_cast<const __half*>(w.w), rows, w.n, w.k, w.bias, act, bout.as<float>(),
                    reference, s);
  else
    launch_gemm_f32(bx.as<float>(), static_cast<const float*>(w.w), rows, w.n, w.k, w.bias, act, bout.as<float>(),
                    reference, s);
  if (out) down(out, bout.p, rows * w.n * sizeof(float), s);
  sync(s);
}

void decode_attention(const DecodeAttention& a, size_t rows, const float* kv, size_t kv_floats, bool reference) {
  require();
  if (rows == 0) return;
  const cudaStream_t s = host_stream();
  const size_t width = a.heads * a.hd;
  const size_t q_floats = (rows - 1) * a.ldq + width, o_floats = (rows - 1) * a.ldo + width;
  std::vector<int64_t> off(rows);
  bool off4 = true;
  for (size_t r = 0; r < rows; ++r) {
    off[r] = a.kv[r] - kv;
    off4 = off4 && off[r] % 4 == 0;
  }
  Buf bq(q_floats * sizeof(float)), bkv(kv_floats * sizeof(float)), bo(o_floats * sizeof(float));
  Buf boff(rows * sizeof(int64_t)), blen(rows * sizeof(int32_t));
  up(bq.p, a.q, q_floats * sizeof(float), s);
  up(bkv.p, kv, kv_floats * sizeof(float), s);
  up(boff.p, off.data(), rows * sizeof(int64_t), s);
  up(blen.p, a.len, rows * sizeof(int32_t), s);
  // the output's gaps between rows (ldo > width) keep the caller's values
  up(bo.p, a.o, o_floats * sizeof(float), s);
  AttnArgs d;
  d.q = bq.as<float>();
  d.ldq = a.ldq;
  d.kv = bkv.as<float>();
  d.row_off = boff.as<int64_t>();
  d.ldkv = a.ldkv;
  d.v_off = a.v_off;
  d.len = blen.as<int32_t>();
  d.o = bo.as<float>();
  d.ldo = a.ldo;
  d.rows = rows;
  d.heads = a.heads;
  d.hd = a.hd;
  d.off4 = off4;
  launch_attention(d, reference, s);
  down(a.o, bo.p, o_floats * sizeof(float), s);
  sync(s);
}

// ---- device-resident timing

double time_norm(size_t rows, size_t cols, bool fused_quantize, int iters) {
  require();
  const cudaStream_t s = host_stream();
  const size_t n = rows * cols, stride = s8_kp(cols);
  Buf bx(n * 4), bres(n * 4), bg(cols * 4), bb(cols * 4), bout(n * 4), bq, bqs, bqsum;
  fill(bx.as<float>(), n, 1.0f, s);
  fill(bres.as<float>(), n, 0.5f, s);
  fill(bg.as<float>(), cols, 1.0f, s);
  fill(bb.as<float>(), cols, 0.1f, s);
  NormArgs a;
  a.x = bx.as<float>();
  a.residual = bres.as<float>();
  a.gamma = bg.as<float>();
  a.beta = bb.as<float>();
  a.rows = rows;
  a.cols = cols;
  a.out = bout.as<float>();
  if (fused_quantize) {
    bq.alloc_bytes(rows * stride);
    bqs.alloc_bytes(rows * 4);
    bqsum.alloc_bytes(rows * 4);
    a.q = bq.as<int8_t>();
    a.q_scales = bqs.as<float>();
    a.q_sums = bqsum.as<int32_t>();
    a.q_stride = stride;
  }
  return median_seconds(iters, s, [&] { launch_norm(a, nullptr, false, s); });
}

double time_gemm_s8(size_t m, size_t n, size_t k, bool reference, int iters) {
  require();
  const cudaStream_t s = host_stream();
  const size_t kp = s8_kp(k);
  Buf ba(m * kp), bb(n * kp), bc(m * n * 4);
  fill_s8(ba.as<int8_t>(), m * kp, s);
  fill_s8(bb.as<int8_t>(), n * kp, s);
  S8Out ep;
  ep.raw = bc.as<int32_t>();
  return median_seconds(iters, s, [&] { launch_gemm_s8(ba.as<int8_t>(), bb.as<int8_t>(), m, n, kp, ep, reference, s); });
}

double time_gemm_f16(size_t m, size_t n, size_t k, int iters) {
  require();
  const cudaStream_t s = host_stream();
  Buf bx(m * k * 4), bw(n * k * 2), bout(m * n * 4);
  fill(bx.as<float>(), m * k, 1.0f, s);
  check(cudaMemsetAsync(bw.p, 0, n * k * 2, s), "cudaMemsetAsync");
  return median_seconds(iters, s, [&] {
    launch_gemm_f16(bx.as<float>(), bw.as<__half>(), m, n, k, nullptr, Activation::None, bout.as<float>(), false, s);
  });
}

double copy_bandwidth(size_t bytes, int iters) {
  require();
  const cudaStream_t s = host_stream();
  Buf a(bytes), b(bytes);
  check(cudaMemsetAsync(a.p, 1, bytes, s), "cudaMemsetAsync");
  const double t = median_seconds(iters, s, [&] {
    check(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync (device to device)");
  });
  return 2.0 * static_cast<double>(bytes) / t;
}

}  // namespace chimera::cuda
