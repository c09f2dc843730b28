/**
 * A minimal ONNX model writer: encodes ModelProto and the messages it contains straight to protobuf bytes,
 * enough for single-op benchmark graphs and whole exported models (src/onnx/export-marian.ts). Field numbers
 * follow onnx/onnx.proto. Tensor data is referenced, not copied, until toBytes() assembles the model once.
 *
 *   const g = new GraphBuilder();
 *   g.input('x', 'float32', ['M', 512]).initializer('w', w, [512, 512]).output('y', 'float32', ['M', 512]);
 *   g.node('MatMul', ['x', 'w'], ['y']);
 *   const session = await InferenceSession.create(g.toBytes());
 */

export type ElemType = 'float32' | 'uint8' | 'int8' | 'int32' | 'int64' | 'bool';
/** A dimension: a fixed size, or a symbolic name such as 'batch'. */
export type Dim = number | string;
export type TensorData = Float32Array | Uint8Array | Int8Array | Int32Array | BigInt64Array;

/**
 * Attribute values. A plain integer becomes INT and any other number FLOAT; wrap a value as `{ float }` to
 * write an integral float such as 1.0, or as `{ ints }` / `{ floats }` for lists. A plain number[] is INTS.
 */
export type AttrValue =
  | number
  | string
  | number[]
  | { float: number }
  | { ints: number[] }
  | { floats: number[] }
  /** A subgraph (GRAPH), e.g. the branches of If; see GraphBuilder's `parent` option. */
  | { graph: GraphBuilder };

// onnx.TensorProto.DataType
const DATA_TYPE: Record<ElemType, number> = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9 };
// onnx.AttributeProto.AttributeType
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_GRAPH = 5;
const ATTR_FLOATS = 6;
const ATTR_INTS = 7;

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

/**
 * Appends protobuf fields to a list of byte chunks. Small fields go to a growing scratch buffer; large byte
 * fields (tensor data) and nested messages are kept by reference, so a model of hundreds of MB is copied once,
 * by finish(), instead of once per nesting level.
 */
export class ProtoWriter {
  private buf = new Uint8Array(64);
  private len = 0;
  private readonly parts: Uint8Array[] = [];
  private partsLen = 0;

