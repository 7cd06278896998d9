#!/usr/bin/env bash
# Run test directories against an AddressSanitizer + UndefinedBehaviorSanitizer build of
# the native extension (scoring, the trusted table, the ingest thread, the fabric hand-off).
#
# Builds the extension once with GATEWAY_NATIVE_SANITIZE=1 in a temporary copy of the
# repository, so that the normal in-place build is left alone, then runs the given test
# directories there with libasan preloaded into the (uninstrumented) Python interpreter.
#   usage: tests/run_asan.sh [TEST_DIR ...] [-- extra pytest args]
#   default directories: tests/scoring tests/ingest tests/fabric
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
dirs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do dirs+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#dirs[@]} -gt 0 ] || dirs=(tests/scoring tests/ingest tests/fabric)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gateway-asan.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
tar -C "$ROOT" --exclude=./.venv --exclude=./.git --exclude='*.so' --exclude='*.o' \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis \
    --exclude=./build -cf - . | tar -C "$TMP" -xf -
cd "$TMP"
GATEWAY_NATIVE_SANITIZE=1 "$PY" build.py -q

ASAN_LIB=$(gcc -print-file-name=libasan.so)
export PYTHONPATH="$TMP"  # the sanitized copy, ahead of the editable install in $ROOT
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
LD_PRELOAD="$ASAN_LIB" "$PY" -c '
import sys, gateway._native as n
assert n.__file__.startswith(sys.argv[1]), n.__file__
' "$TMP"
for d in "${dirs[@]}"; do
    echo "== $d under AddressSanitizer"
    LD_PRELOAD="$ASAN_LIB" "$PY" -m pytest -q -p no:cacheprovider "$d" "$@"
done
