#!/usr/bin/env bash
# The "avx512" variant on a CPU without AVX-512 (qemu-user has no AVX-512 either): csrc/variant_avx512.c built
# with -DMG_AVX512_BY_VECTORS compiles the variant's kernels, register tiles and 16-float vectors for the
# baseline, by the vector extensions alone, and lets every CPU run them. The C check driver and the Python
# kernel tests (each variant forced in turn, every weight format) then run the avx512 tiles here, so a
# machine with AVX-512 (Zen 4/5, Intel Xeon) meets no code path that never ran in CI. What this cannot
# run is the four AVX-512 intrinsics themselves (simd.h's fused multiply-add, widen.h's widenings). On a
# CPU with AVX-512, the ordinary build's tests run the real variant anyway. Takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
CC=${CC:-gcc}
flags="-DMG_AVX512_BY_VECTORS -Wno-psabi"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "avx512: the check driver with the avx512 variant by vector extensions"
"$CC" -O3 -fno-trapping-math -pthread -Wall $flags csrc/check_kernels.c csrc/variant_*.c csrc/dispatch.c csrc/parallel.c csrc/block.c -lm \
    -o "$work/check"
"$work/check" | tee "$work/check.log" | grep -v " ok " || true
grep -q '^avx512 .* ok ' "$work/check.log" || { echo "avx512: the driver did not check the avx512 variant"; exit 1; }

echo "avx512: minigpt2._kernels built the same way, in $work, and the kernel tests"
cp -r minigpt2 "$work/"
rm -f "$work"/minigpt2/_kernels*
mkdir "$work/tests"
cp tests/test_kernels.py tests/test_kernels_formats.py tests/conftest.py "$work/tests/"
[ -d tests/fixtures ] && cp -r tests/fixtures "$work/tests/"
CC="$CC" MINIGPT2_CFLAGS="$flags" "$PYTHON" csrc/build_kernels.py "$work/minigpt2" > "$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
export MINIGPT2_BACKEND=c MINIGPT2_REQUIRE_C=1
cd "$work"
"$PYTHON" -c "import minigpt2._kernels as k; assert k.__file__.startswith('$work'), k.__file__
from minigpt2 import _tuning
names = _tuning.supported_variants(); print('avx512: variants forced in turn:', ', '.join(names))
assert 'avx512' in names, names"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_kernels_formats.py
