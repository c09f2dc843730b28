export { ChimeraError } from './errors';
export type { ChimeraErrorCode } from './errors';
export * from './kernels';
