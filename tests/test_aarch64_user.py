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
