/**
 * A restricted unpickler for PyTorch state dicts: it interprets the pickle opcodes a `torch.save` of a state
 * dict uses and builds plain data from them. It executes nothing.
 *
 * Why our own and not a maintained JavaScript pickle parser: the ones on npm (e.g. `pickleparser`) are general
 * unpicklers that resolve any global through a user-supplied registry and fall back to generic placeholder
 * objects, call REDUCE / NEWOBJ / BUILD on them, and have no limits on memo size, nesting or allocation. Making
 * one safe would mean auditing and overriding every opcode anyway; the subset a state dict needs is ~40
 * opcodes, so we write it and keep every rule in one place:
 *
 * - Only the globals in ALLOWED_GLOBALS can be named, and the GLOBAL / STACK_GLOBAL opcode refuses any other
 *   (`os.system`, `builtins.eval`, `subprocess.*`, ...) with E_MODEL naming it, before anything could call it.
 *   The allowed ones are not Python functions: each maps to a small TypeScript builder below that validates
 *   its arguments and returns data (`collections.OrderedDict` -> PyDict, `torch._utils._rebuild_tensor_v2` ->
 *   TensorRef, ...). Storage classes are only valid inside persistent ids.
 * - Opcodes that construct arbitrary objects (INST, OBJ, NEWOBJ, NEWOBJ_EX, EXT*, out-of-band buffers) and
 *   the text forms we do not need are refused, naming the opcode.
 * - Every length is checked against the bytes left before anything is allocated; the memo (count and index),
 *   the stack, the MARK depth and container nesting are bounded; integers are at most 16 bytes.
 * - Nothing here recurses over the data it builds, so cyclic or deep structures cannot blow the JS stack.
 *
 * This is the same guarantee as `torch.load(weights_only=True)`: a checkpoint can describe tensors and dicts,
 * never code.
 */
import { ChimeraError } from '../errors';

export class PyTuple {
  constructor(readonly items: PyValue[], readonly depth: number) {}
}
export class PyList {
  constructor(readonly items: PyValue[], public depth: number) {}
}
export class PyDict {
  readonly map = new Map<string | number | boolean | null, PyValue>();
  /** State set by BUILD (an OrderedDict's `_metadata` attribute, for example); never interpreted. */
  state: PyValue | undefined;
  constructor(public depth: number) {}
}
/** A reference to one of ALLOWED_GLOBALS. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}
/** What the persistent-load callback returns for a storage (the caller decides the fields). */
export interface StorageRef {
  kind: 'storage';
  dtype: TorchDtype;
  key: string;
  /** Elements in the storage, as declared by the pickle (checked against the file by the caller). */
  numel: number;
  [extra: string]: unknown;
}
export interface TensorRef {
  kind: 'tensor';
  storage: StorageRef;
  /** In elements of the storage dtype. */
  offset: number;
  shape: number[];
  stride: number[];
}
export type PyValue =
  | null | boolean | number | bigint | string | Uint8Array
  | PyTuple | PyList | PyDict | PyGlobal | StorageRef | TensorRef;

export type TorchDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** The storage classes a state dict may name, and the dtype and element size each stands for. */
export const STORAGE_CLASSES: Record<string, { dtype: TorchDtype; bytes: number }> = {
  FloatStorage: { dtype: 'F32', bytes: 4 },
  HalfStorage: { dtype: 'F16', bytes: 2 },
  BFloat16Storage: { dtype: 'BF16', bytes: 2 },
  DoubleStorage: { dtype: 'F64', bytes: 8 },
  LongStorage: { dtype: 'I64', bytes: 8 },
  IntStorage: { dtype: 'I32', bytes: 4 },
  ShortStorage: { dtype: 'I16', bytes: 2 },
  CharStorage: { dtype: 'I8', bytes: 1 },
  ByteStorage: { dtype: 'U8', bytes: 1 },
  BoolStorage: { dtype: 'BOOL', bytes: 1 },
};

const MAX_BROADCAST_ELEMENTS = 1 << 24;

const REBUILD_TENSOR_V2 = 'torch._utils._rebuild_tensor_v2';
const REBUILD_TENSOR = 'torch._utils._rebuild_tensor';
const REBUILD_PARAMETER = 'torch._utils._rebuild_parameter';
const ORDERED_DICT = 'collections.OrderedDict';

