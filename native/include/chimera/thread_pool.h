// The intra-op thread pool. Work is split into contiguous index ranges, one per thread, and every output
// element is produced by exactly one thread, so results never depend on the thread count.
#pragma once
#include <cstddef>
#include <functional>

namespace chimera {

void set_threads(int n);
int get_threads();

// Runs fn(begin, end) over [0, n) split into at most get_threads() contiguous ranges; `grain` is the smallest
// range worth a thread. The caller's thread takes the first range. Calls from several threads serialise.
void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

}  // namespace chimera
