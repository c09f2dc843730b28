/** Error codes every chimera entry point may throw. Stable: callers may switch on them. */
export type ChimeraErrorCode =
  | 'E_ARG' // a missing or malformed argument (wrong type, bad option value)
  | 'E_DTYPE' // a typed array of the wrong element type
  | 'E_SHAPE' // lengths or dimensions that do not agree
  | 'E_RANGE' // a value outside the domain the operation accepts (e.g. NaN where a finite value is required)
  | 'E_ISA' // an instruction set that this CPU or build cannot run
  | 'E_NATIVE_LOAD' // the native addon could not be loaded
  | 'E_MODEL' // a model directory or file that is missing, malformed, hostile or unsupported
  | 'E_INPUT' // text or token input the model cannot take (empty, invalid ids, too long)
  | 'E_NATIVE'; // the native layer refused the call (a bug if the JS checks passed)

export class ChimeraError extends Error {
  readonly code: ChimeraErrorCode;
  constructor(code: ChimeraErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ChimeraError';
    this.code = code;
  }
}

/** Re-throws an error from the addon as a ChimeraError, keeping the code the addon chose. */
export function rethrowNative(e: unknown): never {
  if (e instanceof ChimeraError) throw e;
  const err = e as { code?: string; message?: string };
  const code = typeof err?.code === 'string' && err.code.startsWith('E_') ? (err.code as ChimeraErrorCode) : 'E_NATIVE';
  throw new ChimeraError(code, err?.message ?? String(e), { cause: e });
}
