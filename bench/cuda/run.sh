#!/usr/bin/env bash
# The one prepared GPU run (bench/cuda/README.md): builds the standalone driver with CUDA, runs its checks, the
# PyTorch reference and the benchmarks, and prints a short table last. Run from the repository root:
#
#   bash bench/cuda/run.sh                  # writes everything under $OUT (default ./cuda-out)
#
# Every phase is time-boxed and the whole run keeps within CHIMERA_CUDA_BUDGET_S (default 400 s); a phase that
# fails or times out is recorded in $OUT/phases.tsv and the run goes on, so one run yields as much as it can.
# Exit status: 1 if the build or any check failed, 3 if there was no usable CUDA device (the dry run: CPU side
# only), else 0.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/cuda-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export OUT
# Everything also goes to $OUT/run.log: the script runs itself once more behind tee, and exits with its status
# only after tee has written the last line.
if [ -z "${CHIMERA_CUDA_RUN_LOGGED:-}" ]; then
  CHIMERA_CUDA_RUN_LOGGED=1 bash "${BASH_SOURCE[0]}" "$@" 2>&1 | tee "$OUT/run.log"
  exit "${PIPESTATUS[0]}"
fi
BUILD=${CHIMERA_CUDA_BUILD_DIR:-$ROOT/build-cuda-driver}
BUDGET=${CHIMERA_CUDA_BUDGET_S:-400}
FIXTURE=${CHIMERA_CUDA_FIXTURE:-$ROOT/bench/cuda/fixture/m30k.bin}
DEV_CPU=$ROOT/bench/cuda/fixture/dev-cpu-bench.json
DRIVER=$BUILD/chimera-cuda-driver
START=$(date +%s)
: > "$OUT/phases.tsv"

elapsed() { echo $(( $(date +%s) - START )); }
# The CPUs this run may use: nproc (affinity), lowered to a cgroup v2 CPU quota when one is set (a container can see
# every core of the host while it may use only a share of them).
CPUS=$(nproc)
if [ -r /sys/fs/cgroup/cpu.max ]; then
  read -r quota period < /sys/fs/cgroup/cpu.max
  if [[ "$quota" =~ ^[0-9]+$ ]] && [[ "$period" =~ ^[0-9]+$ ]] && (( period > 0 )); then
    q=$(( (quota + period - 1) / period ))
    (( q >= 1 && q < CPUS )) && CPUS=$q
  fi
fi
export CHIMERA_THREADS=$CPUS
# phase NAME LIMIT_S CMD...: runs CMD under timeout (capped by what is left of the budget, less a reserve for the
# report), output to the console and $OUT/NAME.log; records "NAME rc seconds" in phases.tsv; returns CMD's rc.
REPORT_RESERVE=10
phase() {
  local name=$1 limit=$2
  shift 2
  local left=$(( BUDGET - $(elapsed) - REPORT_RESERVE ))
  (( limit > left )) && limit=$left
  if (( limit < 5 )); then
    echo "== $name: skipped, out of time (budget ${BUDGET} s)"
    printf '%s\tskipped\t(out of time)\n' "$name" >> "$OUT/phases.tsv"
    return 124
  fi
  echo "== $name (limit ${limit} s, ${name}.log) at $(elapsed) s"
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  local dt=$(( $(date +%s) - t0 ))
  local what="rc=$rc"
  (( rc == 124 || rc == 137 )) && what="TIMED OUT"
  printf '%s\t%s\t(%s, %d s)\n' "$name" "$rc" "$what" "$dt" >> "$OUT/phases.tsv"
  echo "== $name: $what after $dt s"
  return "$rc"
}

FAILED=0
NO_DEVICE=0

# ---- environment
{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -srm), $(nproc) CPUs online, $CPUS usable, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //')"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L
    nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  else
    echo "nvidia-smi: not found"
  fi
  command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc: not on PATH"
  command -v cmake >/dev/null && cmake --version | head -1 || echo "cmake: not found"
  command -v ninja >/dev/null && echo "ninja $(ninja --version)" || echo "ninja: not found"
  command -v compute-sanitizer >/dev/null && echo "compute-sanitizer: $(command -v compute-sanitizer)" || echo "compute-sanitizer: not found"
  python3 --version 2>&1
  [ -f "$FIXTURE" ] && echo "fixture: $FIXTURE ($(stat -c %s "$FIXTURE") bytes)" || echo "fixture: MISSING ($FIXTURE): run npm run bench:cuda:prepare where Node is"
} 2>&1 | tee "$OUT/env.txt"

# nvcc is often installed off PATH
if ! command -v nvcc >/dev/null; then
  for d in /usr/local/cuda/bin /usr/local/cuda-13/bin /opt/cuda/bin; do
    [ -x "$d/nvcc" ] && export PATH="$d:$PATH" && echo "using nvcc from $d" && break
  done
