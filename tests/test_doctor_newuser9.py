"""The doctor's advice for a C core that was not built fits how minigpt2 was installed: `pip install -e . again`
only helps a checkout installed in place; an install from a wheel, an sdist or a copy (`pip install .`) is rebuilt by
installing again (found on AArch64 under qemu, an install without a compiler: helper-60's pass)."""
from minigpt2 import backend, doctor


def _advice(monkeypatch, checkout):
    monkeypatch.setattr(backend, "c_available", lambda: False)
    monkeypatch.setattr(backend, "shadowed_copy", lambda: None)
    monkeypatch.setattr(backend, "_checkout", lambda: checkout)
    monkeypatch.setattr(doctor, "_setting_problem", lambda which: None)
    status, text, fix = doctor.check_c_core()
    assert status == doctor.WARN and text.startswith("C core not built"), text
    return fix


def test_an_install_not_from_a_checkout_is_told_to_install_again_not_pip_install_e(monkeypatch):
    fix = _advice(monkeypatch, None)
    assert "-e ." not in fix and "build_kernels" not in fix, fix
    assert "build-essential" in fix and "install minigpt2 again" in fix, fix


def test_a_checkout_is_told_pip_install_e_there(monkeypatch, tmp_path):
    fix = _advice(monkeypatch, str(tmp_path))
    assert f"pip install -e . again in {tmp_path}" in fix and "python csrc/build_kernels.py" in fix, fix
