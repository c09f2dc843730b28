/**
 * MarianTokenizer against the shared real model: reference ids, round trips on Multi30k, the source.spm
 * fallback (which must agree with tokenizer.json), and input / file errors.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ChimeraError } from '../src/errors';
import { readIntTensor } from '../src/model/safetensors';
import { parseSpmModel } from '../src/model/spm';
import { MarianTokenizer } from '../src/model/tokenizer';
import { readSafetensors as miniRead, getInts } from './helpers/safetensors-mini';

const SHARED = '/work/shared/models/marian-m30k-en-de';
const DATA = '/work/shared/data/multi30k';
const have = fs.existsSync(path.join(SHARED, 'tokenizer.json')) && fs.existsSync(path.join(DATA, 'val.en'));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'chimera-model-tok-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpDir = (name: string, copy: string[] = []) => {
  const d = path.join(tmp, `${counter++}-${name}`);
  fs.mkdirSync(d, { recursive: true });
  for (const f of copy) fs.copyFileSync(path.join(SHARED, f), path.join(d, f));
  return d;
};

function expectError(f: () => unknown, code: string, ...parts: string[]): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeInstanceOf(ChimeraError);
  expect((err as ChimeraError).code, (err as ChimeraError).message).toBe(code);
  for (const p of parts) expect((err as ChimeraError).message).toContain(p);
}

const lines = (lang: string, n: number) => fs.readFileSync(path.join(DATA, `val.${lang}`), 'utf8').split('\n').slice(0, n);
const normalised = (s: string) => s.normalize('NFKC').trim().replace(/\s+/g, ' ');

describe.skipIf(!have)('MarianTokenizer on marian-m30k-en-de', () => {
  const tok = have ? MarianTokenizer.load(SHARED) : (null as unknown as MarianTokenizer);
  const refFile = path.join(SHARED, 'reference', 'logits.safetensors');

  it('special ids and vocabulary', () => {
    expect(tok.source).toBe('tokenizer.json');
    expect([tok.vocabSize, tok.eosId, tok.unkId, tok.padId]).toEqual([8001, 0, 1, 8000]);
    expect(tok.idToToken(0)).toBe('</s>');
    expect(tok.idToToken(8000)).toBe('<pad>');
    expect(tok.idToToken(8001)).toBeUndefined();
    expect(tok.idToToken(-1)).toBeUndefined();
    expect(tok.tokenToId('▁a')).toBe(3);
  });

  it.skipIf(!fs.existsSync(refFile))('encodes the first val.en lines exactly as the reference sN.input_ids', () => {
    const en = lines('en', 4);
    const mini = miniRead(refFile);
    for (let i = 0; i < 4; i++) {
      const ids = readIntTensor(refFile, `s${i}.input_ids`);
      expect(ids.dtype).toBe('I64');
      expect(ids.data).toEqual(getInts(mini, `s${i}.input_ids`));
      expect(tok.encode(en[i])).toEqual(ids.data);
    }
  });

  it.skipIf(!fs.existsSync(refFile))('decodes the reference greedy ids to the reference greedy text', () => {
    const greedy = fs.readFileSync(path.join(SHARED, 'reference', 'val200.greedy.de'), 'utf8').split('\n');
    for (let i = 0; i < 4; i++) {
      const ids = readIntTensor(refFile, `s${i}.decoder_input_ids`).data;
      expect(ids[0]).toBe(tok.padId);
      expect(tok.decode(ids)).toBe(greedy[i]);
      expect(tok.decode([...ids, tok.eosId])).toBe(greedy[i]);
      // Metaspace drops the word-start space only on the first token, here <pad>.
      expect(tok.decode(ids, { skipSpecialTokens: false })).toBe(`<pad> ${greedy[i]}`);
    }
  });

  it('300 val.en and val.de lines: eos-terminated, in range, and round trip when no <unk>', () => {
    let roundTrips = 0;
    for (const lang of ['en', 'de']) {
      for (const line of lines(lang, 300)) {
        const ids = tok.encode(line);
        expect(ids.length).toBeGreaterThan(1);
        expect(ids[ids.length - 1]).toBe(0);
        expect(ids.slice(0, -1)).not.toContain(0);
        expect(ids).not.toContain(tok.padId);
        for (const id of ids) expect(id >= 0 && id < tok.vocabSize).toBe(true);
        if (!ids.includes(tok.unkId)) {
          expect(tok.decode(ids)).toBe(normalised(line));
          roundTrips++;
        }
      }
    }
    expect(roundTrips).toBeGreaterThan(580);
  });

  it('collapses whitespace like SentencePiece and applies NFKC', () => {
    expect(tok.encode('  A   man \t in\na  boat ')).toEqual(tok.encode('A man in a boat'));
    expect(tok.encode('ＡＢＣ')).toEqual(tok.encode('ABC'));
    const ids = tok.encode('A man 漢字 here');
    expect(ids).toContain(tok.unkId);
    // As SentencePiece: the word-start piece before the skipped <unk> keeps its space.
    expect(tok.decode(ids)).toBe('A man  here');
    expect(tok.decode(ids, { skipSpecialTokens: false })).toBe('A man <unk> here</s>');
  });

  it('encodeBatch, empty and invalid input', () => {
    const texts = ['A dog runs.', 'Two men talk.'];
    expect(tok.encodeBatch(texts)).toEqual(texts.map((t) => tok.encode(t)));
    expectError(() => tok.encode(''), 'E_INPUT', 'empty');
    expectError(() => tok.encode(' \n\t '), 'E_INPUT', 'empty');
    expectError(() => tok.encode(null as unknown as string), 'E_INPUT', 'string');
    expectError(() => tok.encodeBatch(['ok', '']), 'E_INPUT', 'texts[1]');
    expectError(() => tok.encodeBatch('x' as unknown as string[]), 'E_INPUT');
    expect(tok.decode([])).toBe('');
    expect(tok.decode([0, 8000])).toBe('');
    expect(tok.decode(Int32Array.of(7, 19))).toBe('A man');
    expectError(() => tok.decode([8001]), 'E_INPUT', '8001');
    expectError(() => tok.decode([-1]), 'E_INPUT');
    expectError(() => tok.decode([1.5]), 'E_INPUT');
  });
});

describe.skipIf(!have || !fs.existsSync(path.join(SHARED, 'source.spm')))('source.spm fallback', () => {
  it('gives the same ids as tokenizer.json on 300 val.en and 300 val.de lines', () => {
    const dir = tmpDir('spm', ['source.spm', 'vocab.json', 'tokenizer_config.json']);
    const spm = MarianTokenizer.load(dir);
    const tj = MarianTokenizer.load(SHARED);
    expect(spm.source).toBe('source.spm');
    expect([spm.vocabSize, spm.eosId, spm.unkId, spm.padId]).toEqual([tj.vocabSize, tj.eosId, tj.unkId, tj.padId]);
    for (const lang of ['en', 'de']) {
      for (const line of lines(lang, 300)) {
        const ids = spm.encode(line);
        expect(ids).toEqual(tj.encode(line));
        expect(spm.decode(ids)).toBe(tj.decode(ids));
      }
    }
    // SentencePiece never matches control symbols in text.
    expect(spm.encode('a </s> b').slice(0, -1)).not.toContain(0);
  });

  it('maps pieces through vocab.json, whatever the ids', () => {
    const dir = tmpDir('spm-perm', ['source.spm', 'tokenizer_config.json']);
    const vocab = JSON.parse(fs.readFileSync(path.join(SHARED, 'vocab.json'), 'utf8')) as Record<string, number>;
    const a = vocab['▁a'];
    const man = vocab['▁man'];
    vocab['▁a'] = man;
    vocab['▁man'] = a;
    fs.writeFileSync(path.join(dir, 'vocab.json'), JSON.stringify(vocab));
    const tok = MarianTokenizer.load(dir);
    const orig = MarianTokenizer.load(SHARED).encode('a man');
    expect(tok.encode('a man')).toEqual([man, a, 0]);
    expect(orig).toEqual([a, man, 0]);
    expect(tok.decode([man, a])).toBe('a man');
  });

  it('parses the model proto', () => {
    const m = parseSpmModel(fs.readFileSync(path.join(SHARED, 'source.spm')), 'source.spm');
    expect(m.pieces.length).toBe(8000);
    expect(m.pieces[0]).toMatchObject({ piece: '</s>', type: 3 });
    expect(m.pieces[1]).toMatchObject({ piece: '<unk>', type: 2 });
    expect(m.modelType).toBe(1);
    expect(m.normalizerName).toBe('nfkc');
    expect(m.precompiledCharsmap.length).toBeGreaterThan(0);
  });

  it('refuses corrupt .spm and vocab.json files', () => {
    const dir = tmpDir('spm-bad', ['vocab.json']);
    const spmFile = path.join(dir, 'source.spm');
    fs.writeFileSync(spmFile, Buffer.alloc(64, 0xff));
    expectError(() => MarianTokenizer.load(dir), 'E_MODEL', spmFile, 'not a valid SentencePiece model');
    fs.writeFileSync(spmFile, fs.readFileSync(path.join(SHARED, 'source.spm')).subarray(0, 1000));
    expectError(() => MarianTokenizer.load(dir), 'E_MODEL', spmFile, 'SentencePiece');
    fs.writeFileSync(spmFile, Buffer.from([0x08, 0x01]));
    expectError(() => MarianTokenizer.load(dir), 'E_MODEL', 'no pieces');
    fs.copyFileSync(path.join(SHARED, 'source.spm'), spmFile);
    fs.writeFileSync(path.join(dir, 'vocab.json'), JSON.stringify({ '</s>': 0, '<unk>': 0 }));
    expectError(() => MarianTokenizer.load(dir), 'E_MODEL', 'vocab.json', 'id 0');
    fs.writeFileSync(path.join(dir, 'vocab.json'), JSON.stringify({ '</s>': 0, '<unk>': 1 }));
    expectError(() => MarianTokenizer.load(dir), 'E_MODEL', "pad token '<pad>'");
  });
});

describe('tokenizer files', () => {
  it('no tokenizer at all', () => {
    const dir = tmpDir('none');
    expectError(() => MarianTokenizer.load(dir), 'E_MODEL', dir, 'tokenizer.json', 'source.spm');
  });

  it('broken tokenizer.json and tokenizer_config.json', () => {
    const dir = tmpDir('broken');
    const tj = path.join(dir, 'tokenizer.json');
    fs.writeFileSync(tj, '{"model": ');
    expectError(() => MarianTokenizer.load(dir), 'E_MODEL', tj, 'not valid JSON');
    fs.writeFileSync(tj, JSON.stringify({ model: { type: 'Nonsense' }, added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null }));
    expectError(() => MarianTokenizer.load(dir), 'E_MODEL', tj, 'cannot be used as a tokenizer');
    fs.writeFileSync(tj, JSON.stringify([1]));
    expectError(() => MarianTokenizer.load(dir), 'E_MODEL', 'not a JSON object');
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ separate_vocabs: true }));
    expectError(() => MarianTokenizer.load(dir), 'E_MODEL', 'separate_vocabs');
  });

  it.skipIf(!have)('special tokens named by tokenizer_config.json must exist', () => {
    const dir = tmpDir('special', ['tokenizer.json']);
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ pad_token: { content: '<blank>' } }));
    expectError(() => MarianTokenizer.load(dir), 'E_MODEL', "pad token '<blank>'");
  });
});
