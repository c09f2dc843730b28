/**
 * Layer-norm gamma/beta tuning: per-channel corrections that pull a quantised model's post-LN activations
 * back toward those of the fp32 control.
 *
 * Both models are run teacher-forced on the same calibration sources with the same decoder inputs (the
 * control's greedy output). For a layer norm L and a channel c, the quantised model Q gives normalised inputs
 * n_Q[r, c] (before gamma/beta) and the control F gives post-LN targets y_F[r, c] = gamma_F[c] n_F[r, c] +
 * beta_F[c]. The new (g, b) minimise
 *
 *     sum_r (g n_Q[r, c] + b - y_F[r, c])^2 + lambda ((g - g0)^2 + (b - b0)^2),    lambda = ridge * rows,
 *
 * a 2 x 2 linear system per channel (g0, b0: Q's current values). Correcting one norm changes the inputs of
 * every later one, so norms are fitted in forward order and Q is re-captured after each fit (or after each
 * layer, `recapture: 'layer'`). The corrections are written into Q's live gamma/beta, so they take effect at
 * once and `save()` stores them in the packed model.
 */
import { ChimeraError } from '../errors';
import type { MarianModel } from '../marian';
import { generateBatched } from './batch';

export interface TuneLnOptions {
  /** Ridge weight toward the current gamma/beta, relative to the number of rows. Default 1e-3. */
  ridge?: number;
  /** Re-capture Q after every fitted norm (exact sequential fit, default) or once per layer. */
  recapture?: 'norm' | 'layer';
  /** Teacher-forcing decoder inputs per calibration source (start token first). Default: F's greedy output. */
  decoderInputs?: number[][];
  /** Called after each fitted group: (norms done, norms in all). */
  onProgress?: (done: number, total: number) => void;
}

export interface NormTuneReport {
  name: string;
  /** Calibration rows the fit used (source positions for encoder norms, decoder positions for decoder norms). */
  rows: number;
  /** Mean squared error of Q's post-LN output against F's over the calibration rows, untuned Q. */
  mseBefore: number;
  /** The same with every norm tuned (the final model). */
  mseAfter: number;
  /** At fitting time (earlier norms already tuned): the error with the old and with the fitted gamma/beta. */
  fitBefore: number;
  fitAfter: number;
  /** Largest |change| of gamma and of beta over the channels. */
  maxGammaChange: number;
  maxBetaChange: number;
}

export interface TuneLnResult {
  perNorm: NormTuneReport[];
  /** Mean over norms of mseBefore / mseAfter. */
  meanMseBefore: number;
  meanMseAfter: number;
  calibSentences: number;
  /** Q's gamma/beta before tuning, per norm (restoreLayerNorms puts them back). */
  original: { name: string; gamma: Float32Array; beta: Float32Array }[];
  ms: number;
}

export interface ActivationMse {
  perNorm: { name: string; rows: number; mse: number }[];
  /** Mean over norms. */
  mean: number;
}

const DEFAULT_RIDGE = 1e-3;

function checkPair(q: MarianModel, f: MarianModel): void {
  if (q === f) throw new ChimeraError('E_ARG', 'the tuned model and the control must be two separately loaded models');
  const cq = q.config, cf = f.config;
  if (cq.dModel !== cf.dModel || cq.encoderLayers !== cf.encoderLayers || cq.decoderLayers !== cf.decoderLayers || cq.vocabSize !== cf.vocabSize)
    throw new ChimeraError('E_MODEL', 'the tuned model and the control have different shapes; load both from the same model');
  const nq = q.layerNorms(), nf = f.layerNorms();
  for (let i = 0; i < nq.length; i++) {
    const a = nq[i].params.gamma, b = nf[i].params.gamma;
    if (a.buffer === b.buffer && a.byteOffset === b.byteOffset)
      throw new ChimeraError('E_ARG', `${nq[i].name}: the two models share their gamma storage; load them separately`);
  }
}

function checkSources(srcIds: number[][], what: string): void {
  if (!Array.isArray(srcIds) || srcIds.length === 0) throw new ChimeraError('E_INPUT', `${what} must be a non-empty array of source id arrays`);
}

/**
 * Teacher-forcing decoder inputs from the control's greedy translations: [start, ...ids] without the final eos,
 * so that every generated token, eos included, is predicted once.
 */
export function controlDecoderInputs(f: MarianModel, srcIds: number[][], opts: { batch?: number; maxLength?: number } = {}): number[][] {
  checkSources(srcIds, 'srcIds');
  return generateBatched(f, srcIds, { batch: opts.batch ?? 32, maxLength: opts.maxLength }).map((ids) => decoderInputsFrom(f, ids));
}

/** [start, ...generated] without a trailing eos. */
export function decoderInputsFrom(f: MarianModel, generated: number[]): number[] {
  const g = generated.length > 0 && generated[generated.length - 1] === f.config.eosId ? generated.slice(0, -1) : generated;
  return [f.config.decoderStartId, ...g];
}

