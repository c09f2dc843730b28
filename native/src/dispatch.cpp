// The dispatch table (filled once from CPUID + XGETBV, replaceable for tests) and the kernel counters.
#include <atomic>
#include <cstdlib>
#include <string>

#include "chimera/kernel_table.h"

namespace chimera {

namespace {
std::atomic<uint64_t> g_counts[static_cast<int>(Op::kCount)][kIsaCount];

const KernelTable* table_for(Isa isa) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Amx: return &kernels_amx();
    case Isa::Avx512Vnni: return &kernels_avx512();
    case Isa::AvxVnni: return &kernels_avxvnni();
    case Isa::Avx2: return &kernels_avx2();
#endif
    default: return &kernels_scalar();
  }
}

std::atomic<const KernelTable*> g_table{nullptr};
}  // namespace

const char* op_name(Op op) {
  static const char* const names[] = {"layer_norm", "rms_norm", "quantize_rows", "dql", "matmul_integer", "gemm_s8", "gemm_f32", "sgemm", "gemm_f16", "attention", "log_softmax", "decode_attention", "topk", "attention_blocked"};
  return names[static_cast<int>(op)];
}

void count_kernel(Op op, Isa isa) { g_counts[static_cast<int>(op)][static_cast<int>(isa)].fetch_add(1, std::memory_order_relaxed); }
uint64_t kernel_count(Op op, Isa isa) { return g_counts[static_cast<int>(op)][static_cast<int>(isa)].load(); }

const KernelTable& kernels() {
  const KernelTable* t = g_table.load(std::memory_order_acquire);
  if (!t) {
    t = table_for(best_isa());
    g_table.store(t, std::memory_order_release);
  }
  return *t;
}

Isa current_isa() { return kernels().isa; }

bool set_isa(Isa isa) {
  if (!isa_supported(isa) || !isa_compiled(isa)) return false;
  g_table.store(table_for(isa), std::memory_order_release);
  return true;
}

const char* init_isa_from_env() {
  static std::string error;
  const char* env = std::getenv("CHIMERA_ISA");
  if (!env || !*env || std::string(env) == "auto") return "";
  Isa isa;
  if (!isa_from_name(env, &isa)) {
    error = std::string("CHIMERA_ISA=") + env + " is not a known instruction set; use scalar, avx2, avxvnni, avx512vnni, amx or auto";
    return error.c_str();
  }
  if (!set_isa(isa)) {
    error = std::string("CHIMERA_ISA=") + env + " was requested but this CPU (or this build) cannot run it; best available: " +
            isa_name(best_isa());
    return error.c_str();
  }
  return "";
}

}  // namespace chimera
