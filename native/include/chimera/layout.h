// Sizes of the packed layouts and the decoder state, defined once: the packers (ops.cpp), the handles that read
// a packed file in place and the state checks of the binding all compute them here.
#pragma once
#include <cstddef>

namespace chimera {

// Output channels per group of packed weights: one AVX-512 tile row of 64 columns (four 16-wide fp32 panels).
constexpr size_t kGroupCols = 64;
// Columns per fp32 / fp16 panel (one zmm of fp32).
constexpr size_t kPanelCols = 16;
// int8 weights are stored k-padded to a multiple of 4: vpdpbusd consumes 4 bytes per int32 lane.
constexpr size_t kS8KStep = 4;

constexpr size_t packed_groups(size_t n) { return (n + kGroupCols - 1) / kGroupCols; }
constexpr size_t packed_s8_kp(size_t k) { return (k + kS8KStep - 1) & ~(kS8KStep - 1); }
// Bytes of int8 weights [n, k] packed (scales not included).
constexpr size_t packed_s8_bytes(size_t n, size_t k) { return packed_groups(n) * packed_s8_kp(k) * kGroupCols; }
constexpr size_t packed_f32_panels(size_t n) { return packed_groups(n) * (kGroupCols / kPanelCols); }
// Bytes of fp32 (elem 4) or fp16 (elem 2) weights [n, k] packed.
constexpr size_t packed_f32_bytes(size_t n, size_t k, size_t elem) { return packed_f32_panels(n) * k * kPanelCols * elem; }

// Bytes of a decoder state: fp32 K and V of every decoder layer for every slot position and every source position.
constexpr double kv_state_bytes(size_t d, size_t layers, size_t slots, size_t max_len, size_t sources, size_t max_src) {
  return 2.0 * static_cast<double>(d) * static_cast<double>(layers) *
         (static_cast<double>(slots) * static_cast<double>(max_len) + static_cast<double>(sources) * static_cast<double>(max_src)) *
         sizeof(float);
}

}  // namespace chimera
