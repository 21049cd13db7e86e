"""NumPy's OpenBLAS running its parallel jobs on the C core's thread pool (minigpt2/_blas_threads.py,
csrc/parallel.c mg_blas_threads): the products come out with the same bits as on OpenBLAS's own threads, from
several Python threads at once and in a forked child, and the pool really ran them.

Each test runs in a fresh interpreter with OPENBLAS_NUM_THREADS=2 (with one thread OpenBLAS never hands out
jobs), under a timeout: a mistake here shows as a hang. The C side alone (jobs that wait for one another, one
call at a time) is checked by csrc/check_kernels.c."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import numpy as np

ck = pytest.importorskip("minigpt2._ckernels", reason="the C extension is not built (see test_backend.py)")


def numpy_bundles_openblas_with_the_callback() -> bool:
    """NumPy's wheels bring scipy-openblas; OpenBLAS takes a threads callback from 0.3.27 on."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        version = tuple(int(part) for part in blas["version"].split(".")[:3])
        return blas["name"].startswith("scipy-openblas") and version >= (0, 3, 27)
    except Exception:  # (an older NumPy without show_config's dicts, or another build's fields)
        return False


if not (numpy_bundles_openblas_with_the_callback() and ck.lib.mg_has_threads()):
    pytest.skip("NumPy's BLAS here is not an OpenBLAS that takes a threads callback", allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRELUDE = """
import numpy as np
from minigpt2 import _blas_threads, _ckernels as ck
rng = np.random.default_rng(0)
a = rng.standard_normal((700, 768), dtype=np.float32)
b = rng.standard_normal((768, 2304), dtype=np.float32)
"""


def run(code):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(OPENBLAS_NUM_THREADS="2", MINIGPT2_NUM_THREADS="2",
               PYTHONPATH=os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_products_run_on_the_pool_with_the_same_bits():
    run("""
        assert ck.blas_on_pool, "not installed"
        calls = ck.lib.mg_blas_calls()
        ours = a @ b
        assert ck.lib.mg_blas_calls() > calls, "the product did not run on the pool"
        address = int(ck.ffi.cast("uintptr_t", ck.ffi.addressof(ck.lib, "mg_blas_threads")))
        _blas_threads.install(0)  # OpenBLAS's own threads again
        calls = ck.lib.mg_blas_calls()
        theirs = a @ b
        assert ck.lib.mg_blas_calls() == calls
        _blas_threads.install(address)
        assert np.array_equal(ours, theirs), "OpenBLAS splits the work alike on either threads: same bits"
    """)


def test_python_threads_share_the_pool():
    """Six Python threads multiply at once (NumPy releases the GIL), beside the C kernels' own jobs: each call
    runs alone on the pool's threads (OpenBLAS's per-thread buffers), and every result is right."""
    run("""
        import threading
        from minigpt2 import backend
        backend.set_backend("c")
        expected = a @ b
        w = rng.standard_normal((768, 3072), dtype=np.float32)
        x = rng.standard_normal((1, 768), dtype=np.float32)
        y = ck.linear(x, w)
        errors = []

        def work(i):
            for _ in range(16):
                if i % 3:
                    errors.extend([] if np.array_equal(a @ b, expected) else ["product"])
                else:
                    errors.extend([] if np.array_equal(ck.linear(x, w), y) else ["kernel"])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
    """)


def test_a_forked_child_multiplies():
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    run("""
        import os
        expected = a @ b  # (the pool is running)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if np.array_equal(a @ b, expected) else 3)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0, status
    """)


def test_numpy_linear_algebra_on_the_pool():
    """LAPACK's routines in NumPy's OpenBLAS call its threaded BLAS in many ways (level 2 and 3, real and complex,
    inside blocked factorisations): every result the same as on OpenBLAS's own threads, and nothing hangs."""
    run("""
        calls = ck.lib.mg_blas_calls()
        m = rng.standard_normal((600, 600))
        spd = m @ m.T + 600 * np.eye(600)
        z = m + 1j * rng.standard_normal((600, 600))

        def sweep():
            return [np.linalg.solve(spd, m), np.linalg.inv(m), np.linalg.qr(m)[1], np.linalg.svd(m, compute_uv=False),
                    np.linalg.eigvalsh(spd), np.linalg.cholesky(spd), np.linalg.det(spd.astype(np.float32) / 600),
                    z @ z.conj().T, np.linalg.lstsq(m[:, :300], m[:, 0], rcond=None)[0], m.astype(np.float32) @ b[:600]]

        ours = sweep()
        assert ck.lib.mg_blas_calls() > calls, "nothing ran on the pool"
        address = int(ck.ffi.cast("uintptr_t", ck.ffi.addressof(ck.lib, "mg_blas_threads")))
        _blas_threads.install(0)
        theirs = sweep()
        _blas_threads.install(address)
        for x, y in zip(ours, theirs):
            assert np.array_equal(x, y), "OpenBLAS splits the work alike on either threads: same bits"
    """)
