#include "chimera/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define CHIMERA_PAUSE() _mm_pause()
#else
#define CHIMERA_PAUSE() std::this_thread::yield()
#endif

namespace chimera {
namespace {

// Workers spin briefly after each region before sleeping: decode steps issue many short parallel regions
// back to back, and a futex wake-up per region would cost more than the work it splits.
constexpr int kSpinIterations = 20000;

// Set while this thread runs parts of a region (as its caller or as a worker): a parallel_for started from
// inside one runs inline, so it can neither wait on the pool it is part of nor create a pool of its own.
thread_local bool t_in_region = false;
struct InRegion {
  bool prev = t_in_region;
  InRegion() { t_in_region = true; }
  ~InRegion() { t_in_region = prev; }
};

// One parallel region. It lives on the caller's stack; workers join it under the pool mutex and the caller
// does not return before every worker that joined has left, so no worker can touch it after it is gone.
struct Region {
  const std::function<void(size_t, size_t)>* fn = nullptr;
  size_t n = 0, parts = 0;
  std::atomic<size_t> next{0};  // next unclaimed part
  std::atomic<size_t> done{0};  // parts finished
  std::atomic<int> users{0};    // workers that joined and have not left

  // Claims and runs parts until none is left.
  void work() {
    for (size_t p; (p = next.fetch_add(1, std::memory_order_acq_rel)) < parts;) {
      const size_t begin = n * p / parts, end = n * (p + 1) / parts;
      if (begin < end) (*fn)(begin, end);
      done.fetch_add(1, std::memory_order_acq_rel);
    }
  }
};

class Pool {
 public:
  explicit Pool(int threads) : threads_(std::clamp(threads, 1, kMaxThreads)) {}
  ~Pool() { stop_workers(); }

  void set_threads(int n) {
    n = std::clamp(n, 1, kMaxThreads);
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    if (n == threads_) return;  // keep warm workers: a repeated setThreads must not cost a restart
    stop_workers();
    threads_ = n;
    // Start the new workers now rather than in the next region, so that a change of thread count costs its
    // thread creation here and not inside the first timed call after it (benches alternate 1 and 2 threads).
    ensure_workers();
  }
  int threads() const { return threads_.load(std::memory_order_relaxed); }

  void run(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
    if (n == 0) return;
    grain = std::max<size_t>(grain, 1);
    const size_t chunks = (n + grain - 1) / grain;
    if (threads() <= 1 || chunks <= 1) {
      fn(0, n);
      return;
    }
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    ensure_workers();
    // A few more parts than threads, claimed dynamically: if a worker is slow to wake (the other core is
    // busy), the caller takes its parts instead of waiting for it.
    Region r;
    r.fn = &fn;
    r.n = n;
    r.parts = std::min<size_t>(chunks, static_cast<size_t>(threads_) * 2);
    {
      std::lock_guard<std::mutex> lk(mutex_);
      region_ = &r;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    {
      InRegion guard;
      r.work();
    }
    // Parts still running belong to workers; if one lost its core, yielding lets it finish.
    wait_until([&] { return r.done.load(std::memory_order_acquire) == r.parts; });
    {
      std::lock_guard<std::mutex> lk(mutex_);
      region_ = nullptr;  // nobody joins from now on
    }
    wait_until([&] { return r.users.load(std::memory_order_acquire) == 0; });
  }

 private:
  template <typename Pred>
  static void wait_until(Pred pred) {
    for (int spins = 0; !pred(); ++spins) {
      if (spins < 4096) CHIMERA_PAUSE();
      else std::this_thread::yield();
    }
  }

  // `seen` is the generation at creation: a worker that starts late still looks at the region published
  // before it got going.
  void worker(unsigned seen) {
    InRegion guard;  // a worker only ever runs parts of a region: anything it starts itself runs inline
    for (;;) {
      int spins = 0;
      while (generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_relaxed) &&
             ++spins < kSpinIterations)
        CHIMERA_PAUSE();
      Region* r;
      {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen || stop_.load(); });
        if (stop_.load()) return;
        seen = generation_.load(std::memory_order_acquire);
        r = region_;
        if (r) r->users.fetch_add(1, std::memory_order_acq_rel);
      }
      if (r) {
        r->work();
        r->users.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  void ensure_workers() {
    const int want = threads_ - 1;
    if (static_cast<int>(workers_.size()) == want) return;
    stop_workers();
    stop_.store(false);
    const unsigned gen = generation_.load();
    for (int i = 0; i < want; ++i) workers_.emplace_back([this, gen] { worker(gen); });
  }

  void stop_workers() {
    if (workers_.empty()) return;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stop_.store(true);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::atomic<int> threads_{1};
  std::mutex run_mutex_;  // one parallel region at a time (async calls may overlap with sync ones)
  std::mutex mutex_;      // guards region_ and the sleep/wake handshake
  std::condition_variable cv_;
  std::atomic<unsigned> generation_{0};  // bumped per region to wake workers
  Region* region_ = nullptr;             // the region workers may join, or null
  std::atomic<bool> stop_{false};
  std::vector<std::thread> workers_;
};

int default_threads() {
  int n = static_cast<int>(std::thread::hardware_concurrency());
  if (const char* env = std::getenv("CHIMERA_THREADS")) n = std::atoi(env);
  return std::clamp(n, 1, kMaxThreads);
}

// Each OS thread (the JS main thread, each worker_thread) owns its pool, created on first use; its
// thread_local holder frees it (joining the workers) when that thread exits. Async tasks hold a reference
// too, so a pool outlives its thread until the last task that borrowed it is done.
thread_local std::shared_ptr<Pool> t_own;
// The pool installed for this thread by a PoolScope (an async task running on a libuv thread), or null.
thread_local Pool* t_installed = nullptr;

Pool& pool() {
  if (t_installed) return *t_installed;
  if (!t_own) t_own = std::make_shared<Pool>(default_threads());
  return *t_own;
}

}  // namespace

std::shared_ptr<void> current_pool() {
  if (t_installed) {
    // An async task that itself queues work: hand on the pool it borrowed (kept alive by its own scope).
    return std::shared_ptr<void>(std::shared_ptr<void>{}, t_installed);
  }
  pool();
  return t_own;
}

PoolScope::PoolScope(const std::shared_ptr<void>& p) : prev_(t_installed) {
  if (p) t_installed = static_cast<Pool*>(p.get());
}
PoolScope::~PoolScope() { t_installed = static_cast<Pool*>(prev_); }

void set_threads(int n) { pool().set_threads(n); }
int get_threads() { return pool().threads(); }
void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (t_in_region) {  // nested: the outer region already uses every thread of the pool
    if (n) fn(0, n);
    return;
  }
  pool().run(n, grain, fn);
}

bool set_thread_nice(int nice) {
#if defined(__linux__)
  // Linux applies PRIO_PROCESS with a thread id to that thread alone (nice is a per-thread attribute there).
  const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
  return setpriority(PRIO_PROCESS, tid, std::clamp(nice, -20, 19)) == 0;
#else
  (void)nice;
  return false;
#endif
}

}  // namespace chimera
