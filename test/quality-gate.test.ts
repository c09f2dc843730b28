/**
 * The quality API (src/quality): evaluate() against in-process translation, precision groups and plans, and the
 * quantisation gate: a budget int8 cannot meet makes it climb to a dearer tier that does meet it; a generous
 * budget keeps int8 everywhere.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corpusBleu, pyFixed } from '../src/bleu';
import { MarianModel } from '../src/marian';
import { evaluate, planName } from '../src/quality/eval';
import { gateReportMarkdown, planWith, precisionGroups, quantizeWithGate, type GateResult } from '../src/quality/quantize';
import { checkAligned, decodeUtf8, firstInvalidUtf8, splitLines } from '../src/quality/io';

const ROOT = join(__dirname, '..');
const MODEL_DIR = join(ROOT, 'models', 'marian-m30k-en-de');
const DATA = '/work/shared/data/multi30k';
const HAVE_DATA = existsSync(join(DATA, 'val.en')) && existsSync(join(DATA, 'val.de'));
const N = 100;

const tmpDirs: string[] = [];
afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

describe('input helpers', () => {
  it('splitLines: a final newline ends the last line; \\r stays; empty text has no lines', () => {
    expect(splitLines('a\nb\n')).toEqual(['a', 'b']);
    expect(splitLines('a\nb')).toEqual(['a', 'b']);
    expect(splitLines('a\n\n')).toEqual(['a', '']);
    expect(splitLines('a\r\nb\r\n')).toEqual(['a\r', 'b\r']);
    expect(splitLines('')).toEqual([]);
    expect(splitLines('\n')).toEqual(['']);
  });

  it('firstInvalidUtf8 finds stray, truncated, overlong and surrogate sequences', () => {
    const enc = new TextEncoder();
    expect(firstInvalidUtf8(enc.encode('Grüße, 😀 ok'))).toBe(-1);
    expect(firstInvalidUtf8(Uint8Array.of(0x61, 0xff))).toBe(1);
    expect(firstInvalidUtf8(Uint8Array.of(0x61, 0xc3))).toBe(1); // truncated
    expect(firstInvalidUtf8(Uint8Array.of(0xc0, 0xaf))).toBe(0); // overlong '/'
    expect(firstInvalidUtf8(Uint8Array.of(0xed, 0xa0, 0x80))).toBe(0); // U+D800
    expect(firstInvalidUtf8(Uint8Array.of(0xf4, 0x90, 0x80, 0x80))).toBe(0); // above U+10FFFF
    expect(() => decodeUtf8(Uint8Array.of(0x61, 0x0a, 0x62, 0xe9, 0x0a), 'x')).toThrow(/x is not valid UTF-8 \(line 2, byte offset 3: 0xe9\)/);
  });

  it('decodeUtf8 keeps a BOM only when asked (sacreBLEU keeps it)', () => {
    const b = Uint8Array.of(0xef, 0xbb, 0xbf, 0x61);
    expect(decodeUtf8(b, 'x')).toBe('a');
    expect(decodeUtf8(b, 'x', true)).toBe('\ufeffa');
  });

  it('checkAligned names both files and both counts', () => {
    expect(() => checkAligned([{ name: 'H', lines: ['a', 'b'] }, { name: 'R', lines: ['a'] }])).toThrow(/R has 1 lines but H has 2/);
  });
});

describe('precision groups and plans', () => {
  const cfg = { encoderLayers: 3, decoderLayers: 3 };

  it('groups are the layers in forward order and the LM head', () => {
    expect(precisionGroups(cfg)).toEqual(['encoder.0', 'encoder.1', 'encoder.2', 'decoder.0', 'decoder.1', 'decoder.2', 'lmHead']);
  });

  it('planWith: uniform plans carry no layer arrays; overrides become per-layer entries', () => {
    expect(planWith(cfg, 'int8')).toEqual({ encoder: 'int8', decoder: 'int8', lmHead: 'int8' });
    expect(planWith(cfg, 'int8', { 'decoder.2': 'fp16', lmHead: 'fp16' })).toEqual({
      encoder: 'int8', decoder: 'int8', lmHead: 'fp16', decoderLayers: ['int8', 'int8', 'fp16'],
    });
    expect(() => planWith(cfg, 'int8', { 'decoder.9': 'fp16' })).toThrow(/unknown precision group/);
  });

  it('planName', () => {
    expect(planName(planWith(cfg, 'int8'), { encoder: 3, decoder: 3 })).toBe('int8');
    expect(planName(planWith(cfg, 'fp16'))).toBe('fp16');
    expect(planName(planWith(cfg, 'int8', { 'encoder.1': 'fp16', lmHead: 'fp16' }), { encoder: 3, decoder: 3 })).toBe('int8 + fp16 at encoder.1, lmHead');
    expect(planName({ encoder: 'int8', decoder: 'int8', lmHead: 'fp32' })).toBe('int8 + fp32 at lmHead');
  });
});

describe.skipIf(!HAVE_DATA)('evaluate and the quality gate (shared model, val slice)', () => {
  let fp32: MarianModel;
  let src: string[];
  let ref: string[];
  let fp32Hyps: string[];
  let fp32Eval: ReturnType<typeof evaluate>;

  // Every test here reads what beforeAll computed, so each runs alone (vitest -t) and in any order.
  beforeAll(async () => {
    fp32 = await MarianModel.load(MODEL_DIR, { precision: 'fp32' });
    src = readFileSync(join(DATA, 'val.en'), 'utf8').split('\n').slice(0, N);
    ref = readFileSync(join(DATA, 'val.de'), 'utf8').split('\n').slice(0, N);
    fp32Eval = evaluate(fp32, src, ref, { batchSize: 16 });
    fp32Hyps = fp32Eval.hyps;
  });

  it('evaluate: the same translations as one-by-one generate, scored with corpusBleu; speed figures', () => {
    const r = fp32Eval;
    const tok = fp32.tokenizer!;
    for (const i of [0, 1, 17, 63, 99]) expect(r.hyps[i], `line ${i}`).toBe(tok.decode(fp32.generate([tok.encode(src[i])]).ids[0]));
    expect(r.bleu.score).toBe(corpusBleu(r.hyps, [ref]).score);
    expect(r.sentences).toBe(N);
    expect(r.tokens).toBe(r.ids.reduce((s, x) => s + x.length, 0));
    expect(r.sentencesPerSec).toBeGreaterThan(0);
    expect(r.msPerToken).toBeGreaterThan(0);
    // Batching does not change greedy output.
    expect(evaluate(fp32, src, ref, { batchSize: 7 }).hyps).toEqual(r.hyps);
  });

  it('evaluate: blank source lines translate to "" without reaching the model; several reference streams', () => {
    const s = ['A dog runs.', '   ', 'Two men talk.'];
    // Line 1 has one reference, the others two (sacreBLEU: an empty reference is no reference).
    const r = evaluate(fp32, s, [['Ein Hund rennt.', '', 'Zwei Männer reden.'], ['Ein Hund läuft.', 'Leer.', 'Zwei Männer sprechen.']]);
    expect(r.hyps[1]).toBe('');
    expect(r.sentences).toBe(2);
    expect(r.bleu.signature).toMatch(/^nrefs:var\|/);
    expect(() => evaluate(fp32, s, ['only one'])).toThrow(/reference stream 0 has 1 lines, the source has 3/);
  });

  it('budget 0 where int8 changes translations: the gate climbs past int8 to a configuration with no BLEU loss', async () => {
    // fp32's own output as the reference: fp32 scores 100 and any changed sentence costs BLEU, so int8
    // everywhere (which changes 7 of these 100 translations) cannot meet a zero budget.
    const dir = mkdtempSync(join(tmpdir(), 'chimera-gate-'));
    tmpDirs.push(dir);
    const out = join(dir, 'gated.chimera');
    const seen: string[] = [];
    const g: GateResult = await quantizeWithGate(MODEL_DIR, src, fp32Hyps, {
      maxBleuDrop: 0, out, sensitivitySentences: 60, onResult: (row) => seen.push(row.name),
    });
    const { report } = g;
    const control = report.rows[report.rows.length - 1];
    expect(control.control).toBe(true);
    expect(control.bleu).toBeCloseTo(100, 9);
    const first = report.rows[0];
    expect(first.name).toBe('int8');
    expect(first.bleu, 'precondition: int8 changes some translations').toBeLessThan(100);
    expect(first.passed).toBe(false);
    // It climbed: a sensitivity pass over all 7 groups, then configurations in tier order, each failing until the chosen one.
    expect(report.sensitivity).not.toBeNull();
    expect(report.sensitivity!.ranking.map((e) => e.group).sort()).toEqual([...precisionGroups(fp32.config)].sort());
    const chosenIdx = report.rows.findIndex((r) => r.chosen);
    expect(report.rows.filter((r) => r.chosen)).toHaveLength(1);
    expect(chosenIdx).toBeGreaterThan(0);
    report.rows.slice(0, chosenIdx).forEach((r) => expect(r.passed, r.name).toBe(false));
    const tiers = report.rows.map((r) => r.tier);
    expect(tiers).toEqual([...tiers].sort((a, b) => a - b));
    const chosen = report.rows[chosenIdx];
    expect(chosen.name).not.toBe('int8');
    expect(g.chosen).not.toEqual({ encoder: 'int8', decoder: 'int8', lmHead: 'int8' });
    expect(-chosen.delta, 'chosen BLEU drop').toBeLessThanOrEqual(0);
    expect(chosen.passed).toBe(true);
    // Tier-2 rows keep the k most sensitive groups at fp16, k = 1, 2, ...
    const ranked = report.sensitivity!.ranking.map((e) => e.group);
    report.rows.filter((r) => r.tier === 2).forEach((r, k) => expect(r.fp16Groups).toEqual(ranked.slice(0, k + 1)));
    expect(seen[0]).toBe('fp32 (control)');
    // The written file is the chosen plan and translates as the gate measured it.
    const back = await MarianModel.load(out);
    expect(back.precision).toEqual(g.chosen);
    expect(report.outBytes).toBeGreaterThan(0);
    expect(evaluate(back, src, fp32Hyps).bleu.score).toBe(chosen.bleu);
    const md = gateReportMarkdown(report);
    expect(md).toContain('| tier | configuration | BLEU | delta | sent/s | ms/token | gate | chosen |');
    expect(md).toContain(`| ${chosen.tier} | ${chosen.name} | ${pyFixed(chosen.bleu, 2)} |`);
    expect(md).toMatch(/\| 1 \| int8 \| [0-9.]+ \| -[0-9.]+ \| .*\| fail \|/);
  });

  it('a generous budget (5 BLEU) keeps int8 everywhere without a sensitivity pass', async () => {
    const g = await quantizeWithGate(MODEL_DIR, src, ref, { maxBleuDrop: 5 });
    expect(g.chosen).toEqual({ encoder: 'int8', decoder: 'int8', lmHead: 'int8' });
    expect(g.model.precision).toEqual(g.chosen);
    expect(g.report.rows.map((r) => [r.name, r.passed, r.chosen])).toEqual([['int8', true, true], ['fp32 (control)', true, false]]);
    expect(g.report.sensitivity).toBeNull();
    expect(Math.abs(g.report.rows[0].delta)).toBeLessThanOrEqual(5);
    expect(g.report.sentences).toBe(N);
  });

  it('rejects a negative or missing budget and a packed file as the model', async () => {
    await expect(quantizeWithGate(MODEL_DIR, src, ref, { maxBleuDrop: -1 })).rejects.toThrow(/maxBleuDrop must be a finite number >= 0/);
    await expect(quantizeWithGate(MODEL_DIR, src, ref, {} as never)).rejects.toThrow(/maxBleuDrop/);
    const dir = mkdtempSync(join(tmpdir(), 'chimera-gate-'));
    tmpDirs.push(dir);
    const file = join(dir, 'm.chimera');
    fp32.save(file);
    await expect(quantizeWithGate(file, src, ref, { maxBleuDrop: 1 })).rejects.toThrow(/must be a Hugging Face model directory/);
  });
});
