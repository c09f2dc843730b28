// The packed model file (chimera convert): round trip, and hostile or broken files end in E_MODEL.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChimeraError } from '../src/errors';
import { MarianModel } from '../src/marian';
import { PACKED_MAGIC } from '../src/model/packed-file';

const modelDir = path.resolve(__dirname, '..', 'models', 'marian-m30k-en-de');
const SENTENCES = ['A dog runs across the grass.', 'Two children play in the snow.', 'A man rides a red bike.'];

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-packed-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function expectModelError(file: string, fragment: RegExp): Promise<void> {
  const err = await MarianModel.load(file).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `${file} loaded`).toBeInstanceOf(ChimeraError);
  expect((err as ChimeraError).code).toBe('E_MODEL');
  expect((err as ChimeraError).message).toMatch(fragment);
}

describe.each(['fp32', 'fp16', 'int8'] as const)('packed %s file', (precision) => {
  let file: string;
  let direct: MarianModel;

  beforeAll(async () => {
    direct = await MarianModel.load(modelDir, { precision });
    file = path.join(tmp, `m-${precision}.chimera`);
    const bytes = direct.save(file);
    expect(bytes).toBe(fs.statSync(file).size);
  });

  it('loads back to the same precision and gives identical translations and logits', async () => {
    const back = await MarianModel.load(file);
    expect(back.precision).toEqual(direct.precision);
    const tok = back.tokenizer!;
    for (const s of SENTENCES) {
      const ids = tok.encode(s);
      expect(back.generate([ids], { beam: 2 }).ids).toEqual(direct.generate([ids], { beam: 2 }).ids);
      const dec = [direct.config.decoderStartId, ...direct.generate([ids]).ids[0].slice(0, 3)];
      expect(Array.from(back.teacherForcedLogits(ids, dec))).toEqual(Array.from(direct.teacherForcedLogits(ids, dec)));
    }
  });

  it('refuses a different precision than it was packed at', async () => {
    const other = precision === 'int8' ? 'fp32' : 'int8';
    await expect(MarianModel.load(file, { precision: other })).rejects.toMatchObject({ code: 'E_ARG' });
  });
});

describe('hostile packed files', () => {
  let good: Buffer;
  beforeAll(async () => {
    const m = await MarianModel.load(modelDir, { precision: 'int8' });
    const f = path.join(tmp, 'good.chimera');
    m.save(f);
    good = fs.readFileSync(f);
  });

  const write = (name: string, bytes: Uint8Array) => {
    const f = path.join(tmp, name);
    fs.writeFileSync(f, bytes);
    return f;
  };
  const withHeader = (name: string, edit: (h: Record<string, unknown>) => void) => {
    const hlen = Number(good.readBigUInt64LE(8));
    const h = JSON.parse(good.toString('utf8', 16, 16 + hlen)) as Record<string, unknown>;
    h.source = ''; // room for edits that lengthen the header, which must not move the data
    edit(h);
    const hb = Buffer.from(JSON.stringify(h));
    expect(hb.length).toBeLessThanOrEqual(hlen); // keep offsets valid: pad with spaces in place
    const out = Buffer.from(good);
    out.fill(0x20, 16, 16 + hlen);
    hb.copy(out, 16);
    return write(name, out);
  };

  it('a file that is not a packed model', async () => {
    await expectModelError(write('junk.chimera', Buffer.from('hello world, not a model at all')), /not a chimera packed model/);
  });

  it('a truncated file', async () => {
    await expectModelError(write('trunc.chimera', good.subarray(0, Math.floor(good.length / 2))), /outside the file/);
  });

  it('a header length past the end of the file', async () => {
    const b = Buffer.from(good);
    b.writeBigUInt64LE(BigInt(good.length * 4), 8);
    await expectModelError(write('hlen.chimera', b), /runs past the end/);
  });

  it('a header that is not JSON', async () => {
    const b = Buffer.from(good);
    b.write('{{{{', 16);
    await expectModelError(write('json.chimera', b), /not valid JSON/);
  });

  it('a blob offset out of range', async () => {
    const f = withHeader('offset.chimera', (h) => {
      (h.blobs as { offset: number }[])[0].offset = 64; // inside the header, before the data
    });
    await expectModelError(f, /outside the file/);
  });

  it('a misaligned blob', async () => {
    const f = withHeader('align.chimera', (h) => {
      (h.blobs as { offset: number }[])[1].offset += 4;
    });
    await expectModelError(f, /aligned/);
  });

  it('packed weights whose size does not match their shape', async () => {
    const f = withHeader('size.chimera', (h) => {
      const b = (h.blobs as { kind: string; n: number }[]).find((x) => x.kind === 's8')!;
      b.n += 64;
    });
    await expectModelError(f, /wrong size|outside the file|expected 8001x128/);
  });

  it('a reference to a missing blob', async () => {
    const f = withHeader('ref.chimera', (h) => {
      (h.desc as { lmHead: { bias: unknown } }).lmHead.bias = { $blob: 99999 };
    });
    await expectModelError(f, /missing blob|reference to one of the/);
  });

  it('a header whose description does not match the model dimensions', async () => {
    const f = withHeader('dims.chimera', (h) => {
      (h.desc as { d: number }).d = 64;
    });
    await expectModelError(f, /could not build the model|but the config says/);
  });

  it('the magic is checked before anything else', () => {
    expect(good.toString('latin1', 0, 8)).toBe(PACKED_MAGIC);
  });
});
