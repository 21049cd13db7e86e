#!/usr/bin/env bash
# The C kernels on AArch64 (Apple M-series, Graviton, Raspberry Pi...), checked under emulation: cross-compile
# csrc/check_kernels.c with the library's sources (the "neon" variant, built exactly as on such a machine:
# no -march, so only the architecture's baseline, which includes Advanced SIMD) for aarch64-linux-gnu, and
# run it with qemu-user. The driver compares every kernel with double-precision references, exactly with
# small integers, and the bits of 1 and 3 threads (see its header). The same driver runs natively first, for
# every variant this CPU runs. Takes well under a minute.
#
# Needs Debian's gcc-aarch64-linux-gnu and qemu-user (installed here with apt-get when missing and root);
# on a machine without them and without apt-get, it says so and skips (exit 0): it is an extra check.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-gcc}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sources="csrc/check_kernels.c csrc/variant_generic.c csrc/variant_avx2.c csrc/variant_avx512.c csrc/variant_neon.c csrc/dispatch.c csrc/parallel.c csrc/block.c"

echo "aarch64: the check driver natively ($("$CC" -dumpmachine))"
"$CC" -O3 -fno-trapping-math -pthread -Wall $sources -lm -o "$work/check-native"
"$work/check-native"

if ! command -v aarch64-linux-gnu-gcc > /dev/null || ! command -v qemu-aarch64 > /dev/null; then
  if command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
    echo "aarch64: installing gcc-aarch64-linux-gnu, qemu-user, libc6-dev-arm64-cross"
    apt-get update -qq > /dev/null && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user libc6-dev-arm64-cross > /dev/null
  else
    echo "aarch64: SKIPPED: no aarch64-linux-gnu-gcc and qemu-aarch64 here, and no apt-get (as root) to install them"
    exit 0
  fi
fi

echo "aarch64: cross-compiling with $(aarch64-linux-gnu-gcc --version | head -1)"
aarch64-linux-gnu-gcc -O3 -fno-trapping-math -pthread -static -Wall $sources -lm -o "$work/check-aarch64"
if command -v file > /dev/null; then file "$work/check-aarch64" | grep aarch64 > /dev/null || { echo "aarch64: not an AArch64 binary"; exit 1; }; fi
echo "aarch64: running under $(qemu-aarch64 --version | head -1)"
qemu-aarch64 "$work/check-aarch64"
