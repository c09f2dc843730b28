/**
 * `chimera selftest`: runs each kernel on every ISA this CPU supports, checks it against a plain fp64 /
 * integer reference computed here, and prints the error and a median timing. It proves an install works.
 */
import {
  cpuInfo, getIsa, int8GemmAccumulators, layerNorm, linear, linearInt8, packFp32Weights, packInt8Weights,
  quantizeRows, setIsa, type Isa,
} from './kernels';
import { mulberry32 } from './util/rng';

const rng = (seed: number) => {
  const u = mulberry32(seed);
  return () => u() - 0.5;
};

function medianMs(f: () => void, iters: number): number {
  for (let i = 0; i < 3; i++) f();
  const t: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = process.hrtime.bigint();
    f();
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  t.sort((a, b) => a - b);
  return t[t.length >> 1];
}

export function selfTest(): boolean {
  const r = rng(7);
  const M = 32, K = 512, N = 512;
  const x = Float32Array.from({ length: M * K }, r);
  const w = Float32Array.from({ length: N * K }, r);
  const gamma = Float32Array.from({ length: K }, () => 1 + r());
  const beta = Float32Array.from({ length: K }, r);
  const p8 = packInt8Weights(w, N, K);
  const p32 = packFp32Weights(w, N, K);
  const wq = p8.unpack();
  const before = getIsa();
  let ok = true;
  console.log(`shapes: LN ${M}x${K}; linear ${M}x${K} -> ${N}`);
  console.log('isa          LN err    LN ms   int8 exact  int8 ms  fp32 err  fp32 ms');
  for (const isa of cpuInfo().supported as Isa[]) {
    setIsa(isa);
    const y = layerNorm(x, K, gamma, beta);
    let lnErr = 0;
    for (let i = 0; i < M; i++) {
      let mean = 0, v = 0;
      for (let j = 0; j < K; j++) mean += x[i * K + j];
      mean /= K;
      for (let j = 0; j < K; j++) v += (x[i * K + j] - mean) ** 2;
      const rstd = 1 / Math.sqrt(v / K + 1e-5);
      for (let j = 0; j < K; j++) lnErr = Math.max(lnErr, Math.abs((x[i * K + j] - mean) * rstd * gamma[j] + beta[j] - y[i * K + j]));
    }
    const q = quantizeRows(x, K);
    const acc = int8GemmAccumulators(q, p8);
    let exact = true;
    for (let i = 0; i < M && exact; i++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += q.data[i * q.stride + k] * wq[n * K + k];
        if (s !== acc[i * N + n]) { exact = false; break; }
      }
    const yl = linear(x, M, p32);
    let fErr = 0;
    for (let i = 0; i < M; i++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[i * K + k] * w[n * K + k];
        fErr = Math.max(fErr, Math.abs(s - yl[i * N + n]));
      }
    const out8 = new Float32Array(M * N), outF = new Float32Array(M * N), outLn = new Float32Array(M * K);
    const lnMs = medianMs(() => layerNorm(x, K, gamma, beta, { out: outLn }), 200);
    const i8Ms = medianMs(() => linearInt8(x, M, p8, { out: out8 }), 50);
    const f32Ms = medianMs(() => linear(x, M, p32, { out: outF }), 50);
    const good = lnErr < 1e-4 && exact && fErr < 1e-3;
    ok &&= good;
    console.log(
      `${isa.padEnd(12)} ${lnErr.toExponential(1).padStart(8)} ${lnMs.toFixed(4).padStart(8)} ${String(exact).padStart(11)} ` +
        `${i8Ms.toFixed(3).padStart(8)} ${fErr.toExponential(1).padStart(9)} ${f32Ms.toFixed(3).padStart(8)}${good ? '' : '  FAILED'}`,
    );
  }
  setIsa(before);
  console.log(ok ? 'selftest passed' : 'selftest FAILED');
  return ok;
}
