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
  | 'E_BUSY' // the request queue is full: retry later (a server answers 429)
  | 'E_CLOSED' // the Translator was closed before or while this request ran
  | 'E_DEVICE' // device 'cuda' where CUDA is unavailable (see cudaInfo().reason), or a CUDA failure: use device 'cpu'
  | 'E_NATIVE'; // the native layer refused the call (a bug if the JS checks passed)

/**
 * Why an E_INPUT was raised, for callers that map it (a server answers 413 for 'too_long', 400 otherwise):
 * 'empty' (no text, or nothing translatable), 'too_long' (over the model's source length or a size cap),
 * 'invalid' (ids outside the vocabulary, malformed input).
 */
export type ChimeraErrorReason = 'empty' | 'too_long' | 'invalid';

export class ChimeraError extends Error {
  readonly code: ChimeraErrorCode;
  readonly reason?: ChimeraErrorReason;
  constructor(code: ChimeraErrorCode, message: string, options?: { cause?: unknown; reason?: ChimeraErrorReason }) {
    super(message, options);
    this.name = 'ChimeraError';
    this.code = code;
    if (options?.reason) this.reason = options.reason;
  }
}

/** The error an aborted call rejects with: name 'AbortError' and code 'ABORT_ERR', as Node's own APIs use. */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR';
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AbortError';
  }
}

/** Re-throws an error from the addon as a ChimeraError, keeping the code the addon chose. */
export function rethrowNative(e: unknown): never {
  if (e instanceof ChimeraError) throw e;
  const err = e as { code?: string; message?: string };
  const code = typeof err?.code === 'string' && err.code.startsWith('E_') ? (err.code as ChimeraErrorCode) : 'E_NATIVE';
  throw new ChimeraError(code, err?.message ?? String(e), { cause: e });
}