/** F's post-LN outputs y = gamma_F n_F + beta_F for every norm of one sentence. */
function targets(f: MarianModel, src: number[], dec: number[]): Float32Array[] {
  const d = f.config.dModel;
  const norms = f.layerNorms();
  return f.captureNormInputs(src, dec).map((n, k) => {
    const { gamma, beta } = norms[k].params;
    const y = new Float32Array(n.length);
    for (let o = 0; o < n.length; o += d) for (let c = 0; c < d; c++) y[o + c] = gamma[c] * n[o + c] + beta[c];
    return y;
  });
}

/** Sum of squared errors of (gamma n + beta) against y, over all rows and channels. */
function sse(n: Float32Array, y: Float32Array, gamma: Float32Array, beta: Float32Array, d: number): number {
  let s = 0;
  for (let o = 0; o < n.length; o += d)
    for (let c = 0; c < d; c++) {
      const e = gamma[c] * n[o + c] + beta[c] - y[o + c];
      s += e * e;
    }
  return s;
}

/**
 * Mean squared error of Q's post-LN outputs against F's, per layer norm, teacher-forced on `srcIds` with
 * `decoderInputs` (default: F's greedy output). Use sentences that were not used for calibration.
 */
export function activationMse(q: MarianModel, f: MarianModel, srcIds: number[][], opts: { decoderInputs?: number[][] } = {}): ActivationMse {
  checkPair(q, f);
  checkSources(srcIds, 'srcIds');
  const dec = opts.decoderInputs ?? controlDecoderInputs(f, srcIds);
  if (dec.length !== srcIds.length) throw new ChimeraError('E_SHAPE', `decoderInputs has ${dec.length} entries for ${srcIds.length} sources`);
  const d = q.config.dModel;
  const norms = q.layerNorms();
  const sums = new Float64Array(norms.length);
  const rows = new Float64Array(norms.length);
  for (let i = 0; i < srcIds.length; i++) {
    const y = targets(f, srcIds[i], dec[i]);
    const n = q.captureNormInputs(srcIds[i], dec[i]);
    for (let k = 0; k < norms.length; k++) {
      sums[k] += sse(n[k], y[k], norms[k].params.gamma, norms[k].params.beta, d);
      rows[k] += n[k].length / d;
    }
  }
  const perNorm = norms.map((nm, k) => ({ name: nm.name, rows: rows[k], mse: sums[k] / (rows[k] * d) }));
  return { perNorm, mean: perNorm.reduce((s, x) => s + x.mse, 0) / perNorm.length };
}

/** Puts back gamma/beta saved in a TuneLnResult's `original`. */
export function restoreLayerNorms(q: MarianModel, original: TuneLnResult['original']): void {
  const norms = q.layerNorms();
  if (original.length !== norms.length) throw new ChimeraError('E_SHAPE', `${original.length} saved norms for a model with ${norms.length}`);
  original.forEach((o, k) => {
    if (o.name !== norms[k].name) throw new ChimeraError('E_ARG', `saved norm ${o.name} does not match ${norms[k].name}`);
    norms[k].params.gamma = o.gamma;
    norms[k].params.beta = o.beta;
  });
}

/** Groups of norm indices fitted from one capture: one norm each, or the norms of one layer. */
function groups(q: MarianModel, mode: 'norm' | 'layer'): number[][] {
  const count = q.layerNorms().length;
  if (mode === 'norm') return Array.from({ length: count }, (_, k) => [k]);
  const out: number[][] = [];
  let k = 0;
  for (let l = 0; l < q.config.encoderLayers; l++, k += 2) out.push([k, k + 1]);
  for (let l = 0; l < q.config.decoderLayers; l++, k += 3) out.push([k, k + 1, k + 2]);
  return out;
}

/**
 * Fits per-channel gamma/beta corrections for every layer norm of `q` so that its post-LN activations match
 * those of the fp32 control `f` on the calibration sources (ids with eos). Q's gamma/beta are changed in place.
 */
