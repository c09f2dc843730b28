// Where a model, its decoder state and a kernel table live. The kernels header (kernels.h) and the Marian
// description (marian.h) are device-neutral in their shapes and semantics, but not in the int8 weight layout:
//   Cpu:  PackedS8, u8 = s8 + 128 in groups of 64 channels x (k rounded up to 4), each 4 k of a group in four
//         16-channel panels: AVX-512 VNNI / AVX-VNNI multiply u8 x s8, so the weights take the unsigned side and
//         each row's sum of activations corrects the +128 in the epilogue.
//   Cuda: plain s8 [n][kp] row-major, kp = k rounded up to 32 and zero padded: mma.sync m16n8k32 s8 x s8 reads a
//         k32 slice of a weight row as the "col" operand directly, signed on both sides, so no correction term.
// A CPU model is packed once and uploaded (cuda::upload_model re-lays the weights out); fp32 / fp16 weights are
// likewise plain [n][k] on the device instead of the CPU's 64-column panels.
#pragma once

namespace chimera {

enum class Device : int { Cpu = 0, Cuda = 1 };

inline const char* device_name(Device d) { return d == Device::Cuda ? "cuda" : "cpu"; }

}  // namespace chimera
