"""The kernels keep their sums in registers, as compiled here (the assembly gcc or clang makes of csrc).

A product's sums are read and written at every multiply-add; one kept on the stack instead costs a store and a
reload per step, which the next step waits on. The kernels are written so that sums, broadcasts and one
vector of W fit the register file of each variant (csrc/target_*.h), but what a compiler makes of them is
its own: gcc 12 kept every sum of the AVX-512 head kernels (decode.h, dots_*) on the stack for a whole loop
when vsum (simd.h) took a vector's halves out with memcpy, and one sum of the AVX-512 one-row strip for 16-bit
weights (strip_1_wide) when the strip loaded its 16 vectors of W before using any. 16-bit heads in L2 ran 30%
slower. Here each x86-64 variant is compiled to assembly by this machine's C compiler and every multiply-add of
the decoding kernels is checked: none may take an operand from the stack. (The batch kernels of 8 rows, stream_8,
and int8's rows-stored strips hold more broadcasts than the registers: they read broadcasts from the stack, by
design.)"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
# (decoding one sequence; macOS names a function with a leading underscore)
KERNELS = re.compile(r"^_?(dots_(rc|1c|r1|11)|strip_1_wide|strip_1_vec)_(f32|bf16|f16)\b")
STACK_FMA = re.compile(r"\bvfn?madd\d*[ps]s\s+-?(0x)?[0-9a-f]*\(%rsp\)")


def compiler():
    name = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(name) or shutil.which("cc")


pytestmark = [
    pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 assembly"),
    pytest.mark.skipif(compiler() is None, reason="no C compiler"),
]


def known_compiler():
    """gcc from 12 or clang: the compilers the kernels were checked with (vsum takes a vector's halves with
    __builtin_shufflevector there; an older gcc takes them with memcpy, which gcc 12 kept on the stack)."""
    run = subprocess.run([compiler(), "--version"], capture_output=True, text=True)
    if "clang" in run.stdout:
        return True
    version = subprocess.run([compiler(), "-dumpversion"], capture_output=True, text=True).stdout.strip()
    major = re.match(r"\d+", version)
    return "Free Software Foundation" in run.stdout and major is not None and int(major.group()) >= 12


def assembly(variant, tmp_path):
    if not known_compiler():
        pytest.skip(f"{compiler()} is neither gcc 12 or later nor clang")
    out = tmp_path / f"{variant}.s"
    # (the flags of a default build: Python's, then csrc/build_kernels.py's; MINIGPT2_CFLAGS and MINIGPT2_MARCH not)
    flags = [*(sysconfig.get_config_var("CFLAGS") or "").split(), *(sysconfig.get_config_var("CCSHARED") or "").split(),
             "-O3", "-fno-trapping-math"]
    run = subprocess.run([compiler(), *flags, "-S", os.path.join(CSRC, f"variant_{variant}.c"), "-o", str(out)],
                         capture_output=True, text=True, cwd=CSRC)
    if run.returncode:
        pytest.skip(f"{compiler()} cannot compile variant_{variant}.c here: {run.stderr[-300:]}")
    return out.read_text(errors="replace")


def stack_operands(text):
    """{function: number of multiply-adds with an operand on the stack} for the decoding kernels."""
    found, function = {}, None
    for line in text.splitlines():
        label = re.match(r"^([A-Za-z_][\w.]*):", line)
        if label:
            function = label.group(1) if KERNELS.match(label.group(1)) else None
        elif function and STACK_FMA.search(line):
            found[function] = found.get(function, 0) + 1
    return found


@pytest.mark.parametrize("variant", ["avx512", "avx2"])
def test_the_decoding_kernels_keep_their_sums_in_registers(variant, tmp_path):
    text = assembly(variant, tmp_path)
    kernels = {m.group(1) for m in re.finditer(r"^([A-Za-z_][\w.]*):", text, re.M) if KERNELS.match(m.group(1))}
    assert len(kernels) >= 12, sorted(kernels)  # (the names this test reads are the ones compiled)
    assert stack_operands(text) == {}


def test_the_check_finds_a_sum_on_the_stack():
    """What gcc 12 made of dots_1c_bf16 with vsum's memcpy (objdump of the built extension, in gcc's syntax); and
    the same line under macOS's name for the function."""
    spilled = "dots_1c_bf16.constprop.0:\n\tvpmovzxwd\t(%rcx,%r15), %zmm3\n\tvfmadd213ps\t72(%rsp), %zmm0, %zmm5\n"
    assert stack_operands(spilled) == {"dots_1c_bf16.constprop.0": 1}
    assert stack_operands(spilled.replace("72(%rsp)", "%zmm7")) == {}
    assert stack_operands(spilled.replace("dots_1c_bf16.constprop.0:", "_dots_1c_bf16:")) == {"_dots_1c_bf16": 1}