fi
# Architectures: the shipped sm_80 and sm_90 SASS plus compute_90 PTX, and the GPU's own if it is another.
ARCHS="80-real;90-real;90-virtual"
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
if [[ "$CAP" =~ ^[0-9]+$ ]] && [[ "$CAP" != 80 && "$CAP" != 90 ]]; then ARCHS="$ARCHS;${CAP}-real"; fi
CUDA_MODE=on
command -v nvcc >/dev/null || CUDA_MODE=auto  # no toolkit: build the CPU-only driver, say so
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)

# ---- build (the driver phases run only on a build of this run, never on an older binary)
BUILD_CMD="cmake -S bench/cuda -B '$BUILD' ${GEN[*]} -DCMAKE_BUILD_TYPE=Release -DCHIMERA_CUDA=$CUDA_MODE '-DCMAKE_CUDA_ARCHITECTURES=$ARCHS' && cmake --build '$BUILD' -j $CPUS"
BUILD_OK=0
if phase build 240 bash -c "$BUILD_CMD"; then
  BUILD_OK=1
elif grep -q "unsupported GNU version" "$OUT/build.log"; then
  # the host compiler is newer than this nvcc knows: once more from a clean build directory, nvcc told to accept it
  echo "nvcc refused the host compiler; retrying with -allow-unsupported-compiler"
  rm -rf "$BUILD"
  phase build-retry 180 bash -c "${BUILD_CMD/-DCHIMERA_CUDA=/-DCMAKE_CUDA_FLAGS=-allow-unsupported-compiler -DCHIMERA_CUDA=}" && BUILD_OK=1
fi
if (( ! BUILD_OK )); then
  FAILED=1
  echo "build failed: the driver phases are skipped"
fi

# ---- check: every kernel against the CPU, then greedy output on the fixture model
if (( BUILD_OK )); then
  phase check 150 "$DRIVER" check --fixture "$FIXTURE" --json "$OUT/check.json"
  rc=$?
  case $rc in
    0) ;;
    3) NO_DEVICE=1 ;;
    *) FAILED=1 ;;
  esac
fi

# ---- the PyTorch reference (same shapes, same timing method)
phase torch 120 python3 bench/cuda/torch_ref.py --json "$OUT/torch.json"
[ $? -eq 3 ] && echo "torch reference skipped (see torch.log): its cells stay pending"

# ---- benchmarks: device, and this machine's CPU at all its cores and at 2 threads
if (( BUILD_OK )); then
  CPU_THREADS=$CPUS
  (( CPUS != 2 )) && CPU_THREADS="$CPUS,2"
  phase bench 170 "$DRIVER" bench --json "$OUT/bench.json" --cpu-threads "$CPU_THREADS"
  rc=$?
  if (( rc == 3 )); then
    NO_DEVICE=1
    # the dry run on the development machine: keep its CPU figures for the GPU run's batch-32 ratio
    if [ -d "$(dirname "$DEV_CPU")" ] && [ -s "$OUT/bench.json" ]; then cp "$OUT/bench.json" "$DEV_CPU" && echo "kept the CPU figures in $DEV_CPU"; fi
  elif (( rc != 0 )); then
    echo "bench did not finish cleanly (rc $rc); its JSON may be partial or missing"
  fi
fi

# ---- compute-sanitizer memcheck over the small-shape subset, if a device and time remain
if (( BUILD_OK && NO_DEVICE == 0 )) && command -v compute-sanitizer >/dev/null; then
  phase memcheck 90 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
    "$DRIVER" check --quick --fixture "$FIXTURE" --json "$OUT/check-memcheck.json"
  rc=$?
  (( rc != 0 && rc != 124 && rc != 137 )) && FAILED=1
else
  why="no CUDA device"
  (( BUILD_OK )) || why="no driver build"
  (( BUILD_OK && NO_DEVICE == 0 )) && why="compute-sanitizer not found"
  echo "== memcheck: skipped ($why)"
  printf 'memcheck\tskipped\t(%s)\n' "$why" >> "$OUT/phases.tsv"
fi

# ---- the table
echo
echo "== summary after $(elapsed) s"
REPORT_ARGS=(--out "$OUT")
[ -f "$DEV_CPU" ] && (( NO_DEVICE == 0 )) && REPORT_ARGS+=(--dev-cpu "$DEV_CPU")
python3 bench/cuda/report.py "${REPORT_ARGS[@]}" || echo "report.py failed; the JSON files under $OUT hold the figures"
echo "outputs: $OUT ($(ls "$OUT" | tr '\n' ' '))"
if (( FAILED )); then
  echo "RESULT: FAILED (see phases.tsv and the logs)"
  exit 1
fi
if (( NO_DEVICE )); then
  echo "RESULT: CPU side passed; no CUDA device, device side pending"
  exit 3
fi
echo "RESULT: all checks passed"
exit 0
