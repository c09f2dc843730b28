'use strict';
// Which prebuilt binary fits this machine, shared by the install hook (scripts/install.js), the prebuild script
// (scripts/prebuild.js) and the loader (src/native.ts). The layout is prebuildify's, read with node-gyp-build's
// tag parser:
//   prebuilds/<platform>-<arch>/chimera-infer[.<libc>].node      e.g. prebuilds/linux-x64/chimera-infer.musl.node
// Only Linux binaries carry a libc tag (glibc or musl). The addon uses Node-API 8 only, so one binary serves
// every Node.js version >= 20 on its platform. Plain CommonJS with no dependency beyond node-gyp-build, because
// the install hook runs before the TypeScript is compiled.
const fs = require('node:fs');
const path = require('node:path');

const PACKAGE_NAME = 'chimera-infer';

/** The prebuild triples the release workflow produces (and the README's platform table lists). */
const RELEASE_TARGETS = [
  { platform: 'linux', arch: 'x64', libc: 'glibc' },
  { platform: 'linux', arch: 'x64', libc: 'musl' },
  { platform: 'linux', arch: 'arm64', libc: 'glibc' },
  { platform: 'darwin', arch: 'arm64', libc: null },
  { platform: 'win32', arch: 'x64', libc: null },
];

/** The oldest glibc (and libstdc++ symbol set) a glibc prebuild may need: Node.js 20's own minimum. */
const GLIBC_MIN = '2.28';
const GLIBCXX_MAX = '3.4.25'; // libstdc++ of GCC 8, what a glibc 2.28 system (RHEL 8, Debian 10) ships

/**
 * The CPU baseline the scalar path (and everything outside the per-ISA kernel files) is compiled for, per
 * architecture, and the /proc/cpuinfo flags that prove a Linux machine has it. CMakeLists.txt and binding.gyp
 * pin these with -march, so a compiler whose default is newer cannot raise them silently.
 */
const CPU_BASELINE = {
  x64: { name: 'x86-64 (SSE2)', march: 'x86-64', cpuinfoFlags: ['sse', 'sse2'] },
  arm64: { name: 'ARMv8-A with NEON (AdvSIMD)', march: 'armv8-a', cpuinfoFlags: ['fp', 'asimd'] },
};

let libcCache;
/** 'glibc' | 'musl' | null (not Linux). LIBC=glibc|musl in the environment overrides the detection. */
function detectLibc(platform = process.platform, env = process.env) {
  if (platform !== 'linux') return null;
  if (env.LIBC === 'glibc' || env.LIBC === 'musl') return env.LIBC;
  if (libcCache !== undefined) return libcCache;
  let libc = null;
  try {
    // Node records the glibc it runs on; a musl build of Node has no such field.
    const report = process.report && process.report.getReport ? process.report.getReport() : null;
    const header = report && (typeof report === 'string' ? JSON.parse(report) : report).header;
    if (header && header.glibcVersionRuntime) libc = 'glibc';
  } catch {
    // fall through to the file checks
  }
  if (libc === null) {
    try {
      if (fs.readdirSync('/lib').some((f) => f.startsWith('ld-musl-'))) libc = 'musl';
    } catch {
      // no /lib
    }
  }
  if (libc === null) libc = fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc';
  libcCache = libc;
  return libc;
}

/** The platform string the loader and the error messages use: linux-x64-glibc, darwin-arm64, win32-x64. */
function platformString(platform = process.platform, arch = process.arch, libc = detectLibc(platform)) {
  return `${platform}-${arch}${libc ? `-${libc}` : ''}`;
}

/** Where a prebuild for this triple goes (prebuildify --napi --tag-libc names it the same way). */
function prebuildPath(root, platform, arch, libc) {
  return path.join(root, 'prebuilds', `${platform}-${arch}`, `${PACKAGE_NAME}${libc ? `.${libc}` : ''}.node`);
}

/**
 * The prebuilds under root/prebuilds that fit the triple, best first, with node-gyp-build's parser: a
 * prebuilds/<platform>-<arch> (or multi-arch <platform>-x64+arm64) folder, then files whose tags fit (Node-API
 * or no ABI tag, the same libc or none, the same armv or none); the more specific tags win.
 */
function matchingPrebuilds(root, platform = process.platform, arch = process.arch, libc = detectLibc(platform)) {
  const ngb = require('node-gyp-build');
  const dir = path.join(root, 'prebuilds');
  const list = (d) => {
    try {
      return fs.readdirSync(d);
    } catch {
      return [];
    }
  };
  const tuples = list(dir).map(ngb.parseTuple).filter(ngb.matchTuple(platform, arch)).sort(ngb.compareTuples);
  const found = [];
  for (const tuple of tuples) {
    const files = list(path.join(dir, tuple.name))
      .map(ngb.parseTags)
      .filter((t) => {
        if (t == null) return false;
        if (t.runtime && t.runtime !== 'node') return false;
        if (t.abi && !t.napi && t.abi !== process.versions.modules) return false;
        if (t.libc && t.libc !== libc) return false;
        if (t.armv && arch === 'arm64' && t.armv !== '8') return false;
        return true;
      })
      .sort((a, b) => b.specificity - a.specificity);
    for (const t of files) found.push(path.join(dir, tuple.name, t.file));
  }
  return found;
}

/** The cpuinfo flags this machine lacks for the baseline, or [] (also when it cannot be told: not Linux). */
function missingBaseline(arch = process.arch, cpuinfoText) {
  const base = CPU_BASELINE[arch];
  if (!base) return null; // an architecture chimera is not built for
  let text = cpuinfoText;
  if (text === undefined) {
    if (process.platform !== 'linux') return [];
    try {
      text = fs.readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return [];
    }
  }
  const line = text.split('\n').find((l) => /^(flags|Features)\s*:/.test(l));
  if (!line) return [];
  const have = new Set(line.split(':')[1].trim().split(/\s+/));
  return base.cpuinfoFlags.filter((f) => !have.has(f));
}

module.exports = {
  PACKAGE_NAME,
  RELEASE_TARGETS,
  GLIBC_MIN,
  GLIBCXX_MAX,
  CPU_BASELINE,
  detectLibc,
  platformString,
  prebuildPath,
  matchingPrebuilds,
  missingBaseline,
};
