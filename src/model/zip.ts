/**
 * Just enough of the ZIP format to read what `torch.save` writes: the central directory (with ZIP64 fields),
 * and stored (uncompressed) entries, returned as views into the bytes given, never copied. Every offset and
 * size is checked against the data before it is used.
 */
import { ChimeraError } from '../errors';

export interface ZipEntry {
  name: string;
  /** 0 = stored; anything else is refused when the entry is read. */
  method: number;
  size: number;
  compressedSize: number;
  /** Absolute position of the entry's data (after its local header). */
  dataStart: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CDH_SIG = 0x02014b50;
const LFH_SIG = 0x04034b50;
const MAX_ENTRIES = 1 << 20;

/** True when the bytes start like a ZIP archive (a local file header). */
export function looksLikeZip(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
}

export function readZipDirectory(bytes: Uint8Array, file: string): Map<string, ZipEntry> {
  const fail = (problem: string): never => {
    throw new ChimeraError('E_MODEL', `${file}: zip archive: ${problem}`);
  };
  const size = bytes.length;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);
  const u64 = (o: number): number => {
    const v = dv.getBigUint64(o, true);
    if (v > BigInt(size)) fail(`a 64-bit field (${v}) is larger than the file`);
    return Number(v);
  };

  if (size < 22) fail(`only ${size} bytes`);
  // The end-of-central-directory record: 22 bytes plus a comment of at most 65535 bytes, at the very end.
  let eocd = -1;
  for (let o = size - 22; o >= Math.max(0, size - 22 - 65535); o--) {
    if (u32(o) === EOCD_SIG && o + 22 + u16(o + 20) === size) {
      eocd = o;
      break;
    }
  }
  if (eocd < 0) fail('no end-of-central-directory record (truncated?)');
  let count = u16(eocd + 10);
  let cdSize = u32(eocd + 12);
  let cdOffset = u32(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || u32(loc) !== ZIP64_LOCATOR_SIG) fail('ZIP64 fields without a ZIP64 locator');
    const rec = u64(loc + 8);
    if (rec + 56 > size || u32(rec) !== ZIP64_EOCD_SIG) fail('bad ZIP64 end-of-central-directory record');
    count = u64(rec + 32);
    cdSize = u64(rec + 40);
    cdOffset = u64(rec + 48);
  }
  if (count > MAX_ENTRIES) fail(`${count} entries`);
  if (cdOffset + cdSize > size) fail('the central directory lies outside the file');

  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  const dec = new TextDecoder('utf-8', { fatal: true });
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdOffset + cdSize || u32(p) !== CDH_SIG) fail(`central directory entry ${i} is malformed`);
    const method = u16(p + 10);
    let compressedSize = u32(p + 20);
    let usize = u32(p + 24);
    const nameLen = u16(p + 28);
    const extraLen = u16(p + 30);
    const commentLen = u16(p + 32);
    let lho = u32(p + 42);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cdOffset + cdSize) fail(`central directory entry ${i} runs past the directory`);
    let name: string;
    try {
      name = dec.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    } catch {
      return fail(`entry ${i} has a name that is not UTF-8`);
    }
    // ZIP64 extended information: only the fields whose 32-bit value is saturated, in this order.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = u16(x);
      const len = u16(x + 2);
      if (x + 4 + len > xEnd) fail(`entry '${name}' has a malformed extra field`);
      if (id === 0x0001) {
        let q = x + 4;
        const next = (): number => {
          if (q + 8 > x + 4 + len) fail(`entry '${name}' has a short ZIP64 field`);
          const v = u64(q);
          q += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (lho === 0xffffffff) lho = next();
      }
      x += 4 + len;
    }
    if (lho + 30 > size || u32(lho) !== LFH_SIG) fail(`entry '${name}' has no local header at ${lho}`);
    const dataStart = lho + 30 + u16(lho + 26) + u16(lho + 28);
    if (dataStart + compressedSize > size) fail(`entry '${name}' (${compressedSize} bytes at ${dataStart}) runs past the end of the file (${size} bytes)`);
    if (entries.has(name)) fail(`entry '${name}' appears twice`);
    entries.set(name, { name, method, size: usize, compressedSize, dataStart });
    p = end;
  }
  return entries;
}

/** The bytes of a stored entry, as a view. */
export function zipEntryBytes(bytes: Uint8Array, entry: ZipEntry, file: string): Uint8Array {
  if (entry.method !== 0)
    throw new ChimeraError('E_MODEL', `${file}: zip entry '${entry.name}' is compressed (method ${entry.method}); torch.save stores entries uncompressed`);
  if (entry.size !== entry.compressedSize)
    throw new ChimeraError('E_MODEL', `${file}: zip entry '${entry.name}' is stored but its sizes differ`);
  return bytes.subarray(entry.dataStart, entry.dataStart + entry.size);
}
