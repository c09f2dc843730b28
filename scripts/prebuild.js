#!/usr/bin/env node
// npm run prebuild: builds this platform's addon with cmake-js into its own build directory (build-prebuild/,
// never build/) and puts it where the loader looks for prebuilds, in prebuildify's layout and naming:
//   prebuilds/<platform>-<arch>/chimera-infer[.glibc|.musl].node
// On glibc it then reads the binary's symbol versions (objdump -T) and checks them against the oldest glibc
// chimera claims (scripts/platform.js GLIBC_MIN) and GCC 8's libstdc++ (GLIBCXX_MAX).
//
//   node scripts/prebuild.js                       build, strip, place, check
//   node scripts/prebuild.js --from FILE           place (and check) an addon already built, e.g. build/Release/chimera.node
//   node scripts/prebuild.js --dry-run [--platform P --arch A --libc L]   print the plan for any target; builds nothing
//   node scripts/prebuild.js --dry-run --all       the plan for every release target
//   --glibc-check strict|warn|off (default strict), --out-root DIR (where prebuilds/ goes; default the package),
//   --build-dir DIR (default build-prebuild), --json (the plan or the result as JSON)
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const platform = require('./platform');

const root = path.resolve(__dirname, '..');

/** What building for a target means: the file it lands in, the ISA kernels compiled, the cmake-js arguments. */
function plan(target, opts = {}) {
  const { platform: plat, arch } = target;
  const libc = plat === 'linux' ? target.libc || 'glibc' : null;
  const outRoot = opts.outRoot || root;
  const buildDir = opts.buildDir || 'build-prebuild';
  const isaKernels = arch === 'x64' ? ['scalar', 'avx2', 'avx512vnni', 'amx'] : ['scalar'];
  const baseline = platform.CPU_BASELINE[arch];
  if (!baseline) throw new Error(`chimera: no prebuild for ${plat}-${arch}: only x64 and arm64 are supported`);
  return {
    target: platform.platformString(plat, arch, libc),
    file: path.relative(process.cwd(), platform.prebuildPath(outRoot, plat, arch, libc)),
    isaKernels,
    cpuBaseline: baseline.name,
    cmakeJs: ['compile', '--CDCMAKE_BUILD_TYPE=Release', '-O', buildDir, ...(arch !== process.arch ? ['--arch', arch] : [])],
    glibcCheck: libc === 'glibc' ? `objdump -T: GLIBC_* <= ${platform.GLIBC_MIN}, GLIBCXX_* <= ${platform.GLIBCXX_MAX}` : null,
    strip: plat === 'win32' ? null : plat === 'darwin' ? 'strip -x' : 'strip --strip-unneeded',
  };
}

