/**
 * Reading line-aligned text files (hypotheses, references, sources) for the quality commands, with the checks
 * that catch misaligned or broken inputs before anything is scored: missing files, empty files, bytes that are
 * not UTF-8, and files whose line counts disagree.
 */
import * as fs from 'node:fs';
import { ChimeraError } from '../errors';

export interface ReadLinesOptions {
  /** Keep a leading byte-order mark as a character, as sacreBLEU (which reads with `utf-8`, not `utf-8-sig`) does. Default false: drop it. */
  keepBom?: boolean;
  /** What the file is, for messages (e.g. 'hypothesis'). */
  role?: string;
}

/** Byte offset of the first byte that does not belong to a well-formed UTF-8 sequence, or -1 when all are. */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0; // no overlong forms
      if (c === 0xed) hi = 0x9f; // no surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f; // nothing above U+10FFFF
    } else return i;
    for (let k = 1; k <= n; k++) {
      const x = b[i + k];
      if (x === undefined) return i;
      if (k === 1 ? x < lo || x > hi : x < 0x80 || x > 0xbf) return i;
    }
    i += n + 1;
  }
  return -1;
}

/** Decodes UTF-8 strictly; bad bytes throw E_INPUT naming the line and byte offset. */
export function decodeUtf8(bytes: Uint8Array, name: string, keepBom = false): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: keepBom }).decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    let line = 1;
    for (let i = 0; i < at; i++) if (bytes[i] === 0x0a) line++;
    const where = at >= 0 ? ` (line ${line}, byte offset ${at}: 0x${bytes[at].toString(16).padStart(2, '0')})` : '';
    throw new ChimeraError('E_INPUT', `${name} is not valid UTF-8${where}; convert it to UTF-8 first (e.g. with iconv)`);
  }
}

/**
 * Splits text into lines the way Python iterates a file opened with `newline="\n"` (sacreBLEU's reader): on
 * '\n' only, a final '\n' ending the last line rather than starting an empty one. Trailing '\r' stays (BLEU
 * strips trailing whitespace anyway).
 */
export function splitLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Reads the lines of `file`, or of stdin when `file` is '-'. Missing, unreadable, empty or non-UTF-8 input is E_INPUT. */
export function readLines(file: string, opts: ReadLinesOptions = {}): string[] {
  const role = opts.role ? `${opts.role} ` : '';
  const name = file === '-' ? `${role}input (stdin)` : `${role}file ${file}`;
  let bytes: Uint8Array;
  try {
    if (file !== '-' && fs.statSync(file).isDirectory()) throw new ChimeraError('E_INPUT', `${name} is a directory, not a text file`);
    bytes = fs.readFileSync(file === '-' ? 0 : file);
  } catch (e) {
    if (e instanceof ChimeraError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ChimeraError('E_INPUT', `${name} does not exist`);
    if (code === 'EAGAIN' && file === '-') throw new ChimeraError('E_INPUT', `${name} could not be read: pipe a file in, or name one`);
    throw new ChimeraError('E_INPUT', `${name} could not be read: ${(e as Error).message}`, { cause: e });
  }
  if (bytes.length === 0) throw new ChimeraError('E_INPUT', `${name} is empty`);
  return splitLines(decodeUtf8(bytes, name, opts.keepBom ?? false));
}

/** Throws E_INPUT unless every named stream has as many lines as the first. */
export function checkAligned(streams: { name: string; lines: string[] }[]): void {
  const [first, ...rest] = streams;
  for (const s of rest) {
    if (s.lines.length !== first.lines.length)
      throw new ChimeraError(
        'E_INPUT',
        `${s.name} has ${s.lines.length} lines but ${first.name} has ${first.lines.length}: the files must be aligned line by line`,
      );
  }
}
