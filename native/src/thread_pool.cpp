#include "chimera/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
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

// Workers spin briefly after each job before sleeping: decode steps issue many short parallel regions
// back to back, and a futex wake-up per region would cost more than the work it splits.
constexpr int kSpinIterations = 20000;

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
    const size_t parts = std::min<size_t>(static_cast<size_t>(threads_), (n + grain - 1) / grain);
    if (parts <= 1) {
      fn(0, n);
      return;
    }
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    ensure_workers();
    fn_ = &fn;
    n_ = n;
    parts_ = parts;
    // Every worker checks in, even those without a range, so none can lag into the next region.
    pending_.store(threads_ - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    run_part(0);
    while (pending_.load(std::memory_order_acquire) != 0) CHIMERA_PAUSE();
    fn_ = nullptr;
  }

 private:
  void run_part(size_t p) {
    if (p >= parts_) return;
    const size_t begin = n_ * p / parts_;
    const size_t end = n_ * (p + 1) / parts_;
    if (begin < end) (*fn_)(begin, end);
  }

  // `seen` is the generation at creation: a worker that starts late must still run the region that
  // was published before it got going.
  void worker(int index, unsigned seen) {
    for (;;) {
      unsigned g;
      int spins = 0;
      while ((g = generation_.load(std::memory_order_acquire)) == seen && !stop_.load(std::memory_order_relaxed)) {
        if (++spins < kSpinIterations) {
          CHIMERA_PAUSE();
          continue;
        }
        std::unique_lock<std::mutex> lk(mutex_);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen || stop_.load(); });
      }
      if (stop_.load()) return;
      seen = g;
      run_part(static_cast<size_t>(index));
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  void ensure_workers() {
    const int want = threads_ - 1;
    if (static_cast<int>(workers_.size()) == want) return;
    stop_workers();
    stop_.store(false);
    const unsigned gen = generation_.load();
    for (int i = 1; i <= want; ++i) workers_.emplace_back([this, i, gen] { worker(i, gen); });
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
  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<unsigned> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(size_t, size_t)>* fn_ = nullptr;
  size_t n_ = 0, parts_ = 0;
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
