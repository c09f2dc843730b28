#!/usr/bin/env node
/**
 * Mutation fuzzer for every file chimera reads: safetensors, packed model files, config.json, tokenizer.json
 * and pytorch_model.bin (zip and legacy). Seeds live in test/fuzz/seeds/. Each case is a seeded mutation of a
 * seed (case i of seed S is always the same bytes), run through the real loader in a child process: a child
 * runs a run of cases and announces each before running it, so a signal (or a hang) is observed by this
 * parent and names the exact case, whose input is saved under test/fuzz/crashes/. Passing means: 0 signals,
 * 0 hangs, and every failure a ChimeraError with code E_MODEL.
 *
 *   npm run fuzz -- [--cases N] [--targets safetensors,packed,config,tokenizer,torch] [--seed S] [--jobs J]
 *                   [--case I --target T]   (rerun one case in this process, printing what it does)
 *
 * Needs the compiled package (npm run build:ts) and the addon (CHIMERA_ADDON or the usual build paths).
 */
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const SEEDS = path.join(ROOT, 'test', 'fuzz', 'seeds');
const TARGETS = ['safetensors', 'packed', 'config', 'tokenizer', 'torch'];
const CASE_TIMEOUT_MS = 30_000;

// ------------------------------------------------------------------------------------------ mutations

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const INTERESTING_BYTES = [0, 1, 0x7f, 0x80, 0xff, 0x20, 0x22, 0x5b, 0x7b, 0x30];
const INTERESTING_U64 = [0n, 1n, 0x7fffffffn, 0xffffffffn, 0x7fffffffffffffffn, 0xffffffffffffffffn, 1n << 40n];
const NEST = '@@NEST@@';
const nest = (json) => json.replace(`"${NEST}"`, '['.repeat(20000) + ']'.repeat(20000));
const INTERESTING_JSON = [0, -1, 1, 4.5, -0.5, 1e9, 1e308, -1e308, 2 ** 31, 2 ** 53, 'x', '', null, true, [], {}, [[]], [1e9], '\u0000', 'NaN'];

/** Byte-level mutations: flips, interesting bytes and u64s, chunk insert / delete / duplicate, truncation. */
function mutateBytes(buf, r) {
  let b = Buffer.from(buf);
  const n = 1 + Math.floor(r() * 4);
  for (let m = 0; m < n; m++) {
    const at = Math.floor(r() * Math.max(1, b.length));
    switch (Math.floor(r() * 8)) {
      case 0: if (b.length) b[at] ^= 1 << Math.floor(r() * 8); break;
      case 1: if (b.length) b[at] = INTERESTING_BYTES[Math.floor(r() * INTERESTING_BYTES.length)]; break;
      case 2: if (b.length >= at + 8) b.writeBigUInt64LE(INTERESTING_U64[Math.floor(r() * INTERESTING_U64.length)], at); break;
      case 3: if (b.length >= at + 4) b.writeUInt32LE(Math.floor(r() * 2 ** 32), at); break;
      case 4: b = Buffer.concat([b.subarray(0, at), Buffer.alloc(1 + Math.floor(r() * 64), Math.floor(r() * 256)), b.subarray(at)]); break;
      case 5: b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + Math.floor(r() * 64)))]); break;
      case 6: b = b.subarray(0, Math.floor(r() * b.length)); break;
      default: { const len = Math.floor(r() * 256); b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)]); }
    }
  }
  return b;
}

/** Structural JSON mutations: a random value somewhere replaced, deleted, or nested deeply. */
function mutateJsonValue(root, r) {
  const n = 1 + Math.floor(r() * 3);
  for (let m = 0; m < n; m++) {
    // walk to a random container
    let parent = null, key = null, node = root;
    for (let depth = 0; depth < 6 && node !== null && typeof node === 'object'; depth++) {
      const keys = Object.keys(node);
      if (keys.length === 0) break;
      const k = keys[Math.floor(r() * keys.length)];
      parent = node; key = Array.isArray(node) ? Number(k) : k; node = node[k];
      if (r() < 0.3) break;
    }
    if (parent === null) continue;
    const op = r();
    if (op < 0.6) parent[key] = INTERESTING_JSON[Math.floor(r() * INTERESTING_JSON.length)];
    else if (op < 0.8) { if (Array.isArray(parent)) parent.splice(key, 1); else delete parent[key]; }
    else if (op < 0.9) parent[key] = Array.isArray(parent[key]) ? [...parent[key], ...parent[key]] : { nested: parent[key] };
    else parent[key] = NEST; // replaced by 20,000 nested [ after stringify (stringify itself would overflow)
  }
  return root;
}

function mutateJsonText(text, r) {
  if (r() < 0.6) {
    try {
      return Buffer.from(nest(JSON.stringify(mutateJsonValue(JSON.parse(text), r))));
    } catch {
      /* fall through to bytes */
    }
  }
  return mutateBytes(Buffer.from(text), r);
}

