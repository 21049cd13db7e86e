#!/usr/bin/env bash
# The C core built by clang, the compiler of every Mac (Apple clang) and a common one on Linux, where the rest
# of CI builds with gcc. clang comes from PyPI's ziglang (`zig cc` is clang with the C libraries of many
# targets), installed into a venv of its own, so this needs no system package:
#   - x86-64 Linux: the check driver (csrc/check_kernels.c: every kernel of every variant this CPU runs against
#     double-precision references, bit for bit between 1 and 3 threads, and the decoding block) built by clang
#     and run;
#   - macOS on Apple silicon and on Intel: every C source compiled for those targets with -Wall -Wextra
#     -Werror (nothing here can run a Mac binary; the neon variant's code runs below);
#   - AArch64 Linux: the check driver built by clang and run under qemu-aarch64 with Debian's AArch64 C
#     library, when both are there (.ci/aarch64.sh installs them): the neon variant's sources, as on a Mac,
#     built by the same compiler.
# About a minute and a half, half of it the emulated run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sources="csrc/check_kernels.c csrc/variant_generic.c csrc/variant_avx2.c csrc/variant_avx512.c csrc/variant_neon.c csrc/dispatch.c csrc/parallel.c csrc/block.c"
units="csrc/variant_generic.c csrc/variant_avx2.c csrc/variant_avx512.c csrc/variant_neon.c csrc/dispatch.c csrc/parallel.c csrc/block.c"
flags="-O3 -fno-trapping-math -Wall -Wextra"

"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "ziglang==0.17.1" 2>&1 | grep -v -i warning || true
export ZIG_GLOBAL_CACHE_DIR="$work/zig-cache"  # (zig builds each target's C library stubs once, here)
cc() { "$work/venv/bin/python" -m ziglang cc "$@"; }
echo "clang: $(cc --version | head -1)"

echo "clang: the check driver for x86-64 Linux, run here"
cc $flags -Werror -pthread -target x86_64-linux-gnu $sources -lm -o "$work/check-x86_64"
"$work/check-x86_64" | tee "$work/check.log" | grep -v " ok " || true
grep -q ' 0 failure(s)$' "$work/check.log" || { echo "clang: the x86-64 check failed"; exit 1; }

for target in aarch64-macos x86_64-macos; do
  echo "clang: every source compiled for $target (-Werror)"
  for unit in $units; do
    cc $flags -Werror -target "$target" -c "$unit" -o "$work/$(basename "$unit" .c)-$target.o"
  done
done

echo "clang: the check driver for AArch64 Linux"
cc $flags -Werror -pthread -target aarch64-linux-gnu $sources -lm -o "$work/check-aarch64"
if command -v qemu-aarch64 > /dev/null && [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]; then
  qemu-aarch64 -L /usr/aarch64-linux-gnu "$work/check-aarch64" | tee "$work/check-aarch64.log" | grep -v " ok " || true
  grep -q '^neon .* ok ' "$work/check-aarch64.log" || { echo "clang: the driver did not check the neon variant"; exit 1; }
  grep -q ' 0 failure(s)$' "$work/check-aarch64.log" || { echo "clang: the AArch64 check failed"; exit 1; }
else
  echo "clang: built, not run: no qemu-aarch64 and /usr/aarch64-linux-gnu here"
fi
