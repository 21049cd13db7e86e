#!/usr/bin/env bash
# The installed C core on x86-64 CPUs older than this one, under qemu-user's emulation (QEMU 7.2 and newer
# emulate AVX2): "Haswell" (AVX2 and FMA, no AVX-512: most Intel laptops) and "Nehalem" (SSE4.2, no AVX: the
# x86-64-v2 baseline NumPy 2.x needs). The extension this CI built on its own CPU is loaded by the emulated
# CPU, as a wheel or a shared home directory would be: it must find the variants that CPU runs by its
# features (Haswell: generic and avx2; Nehalem: generic), agree with the NumPy reference with each of them
# forced in turn (.ci/smoke.py), and refuse a variant the CPU lacks with a clear error, never an illegal
# instruction. Speed under emulation means nothing; only what runs is checked. No calibration: under TCG it
# takes 5-10 minutes a CPU (its examples are sized to overflow a real L3 cache); calibrate() takes its
# candidates from supported_variants(), checked here, and runs natively in the tests. About a minute.
#
# Needs qemu-x86_64 (Debian's qemu-user, installed as .ci/aarch64.sh does); skips (exit 0) without it.
set -euo pipefail
cd "$(dirname "$0")/.."
# qemu-user runs an executable file, not a name to look up nor a script: pyenv's shim for "python" is a bash
# script, which qemu-x86_64 refuses with exit status 1 and no message. So the interpreter's own path.
PYTHON=$("${PYTHON:-python}" -c "import sys; print(sys.executable)")
if ! command -v qemu-x86_64 > /dev/null; then
  if command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user > /dev/null
  else
    echo "x86 CPUs: SKIPPED: no qemu-x86_64 here, and no apt-get (as root) to install it"
    exit 0
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "x86 CPUs: $(qemu-x86_64 --version | head -1)"

# OPENBLAS_CORETYPE (set on some of our machines) would make NumPy's OpenBLAS run one CPU's kernels on another:
# NumPy's import dies of an illegal instruction on the emulated Nehalem. Unset for every run below.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

run() {  # run CPU COMMAND...: the command with an empty cache directory for CPU, qemu's notes dropped from stderr
  local cpu="$1" status=0; shift
  env XDG_CACHE_HOME="$work/cache-$cpu" "$@" 2> "$work/stderr" || status=$?
  grep -v "TCG doesn't support" "$work/stderr" || true
  if [ "$status" != 0 ]; then
    echo "x86 CPUs: FAILED on $cpu (exit status $status$( [ "$status" -gt 128 ] && echo ", signal $(kill -l $((status - 128)))")): $*"
    return 1
  fi
}

# The interpreter and NumPy themselves must run on the emulated CPU (NumPy 2.x needs x86-64-v2: Nehalem has it);
# a Python built for this machine's own CPU (-march=native) would not, which is no fault of minigpt2's.
for cpu in Haswell Nehalem; do
  if ! qemu-x86_64 -cpu "$cpu" "$PYTHON" -c "import numpy" 2> "$work/stderr"; then
    { grep -v "TCG doesn't support" "$work/stderr" || true; } | tail -3
    echo "x86 CPUs: SKIPPED: this CI's Python or NumPy ($PYTHON) does not run on an emulated $cpu CPU"
    exit 0
  fi
done

for spec in "Haswell:generic,avx2:avx512" "Nehalem:generic:avx2"; do
  IFS=: read -r cpu expected missing <<< "$spec"
  echo "x86 CPUs: -cpu $cpu (expects the variants $expected)"
  run "$cpu" qemu-x86_64 -cpu "$cpu" "$PYTHON" -c "
import sys
from minigpt2 import _tuning
found = ','.join(_tuning.supported_variants())
assert found == sys.argv[1], f'this CPU runs the variants {found}, expected {sys.argv[1]}'
print(f'  variants this CPU runs: {found}')" "$expected"
  for variant in ${expected//,/ }; do
    run "$cpu" env MINIGPT2_KERNEL="$variant" qemu-x86_64 -cpu "$cpu" "$PYTHON" .ci/smoke.py > "$work/smoke" \
      || { cat "$work/smoke"; exit 1; }
    echo "  MINIGPT2_KERNEL=$variant: $(tail -1 "$work/smoke")"
  done
  # a variant the CPU lacks, forced: a clear error, not SIGILL
  if run "$cpu" env MINIGPT2_KERNEL="$missing" qemu-x86_64 -cpu "$cpu" "$PYTHON" -c "
import numpy as np
from minigpt2 import GPT2Config, GPT2LMHeadModel
GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16), seed=0)(np.array([[1, 2, 3]]))" > "$work/forced" 2>&1; then
    echo "x86 CPUs: MINIGPT2_KERNEL=$missing ran on $cpu"; exit 1
  fi
  grep -q "MINIGPT2_KERNEL '$missing': this CPU cannot run it" "$work/forced" \
    || { cat "$work/forced"; echo "x86 CPUs: MINIGPT2_KERNEL=$missing on $cpu did not fail clearly"; exit 1; }
  echo "  MINIGPT2_KERNEL=$missing: $(grep "^ValueError: MINIGPT2_KERNEL" "$work/forced" | tail -1)"
done
echo "x86 CPUs: ok"
