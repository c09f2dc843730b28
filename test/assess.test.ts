/**
 * `chimera assess` end to end on the tiny make-model model (dist/cli.js, built by the global setup): the report
 * files exist and hold every engine, every comparison and the memory probes.
 */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeModel } from '../src/model/make-model';
import { onnxruntimeMissing } from '../src/commands/assess';
import { chimera, ROOT } from './helpers/cli';

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(tmpdir(), 'chimera-assess-test-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('chimera assess', () => {
  it('writes report.md, report.json and ttft.svg with every engine beside onnxruntime', () => {
    const model = tmp();
    makeModel({ preset: 'tiny', seed: 3, out: model });
    const data = tmp();
    fs.writeFileSync(path.join(data, 'src.txt'), 'a dog runs\n\nthe cat sleeps on the mat\ntwo men talk\nhello world\n');
    fs.writeFileSync(path.join(data, 'ref.txt'), 'ein hund rennt\n\ndie katze schläft\nzwei männer reden\nhallo welt\n');
    const out = path.join(tmp(), 'report');
    const r = chimera([
      'assess', '--model', model, '--src', path.join(data, 'src.txt'), '--ref', path.join(data, 'ref.txt'),
      '--out', out, '--beam', '2', '--max-length', '6', '--threads', '1',
    ], { timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const rep = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(rep.sentences).toBe(4);
    expect(rep.threads).toBe(1);
    expect(rep.engines.map((e: { engine: string; tier: string }) => `${e.engine}:${e.tier}`)).toEqual([
      'chimera:fp32', 'chimera:fp16', 'chimera:int8', 'onnxruntime:fp32', 'onnxruntime:int8', 'onnxruntime:int8-per-tensor',
    ]);
    for (const e of rep.engines) {
      expect(e.ttft_p50_ms).toBeGreaterThan(0);
      expect(e.ttft_p95_ms).toBeGreaterThanOrEqual(e.ttft_p50_ms);
      expect(e.sequential_qps).toBeGreaterThan(0);
      expect(e.concurrent_qps).toBeGreaterThan(0);
      expect(e.peak_rss_mb).toBeGreaterThan(10);
      expect(typeof e.bleu).toBe('number');
    }
    // onnxruntime fp32 runs the same function as chimera fp32
    expect(rep.engines[3].same_as_fp32).toBe(1);
    expect(rep.comparisons).toHaveLength(9); // 3 chimera tiers x 3 onnxruntime tiers
    const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toContain('| onnxruntime | int8 |');
    expect(md).toContain('TTFT p95');
    expect(md).toContain('concurrent QPS');
    const svg = fs.readFileSync(path.join(out, 'ttft.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect((svg.match(/<rect /g) ?? []).length).toBeGreaterThanOrEqual(7);
  });

  it('refuses a missing model and --ref without --src', () => {
    const a = chimera(['assess', '--model', path.join(ROOT, 'no-such-model')]);
    expect(a.status).toBe(1);
    expect(a.stderr).toContain('[E_MODEL] model path');
    expect(a.stderr).toContain('no-such-model');
    const b = chimera(['assess', '--model', ROOT, '--ref', 'x']);
    expect(b.status).toBe(1);
    expect(b.stderr).toContain('--ref needs --src');
  });

  it('names the offline-safe onnxruntime-node install when it cannot be loaded', () => {
    const e = onnxruntimeMissing(new Error("Cannot find module 'onnxruntime-node'\nRequire stack: ..."));
    expect(e.code).toBe('E_ARG');
    expect(e.message).toContain('--onnxruntime-node-install=skip');
    expect(e.message).not.toContain('Require stack');
  });
});
