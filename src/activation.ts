/**
 * The activation functions, defined once for TypeScript: the kernel codes (native/include/chimera/kernels.h's
 * `enum class Activation` holds the same numbers for C++) and the Hugging Face config names that map onto them.
 * No native code is loaded here, so config readers can use it.
 */

/** An activation the kernels compute after a linear layer. */
export type Activation = 'none' | 'relu' | 'silu' | 'gelu' | 'gelu_tanh';

/** Kernel codes: the numbers of `chimera::Activation` in kernels.h. */
export const ACTIVATION_CODES: Readonly<Record<Activation, number>> = Object.freeze({ none: 0, relu: 1, silu: 2, gelu: 3, gelu_tanh: 4 });

/** A Marian config's `activation_function`. */
export type MarianActivation = 'swish' | 'silu' | 'gelu' | 'relu' | 'gelu_new';

/** Which kernel activation each config name is (swish is silu; gelu_new is the tanh approximation). */
export const MARIAN_ACTIVATIONS: Readonly<Record<MarianActivation, Activation>> = Object.freeze({
  swish: 'silu', silu: 'silu', gelu: 'gelu', relu: 'relu', gelu_new: 'gelu_tanh',
});