/** The packed file: the JSON header mutated in place (data offsets kept when it fits), or raw bytes. */
function mutatePacked(buf, r) {
  const hlen = Number(buf.readBigUInt64LE(8));
  if (r() < 0.6) {
    let h;
    try {
      h = JSON.parse(buf.toString('utf8', 16, 16 + hlen));
    } catch {
      return mutateBytes(buf, r);
    }
    h.source = '';
    if (r() < 0.5) h.files = {}; // room for lengthening edits
    const json = Buffer.from(nest(JSON.stringify(mutateJsonValue(h, r))));
    const out = Buffer.from(buf);
    if (json.length <= hlen) {
      out.fill(0x20, 16, 16 + hlen);
      json.copy(out, 16);
      return out;
    }
    const head = Buffer.alloc(16);
    head.write('CHMRPK01', 0, 'latin1');
    head.writeBigUInt64LE(BigInt(json.length), 8);
    return Buffer.concat([head, json, buf.subarray(16 + hlen)]);
  }
  // bytes: mostly in the data region, where the weights and scales are
  return mutateBytes(buf, r);
}

// ------------------------------------------------------------------------------------------ targets

function lib() {
  const dist = path.join(ROOT, 'dist');
  return {
    MarianModel: require(path.join(dist, 'marian.js')).MarianModel,
    MarianTokenizer: require(path.join(dist, 'model', 'tokenizer.js')).MarianTokenizer,
    readSafetensors: require(path.join(dist, 'model', 'safetensors.js')).readSafetensors,
    torch: require(path.join(dist, 'model', 'torch-bin.js')),
  };
}

/** Each target: seed bytes, how to mutate them, and how to run the loader on a directory holding the case. */
function targets(work) {
  const tiny = path.join(SEEDS, 'tiny');
  const link = (dir, except) => {
    for (const f of fs.readdirSync(tiny)) if (f !== except && !fs.existsSync(path.join(dir, f))) fs.symlinkSync(path.join(tiny, f), path.join(dir, f));
  };
  const tryGenerate = (m) => {
    const tok = m.tokenizer;
    const ids = tok ? tok.encode('a b c') : [3, 4, m.config.eosId];
    try {
      m.generate([ids]); // up to the model's max_length (64 for the tiny seed)
      m.generate([ids], { beam: 2 });
    } catch (e) {
      // a model that loaded may still refuse this input (e.g. max_position_embeddings 1): input, not file
      if (e.code !== 'E_INPUT') throw e;
    }
  };
  return {
    safetensors: {
      seeds: [path.join(tiny, 'model.safetensors')],
      mutate: mutateBytes,
      file: 'model.safetensors',
      run: (L, f) => {
        for (const t of L.readSafetensors(f).values()) for (let i = 0; i < t.data.length; i++) if (t.data[i] === 1e-45) break;
      },
    },
    packed: {
      seeds: [path.join(SEEDS, 'tiny-int8.chimera')],
      mutate: mutatePacked,
      file: 'model.chimera',
      run: async (L, f) => tryGenerate(await L.MarianModel.load(f)),
    },
    config: {
      seeds: [path.join(tiny, 'config.json')],
      mutate: (b, r) => mutateJsonText(b.toString('utf8'), r),
      file: 'config.json',
      setup: (dir) => link(dir, 'config.json'),
      run: async (L, f) => tryGenerate(await L.MarianModel.load(path.dirname(f))),
    },
    tokenizer: {
      seeds: [path.join(tiny, 'tokenizer.json')],
      mutate: (b, r) => mutateJsonText(b.toString('utf8'), r),
      file: 'tokenizer.json',
      setup: (dir) => {
        for (const f of ['tokenizer_config.json', 'config.json']) if (!fs.existsSync(path.join(dir, f))) fs.symlinkSync(path.join(tiny, f), path.join(dir, f));
      },
      run: (L, f) => {
        const t = L.MarianTokenizer.load(path.dirname(f));
        try {
          t.decode(t.encode('a b c, d.'));
        } catch (e) {
          if (e.code !== 'E_INPUT') throw e; // a vocabulary without these pieces: nothing translatable
        }
      },
    },
    torch: {
      seeds: [path.join(SEEDS, 'torch-zip.bin'), path.join(SEEDS, 'torch-legacy.bin')],
      mutate: mutateBytes,
      file: 'pytorch_model.bin',
      run: (L, f) => {
        const ck = L.torch.readTorchCheckpoint(f);
        const list = ck.tensors instanceof Map ? [...ck.tensors.values()] : Object.values(ck.tensors ?? {});
        for (const t of list) L.torch.torchTensorFloat32(t);
      },
    },
  };
}

function caseInput(T, target, seed, i) {
  const t = T[target];
  const r = rng((seed * 1000003) ^ (i * 7919) ^ (TARGETS.indexOf(target) << 24));
  const seedFile = t.seeds[i % t.seeds.length];
  return t.mutate(fs.readFileSync(seedFile), r);
}

// ------------------------------------------------------------------------------------------ child