export function tuneLayerNorms(q: MarianModel, f: MarianModel, calib: number[][], opts: TuneLnOptions = {}): TuneLnResult {
  const t0 = performance.now();
  checkPair(q, f);
  checkSources(calib, 'calib');
  const ridge = opts.ridge ?? DEFAULT_RIDGE;
  if (!Number.isFinite(ridge) || ridge < 0) throw new ChimeraError('E_ARG', `ridge must be a finite number >= 0, got ${ridge}`);
  const mode = opts.recapture ?? 'norm';
  if (mode !== 'norm' && mode !== 'layer') throw new ChimeraError('E_ARG', `recapture must be 'norm' or 'layer', got ${String(mode)}`);
  const dec = opts.decoderInputs ?? controlDecoderInputs(f, calib);
  if (dec.length !== calib.length) throw new ChimeraError('E_SHAPE', `decoderInputs has ${dec.length} entries for ${calib.length} sources`);

  const d = q.config.dModel;
  const norms = q.layerNorms();
  const original = norms.map((n) => ({ name: n.name, ...n.params.snapshot() }));
  // F is fixed: its targets are computed once.
  const y = calib.map((src, i) => targets(f, src, dec[i]));
  const rows = norms.map((_, k) => y.reduce((s, yi) => s + yi[k].length / d, 0));

  const allSse = (): number[] => {
    const s = new Array<number>(norms.length).fill(0);
    for (let i = 0; i < calib.length; i++) {
      const n = q.captureNormInputs(calib[i], dec[i]);
      for (let k = 0; k < norms.length; k++) s[k] += sse(n[k], y[i][k], norms[k].params.gamma, norms[k].params.beta, d);
    }
    return s;
  };

  const before: number[] = new Array<number>(norms.length).fill(0);
  const fitBefore: number[] = [];
  const fitAfter: number[] = [];
  const gs = groups(q, mode);
  let done = 0;
  for (const [gi, group] of gs.entries()) {
    // Per channel sufficient statistics of the group's norms: sum n, n^2, y, y^2, n y (fp64).
    const st = group.map(() => ({ sn: new Float64Array(d), snn: new Float64Array(d), sy: new Float64Array(d), syy: new Float64Array(d), sny: new Float64Array(d) }));
    for (let i = 0; i < calib.length; i++) {
      const n = q.captureNormInputs(calib[i], dec[i]);
      // The first capture is of the untuned model: it gives every norm's error before tuning.
      if (gi === 0) for (let k = 0; k < norms.length; k++) before[k] += sse(n[k], y[i][k], norms[k].params.gamma, norms[k].params.beta, d);
      group.forEach((k, j) => {
        const a = st[j], nk = n[k], yk = y[i][k];
        for (let o = 0; o < nk.length; o += d)
          for (let c = 0; c < d; c++) {
            const nv = nk[o + c], yv = yk[o + c];
            a.sn[c] += nv;
            a.snn[c] += nv * nv;
            a.sy[c] += yv;
            a.syy[c] += yv * yv;
            a.sny[c] += nv * yv;
          }
      });
    }
    group.forEach((k, j) => {
      const a = st[j], N = rows[k], lambda = ridge * N;
      const p = norms[k].params;
      const g0 = p.gamma.slice(), b0 = p.beta.slice();
      const g = new Float32Array(d), b = new Float32Array(d);
      let e0 = 0, e1 = 0;
      const err = (gc: number, bc: number, c: number) =>
        gc * gc * a.snn[c] + 2 * gc * bc * a.sn[c] + bc * bc * N - 2 * gc * a.sny[c] - 2 * bc * a.sy[c] + a.syy[c];
      for (let c = 0; c < d; c++) {
        // [snn + l, sn; sn, N + l] [g; b] = [sny + l g0; sy + l b0]
        const A = a.snn[c] + lambda, B = a.sn[c], C = N + lambda;
        const r1 = a.sny[c] + lambda * g0[c], r2 = a.sy[c] + lambda * b0[c];
        const det = A * C - B * B;
        let gc = (r1 * C - B * r2) / det, bc = (A * r2 - B * r1) / det;
        if (!(det > 0) || !Number.isFinite(gc) || !Number.isFinite(bc)) {
          gc = g0[c];
          bc = b0[c];
        }
        g[c] = gc;
        b[c] = bc;
        e0 += Math.max(0, err(g0[c], b0[c], c));
        e1 += Math.max(0, err(g[c], b[c], c));
      }
      p.gamma = g;
      p.beta = b;
      fitBefore[k] = e0 / (N * d);
      fitAfter[k] = e1 / (N * d);
    });
    done += group.length;
    opts.onProgress?.(done, norms.length);
  }
  const after = allSse();
  const perNorm = norms.map((n, k): NormTuneReport => {
    let mg = 0, mb = 0;
    for (let c = 0; c < d; c++) {
      mg = Math.max(mg, Math.abs(n.params.gamma[c] - original[k].gamma[c]));
      mb = Math.max(mb, Math.abs(n.params.beta[c] - original[k].beta[c]));
    }
    return {
      name: n.name, rows: rows[k],
      mseBefore: before[k] / (rows[k] * d), mseAfter: after[k] / (rows[k] * d),
      fitBefore: fitBefore[k], fitAfter: fitAfter[k], maxGammaChange: mg, maxBetaChange: mb,
    };
  });
  const mean = (f: (r: NormTuneReport) => number) => perNorm.reduce((s, r) => s + f(r), 0) / perNorm.length;
  return {
    perNorm, meanMseBefore: mean((r) => r.mseBefore), meanMseAfter: mean((r) => r.mseAfter),
    calibSentences: calib.length, original, ms: performance.now() - t0,
  };
}
