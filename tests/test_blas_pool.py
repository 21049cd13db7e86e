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


COUNTS = """
import ctypes, os, time
def openblas_threads():
    '''What each OpenBLAS on the pool would split a product into now (its openblas_get_num_threads).'''
    counts = []
    for path in ck.blas_on_pool:
        library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
        get = next(getattr(library, n) for n in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads")
                   if hasattr(library, n))
        get.restype = ctypes.c_int
        counts.append(get())
    return counts
"""


def test_the_pools_thread_count_is_blas_thread_count():
    """One pool, one thread count: set_num_threads (the CLI's --threads) caps the jobs OpenBLAS splits a model's
    products into, as it caps the C kernels' (before, `--threads 1` still ran a prompt's products on 2 threads);
    never above what OpenBLAS started with (OPENBLAS_NUM_THREADS=2 here)."""
    run(COUNTS + textwrap.dedent("""
        from minigpt2 import backend, GPT2Config, GPT2LMHeadModel
        backend.set_backend("c")
        backend.set_kernel(backend.kernel_variants()[-1])  # (else each thread count may pick other variants: other bits)
        model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=64, vocab_size=300), seed=0)
        ids = np.arange(80)[None] % 300
        expected = model(ids).logits
        for n, blas in ((1, 1), (2, 2), (3, 2), (1, 1)):
            backend.set_num_threads(n)
            for _ in range(2):
                # (one thread also while the pool finds the cores crowded: CI's machine may be busy)
                crowded = blas > 1 and ck.lib.mg_blas_crowded_calls() > 0
                assert openblas_threads() in ([blas], [1] if crowded else [blas]), (n, openblas_threads())
                assert np.array_equal(model(ids).logits, expected)
    """))


def test_crowded_cores_give_blas_one_thread():
    """When the pool's threads do not get their cores (here: the whole process pinned to one CPU, so OpenBLAS's two
    jobs share it and each gets half), the pool finds so from their CPU time and advises one job per product, with
    the same bits; after a pause (half a second) it lets OpenBLAS split products again, to measure anew
    (csrc/parallel.c, "Crowded cores")."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity here")
    run(COUNTS + textwrap.dedent("""
        from minigpt2 import backend
        def pin(cpus):  # every thread of the process, the pool's workers included
            for task in os.listdir("/proc/self/task"):
                os.sched_setaffinity(int(task), cpus)
        everywhere = os.sched_getaffinity(0)
        assert ck.lib.mg_blas_width() == 2 and openblas_threads() == [2]
        expected = a @ b
        pin({min(everywhere)})
        for _ in range(8):  # (40 ms of threads x wall clock make a window; each product is ~20 ms here)
            ck.follow_pool()  # (what the C core does before each product it leaves to BLAS)
            assert np.array_equal(a @ b, expected)
        pin(everywhere)
        assert ck.lib.mg_blas_crowded_calls() >= 1, "two threads on one CPU, and the pool did not notice"
        assert ck.lib.mg_blas_width() == 1
        ck.follow_pool()
        assert openblas_threads() == [1]
        assert np.array_equal(a @ b, expected)
        # (the first pause is half a second, doubling for each crowded window after it; one here, unless the
        # machine was busy already before the pinning)
        time.sleep(0.5 * 2 ** (ck.lib.mg_blas_crowded_calls() - 1) + 0.1)
        assert ck.lib.mg_blas_width() == 2, "after the pause, OpenBLAS may split products again"
        ck.follow_pool()
        assert openblas_threads() == [2]
    """))