async function child(target, seed, from, to) {
  const L = lib();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `chimera-fuzz-${target}-`));
  const T = targets(work);
  const t = T[target];
  const dir = path.join(work, 'case');
  fs.mkdirSync(dir);
  if (t.setup) t.setup(dir);
  const f = path.join(dir, t.file);
  const out = (s) => fs.writeSync(1, s + '\n');
  for (let i = from; i < to; i++) {
    fs.writeFileSync(f, caseInput(T, target, seed, i));
    out(`start ${i}`);
    let verdict = 'ok';
    try {
      await t.run(L, f);
    } catch (e) {
      if (process.env.FUZZ_STACK) console.error(e && e.stack);
      verdict = e && e.name === 'ChimeraError' ? `code ${e.code}` : `raw ${(e && e.name) || typeof e}: ${String((e && e.message) || e).split('\n')[0].slice(0, 200)}`;
    }
    out(`done ${i} ${verdict}`);
  }
  fs.rmSync(work, { recursive: true, force: true });
}

// ------------------------------------------------------------------------------------------ parent

function runRange(target, seed, from, to, stats) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [__filename, '--child', target, String(seed), String(from), String(to)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let current = -1, buf = '', stderr = '', timer = null;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => p.kill('SIGKILL'), CASE_TIMEOUT_MS);
    };
    arm();
    p.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^(start|done) (\d+) ?(.*)$/.exec(line);
        if (!m) continue;
        arm();
        if (m[1] === 'start') current = Number(m[2]);
        else {
          current = -1;
          stats.cases++;
          const v = m[3];
          stats.verdicts[v.startsWith('raw') ? 'non-ChimeraError' : v] = (stats.verdicts[v.startsWith('raw') ? 'non-ChimeraError' : v] ?? 0) + 1;
          if (v !== 'ok' && v !== 'code E_MODEL') stats.bad.push({ case: Number(m[2]), verdict: v });
        }
      }
    });
    p.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (current >= 0) {
        // the announced case never finished: a signal, an abort, or a hang (killed after the timeout)
        const kind = signal === 'SIGKILL' ? 'hang' : signal ? `signal ${signal}` : `exit ${code}`;
        stats.cases++;
        stats.crashes.push({ case: current, kind, stderr: stderr.slice(-800) });
        resolve(current + 1);
        return;
      }
      if (code !== 0) stats.crashes.push({ case: -1, kind: `child exit ${code} ${signal ?? ''}`, stderr: stderr.slice(-800) });
      resolve(to);
    });
  });
}

async function fuzzTarget(target, cases, seed, jobs) {
  const stats = { target, cases: 0, verdicts: {}, bad: [], crashes: [], ms: 0 };
  const t0 = Date.now();
  const chunk = Math.max(50, Math.ceil(cases / (jobs * 4)));
  let next = 0;
  const worker = async () => {
    while (next < cases) {
      const from = next;
      const to = Math.min(cases, from + chunk);
      next = to;
      let at = from;
      while (at < to) at = await runRange(target, seed, at, to, stats); // resumes after a crashed case
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  stats.ms = Date.now() - t0;
  const T = targets(null);
  for (const c of [...stats.crashes, ...stats.bad].filter((c) => c.case >= 0).slice(0, 20)) {
    const dir = path.join(ROOT, 'test', 'fuzz', 'crashes');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${target}-seed${seed}-case${c.case}-${T[target].file}`), caseInput(T, target, seed, c.case));
  }
  return stats;
}

function args(argv) {
  const o = { cases: 2000, targets: TARGETS, seed: 1, jobs: Math.max(1, Math.min(4, os.availableParallelism?.() ?? os.cpus().length)), json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--cases') o.cases = Number(v());
    else if (a === '--targets' || a === '--target') o.targets = v().split(',');
    else if (a === '--seed') o.seed = Number(v());
    else if (a === '--jobs') o.jobs = Number(v());
    else if (a === '--case') o.one = Number(v());
    else if (a === '--json') o.json = true;
    else throw new Error(`unknown argument ${a}`);
  }
  for (const t of o.targets) if (!TARGETS.includes(t)) throw new Error(`unknown target ${t}; targets: ${TARGETS.join(', ')}`);
  if (!(Number.isInteger(o.cases) && o.cases > 0)) throw new Error('--cases must be a positive integer');
  return o;
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(argv[1], Number(argv[2]), Number(argv[3]), Number(argv[4]));
  const o = args(argv);
  if (o.one !== undefined) {
    const target = o.targets[0];
    await child(target, o.seed, o.one, o.one + 1);
    return;
  }
  const all = [];
  for (const t of o.targets) {
    const s = await fuzzTarget(t, o.cases, o.seed, o.jobs);
    all.push(s);
    if (!o.json)
      console.log(`${t}: ${s.cases} cases in ${(s.ms / 1000).toFixed(1)} s; ${JSON.stringify(s.verdicts)}; crashes ${s.crashes.length}; other errors ${s.bad.length}`);
    for (const c of s.crashes) console.error(`  ${t} case ${c.case}: ${c.kind}\n${c.stderr}`);
    for (const b of s.bad.slice(0, 10)) console.error(`  ${t} case ${b.case}: ${b.verdict}`);
  }
  if (o.json) console.log(JSON.stringify(all));
  const failed = all.some((s) => s.crashes.length > 0 || s.bad.length > 0);
  if (failed) console.error('fuzz: FAILED (rerun one case with --target T --case I --seed S)');
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