/** Every global a checkpoint may name. Anything else refuses the file. */
export const ALLOWED_GLOBALS: ReadonlySet<string> = new Set([
  ORDERED_DICT, REBUILD_TENSOR_V2, REBUILD_TENSOR, REBUILD_PARAMETER,
  ...Object.keys(STORAGE_CLASSES).map((c) => `torch.${c}`),
]);

export interface UnpickleOptions {
  /** Names the file in errors. */
  file: string;
  /** Resolves a persistent id (BINPERSID / PERSID) to a storage; throw to refuse it. */
  persistentLoad?: (pid: PyValue) => StorageRef;
  /** Where in `bytes` to start (for files holding several pickles in a row). */
  start?: number;
}

export interface UnpickleResult {
  value: PyValue;
  /** The position just after STOP. */
  end: number;
}

export const LIMITS = {
  maxMarkDepth: 64,
  maxNesting: 32,
  maxStack: 1 << 22,
  maxMemo: 1 << 20,
  maxIntBytes: 16,
};

const OPCODE_NAMES: Record<number, string> = {
  0x69: 'INST', 0x6f: 'OBJ', 0x81: 'NEWOBJ', 0x92: 'NEWOBJ_EX', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER', 0x53: 'STRING', 0x56: 'UNICODE',
  0x46: 'FLOAT', 0x4c: 'LONG', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET',
};

const MARK = Symbol('mark');
type Slot = PyValue | typeof MARK;

function depthOf(v: PyValue): number {
  return v instanceof PyTuple || v instanceof PyList || v instanceof PyDict ? v.depth : 0;
}

/** Python-style description of a value, for error messages (never recursive). */
export function describe(v: PyValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '...' : v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v instanceof Uint8Array) return `bytes[${v.length}]`;
  if (v instanceof PyTuple) return `tuple[${v.items.length}]`;
  if (v instanceof PyList) return `list[${v.items.length}]`;
  if (v instanceof PyDict) return `dict[${v.map.size}]`;
  if (v instanceof PyGlobal) return v.qualified;
  return v.kind;
}

