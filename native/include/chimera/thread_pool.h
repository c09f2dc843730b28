// The intra-op thread pool. Work is split into contiguous index ranges, one per thread, and every output
// element is produced by exactly one thread, so results never depend on the thread count.
//
// Pools are per OS thread: each JS thread (the main thread, every worker_thread) has its own, created on first
// use with CHIMERA_THREADS (else hardware_concurrency) threads, so one Translator's setThreads never changes
// another's and two models' regions never queue on one pool. A thread's pool is freed when the thread exits.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>

namespace chimera {

// The most threads one pool may have (setThreads' range; MAX_THREADS in src/limits.ts): more than any CPU this
// targets has cores for one process, and a bound on the per-thread scratch the kernels keep.
constexpr int kMaxThreads = 256;

// Act on the calling thread's pool (or on the pool a PoolScope installed).
void set_threads(int n);
int get_threads();

// Runs fn(begin, end) over [0, n) split into at most get_threads() contiguous ranges; `grain` is the smallest
// range worth a thread. The caller's thread takes the first range. Calls on one pool from several threads
// serialise; a parallel_for started inside a region runs inline on its thread.
void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

// The calling thread's pool, as an opaque reference that keeps it alive: async work captures it when it is
// queued and installs it with a PoolScope on the thread that executes it.
std::shared_ptr<void> current_pool();
class PoolScope {
 public:
  explicit PoolScope(const std::shared_ptr<void>& pool);
  ~PoolScope();
  PoolScope(const PoolScope&) = delete;
  PoolScope& operator=(const PoolScope&) = delete;

 private:
  void* prev_;
};

// Lowers (or raises) the scheduling priority of the calling thread to `nice` (-20..19); threads it creates later,
// such as its pool's workers, inherit it. Background work (the quality guard's control model) runs at 19, so
// under contention it takes what the serving threads leave. Returns false where per-thread priority is not
// available (not Linux) or the OS refused.
bool set_thread_nice(int nice);

}  // namespace chimera
