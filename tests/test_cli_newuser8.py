"""The command line as a careful new user runs it, eighth round: fresh venvs (Python 3.9 and 3.13, newest releases, also
without a C compiler), every flag with bad values, and ``python -m minigpt2 train``. What was found wrong:

- without the C core, ``MINIGPT2_KERNEL=avx2`` made generating fail (exit 1), while ``--info`` and ``--doctor`` showed
  nothing wrong (exit 0);

Every run is ``python -m minigpt2`` in a process of its own, as a user starts it; the model is a tiny random checkpoint
in a tmp dir (no network).
"""
from __future__ import annotations

import os
import subprocess
import sys

PROG = "python -m minigpt2: error: "

# python -m minigpt2 in a process where the C core does not import, as in an install made without a C compiler
WITHOUT_C_CORE = ("import runpy, sys; sys.modules['minigpt2._kernels'] = None; sys.argv[0] = 'minigpt2'; "
                  "runpy.run_module('minigpt2', run_name='__main__', alter_sys=True)")


def minigpt2(*args, env=None, without_c_core=False):
    """python -m minigpt2 ARGS -> CompletedProcess (text)."""
    env = {**os.environ, "MINIGPT2_KERNEL": "numpy", **(env or {})}
    command = ["-c", WITHOUT_C_CORE] if without_c_core else ["-m", "minigpt2"]
    return subprocess.run([sys.executable, *command, *args], capture_output=True, text=True, timeout=120, env=env,
                          stdin=subprocess.DEVNULL)


# -- 1. MINIGPT2_KERNEL without the C core ---------------------------------------------------------------------

def test_info_and_doctor_say_what_generating_refuses_a_kernel_variant_without_the_c_core(tiny_model_dir, tmp_path):
    """Where the C core is not built, MINIGPT2_KERNEL=avx2 chooses nothing and generating refuses it (exit 1); --info
    and --doctor, which a user runs to find out why, showed no problem and exited 0."""
    env = {"MINIGPT2_KERNEL": "avx2", "HF_HOME": str(tmp_path / "hf")}
    generating = minigpt2("-m", tiny_model_dir, "-n", "2", "Hi", env=env, without_c_core=True)
    assert generating.returncode == 1 and "MINIGPT2_KERNEL='avx2'" in generating.stderr, generating.stderr
    info = minigpt2("--info", env=env, without_c_core=True)
    assert info.returncode == 1, info
    assert "kernel choice: INVALID SETTING\n  error: MINIGPT2_KERNEL='avx2' chooses a variant of the C core, which is " \
           "not built here (only auto and numpy can be used)" in info.stdout, info.stdout
    doctor = minigpt2("--doctor", env=env, without_c_core=True)
    assert doctor.returncode == 1 and "[FAIL] kernels: MINIGPT2_KERNEL='avx2'" in doctor.stdout, doctor.stdout
    fine = minigpt2("--info", env={**env, "MINIGPT2_KERNEL": "numpy"}, without_c_core=True)
    assert fine.returncode == 0 and "INVALID" not in fine.stdout, fine
