#!/usr/bin/env bash
# The Python package on AArch64 Linux (Apple M under Linux, Graviton, a Raspberry Pi), as its user runs it, under
# qemu-user: Debian bookworm's arm64 Python 3.11 (its .debs unpacked, no debootstrap), a venv with NumPy, cffi,
# regex, safetensors and huggingface_hub from PyPI's aarch64 wheels, and `pip install .` of a fresh copy of the
# repository, whose C core is compiled by the cross compiler aarch64-linux-gnu-gcc (the name the arm64 Python's
# sysconfig gives: the emulated pip runs the x86 compiler, which makes the same code gcc makes on an arm64
# machine, in seconds instead of minutes). Then, as the user: --info, generating from a tiny checkpoint, the Python
# API in float32, bfloat16, float16 and int8 against transformers (fp32, eager, run on x86 on the same checkpoint;
# bound 1e-5 x max(1, |ref|), int8 that plus a step of its int16 activations per product), MINIGPT2_KERNEL and
# MINIGPT2_BACKEND, the doctor; and a second install with no compiler, on the NumPy backend.
#
# The kernel variant is forced (MINIGPT2_KERNEL=neon): the calibration a first run makes measures GPT-2-sized
# examples of 64-128 MiB, which took 37 minutes under qemu (2026-12-06; a few seconds on a real CPU).
# Takes 206 s on the 2-core Xeon VM with the tools installed (2026-12-06: arm64 debs 10 s, wheels 7, reference 8,
# pip install . 77, as the user 44, the install without a compiler 56), plus their apt-get install on a fresh
# machine (qemu-user-static and binfmt-support took 13 s with apt-get update; the cross gcc was already there).
# Needs apt-get and root to fetch what is missing (qemu-user-static, binfmt-support, gcc-aarch64-linux-gnu),
# transformers and torch in `python` for the reference, and binfmt_misc for aarch64 (pip starts Python
# processes); without them it says so and skips (exit 0). CI runs it first in its second lane (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/lib.sh
began=$(date +%s)
step=$began
took() { echo "aarch64-python: $1 ($(( $(date +%s) - step )) s)"; step=$(date +%s); }
skip() { echo "aarch64-python: SKIPPED: $1"; exit 0; }
export MINIGPT2_KERNEL=neon XDG_CACHE_HOME="$SCRATCH/xdg"

python -c "import transformers, torch" 2> /dev/null \
  || skip "the reference needs transformers and torch in $(command -v python) (pip install -e '.[dev]')"
if ! command -v aarch64-linux-gnu-gcc > /dev/null || ! command -v qemu-aarch64-static > /dev/null \
   || ! command -v dpkg-deb > /dev/null; then
  if command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static binfmt-support gcc-aarch64-linux-gnu \
      libc6-dev-arm64-cross > /dev/null
  else
    skip "no aarch64-linux-gnu-gcc and qemu-aarch64-static here, and no apt-get (as root) to install them"
  fi
