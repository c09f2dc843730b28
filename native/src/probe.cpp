// Streaming-read bandwidth probe for the benchmarks' roofline: how fast one core (or `threads` cores together)
// read a buffer of `bytes` that was touched beforehand (the fastest pass of each thread, summed). A buffer smaller than the last-level cache measures
// cache bandwidth, a much larger one DRAM bandwidth. Plain 64-bit loads into eight independent sums (the
// compiler vectorises them at the baseline ISA); the sums feed a volatile sink so the loads cannot be dropped.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "chimera/kernels.h"

namespace chimera {
namespace {

volatile uint64_t g_sink = 0;

uint64_t read_pass(const uint64_t* p, size_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    a0 += p[i];
    a1 += p[i + 1];
    a2 += p[i + 2];
    a3 += p[i + 3];
    a4 += p[i + 4];
    a5 += p[i + 5];
    a6 += p[i + 6];
    a7 += p[i + 7];
  }
  return a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7;
}

}  // namespace

double bandwidth_probe(size_t bytes, double ms, int threads) {
  if (bytes < 4096 || threads < 1) return -1.0;
  const size_t T = static_cast<size_t>(threads);
  const size_t per = (bytes / 8 / T) & ~static_cast<size_t>(63);  // u64 per thread, whole cache lines
  if (per == 0) return -1.0;
  const size_t words = per * T;
  void* mem = nullptr;
  if (posix_memalign(&mem, 64, words * 8) != 0) return -1.0;
  uint64_t* buf = static_cast<uint64_t*>(mem);
  for (size_t i = 0; i < words; ++i) buf[i] = i;  // touch every page (and warm the cache for small buffers)
  using clock = std::chrono::steady_clock;
  // Each thread reads its slice pass after pass until the deadline; the first pass is a warm-up. Each thread's
  // rate is its fastest pass (a preempted pass only ever looks slower, which matters on a loaded machine); the
  // result is the sum over the threads.
  std::vector<double> best(T, 0.0);
  auto work = [&](size_t k) {
    const uint64_t* p = buf + k * per;
    uint64_t s = read_pass(p, per);
    const auto end = clock::now() + std::chrono::duration<double, std::milli>(ms);
    double fastest = 1e30;
    auto now = clock::now();
    do {
      const auto t0 = now;
      s += read_pass(p, per);
      now = clock::now();
      fastest = std::min(fastest, std::chrono::duration<double>(now - t0).count());
    } while (now < end);
    best[k] = fastest;
    g_sink = g_sink + s;
  };
  if (T == 1) {
    work(0);
  } else {
    std::vector<std::thread> pool;
    for (size_t k = 0; k < T; ++k) pool.emplace_back(work, k);
    for (auto& th : pool) th.join();
  }
  free(mem);
  double rate = 0;
  for (size_t k = 0; k < T; ++k) rate += best[k] > 0 ? static_cast<double>(per) * 8.0 / best[k] : 0.0;
  return rate > 0 ? rate : -1.0;
}

}  // namespace chimera
