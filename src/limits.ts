/** Limits shared by the TypeScript layers, each with its reason. No native code is loaded here. */

/**
 * Intra-op threads per pool at most: the native pool's kMaxThreads (native/src/thread_pool.cpp). More than any
 * CPU this targets has cores for one process, and it bounds the per-thread scratch the kernels keep.
 */
export const MAX_THREADS = 256;

/**
 * Default cap on one model's decoder state (K/V of every live sequence at its longest): 2 GiB. A request past it
 * is almost always a mistake (batch x beam x length) and would starve the rest of the process, so it is refused
 * with E_INPUT; raise MarianModel.maxStateBytes for more. The native layer's own hard cap (64 GiB, addon.cpp)
 * only guards the allocation size itself.
 */
export const DEFAULT_MAX_STATE_BYTES = 2 * 2 ** 30;
