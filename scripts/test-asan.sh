#!/usr/bin/env bash
# Runs the native-heavy test files against the AddressSanitizer + UndefinedBehaviorSanitizer build of the addon
# (npm run build:asan). Node itself is not instrumented, so libasan is preloaded; leak detection is off because
# Node's own allocations at exit would drown the report. Any ASan/UBSan report aborts the test process.
set -euo pipefail
cd "$(dirname "$0")/.."
ADDON="$PWD/build-asan/Release/chimera.node"
[ -f "$ADDON" ] || { echo "no $ADDON: run npm run build:asan first" >&2; exit 1; }
LIBASAN="$(${CXX:-g++} -print-file-name=libasan.so)"
LIBUBSAN="$(${CXX:-g++} -print-file-name=libubsan.so)"
FILES=${ASAN_TESTS:-"test/hardening.test.ts test/hostile-matrix.test.ts test/sgemm.test.ts test/gemm-int8.test.ts test/norm.test.ts test/topk.test.ts test/decode-attention.test.ts test/packed-file.test.ts test/marian-engine.test.ts test/errors.test.ts"}
export CHIMERA_ADDON="$ADDON"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allow_user_segv_handler=1:handle_segv=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(unset LD_PRELOAD; npm run build:ts >/dev/null)
export LD_PRELOAD="$LIBASAN $LIBUBSAN"
# shellcheck disable=SC2086
exec npx vitest run ${VITEST_CONFIG:+--config "$VITEST_CONFIG"} $FILES "$@"