  /** Bytes written so far. */
  get byteLength(): number {
    return this.partsLen + this.len;
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** Moves the scratch buffer into the chunk list. */
  private flush(): void {
    if (this.len === 0) return;
    this.parts.push(this.buf.subarray(0, this.len));
    this.partsLen += this.len;
    this.buf = new Uint8Array(64);
    this.len = 0;
  }

  private append(chunk: Uint8Array): void {
    if (chunk.length < 256) {
      this.reserve(chunk.length);
      this.buf.set(chunk, this.len);
      this.len += chunk.length;
      return;
    }
    this.flush();
    this.parts.push(chunk);
    this.partsLen += chunk.length;
  }

  private byte(b: number): void {
    this.reserve(1);
    this.buf[this.len++] = b;
  }

  /** Unsigned LEB128. Negative int64 values are written as their 64-bit two's complement (10 bytes). */
  private varint(value: number | bigint): void {
    if (typeof value === 'number' && value >= 0 && value < 2 ** 31) {
      let v = value;
      while (v >= 0x80) {
        this.byte((v & 0x7f) | 0x80);
        v >>>= 7;
      }
      this.byte(v);
      return;
    }
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.byte(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.byte(Number(v));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    this.reserve(4);
    new DataView(this.buf.buffer, this.buf.byteOffset + this.len, 4).setFloat32(0, value, true);
    this.len += 4;
    return this;
  }

  /** A length-delimited field; `data` is kept by reference (do not modify it before finish()). */
  bytes(field: number, data: Uint8Array): this {
    this.tag(field, WIRE_LEN);
    this.varint(data.length);
    this.append(data);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, m: ProtoWriter): this {
    this.tag(field, WIRE_LEN);
    this.varint(m.byteLength);
    if (m.byteLength < 4096) {
      // small messages are copied inline: fewer, larger chunks
      for (const p of m.parts) this.append(p);
      this.append(m.buf.subarray(0, m.len));
      return this;
    }
    m.flush();
    this.flush();
    for (const p of m.parts) this.parts.push(p);
    this.partsLen += m.partsLen;
    return this;
  }

  finish(): Uint8Array {
    this.flush();
    if (this.parts.length === 1) return this.parts[0];
    const out = new Uint8Array(this.partsLen);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

function elemTypeOf(data: TensorData): ElemType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  throw new TypeError('unsupported initializer array type');
}

/** TensorProto with the values as little-endian raw_data. */
function tensorProto(name: string, data: TensorData, dims: number[]): ProtoWriter {
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new RangeError(`${name}: ${data.length} values for dims [${dims.join(', ')}]`);
  const t = new ProtoWriter();
  for (const d of dims) t.int(1, d);
  t.int(2, DATA_TYPE[elemTypeOf(data)]);
  t.string(8, name);
  // Typed arrays are in host byte order; ONNX raw_data is little-endian, as are the hosts we run on.
  t.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return t;
}

/** ValueInfoProto { name, TypeProto { tensor_type { elem_type, shape } } }. */
function valueInfo(name: string, type: ElemType, dims: Dim[] | null): ProtoWriter {
  const tensor = new ProtoWriter().int(1, DATA_TYPE[type]);
  if (dims) {
    const shape = new ProtoWriter();
    for (const d of dims) {
      const dim = new ProtoWriter();
      if (typeof d === 'number') dim.int(1, d);
      else dim.string(2, d);
      shape.message(1, dim);
    }
    tensor.message(2, shape);
  }
  return new ProtoWriter().string(1, name).message(2, new ProtoWriter().message(1, tensor));
}

function attribute(name: string, value: AttrValue): ProtoWriter {
  const a = new ProtoWriter().string(1, name);
  if (typeof value === 'string') return a.string(4, value).int(20, ATTR_STRING);
  if (typeof value === 'number') {
    return Number.isInteger(value) ? a.int(3, value).int(20, ATTR_INT) : a.float(2, value).int(20, ATTR_FLOAT);
  }
  if (Array.isArray(value)) value = { ints: value };
  if ('float' in value) return a.float(2, value.float).int(20, ATTR_FLOAT);
  if ('graph' in value) return a.message(6, value.graph.graphProto()).int(20, ATTR_GRAPH);
  if ('ints' in value) {
    for (const v of value.ints) {
      if (!Number.isInteger(v)) throw new TypeError(`attribute ${name}: ints must be integers`);
      a.int(8, v);
    }
    return a.int(20, ATTR_INTS);
  }
  for (const v of value.floats) a.float(7, v);
  return a.int(20, ATTR_FLOATS);
}

export interface GraphOptions {
  name?: string;
  /** Default-domain opset version. */
  opset?: number;
  /** com.microsoft opset version; imported automatically (version 1) when a node uses that domain. */
  msOpset?: number;
  /** ModelProto.producer_name. */
  producer?: string;
  /**
   * Makes this a subgraph (an If branch) of `parent`: its initializers are stored once in the parent (the first
   * of a name wins), where the branch reads them from the outer scope, as Optimum's merged decoder does.
   */
  parent?: GraphBuilder;
  /** Prefix of the generated node names (they must be unique across a model and its subgraphs). */
  nodePrefix?: string;
}

export class GraphBuilder {
  private readonly inputs: ProtoWriter[] = [];
  private readonly outputs: ProtoWriter[] = [];
  private readonly initializers: ProtoWriter[] = [];
  private readonly nodes: ProtoWriter[] = [];
  private readonly domains = new Set<string>();
  private readonly initializerNames = new Set<string>();
  private readonly opts: Required<Omit<GraphOptions, 'parent'>>;
  private readonly parent: GraphBuilder | null;

  constructor(opts: GraphOptions = {}) {
    this.opts = {
      name: opts.name ?? 'graph', opset: opts.opset ?? 17, msOpset: opts.msOpset ?? 1, producer: opts.producer ?? 'chimera',
      nodePrefix: opts.nodePrefix ?? '',
    };
    this.parent = opts.parent ?? null;
    if (opts.msOpset !== undefined) this.domains.add('com.microsoft');
  }

  /** A graph input; `dims` null leaves the shape unknown, [] makes it a scalar. */
  input(name: string, type: ElemType, dims: Dim[] | null): this {
    this.inputs.push(valueInfo(name, type, dims));
    return this;
  }

  output(name: string, type: ElemType, dims: Dim[] | null): this {
    this.outputs.push(valueInfo(name, type, dims));
    return this;
  }

  /** A constant tensor; the element type follows the array type (BigInt64Array for int64). */
  initializer(name: string, data: TensorData, dims: number[]): this {
    if (this.parent) {
      this.parent.initializer(name, data, dims);
      return this;
    }
    if (this.initializerNames.has(name)) return this;
    this.initializerNames.add(name);
    this.initializers.push(tensorProto(name, data, dims));
    return this;
  }

  /** Appends a node; an empty string in `inputs` marks an omitted optional input. */
  node(opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}, domain = ''): this {
    const n = new ProtoWriter();
    for (const i of inputs) n.string(1, i);
    for (const o of outputs) n.string(2, o);
    n.string(3, `${this.opts.nodePrefix}${opType}_${this.nodes.length}`);
    n.string(4, opType);
    for (const [k, v] of Object.entries(attrs)) n.message(5, attribute(k, v));
    if (domain) {
      n.string(7, domain);
      this.rootDomains().add(domain);
    }
    this.nodes.push(n);
    return this;
  }

  private rootDomains(): Set<string> {
    return this.parent ? this.parent.rootDomains() : this.domains;
  }

  /** The GraphProto (nodes, initializers, inputs, outputs); a subgraph's is what its parent's If node holds. */
  graphProto(): ProtoWriter {
    const g = new ProtoWriter();
    for (const n of this.nodes) g.message(1, n);
    g.string(2, this.opts.name);
    for (const t of this.initializers) g.message(5, t);
    for (const i of this.inputs) g.message(11, i);
    for (const o of this.outputs) g.message(12, o);
    return g;
  }

  /** Serialises a ModelProto (IR version 8). */
  toBytes(): Uint8Array {
    if (this.parent) throw new Error('toBytes() on a subgraph: serialise its parent');
    const g = this.graphProto();

    const m = new ProtoWriter().int(1, 8).string(2, this.opts.producer);
    m.message(8, new ProtoWriter().string(1, '').int(2, this.opts.opset));
    for (const d of this.domains) {
      const version = d === 'com.microsoft' ? this.opts.msOpset : 1;
      m.message(8, new ProtoWriter().string(1, d).int(2, version));
    }
    m.message(7, g);
    return m.finish();
  }
}

/** int64 values for an initializer, e.g. a Reshape shape. */
export function int64(values: number[]): BigInt64Array {
  return BigInt64Array.from(values, (v) => BigInt(v));
}
