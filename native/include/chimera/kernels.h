// The device-neutral kernel interface. Callers (the binding and the Marian forward pass) use these entry points;
// each one validates nothing, splits work over the thread pool and calls the current ISA's table.
#pragma once
#include <cstddef>
#include <cstdint>

#include "chimera/cpu.h"

namespace chimera {

// The activation after a linear layer: the one C++ definition (src/activation.ts holds the same codes for
// TypeScript). Values crossing the binding are checked with activation_from_code.
enum class Activation : int { None = 0, Relu = 1, Silu = 2, Gelu = 3, GeluTanh = 4 };
constexpr int kActivationCount = 5;
// The activation with this code, or false for a code outside the enum.
inline bool activation_from_code(double code, Activation* out) {
  if (!(code >= 0 && code < kActivationCount) || code != static_cast<double>(static_cast<int>(code))) return false;
  *out = static_cast<Activation>(static_cast<int>(code));
  return true;
}

// Counted kernel entry points, so a test can prove which ISA path actually ran.
enum class Op : int { LayerNorm, RmsNorm, QuantizeRows, Dql, MatmulInteger, GemmS8, GemmF32, Sgemm, GemmF16, Attention, LogSoftmax, DecodeAttention, TopK, AttentionBlocked, kCount };
const char* op_name(Op op);
void count_kernel(Op op, Isa isa);
uint64_t kernel_count(Op op, Isa isa);

// ---- norms (norm.h semantics): out = norm(x + residual + bias) * gamma + beta, optional fused int8 output.
struct NormArgs {
  bool rms = false;
  const float* x = nullptr;
  const float* residual = nullptr;  // optional
  const float* bias = nullptr;      // optional, [cols]
  const float* gamma = nullptr;     // [cols]
  const float* beta = nullptr;      // optional, [cols]
  size_t rows = 0, cols = 0;
  float eps = 1e-5f;
  float* out = nullptr;
  float* sum_out = nullptr;  // optional: receives x + residual + bias
  int8_t* q = nullptr;       // optional fused quantisation: [rows, q_stride]
  float* q_scales = nullptr;
  int32_t* q_sums = nullptr;
  size_t q_stride = 0;
};
// Returns false when the fused quantisation met a non-finite value (the float output is still written).
bool norm(const NormArgs& args);

// ---- quantisation
// Symmetric per-row int8: scale = max|x| / 127, q = round_half_even(x / scale). Rows are zero padded to
// `stride`. Returns false on NaN or Inf.
bool quantize_rows(const float* x, size_t rows, size_t cols, int8_t* q, size_t stride, float* scales, int32_t* sums);
// ONNX DynamicQuantizeLinear. Returns false on NaN or Inf.
bool dynamic_quantize_linear(const float* x, size_t n, uint8_t* y, float* scale, uint8_t* zero_point);
// ONNX MatMulInteger; a_zp has 1 or m entries, b_zp 1 or n.
void matmul_integer(const void* a, bool a_signed, size_t m, size_t k, const void* b, bool b_signed, size_t n,
                    const int32_t* a_zp, size_t a_zp_len, const int32_t* b_zp, size_t b_zp_len, int32_t* c);

// ---- int8 linear layers
// Weights [n, k] quantised per output channel and packed in groups of 64 channels x kp (k rounded up to
// 4). Within a group, each 4 consecutive k occupy 256 bytes: 4 panels of 16 channels x 4 k. Values are
// stored as u8 = s8 + 128 so that AVX-512 VNNI (u8 x s8) can take them as its unsigned operand; padding is
// 128 (zero).
struct PackedS8 {
  size_t n = 0, k = 0, kp = 0, groups = 0;
  uint8_t* data = nullptr;
  float* scales = nullptr;  // [n]
  size_t bytes = 0;
  bool owned = true;  // false for views into a loaded model file, which its owner frees
  PackedS8() = default;
  PackedS8(const PackedS8&) = delete;
  PackedS8& operator=(const PackedS8&) = delete;
  ~PackedS8();
};
PackedS8* pack_s8(const float* w, size_t n, size_t k);
void unpack_s8(const PackedS8& p, int8_t* out);  // [n, k]
// A new packed weight of the channels cols[0..n) of w, in that order (bytes and scales copied as packed, so
// every kept channel computes bit for bit what it computes in w). The vocabulary shortlist's sub-LM-head.
PackedS8* gather_s8(const PackedS8& w, const int32_t* cols, size_t n);
// The same from a row-major copy of w's packed bytes ([w.n][w.kp], see s8_rows): a channel is then one
// contiguous read instead of w.kp / 4 reads a cache line apart, which is what makes a gather cheap.
PackedS8* gather_s8_rows(const PackedS8& w, const uint8_t* rows, const int32_t* cols, size_t n);
// w's packed bytes (u8 = s8 + 128) channel by channel: rows[c * w.kp + j].
void s8_rows(const PackedS8& w, uint8_t* rows);
inline size_t s8_offset(size_t kp, size_t col, size_t k) {
  return (col / 64) * kp * 64 + (k / 4) * 256 + ((col / 16) % 4) * 64 + (col % 16) * 4 + k % 4;
}

// out[rows, n] = act((q . Wq^T) * q_scale[row] * w_scale[col] + bias). If raw != nullptr the exact int32
// accumulators are written there instead (and out, bias, act are ignored).
void linear_s8(const PackedS8& w, const int8_t* q, size_t q_stride, const float* q_scales, const int32_t* q_sums,
               size_t rows, const float* bias, Activation act, float* out, int32_t* raw = nullptr);

// ---- fp32 linear layers and GEMM
// fp32 (or fp16) weights in groups of 64 columns x k: each k row of a group holds 4 panels of 16 values.
struct PackedF32 {
  size_t n = 0, k = 0, panels = 0;
  float* data = nullptr;     // fp32 weights, or
  uint16_t* half = nullptr;  // fp16 weights (IEEE binary16), converted to fp32 as they are loaded
  size_t bytes = 0;
  bool owned = true;
  PackedF32() = default;
  PackedF32(const PackedF32&) = delete;
  PackedF32& operator=(const PackedF32&) = delete;
  ~PackedF32();
};
// w is [n, k] (Linear layout) when !k_major, or [k, n] when k_major.
PackedF32* pack_f32(const float* w, size_t n, size_t k, bool k_major);
PackedF32* pack_f16(const float* w, size_t n, size_t k);  // w is [n, k]; rounds to nearest even fp16
void to_half(const float* x, size_t n, uint16_t* y);      // IEEE binary16, round to nearest even
// The fp32 / fp16 counterpart of gather_s8.
PackedF32* gather_f32(const PackedF32& w, const int32_t* cols, size_t n);
// The same from row-major weights [w.n][w.k] (fp32 rows for an fp32 w, fp16 rows for an fp16 one) that hold
// exactly w's values (see rows_match): one contiguous read per channel.
PackedF32* gather_f32_rows(const PackedF32& w, const void* rows, const int32_t* cols, size_t n);
// Whether row-major `rows` (fp32, or fp16 when w is fp16) hold exactly the values packed in w.
bool rows_match(const PackedF32& w, const void* rows);
void linear_f32(const PackedF32& w, const float* x, size_t rows, const float* bias, Activation act, float* out);
// c[m, n] = alpha * op(a) . op(b) + beta * c
void sgemm(const float* a, const float* b, size_t m, size_t n, size_t k, bool trans_a, bool trans_b, float alpha,
           float beta, float* c);

// 64-byte aligned memory, for packed weights and for model files read in one piece.
void* alloc_aligned(size_t bytes);
void free_aligned(void* p);

// x[r] = log_softmax(x[r]) for every row of [rows, cols], in place.
void log_softmax(float* x, size_t rows, size_t cols);

// Per row of x [rows, cols]: the k largest entries in descending order, ties to the lower index, NaN counted
// as -Infinity, into idx / val [rows, k]. With log_softmax the values are exactly what log_softmax would write
// for those entries (x itself is not modified). A row of all -Infinity gives -Infinity values.
void topk_rows(const float* x, size_t rows, size_t cols, size_t k, bool log_softmax, int32_t* idx, float* val);
// topk_rows over rows of different lengths: row r is x + r * stride, its first lens[r] entries (1 <= lens[r] <=
// stride). Each row gives exactly what topk_rows gives for that row alone (cols = lens[r]); where lens[r] < k
// the places past lens[r] get index -1 and -Infinity.
void topk_rows_ragged(const float* x, size_t rows, size_t stride, const int32_t* lens, size_t k, bool log_softmax,
                      int32_t* idx, float* val);

// ---- attention of a decoder step: each row's single query against its own keys, every head.
struct DecodeAttention {
  const float* q = nullptr;  // query of row r, head h at q + r * ldq + h * hd (already scaled)
  size_t ldq = 0;
  const float* const* kv = nullptr;  // per row: its first key row; head h's keys at + h * hd
  size_t ldkv = 0;                   // floats from one key row to the next (values alike)
  size_t v_off = 0;                  // values start v_off floats after the keys of the same row
  const int32_t* len = nullptr;      // per row: keys to attend (>= 1)
  float* o = nullptr;                // output of row r, head h at o + r * ldo + h * hd
  size_t ldo = 0;
  size_t heads = 0, hd = 0;
};
void decode_attention(const DecodeAttention& a, size_t rows);

// ---- encoder self-attention: every source of a padded batch, every head, each source against its own valid keys.
// Sources with at least kBlockedAttentionMinKeys valid keys take the blocked kernel (Q K^T and P V as GEMMs over
// query blocks), shorter ones the per-query kernel. The choice reads the source's own length, never the padded
// one, so a source gives the same bits alone and in any batch.
// 32 is the shortest length at which the blocked kernel wins on every ISA: one head of 64 dims, time blocked / per
// query on a 2-core AMD EPYC (Zen 5) at 32 keys: AVX-512 0.45, AVX2 0.68, scalar 0.81; at 16 keys 0.59, 0.71 and
// 1.12 (the scalar build's packing then costs more than its 2-row tile saves); at 64 keys 0.35, 0.48, 0.49.
constexpr size_t kBlockedAttentionMinKeys = 32;
enum class AttentionPath : int { Auto = 0, Rows = 1, Blocked = 2 };  // Rows / Blocked force a kernel (tests, benches)
struct EncoderAttention {
  const float* q = nullptr;  // row r of source b, head h at q + (b * s + r) * ld + h * hd (already scaled)
  const float* k = nullptr;  // the same layout for keys and values
  const float* v = nullptr;
  size_t ld = 0;
  const int32_t* len = nullptr;  // per source: valid keys, 1..s
  float* o = nullptr;            // output of row r of source b, head h at o + (b * s + r) * ldo + h * hd
  size_t ldo = 0;
  size_t batch = 0, s = 0, heads = 0, hd = 0;
  AttentionPath path = AttentionPath::Auto;
};
void encoder_attention(const EncoderAttention& a);

// Multiply-adds per second of one core on independent chains: kind 0 VNNI (AVX-512), 1 AVX2 int8, 2 fp32 FMA
// (on the best vector ISA), 3 AVX-VNNI (VEX, 256-bit). Runs for about `ms`; returns a negative value when this CPU cannot run that kind.
double peak_probe(int kind, double ms);
// Bytes per second that `threads` threads (1: the caller alone) read from a buffer of `bytes` (each its own
// slice, pass after pass, for about `ms`): cache bandwidth below the last-level cache size, DRAM above. Negative on
// bad arguments or when the buffer cannot be allocated. native/src/probe.cpp.
double bandwidth_probe(size_t bytes, double ms, int threads);

// ---- dispatch
Isa current_isa();
// Returns false (and changes nothing) when the ISA is unsupported here.
bool set_isa(Isa isa);
// Reads CHIMERA_ISA; returns an error message, or an empty string when fine.
const char* init_isa_from_env();

}  // namespace chimera
