#!/usr/bin/env bash
# Run tests/scoring against an AddressSanitizer + UBSan build of the native extension.
# The repository's own in-place build is left alone: we build in a temporary copy.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/repo"
(cd "$repo" && tar --exclude=.venv --exclude=.git --exclude='*.so' --exclude='*.o' \
    --exclude=.hypothesis --exclude=build -cf - .) | (cd "$work/repo" && tar -xf -)
cd "$work/repo"
GATEWAY_NATIVE_SANITIZE=1 "$python" build.py -q
libasan="$(gcc -print-file-name=libasan.so)"
export LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$work/repo"
"$python" -c "import gateway._gateway_native as m, sys; assert m.__file__.startswith('$work'), m.__file__"
"$python" -m pytest tests/scoring -q -p no:cacheprovider "$@"
