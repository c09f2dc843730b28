#include "chimera/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

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
  Pool() {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("CHIMERA_THREADS")) n = std::atoi(env);
    threads_ = std::clamp(n, 1, 256);
  }
  ~Pool() { stop_workers(); }

  void set_threads(int n) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop_workers();
    threads_ = std::clamp(n, 1, 256);
  }
  int threads() const { return threads_; }

  void run(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
    if (n == 0) return;
    grain = std::max<size_t>(grain, 1);
    const size_t chunks = (n + grain - 1) / grain;
    if (threads_ <= 1 || chunks <= 1) {
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
    r.work();
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

  int threads_ = 1;
  std::mutex run_mutex_;  // one parallel region at a time (async calls may overlap with sync ones)
  std::mutex mutex_;      // guards region_ and the sleep/wake handshake
  std::condition_variable cv_;
  std::atomic<unsigned> generation_{0};  // bumped per region to wake workers
  Region* region_ = nullptr;             // the region workers may join, or null
  std::atomic<bool> stop_{false};
  std::vector<std::thread> workers_;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers may outlive static destruction order at exit
  return *p;
}

}  // namespace

void set_threads(int n) { pool().set_threads(n); }
int get_threads() { return pool().threads(); }
void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) { pool().run(n, grain, fn); }

}  // namespace chimera
