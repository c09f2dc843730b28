#include "chimera/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
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
    const size_t chunks = (n + grain - 1) / grain;
    if (threads_ <= 1 || chunks <= 1) {
      fn(0, n);
      return;
    }
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    ensure_workers();
    // A few more parts than threads, claimed dynamically: if a worker is slow to wake (the other core is
    // busy), the caller takes its parts instead of waiting for it.
    const size_t parts = std::min<size_t>(chunks, static_cast<size_t>(threads_) * 2);
    fn_.store(&fn, std::memory_order_relaxed);
    n_.store(n, std::memory_order_relaxed);
    parts_.store(parts, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    const uint64_t gen = ++gen_counter_;
    claim_.store(gen << 32, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lk(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work(gen);
    // Parts still running belong to workers; if one of them lost its core (an oversubscribed machine),
    // yielding lets it finish instead of spinning against it.
    for (int spins = 0; done_.load(std::memory_order_acquire) != parts; ++spins) {
      if (spins < 4096) CHIMERA_PAUSE();
      else std::this_thread::yield();
    }
    fn_.store(nullptr, std::memory_order_relaxed);
  }

 private:
  // Claims and runs parts of region `gen` until none is left. The claim word holds (generation, next part),
  // so a worker that wakes after its region ended claims nothing.
  void work(uint64_t gen) {
    for (;;) {
      uint64_t v = claim_.load(std::memory_order_acquire);
      size_t p;
      do {
        if ((v >> 32) != gen) return;
        p = static_cast<size_t>(v & 0xffffffffu);
        if (p >= parts_.load(std::memory_order_relaxed)) return;
      } while (!claim_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire));
      // A successful claim of this region's part orders these reads after the region was published.
      const size_t n = n_.load(std::memory_order_relaxed), parts = parts_.load(std::memory_order_relaxed);
      const size_t begin = n * p / parts;
      const size_t end = n * (p + 1) / parts;
      if (begin < end) (*fn_.load(std::memory_order_relaxed))(begin, end);
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  // `seen` is the generation at creation: a worker that starts late must still look at the region that
  // was published before it got going.
  void worker(unsigned seen) {
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
      work(claim_.load(std::memory_order_acquire) >> 32);
    }
  }

  void ensure_workers() {
    const int want = threads_ - 1;
    if (static_cast<int>(workers_.size()) == want) return;
    stop_workers();
    stop_.store(false);
    const unsigned gen = generation_.load();
    for (int i = 1; i <= want; ++i) workers_.emplace_back([this, gen] { worker(gen); });
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
  std::atomic<unsigned> generation_{0};  // bumped per region to wake workers
  std::atomic<uint64_t> claim_{0};        // (region << 32) | next unclaimed part
  std::atomic<size_t> done_{0};           // parts finished in the current region
  uint64_t gen_counter_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<const std::function<void(size_t, size_t)>*> fn_{nullptr};
  std::atomic<size_t> n_{0}, parts_{0};
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
