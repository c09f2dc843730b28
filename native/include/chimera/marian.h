// The Marian (post-LN encoder-decoder) forward pass as a few coarse native calls: encode a batch of sources,
// and advance any set of decoder rows by one step. Decoder state is kept per sequence slot (its own KV rows),
// so a caller may add, drop or copy sequences between steps (beam search, continuous batching).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "chimera/device.h"
#include "chimera/kernels.h"

namespace chimera {

// One Linear layer in whichever precision tier it was packed.
struct LinearW {
  const PackedS8* s8 = nullptr;
  const PackedF32* f32 = nullptr;  // fp32 or fp16 weights (PackedF32::half)
  const float* bias = nullptr;     // [n] or null
  size_t n = 0, k = 0;
};
// out[rows, n] = act(x . W^T + bias)
void linear_any(const LinearW& w, const float* x, size_t rows, Activation act, float* out);

struct NormW {
  const float* gamma = nullptr;  // [d], live: the caller may edit it between calls
  const float* beta = nullptr;
};

struct EncoderLayer {
  LinearW qkv;  // [3d, d]; the q rows are pre-scaled by head_dim^-0.5
  LinearW out;
  NormW ln_attn;
  LinearW fc1, fc2;
  NormW ln_ffn;
};

struct DecoderLayer {
  LinearW qkv, out;
  NormW ln_self;
  LinearW cross_q;   // pre-scaled like qkv's q
  LinearW cross_kv;  // [2d, d]: applied once per source
  LinearW cross_out;
  NormW ln_cross;
  LinearW fc1, fc2;
  NormW ln_ffn;
};

struct MarianDims {
  size_t d = 0, heads = 0, vocab = 0, max_pos = 0;
  float embed_scale = 1.0f;
  Activation act = Activation::Silu;
};

struct MarianModel {
  MarianDims dims;
  const float* embed = nullptr;      // [vocab, d] token embeddings for lookup: fp32, or
  const uint16_t* embed_half = nullptr;  // fp16 (the cheaper tiers store them so)
  std::vector<float> positions;      // [max_pos, d] sinusoidal table
  std::vector<EncoderLayer> encoder;
  std::vector<DecoderLayer> decoder;
  LinearW lm_head;                   // [vocab, d] (tied embedding) + final_logits_bias
  // Cpu: the forward pass below runs on these weights. Cuda: a cuda::Model made from them (cuda.h) holds device
  // copies and runs encode/step; this description stays the source of truth for the live layer norms.
  Device device = Device::Cpu;
};

// Per-sequence decoder memory: self-attention K|V rows per slot and cross-attention K|V per source.
struct MarianState {
  size_t layers = 0, d = 0;
  size_t slots = 0, max_len = 0;       // self-attention: [slots][layers][max_len][2d]
  size_t sources = 0, max_src = 0;     // cross-attention: [sources][layers][max_src][2d]
  std::vector<float> self_kv, cross_kv;
  std::vector<int32_t> src_len;        // valid length of each source
  // Cpu: self_kv / cross_kv hold the cache. Cuda: they stay empty (the cache is a cuda::State in device memory);
  // the shape and src_len are kept here too, for the binding's argument checks.
  Device device = Device::Cpu;
  size_t bytes() const { return (self_kv.size() + cross_kv.size()) * sizeof(float); }
};

void marian_fill_positions(MarianModel& m);

// Encodes `batch` sources of `ids` ([batch, s] padded, lengths in `lens`) and stores each one's cross K|V in
// state source slot src_slots[b]. enc_out ([batch * s, d]) receives the encoder output when not null.
// taps, when not null, receives every layer norm's normalised input before gamma/beta, in order
// ([layers][ln_attn, ln_ffn][batch * s][d]).
void marian_encode(const MarianModel& m, MarianState& st, const int32_t* ids, const int32_t* lens, size_t batch,
                   size_t s, const int32_t* src_slots, float* enc_out, float* taps = nullptr);

// One decoder step for `rows` rows: row r feeds token[r] at position pos[r] into self slot slot[r], attending
// to source src[r]. Writes logits [rows, vocab] (and, when not null, taps as for encode,
// [layers][ln_self, ln_cross, ln_ffn][rows][d]).
// With `head` (a sub-LM-head from marian_sub_head) the last linear is that head instead: logits [rows, head->n],
// column c holding bit for bit what the full head writes at the token the sub-head's channel c was taken from.
void marian_step(const MarianModel& m, MarianState& st, const int32_t* token, const int32_t* slot, const int32_t* pos,
                 const int32_t* src, size_t rows, float* logits, float* taps = nullptr, const LinearW* head = nullptr);

// The vocabulary shortlist's LM head: the rows `ids` of the model's LM head (packed weights, scales, bias) in
// that order, owned here, so a step computes logits for those tokens only.
struct SubHead {
  std::unique_ptr<PackedS8> s8;
  std::unique_ptr<PackedF32> f32;
  std::vector<float> bias;
  LinearW w;
  size_t bytes = 0;
};
// rows: the head's weights channel by channel, or null to read the packed layout: for an int8 head its packed bytes
// (chimera::s8_rows), for fp32 / fp16 the values themselves (the tied embedding, when rows_match says so).
SubHead* marian_sub_head(const MarianModel& m, const int32_t* ids, size_t n, const void* rows = nullptr);

// Copies the first `len` positions of self slot `from` to `to` (beam search reorders hypotheses this way).
void marian_copy_slot(MarianState& st, size_t from, size_t to, size_t len);

// Reshapes the state in place: every kept slot keeps its first min(old, new) max_len positions of every layer,
// every kept source its cross K|V (max_src must hold it: the caller checks) and length; new ones are empty.
// Allocates the new buffers before touching the old ones, so a failed allocation (std::bad_alloc) leaves the
// state as it was.
void marian_state_resize(MarianState& st, size_t slots, size_t max_len, size_t sources, size_t max_src);

}  // namespace chimera
