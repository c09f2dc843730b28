// Per-ISA kernel table: one instance per compiled ISA (kernels/kernels_<isa>.cpp), filled from the same
// source (kernels/kernels.inl). Entry points in kernels.h split work into ranges and call through it.
#pragma once
#include "chimera/device.h"
#include "chimera/kernels.h"

namespace chimera {

// Scratch past the nk scores of the attention kernel: it works in whole blocks of scores, so the last block may
// run up to this many floats past nk; a caller sizes `scores` as nk + kAttentionScoreSlack.
constexpr size_t kAttentionScoreSlack = 128;

// Blocked attention (kernels.inl attention_blocked): the scratch layout, the same for every ISA. K^T and V are
// packed into the fp32 GEMM's panel layout (64-column groups, see PackedF32), and one block of query rows keeps
// its scores there. A block's scores take at most kBlockedAttentionScoreFloats (64 KiB): with packed K and V
// (2 * nk * hd floats, 256 KiB at nk 512, hd 64) that stays inside a 1 MiB L2 (softmax and P V re-read the
// scores right after Q K^T wrote them).
constexpr size_t kBlockedAttentionScoreFloats = 16384;
constexpr size_t kBlockedAttentionMinRows = 16;  // a block never shrinks below this many query rows
constexpr size_t kBlockedAttentionAlign = 16;    // floats: the packed panels are loaded with aligned 64-byte loads
struct BlockedAttentionLayout {
  size_t ld;           // floats from one score row to the next (nk rounded up to 16)
  size_t rows;         // query rows per block
  size_t k_floats;     // packed K^T: [ceil(nk / 64)][hd][64]
  size_t v_floats;     // packed V: [ceil(hd / 64)][nk][64]
  size_t score_floats; // [rows][ld]
  size_t total;        // scratch floats the caller provides, alignment slack included
  BlockedAttentionLayout(size_t nk, size_t hd)
      : ld((nk + 15) / 16 * 16),
        rows(kBlockedAttentionScoreFloats / ld > kBlockedAttentionMinRows ? kBlockedAttentionScoreFloats / ld
                                                                            : kBlockedAttentionMinRows),
        k_floats((nk + 63) / 64 * 64 * hd),
        v_floats((hd + 63) / 64 * 64 * nk),
        score_floats(rows * ld),
        total(k_floats + v_floats + score_floats + rows + kBlockedAttentionAlign) {}
};

struct S8Epilogue {
  const float* a_scales;  // [rows]
  const int32_t* a_sums;  // [rows] sum of each quantised row (for the u8 = s8 + 128 correction)
  const float* bias;      // [n] or null
  Activation act;
  float* out;             // [rows, n]
  int32_t* raw;           // when set: exact int32 results instead of out
};

struct F32Epilogue {
  float alpha, beta;  // out = alpha * acc + beta * out (beta == 0 never reads out)
  const float* bias;  // [n] or null
  Activation act;
  float* out;
  size_t ldo;
  Op op;  // which counter to bump (GemmF32 for linear, Sgemm for sgemm)
};

struct KernelTable {
  Isa isa;
  // rows [r0, r1) of a norm; returns false if fused quantisation met a non-finite value
  bool (*norm_rows)(const NormArgs& a, size_t r0, size_t r1);
  bool (*quantize_rows)(const float* x, size_t cols, size_t r0, size_t r1, int8_t* q, size_t stride, float* scales,
                        int32_t* sums);
  // min and max of x; false on NaN or Inf
  bool (*min_max)(const float* x, size_t n, float* mn, float* mx);
  void (*dql_apply)(const float* x, size_t n, float scale, int zp, uint8_t* y);
  // c[m, n] = sum_k a16[m, k] * bt16[n, k] over kp (a multiple of 32) for rows [m0, m1)
  void (*dot_s16)(const int16_t* a, const int16_t* bt, size_t kp, size_t n, int32_t* c, size_t m0, size_t m1);
  // 64-channel groups [g0, g1) of an int8 GEMM over all rows
  void (*gemm_s8)(const PackedS8& w, const int8_t* q, size_t stride, size_t rows, size_t g0, size_t g1,
                  const S8Epilogue& ep);
  // panels [p0, p1) of an fp32 GEMM with packed b ([panels][k][16]) over all rows of a (row-major, lda)
  void (*gemm_f32)(const float* a, size_t lda, size_t rows, const float* b, size_t k, size_t n, size_t p0, size_t p1,
                   const F32Epilogue& ep);
  // the same with fp16 weights in the same layout
  void (*gemm_f16)(const float* a, size_t lda, size_t rows, const uint16_t* b, size_t k, size_t n, size_t p0, size_t p1,
                   const F32Epilogue& ep);
  // one head of softmax(q k^T) v; `scores` holds nk + kAttentionScoreSlack floats of scratch (see kernels.inl)
  void (*attention)(const float* q, size_t ldq, const float* k, size_t ldk, const float* v, size_t ldv, float* o,
                    size_t ldo, size_t nq, size_t nk, size_t hd, long causal, float* scores);
  // the same without a causal mask, as two GEMMs over query blocks; `scratch` holds
  // BlockedAttentionLayout(nk, hd).total floats
  void (*attention_blocked)(const float* q, size_t ldq, const float* k, size_t ldk, const float* v, size_t ldv,
                            float* o, size_t ldo, size_t nq, size_t nk, size_t hd, float* scratch);
  void (*log_softmax_rows)(float* x, size_t cols, size_t r0, size_t r1);
  // tasks [t0, t1) (row * heads + head) of a decoder step's attention; `scores` holds max len + W floats
  void (*decode_attention)(const DecodeAttention& a, size_t t0, size_t t1, float* scores);
  // rows [r0, r1) of topk_rows (see kernels.h)
  void (*topk_rows)(const float* x, size_t cols, size_t k, bool log_softmax, int32_t* idx, float* val, size_t r0,
                    size_t r1);
  // iters iterations of independent multiply-add chains of a kind (0 VNNI, 1 AVX2 int8, 2 fp32 FMA, 3 AVX-VNNI); returns
  // the multiply-adds done, or 0 when this build has no such instructions
  uint64_t (*peak_loop)(int kind, uint64_t iters, const float* seed);
  // Every table here runs on the CPU on host memory. The CUDA kernels are not a table of this shape (they run
  // on device memory, asynchronously on a stream): their entry points are in chimera/cuda.h.
  Device device = Device::Cpu;
};

const KernelTable& kernels_scalar();
const KernelTable& kernels_avx2();
const KernelTable& kernels_avxvnni();
const KernelTable& kernels_avx512();
const KernelTable& kernels_amx();
const KernelTable& kernels();  // the current table

}  // namespace chimera