function cmpVersion(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] || 0) - (pb[i] || 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The highest GLIBC_ and GLIBCXX_ versions the binary's dynamic symbols need, and the symbols that need them. */
function symbolVersions(file) {
  const r = spawnSync('objdump', ['-T', file], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const need = { GLIBC: { max: '0', symbols: [] }, GLIBCXX: { max: '0', symbols: [] } };
  for (const line of r.stdout.split('\n')) {
    const m = /\((GLIBCXX|GLIBC)_([0-9.]+)\)\s+(\S+)/.exec(line);
    if (!m || !line.includes('*UND*')) continue;
    const slot = need[m[1]];
    const c = cmpVersion(m[2], slot.max);
    if (c > 0) {
      slot.max = m[2];
      slot.symbols = [m[3]];
    } else if (c === 0) slot.symbols.push(m[3]);
  }
  return need;
}

function checkGlibc(file, mode) {
  const need = symbolVersions(file);
  if (!need) {
    const msg = 'chimera: objdump is not available: the glibc symbol versions were not checked';
    if (mode === 'strict') throw new Error(msg);
    console.warn(msg);
    return { checked: false };
  }
  const problems = [];
  if (cmpVersion(need.GLIBC.max, platform.GLIBC_MIN) > 0)
    problems.push(`needs GLIBC_${need.GLIBC.max} (${need.GLIBC.symbols.slice(0, 4).join(', ')}) > the claimed ${platform.GLIBC_MIN}`);
  if (cmpVersion(need.GLIBCXX.max, platform.GLIBCXX_MAX) > 0)
    problems.push(`needs GLIBCXX_${need.GLIBCXX.max} (${need.GLIBCXX.symbols.slice(0, 4).join(', ')}) > GCC 8's ${platform.GLIBCXX_MAX}`);
  console.log(`chimera: ${path.basename(file)} needs GLIBC_${need.GLIBC.max}, GLIBCXX_${need.GLIBCXX.max} (claimed: glibc >= ${platform.GLIBC_MIN}, libstdc++ >= GCC 8)`);
  if (problems.length > 0) {
    const msg = `chimera: this binary ${problems.join('; ')}. Release builds for glibc are made in a glibc ${platform.GLIBC_MIN} ` +
      'container (quay.io/pypa/manylinux_2_28_*, see .github/workflows/prebuild.yml); a binary from a newer distribution is for local use only.';
    if (mode === 'strict') throw new Error(msg);
    console.warn(msg);
  }
  return { checked: true, glibc: need.GLIBC.max, glibcxx: need.GLIBCXX.max, ok: problems.length === 0 };
}

function main(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      'dry-run': { type: 'boolean', default: false },
      all: { type: 'boolean', default: false },
      platform: { type: 'string', default: process.platform },
      arch: { type: 'string', default: process.arch },
      libc: { type: 'string' },
      from: { type: 'string' },
      'out-root': { type: 'string' },
      'build-dir': { type: 'string' },
      'glibc-check': { type: 'string', default: 'strict' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!['strict', 'warn', 'off'].includes(values['glibc-check'])) throw new Error('--glibc-check is strict, warn or off');
  if (values.libc !== undefined && !['glibc', 'musl'].includes(values.libc)) throw new Error('--libc is glibc or musl');
  const opts = { outRoot: values['out-root'] && path.resolve(values['out-root']), buildDir: values['build-dir'] };
  const hostLibc = platform.detectLibc();

  if (values['dry-run']) {
    const targets = values.all
      ? platform.RELEASE_TARGETS
      : [{ platform: values.platform, arch: values.arch, libc: values.libc || (values.platform === process.platform ? hostLibc : 'glibc') }];
    const plans = targets.map((t) => plan(t, opts));
    if (values.json) console.log(JSON.stringify(plans, null, 2));
    else for (const p of plans) console.log(`${p.target.padEnd(18)} -> ${p.file}  kernels: ${p.isaKernels.join(', ')}  baseline: ${p.cpuBaseline}${p.glibcCheck ? `  check: ${p.glibcCheck}` : ''}`);
    return 0;
  }

  if (values.platform !== process.platform || (values.libc && values.platform === 'linux' && values.libc !== hostLibc))
    throw new Error(`chimera: a prebuild is built on its own platform: this is ${platform.platformString()} (use --dry-run to see another target's plan)`);
  const p = plan({ platform: process.platform, arch: values.arch, libc: hostLibc }, opts);
  const dest = path.resolve(p.file);
  let built = values.from ? path.resolve(values.from) : null;
  if (!built) {
    const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
    console.log(`chimera: cmake-js ${p.cmakeJs.join(' ')}`);
    const r = spawnSync(process.execPath, [cmakeJs, ...p.cmakeJs], { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('chimera: the cmake-js build failed');
    built = path.join(root, opts.buildDir || 'build-prebuild', 'Release', 'chimera.node');
  }
  if (!fs.existsSync(built)) throw new Error(`chimera: ${built} does not exist`);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(built, dest);
  if (p.strip) {
    const [cmd, ...args] = p.strip.split(' ');
    const r = spawnSync(cmd, [...args, dest], { stdio: 'inherit' });
    if (r.status !== 0) console.warn(`chimera: ${p.strip} failed; the prebuild keeps its symbols`);
  }
  const glibc = p.glibcCheck && values['glibc-check'] !== 'off' ? checkGlibc(dest, values['glibc-check']) : null;
  // It must load in this Node before it is shipped.
  const binding = require(dest);
  const info = binding.cpuInfo();
  const result = { target: p.target, file: p.file, bytes: fs.statSync(dest).size, compiled: info.compiled, isa: info.isa, glibc };
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else console.log(`chimera: ${p.file} (${result.bytes} bytes) loads; kernels compiled: ${info.compiled.join(', ')}; in use here: ${info.isa}`);
  return 0;
}

if (require.main === module) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    console.error(e.message);
    process.exitCode = 1;
  }
}

module.exports = { plan, symbolVersions, checkGlibc, cmpVersion };