/** A non-negative safe integer from a pickled int, or an E_MODEL error naming `what`. */
export function asCount(file: string, v: PyValue, what: string): number {
  if (typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ChimeraError('E_MODEL', `${file}: ${what} ${describe(v)} is not a non-negative integer`);
  return v;
}

function intTuple(file: string, v: PyValue, what: string): number[] {
  if (!(v instanceof PyTuple) && !(v instanceof PyList)) throw new ChimeraError('E_MODEL', `${file}: ${what} is ${describe(v)}, not a tuple`);
  if (v.items.length > 64) throw new ChimeraError('E_MODEL', `${file}: ${what} has ${v.items.length} dimensions`);
  return v.items.map((x, i) => asCount(file, x, `${what}[${i}]`));
}

/** Validates a tensor's view of its storage: every element it addresses lies inside the storage. */
function makeTensor(file: string, storage: PyValue, offset: PyValue, size: PyValue, stride: PyValue): TensorRef {
  if (typeof storage !== 'object' || storage === null || (storage as StorageRef).kind !== 'storage')
    throw new ChimeraError('E_MODEL', `${file}: a tensor is built from ${describe(storage)}, not a storage`);
  const st = storage as StorageRef;
  const off = asCount(file, offset, 'tensor storage offset');
  const shape = intTuple(file, size, 'tensor size');
  const strides = intTuple(file, stride, 'tensor stride');
  if (strides.length !== shape.length)
    throw new ChimeraError('E_MODEL', `${file}: tensor size has ${shape.length} dimensions but stride has ${strides.length}`);
  let numel = 1;
  let last = off;
  for (let i = 0; i < shape.length; i++) {
    numel *= shape[i];
    if (!Number.isSafeInteger(numel)) throw new ChimeraError('E_MODEL', `${file}: tensor size [${shape.join(', ')}] is absurd`);
    if (shape[i] > 0) last += (shape[i] - 1) * strides[i];
  }
  // Overlapping views (stride 0, as `expand` makes) address more elements than the storage holds; reading one
  // allocates them all, so past MAX_BROADCAST_ELEMENTS that is refused rather than trusted.
  if (numel > st.numel && numel > MAX_BROADCAST_ELEMENTS)
    throw new ChimeraError('E_MODEL', `${file}: a tensor view of ${numel} elements over a storage of ${st.numel}: refused (more than ${MAX_BROADCAST_ELEMENTS})`);
  if (numel > 0 && (!Number.isSafeInteger(last) || last >= st.numel))
    throw new ChimeraError('E_MODEL',
      `${file}: tensor [${shape.join(', ')}] at offset ${off} with stride [${strides.join(', ')}] reaches element ${last}, outside its storage '${st.key}' of ${st.numel} elements`);
  return { kind: 'tensor', storage: st, offset: off, shape, stride: strides };
}

/**
 * Runs the restricted pickle machine over `bytes` from `opts.start` to the first STOP and returns the value
 * left on the stack. Every problem is an E_MODEL error naming the file and the byte position.
 */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions): UnpickleResult {
  const file = opts.file;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length;
  let pos = opts.start ?? 0;
  let opPos = pos;
  const stack: Slot[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  const utf8 = new TextDecoder('utf-8', { fatal: true });

  const fail = (problem: string): never => {
    throw new ChimeraError('E_MODEL', `${file}: pickle byte ${opPos}: ${problem}`);
  };
  const need = (k: number): void => {
    if (!(k >= 0) || pos + k > n) fail(`needs ${k} bytes but only ${n - pos} are left`);
  };
  const u8 = () => { need(1); return bytes[pos++]; };
  const u16 = () => { need(2); const v = dv.getUint16(pos, true); pos += 2; return v; };
  const u32 = () => { need(4); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const i32 = () => { need(4); const v = dv.getInt32(pos, true); pos += 4; return v; };
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(n)) fail(`length ${v} is larger than the file`);
    return Number(v);
  };
  const take = (k: number): Uint8Array => {
    need(k);
    const out = bytes.subarray(pos, pos + k);
    pos += k;
    return out;
  };
  const text = (k: number): string => {
    const raw = take(k);
    try {
      return utf8.decode(raw);
    } catch {
      return fail('a string is not valid UTF-8');
    }
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0 || end - pos > 4096) fail('an unterminated text argument');
    const s = Buffer.from(bytes.buffer, bytes.byteOffset + pos, end - pos).toString('latin1');
    pos = end + 1;
    return s;
  };
  const push = (v: PyValue): void => {
    if (stack.length >= LIMITS.maxStack) fail(`the stack exceeds ${LIMITS.maxStack} items`);
    stack.push(v);
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined) fail('pops an empty stack');
    if (v === MARK) fail('pops a MARK as a value');
    return v as PyValue;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail('needs a value on the stack');
    return v as PyValue;
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) fail('no MARK to pop to');
    const items = stack.splice(m!) as Slot[];
    items.shift(); // the MARK itself
    if (items.some((x) => x === MARK)) fail('a MARK inside marked items');
    return items as PyValue[];
  };
  const nested = (items: PyValue[]): number => {
    let d = 0;
    for (const x of items) d = Math.max(d, depthOf(x));
    if (d + 1 > LIMITS.maxNesting) fail(`containers nest deeper than ${LIMITS.maxNesting} levels`);
    return d + 1;
  };
  const grow = (c: PyList | PyDict, items: PyValue[]): void => {
    const d = nested(items);
    if (d > c.depth) c.depth = d;
  };
  const memoPut = (idx: number): void => {
    if (!Number.isSafeInteger(idx) || idx < 0 || idx >= 2 ** 31) fail(`memo index ${idx} out of range`);
    if (!memo.has(idx) && memo.size >= LIMITS.maxMemo) fail(`the memo exceeds ${LIMITS.maxMemo} entries`);
    memo.set(idx, top());
  };
  const memoGet = (idx: number): void => {
    const v = memo.get(idx);
    if (v === undefined) fail(`memo index ${idx} was never stored`);
    push(v!);
  };
  const intBytes = (k: number): number | bigint => {
    if (k > LIMITS.maxIntBytes) fail(`an integer of ${k} bytes`);
    const b = take(k);
    let v = 0n;
    for (let i = k - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (k > 0 && b[k - 1] & 0x80) v -= 1n << BigInt(8 * k);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const dictKey = (k: PyValue): string | number | boolean | null => {
    if (k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'boolean') return k;
    return fail(`a dict key of type ${describe(k)}`);
  };
  const setItems = (d: PyValue, kv: PyValue[]): void => {
    if (!(d instanceof PyDict)) fail(`SETITEM(S) on ${describe(d)}, not a dict`);
    if (kv.length % 2) fail('SETITEMS with an odd number of items');
    const dict = d as PyDict;
    grow(dict, kv);
    for (let i = 0; i < kv.length; i += 2) dict.map.set(dictKey(kv[i]), kv[i + 1]);
  };
  const global = (module: string, name: string): PyGlobal => {
    const q = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(q))
      fail(`refuses global '${q}': a checkpoint may only name ${[...ALLOWED_GLOBALS].filter((g) => !g.includes('Storage')).join(', ')} and torch storage classes (nothing is ever executed)`);
    return new PyGlobal(module, name);
  };
  const reduce = (f: PyValue, args: PyValue): PyValue => {
    if (!(f instanceof PyGlobal)) return fail(`REDUCE calls ${describe(f)}, not an allowed global`);
    if (!(args instanceof PyTuple)) return fail(`REDUCE of ${f.qualified} with ${describe(args)} instead of an argument tuple`);
    const a = args.items;
    switch (f.qualified) {
      case ORDERED_DICT: {
        const d = new PyDict(1);
        if (a.length === 0) return d;
        if (a.length === 1 && a[0] instanceof PyList) {
          for (const pair of a[0].items) {
            if (!(pair instanceof PyTuple) || pair.items.length !== 2) fail('OrderedDict built from something other than pairs');
            setItems(d, (pair as PyTuple).items);
          }
          return d;
        }
        return fail(`OrderedDict called with ${a.map(describe).join(', ')}`);
      }
      case REBUILD_TENSOR_V2:
        if (a.length < 4 || a.length > 7) fail(`${f.qualified} takes 4 to 7 arguments, got ${a.length}`);
        return makeTensor(file, a[0], a[1], a[2], a[3]);
      case REBUILD_TENSOR:
        if (a.length !== 4) fail(`${f.qualified} takes 4 arguments, got ${a.length}`);
        return makeTensor(file, a[0], a[1], a[2], a[3]);
      case REBUILD_PARAMETER: {
        const t = a[0];
        if (a.length !== 3 || typeof t !== 'object' || t === null || (t as TensorRef).kind !== 'tensor')
          fail(`${f.qualified} takes (tensor, requires_grad, hooks), got ${a.map(describe).join(', ')}`);
        return t;
      }
      default:
        return fail(`${f.qualified} cannot be called`);
    }
  };
  const persistent = (pid: PyValue): void => {
    if (!opts.persistentLoad) fail('a persistent id where none is expected');
    push(opts.persistentLoad!(pid));
  };

  for (;;) {
    opPos = pos;
    if (pos >= n) fail('the pickle ends without STOP');
    const op = bytes[pos++];
    switch (op) {
      case 0x80: { // PROTO
        const p = u8();
        if (p > 5) fail(`pickle protocol ${p} is not supported`);
        break;
      }
      case 0x95: // FRAME: a length hint; the frame must lie inside the data
        need(u64());
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail(`STOP with ${stack.length} stack items and ${marks.length} open MARKs`);
        return { value: pop(), end: pos };
      case 0x28: // MARK
        if (marks.length >= LIMITS.maxMarkDepth) fail(`MARKs nest deeper than ${LIMITS.maxMarkDepth}`);
        marks.push(stack.length);
        if (stack.length >= LIMITS.maxStack) fail(`the stack exceeds ${LIMITS.maxStack} items`);
        stack.push(MARK);
        break;
      case 0x29: push(new PyTuple([], 1)); break; // EMPTY_TUPLE
      case 0x74: { const items = popMark(); push(new PyTuple(items, nested(items))); break; } // TUPLE
      case 0x85: case 0x86: case 0x87: { // TUPLE1..3
        const k = op - 0x84;
        const items: PyValue[] = [];
        for (let i = 0; i < k; i++) items.unshift(pop());
        push(new PyTuple(items, nested(items)));
        break;
      }
      case 0x5d: push(new PyList([], 1)); break; // EMPTY_LIST
      case 0x6c: { const items = popMark(); push(new PyList(items, nested(items))); break; } // LIST
      case 0x61: { // APPEND
        const v = pop();
        const l = top();
        if (!(l instanceof PyList)) fail(`APPEND to ${describe(l)}, not a list`);
        grow(l as PyList, [v]);
        (l as PyList).items.push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const l = top();
        if (!(l instanceof PyList)) fail(`APPENDS to ${describe(l)}, not a list`);
        grow(l as PyList, items);
        for (const x of items) (l as PyList).items.push(x);
        break;
      }
      case 0x7d: push(new PyDict(1)); break; // EMPTY_DICT
      case 0x64: { const items = popMark(); const d = new PyDict(1); setItems(d, items); push(d); break; } // DICT
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x4a: push(i32()); break; // BININT
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x49: { // INT (text): also True / False in protocol 0
        const s = line();
        if (s === '00') push(false);
        else if (s === '01') push(true);
        else if (/^-?\d{1,15}$/.test(s)) push(Number(s));
        else fail(`INT ${JSON.stringify(s)}`);
        break;
      }
      case 0x8a: push(intBytes(u8())); break; // LONG1
      case 0x8b: { // LONG4
        const k = i32();
        if (k < 0) fail('LONG4 with a negative length');
        push(intBytes(k));
        break;
      }
      case 0x47: push(dv.getFloat64((need(8), (pos += 8) - 8), false)); break; // BINFLOAT (big-endian)
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x58: push(text(u32())); break; // BINUNICODE
      case 0x8c: push(text(u8())); break; // SHORT_BINUNICODE
      case 0x8d: push(text(u64())); break; // BINUNICODE8
      case 0x55: push(text(u8())); break; // SHORT_BINSTRING (Python 2 str, read as UTF-8 like torch.load does)
      case 0x54: { // BINSTRING
        const k = i32();
        if (k < 0) fail('BINSTRING with a negative length');
        push(text(k));
        break;
      }
      case 0x43: push(take(u8())); break; // SHORT_BINBYTES
      case 0x42: push(take(u32())); break; // BINBYTES
      case 0x8e: push(take(u64())); break; // BINBYTES8
      case 0x71: memoPut(u8()); break; // BINPUT
      case 0x72: memoPut(u32()); break; // LONG_BINPUT
      case 0x70: { const s = line(); if (!/^\d{1,10}$/.test(s)) fail(`PUT ${JSON.stringify(s)}`); memoPut(Number(s)); break; } // PUT
      case 0x94: memoPut(memo.size); break; // MEMOIZE
      case 0x68: memoGet(u8()); break; // BINGET
      case 0x6a: memoGet(u32()); break; // LONG_BINGET
      case 0x67: { const s = line(); if (!/^\d{1,10}$/.test(s)) fail(`GET ${JSON.stringify(s)}`); memoGet(Number(s)); break; } // GET
      case 0x63: { const module = line(); const name = line(); push(global(module, name)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL without two strings');
        push(global(module as string, name as string));
        break;
      }
      case 0x52: { const args = pop(); const f = pop(); push(reduce(f, args)); break; } // REDUCE
      case 0x62: { // BUILD: only a dict's attribute state (OrderedDict._metadata), kept and never interpreted
        const state = pop();
        const target = top();
        if (!(target instanceof PyDict)) fail(`BUILD on ${describe(target)}`);
        if (!(state instanceof PyDict) && state !== null) fail(`BUILD with state ${describe(state)}`);
        (target as PyDict).state = state;
        break;
      }
      case 0x51: persistent(pop()); break; // BINPERSID
      case 0x50: persistent(line()); break; // PERSID
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP
      default:
        fail(`opcode ${OPCODE_NAMES[op] ?? '0x' + op.toString(16).padStart(2, '0')} is not allowed in a checkpoint`);
    }
  }
}
