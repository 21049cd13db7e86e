"""What an AArch64 user (Apple M, Graviton, a Raspberry Pi) met that an x86-64 user does not, simulated on any machine.

Found by running the package itself on AArch64 Linux under qemu-user (.ci/aarch64_python.sh): installed with pip,
the C core built with the userland's gcc, compared with transformers on x86.

* A BLAS that raises floating-point flags on finite data. NumPy checks the CPU's flags after a product and warns
  ("divide by zero encountered in matmul", "overflow ...", "invalid value ..."); on an Arm CPU with SME, entering
  its streaming mode sets every flag whatever the values (numpy/numpy#28687, #29820: Apple M4's Accelerate; the
  same under qemu's "max" CPU with the OpenBLAS of NumPy's aarch64 wheels, for a float32 product as small as
  8 x 8). The first `python -m minigpt2 --info` then printed three such warnings from the kernel calibration,
  whose examples are finite numbers by construction. Here the flag is raised by a NumPy division, which NumPy
  reports the same way.
"""
import warnings

import numpy as np

from minigpt2 import _tuning


def spurious_flags():
    """A NumPy call that leaves the divide-by-zero flag raised, as such a BLAS leaves all of them."""
    np.ones(4, np.float32) / np.zeros(4, np.float32)


def test_the_calibration_races_print_no_floating_point_warnings():
    before = np.geterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        winner, times = _tuning._race({"numpy": spurious_flags, "also numpy": lambda: None}, rounds=2)
    assert [str(w.message) for w in caught] == []
    assert set(times) == {"numpy", "also numpy"} and winner in times
    assert np.geterr() == before  # the caller's floating-point settings are left as they were
    with warnings.catch_warnings(record=True) as caught:  # and outside the race, NumPy warns again
        warnings.simplefilter("always")
        spurious_flags()
    assert [str(w.message) for w in caught] == ["divide by zero encountered in divide"]


def test_the_model_on_numpy_prints_no_floating_point_warnings():
    """The same BLAS flags in the model's own products (numpy/numpy#28687: every float32 product of 15 or more on
    an Apple M4 with Accelerate, or of 8 x 8 under qemu's "max" CPU): a forward, a generation and a training step
    on the NumPy backend printed "divide by zero / overflow / invalid value encountered in matmul" at each product,
    where transformers prints nothing. Simulated by making every product NumPy runs raise the flags itself."""
    import minigpt2
    from minigpt2 import backend

    matmul = np.matmul

    def flagging(a, b, *args, **kwargs):
        spurious_flags()
        return matmul(a, b, *args, **kwargs)

    class Flagging(np.ndarray):  # weights whose products raise the flags, as that BLAS does
        def __matmul__(self, other):
            return flagging(np.asarray(self), other)

        def __rmatmul__(self, other):
            return flagging(other, np.asarray(self))

    def flagging_params(params):
        if isinstance(params, dict):
            return {k: flagging_params(v) for k, v in params.items()}
        return params.view(Flagging) if isinstance(params, np.ndarray) and params.ndim == 2 else params

    previous = backend.get_backend()
    backend.set_backend("numpy")
    try:
        config = minigpt2.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16, bos_token_id=49,
                                         eos_token_id=49)
        model = minigpt2.GPT2LMHeadModel(config, seed=0)
        plain = model(np.arange(6)[None]).logits
        model.params = flagging_params(model.params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            logits = model(np.arange(6)[None]).logits
            model.generate(np.arange(3)[None], max_new_tokens=3, do_sample=False)
            model.train()
            model.loss_and_grad(np.arange(6)[None], rng=0)
        assert [str(w.message) for w in caught] == []
        assert np.array_equal(logits, plain)  # the products' values are untouched
        with warnings.catch_warnings(record=True) as caught:  # outside the model, NumPy still warns
            warnings.simplefilter("always")
            spurious_flags()
        assert [str(w.message) for w in caught] == ["divide by zero encountered in divide"]
    finally:
        backend.set_backend(previous)


def test_each_apple_chip_has_its_own_kernel_choice(monkeypatch):
    """Without /proc/cpuinfo (macOS), the CPU model in the kernel choice's cache key was platform.processor(): "arm"
    for every Apple chip, so a home directory shared by an M1 and an M4 (or one copied to a new Mac) kept the M1's
    choice. sysctl names the chip."""
    import builtins
    import subprocess
    import types

    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        if str(path) == "/proc/cpuinfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(_tuning.platform, "processor", lambda: "arm")
    chips = {}
    for chip in ("Apple M1", "Apple M4 Pro"):
        def sysctl(argv, chip=chip, **kwargs):
            assert argv == ["sysctl", "-n", "machdep.cpu.brand_string"]
            return types.SimpleNamespace(returncode=0, stdout=chip + "\n")
        monkeypatch.setattr(subprocess, "run", sysctl)
        chips[chip] = _tuning._cpu_model()
    assert chips == {"Apple M1": "Apple M1", "Apple M4 Pro": "Apple M4 Pro"}

    def no_sysctl(argv, **kwargs):
        raise FileNotFoundError(argv[0])
    monkeypatch.setattr(subprocess, "run", no_sysctl)
    assert _tuning._cpu_model() == "arm"  # (no sysctl either: what platform says, as before)