fi
# pip runs Python in new processes: the kernel must hand aarch64 programs to qemu (binfmt_misc)
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && [ "$(id -u)" = 0 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2> /dev/null || true
  if [ -w /proc/sys/fs/binfmt_misc/register ] && [ -e /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
    cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register 2> /dev/null || true
  fi
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || skip "binfmt_misc cannot run aarch64 programs here (a container?)"
took "tools"

# Debian's arm64 Python: apt resolves its dependencies in a state of its own (no change to this machine's apt)
apt_dir="$SCRATCH/apt-arm64" root="$SCRATCH/arm64"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$root"
touch "$apt_dir/status"
echo "deb [arch=arm64] http://deb.debian.org/debian bookworm main" > "$apt_dir/sources.list"
apt_arm64() {
  apt-get -qq -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Dir::Etc::SourceList="$apt_dir/sources.list" \
    -o Dir::Etc::SourceParts=/nonexistent -o Dir::State::Lists="$apt_dir/lists" -o Dir::State::status="$apt_dir/status" \
    -o Dir::Cache="$apt_dir" -o Dir::Cache::archives="$apt_dir/archives" -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@" > /dev/null
}
apt_arm64 update
apt_arm64 install -y --download-only --no-install-recommends python3.11 libpython3.11-dev libstdc++6
for deb in "$apt_dir"/archives/*.deb; do dpkg-deb -x "$deb" "$root"; done
export QEMU_LD_PREFIX="$root"  # where the emulated programs find their dynamic loader and libraries
"$root/usr/bin/python3.11" -c "import platform, sys; print('aarch64-python: Python', sys.version.split()[0], platform.machine())"
took "arm64 Python 3.11 from Debian"

wheels="$SCRATCH/wheels"
python -m pip download -q --only-binary=:all: --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none -d "$wheels" \
  numpy cffi regex safetensors huggingface_hub setuptools wheel pip pycparser 2>&1 | grep -v "^WARNING: Location" || true
pip_wheel=$(ls "$wheels"/pip-*.whl)
took "aarch64 wheels from PyPI"

# The reference, on x86: a tiny GPT-2 with GPT-2's vocabulary (so the bundled tokenizer and the CLI work), weights
# exact in bfloat16 and float16 (so loading either way changes no weight, and transformers' float32 is the reference)
ref="$SCRATCH/ref"
mkdir -p "$ref"
cat > "$ref/make_ref.py" <<'EOF'
import os, sys
import numpy as np
import torch
import transformers
from minigpt2.tokenizer import AutoTokenizer

out = sys.argv[1]
ckpt = os.path.join(out, "tiny")
cfg = transformers.GPT2Config(vocab_size=50257, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                              attn_implementation="eager")
model = transformers.GPT2LMHeadModel(cfg).eval()
g = torch.Generator().manual_seed(0)
with torch.no_grad():  # the test suite's wide spread (tests/conftest.py, randomize_torch_model)
    for name, p in sorted(model.named_parameters()):
        norm = ".ln_" in name or name.startswith("ln_")
        mean, std = (1.0 if norm and name.endswith("weight") else 0.0), (0.2 if norm else 0.1 if name.endswith("bias") else 0.3)
        p.copy_((torch.randn(p.shape, generator=g) * std + mean).to(torch.bfloat16).to(torch.float16).float())
model.save_pretrained(ckpt, safe_serialization=True)
AutoTokenizer.from_pretrained("gpt2").save_pretrained(ckpt)
tok = transformers.GPT2TokenizerFast.from_pretrained(ckpt)
ref = {}
with torch.no_grad():
    ids = tok("Hello, my dog is cute and", return_tensors="pt").input_ids
    ref["prompt_ids"], ref["logits"] = ids.numpy(), model(ids).logits.numpy()
    ref["greedy_ids"] = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id).numpy()
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    batch = tok(["Hello", "The weather today is"], return_tensors="pt", padding=True)
    ref["batch_ids"], ref["batch_mask"] = batch.input_ids.numpy(), batch.attention_mask.numpy()
    positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    ref["batch_logits"] = model(**batch, position_ids=positions).logits.numpy()
    ref["batch_greedy"] = model.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=tok.eos_token_id).numpy()
    hello = tok("Hello", return_tensors="pt").input_ids
    text = tok.decode(model.generate(hello, max_new_tokens=5, do_sample=False, pad_token_id=tok.eos_token_id)[0])
with open(os.path.join(out, "cli_text"), "w") as f:
    f.write(text + "\n")
import minigpt2  # int8 has no transformers counterpart: minigpt2's NumPy kernels on the same int8 weights
minigpt2.backend.set_backend("numpy")
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # (int8 on the NumPy backend is slow: it says so)
    m8 = minigpt2.GPT2LMHeadModel.from_pretrained(ckpt, load_in_8bit=True)
    ref["int8_logits"] = np.asarray(m8(ref["prompt_ids"]).logits)
    ref["int8_greedy"] = np.asarray(m8.generate(ref["prompt_ids"], max_new_tokens=8, do_sample=False))
np.savez(os.path.join(out, "ref.npz"), **ref)
EOF
cat > "$ref/check.py" <<'EOF'
import os, sys, warnings
import numpy as np
import minigpt2
from minigpt2 import GPT2LMHeadModel, GPT2Tokenizer

here, formats = sys.argv[1], sys.argv[2].split(",")
ckpt, ref = os.path.join(here, "tiny"), np.load(os.path.join(here, "ref.npz"))
failures = []
def close(name, ours, want, rtol=1e-5):
    ours, want = np.asarray(ours, np.float64), np.asarray(want, np.float64)
    diff = np.abs(ours - want).max() if ours.shape == want.shape else np.inf
    bound = rtol * max(1.0, np.abs(want).max())
    print(f"  {'ok  ' if diff <= bound else 'FAIL'} {name}: max|diff| {diff:.3g} (bound {bound:.3g})")
    failures.extend([] if diff <= bound else [name])
def same(name, ours, want):
    ok = np.array_equal(np.asarray(ours), np.asarray(want))
    print(f"  {'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {np.asarray(ours).tolist()} want {np.asarray(want).tolist()}"))
    failures.extend([] if ok else [name])

c = minigpt2.backend.c_available()
print(f"  backend {minigpt2.backend.name}" + (f", variants {minigpt2.backend.kernel_variants()}, "
      f"{minigpt2.backend.kernel_choice()[0]}" if c else ""))
tok = GPT2Tokenizer.from_pretrained(ckpt)
same("tokenizer", tok("Hello, my dog is cute and", return_tensors="np")["input_ids"], ref["prompt_ids"])
warnings.simplefilter("ignore")  # (narrow weights on the NumPy backend: slow, it says so)
for fmt in formats:
    if fmt == "int8":
        model = GPT2LMHeadModel.from_pretrained(ckpt, load_in_8bit=True)
        # each product's input rounded to int16 steps of 2^-15 of its block's largest: float32 rounding upstream may
        # move one by a step, in the 4 products of each of the 2 blocks and the head (tests/test_invariants5.py)
        close("int8 logits (x86 minigpt2's NumPy kernels)", model(ref["prompt_ids"]).logits, ref["int8_logits"],
              1e-5 + (4 * 2 + 1) * 2.0 ** -15)
        same("int8 greedy ids", model.generate(ref["prompt_ids"], max_new_tokens=8, do_sample=False), ref["int8_greedy"])
        continue
    model = GPT2LMHeadModel.from_pretrained(ckpt, torch_dtype=fmt)
    close(f"{fmt} logits", model(ref["prompt_ids"]).logits, ref["logits"])
    same(f"{fmt} greedy ids", model.generate(ref["prompt_ids"], max_new_tokens=8, do_sample=False), ref["greedy_ids"])
    mask = ref["batch_mask"]
    out = model(ref["batch_ids"], attention_mask=mask, position_ids=np.clip(mask.cumsum(-1) - 1, 0, None))
    close(f"{fmt} left-padded batch logits", out.logits, ref["batch_logits"])
    same(f"{fmt} left-padded batch greedy ids", model.generate(ref["batch_ids"], attention_mask=mask,
                                                               max_new_tokens=6, do_sample=False), ref["batch_greedy"])
if c:
    from minigpt2 import _ckernels
    served = {name for name, n in _ckernels.calls.items() if n}
    print(f"  C kernels that served: {', '.join(sorted(served))}; variants: {sorted(set(_ckernels.last_variant.values()))}")
    if not {"linear", "attention"} <= served or set(_ckernels.last_variant.values()) != {"neon"}:
        failures.append("the C core (neon) did not serve")
sys.exit("FAILED: " + ", ".join(failures) if failures else 0)
EOF
python "$ref/make_ref.py" "$ref" > /dev/null 2>&1 || python "$ref/make_ref.py" "$ref"
took "the reference (x86, transformers $(python -c 'import transformers; print(transformers.__version__)'))"

# As the user: a venv, pip install . (a fresh copy of the repository), the C core compiled for aarch64. Debian's
# sysconfig names /usr/include/python3.11, whose pyconfig.h includes <aarch64-linux-gnu/python3.11/pyconfig.h>:
# the cross compiler finds both in the unpacked root (CFLAGS come first on the command line).
src=$(fresh_source src)
"$root/usr/bin/python3.11" -m venv --without-pip "$SCRATCH/venv"
emu_pip() { "$1/bin/python" "$pip_wheel/pip" install -q --no-index --find-links "$wheels" "${@:2}"; }
export CFLAGS="-I$root/usr/include/python3.11 -I$root/usr/include"
emu_pip "$SCRATCH/venv" "$src"
unset CFLAGS
ls "$SCRATCH"/venv/lib/python3.11/site-packages/minigpt2/_kernels*.so > /dev/null \
  || { echo "aarch64-python: FAILED: pip install . built no C core"; exit 1; }
took "pip install . (C core built)"
py="$SCRATCH/venv/bin/python"
cd "$SCRATCH"  # (not beside the source's minigpt2/ folder)
echo "aarch64-python: python -m minigpt2 --info"
info=$("$py" -m minigpt2 --info)
echo "$info" | sed -n '1,4p;/kernel choice/p' | sed 's/^/  /'
case "$info" in *"variants neon, of which this CPU runs neon"*) ;;
  *) echo "aarch64-python: FAILED: --info does not show the neon variant"; exit 1 ;; esac
echo "aarch64-python: the Python API against transformers"
"$py" "$ref/check.py" "$ref" float32,bfloat16,float16,int8
echo "aarch64-python: python -m minigpt2 --model tiny --greedy -n 5 \"Hello\""
text=$("$py" -m minigpt2 --model "$ref/tiny" --greedy -n 5 "Hello")
[ "$text" = "$(cat "$ref/cli_text")" ] || { echo "aarch64-python: FAILED: '$text', transformers: '$(cat "$ref/cli_text")'"; exit 1; }
echo "  ok   '$text' (transformers: the same)"
"$py" -m minigpt2 --model "$ref/tiny" -n 5 -s 1 --dtype bfloat16 "Hello" > /dev/null
for variant in avx2 generic; do  # a variant of another architecture: an error naming the allowed ones, exit 2
  out=$(MINIGPT2_KERNEL=$variant "$py" -m minigpt2 --model "$ref/tiny" -n 1 "Hi" 2>&1) && exit 1 || true
  case "$out" in *"this machine can use auto, numpy, neon"*) ;; *) echo "aarch64-python: FAILED: $out"; exit 1 ;; esac
done
echo "  ok   MINIGPT2_KERNEL=avx2, generic: $(echo "$out" | tail -1)"
text=$(MINIGPT2_BACKEND=numpy "$py" -m minigpt2 --model "$ref/tiny" --greedy -n 5 "Hello")
[ "$text" = "$(cat "$ref/cli_text")" ] || { echo "aarch64-python: FAILED: MINIGPT2_BACKEND=numpy gave '$text'"; exit 1; }
echo "  ok   MINIGPT2_BACKEND=numpy: the same text"
"$py" -m minigpt2 --doctor | sed 's/^/  /'
took "as the user"

# The same without a compiler: the install succeeds, on the NumPy backend. (The dependencies are the first venv's,
# through a .pth file behind this venv's own site-packages: installing them again took 40 s of emulated pip.)
"$root/usr/bin/python3.11" -m venv --without-pip "$SCRATCH/venv-nocc"
ls -d "$SCRATCH"/venv/lib/python3.11/site-packages > "$SCRATCH/venv-nocc/lib/python3.11/site-packages/deps.pth"
CC=/nonexistent/cc emu_pip "$SCRATCH/venv-nocc" --no-deps "$(fresh_source src-nocc)"
if ls "$SCRATCH"/venv-nocc/lib/python3.11/site-packages/minigpt2/_kernels*.so > /dev/null 2>&1; then
  echo "aarch64-python: FAILED: a C core was built without a compiler"; exit 1
fi
"$SCRATCH/venv-nocc/bin/python" "$ref/check.py" "$ref" float32 2> /dev/null
took "pip install . without a compiler (NumPy backend)"
echo "aarch64-python: passed in $(( $(date +%s) - began )) s"
