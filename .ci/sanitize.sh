#!/usr/bin/env bash
# The C check driver (csrc/check_kernels.c: every kernel and the decoding block, in C alone) built with
# AddressSanitizer + UndefinedBehaviorSanitizer; then the C core once more with them, in a scratch copy of
# the package, and the kernel tests (and the decoding block's, csrc/block.c) against that build. Any
# report fails the step: ASan stops at the first error, and -fno-sanitize-recover=all makes UBSan stop too
# (the process dies, pytest fails).
# The kernel tests run every compiled variant this CPU can run (generic, avx2, avx512 / neon), each
# forced in turn, so every variant's code runs under the sanitizers.
#
# Needs gcc (with its libasan/libubsan, which Debian's gcc package brings) and the Python packages the
# tests use (numpy, cffi, pytest, hypothesis, safetensors). Takes well under a minute here.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
CC=${CC:-gcc}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
echo "sanitize: the C check driver with $sanitize"
# (detect_leaks=0: LeakSanitizer needs ptrace, which some containers refuse; leaks are not what this looks for)
"$CC" -O1 -fno-trapping-math -pthread -Wall $sanitize csrc/check_kernels.c csrc/variant_*.c csrc/dispatch.c \
    csrc/parallel.c csrc/block.c -lm -o "$work/check"
if ! ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$work/check" > "$work/check.log" 2>&1; then
  cat "$work/check.log"
  echo "sanitize: the check driver failed"
  exit 1
fi
grep -v " ok " "$work/check.log" || true

echo "sanitize: building minigpt2._kernels with -fsanitize=address,undefined in $work"
cp -r minigpt2 "$work/"
rm -f "$work"/minigpt2/_kernels*
mkdir "$work/tests"
cp tests/test_kernels.py tests/test_block_kernel.py tests/test_blas_pool.py "$work/tests/"
CC="$CC" MINIGPT2_CFLAGS="$sanitize" \
    "$PYTHON" csrc/build_kernels.py "$work/minigpt2" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
library=$(ls "$work"/minigpt2/_kernels*.so)
# (grep reads all of ldd's output: with -q it would stop at the first match, and ldd, cut off mid-write, would fail
# the pipeline under pipefail now and then)
ldd "$library" | grep libasan > /dev/null || { echo "sanitize: $library is not linked with libasan"; exit 1; }

# Python itself is not instrumented, so the sanitizer runtimes must be loaded first; Python's own
# allocations are not ours to judge (detect_leaks=0).
export LD_PRELOAD="$("$CC" -print-file-name=libasan.so) $("$CC" -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export MINIGPT2_BACKEND=c MINIGPT2_REQUIRE_C=1  # importing minigpt2 fails if the sanitized build does not load
cd "$work"
"$PYTHON" -c "import minigpt2._kernels as k, sys; assert k.__file__.startswith('$work'), k.__file__; print('sanitize: testing', k.__file__)
from minigpt2 import _tuning; print('sanitize: variants this CPU runs, each forced in turn:', ', '.join(_tuning.supported_variants()))"
"$PYTHON" -m pytest -q -p no:cacheprovider --capture=sys tests/test_kernels.py tests/test_block_kernel.py tests/test_blas_pool.py  # reports go to the log
echo "sanitize: no AddressSanitizer or UBSan reports"
