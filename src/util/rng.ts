/**
 * The one seeded pseudo-random generator of the project (library, benches and tests): mulberry32, uniform floats
 * in [0, 1), deterministic for a given seed on every platform. Not for anything security-related.
 */

/** mulberry32: a small, fast 32-bit generator; uniform floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** mulberry32 with the draws the project needs: ranges, integers, normals and typed arrays of them. */
export class Rng {
  private readonly u: () => number;
  private spare: number | null = null;

  constructor(seed: number) {
    this.u = mulberry32(seed);
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.u();
  }

  /** Uniform in [0, 1) (the same as next()). */
  uniform(): number {
    return this.u();
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.u();
  }

  /** Integer in [lo, hi], inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.u() * (hi - lo + 1));
  }

  /** Standard normal (Box-Muller, both values used). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const u = 1 - this.u(); // (0, 1]: log(u) is finite
    const v = this.u();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** n normals with the given mean and standard deviation. */
  normalArray(n: number, mean = 0, std = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = mean + std * this.normal();
    return a;
  }

  /** n normals, standard deviation first (the benches' spelling). */
  normals(n: number, std = 1, mean = 0): Float32Array {
    return this.normalArray(n, mean, std);
  }

  /** n uniforms in [lo, hi). */
  uniformArray(n: number, lo = -1, hi = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.range(lo, hi);
    return a;
  }

  uniforms(n: number, lo: number, hi: number): Float32Array {
    return this.uniformArray(n, lo, hi);
  }

  u8Array(n: number, lo = 0, hi = 255): Uint8Array {
    const a = new Uint8Array(n);
    for (let i = 0; i < n; i++) a[i] = this.int(lo, hi);
    return a;
  }

  s8Array(n: number, lo = -128, hi = 127): Int8Array {
    const a = new Int8Array(n);
    for (let i = 0; i < n; i++) a[i] = this.int(lo, hi);
    return a;
  }

  /** n random bytes, signed (-128..127) or not (0..255). */
  bytes(n: number, signed: boolean): Uint8Array | Int8Array {
    return signed ? this.s8Array(n) : this.u8Array(n);
  }
}
