"""16- and 8-bit weights as a user meets them (audit 15): loading a checkpoint stored in one format into another,
saving and reloading, the dtype reported (docs/numerics.md, "Weights in fewer bits")."""
import os
import subprocess
import sys

import pytest

import minigpt2


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak memory from /proc (Linux)")
@pytest.mark.parametrize("fmt", ["float32", "float16", "int8"])
def test_loading_a_bfloat16_file_in_another_narrow_format_stays_near_the_narrow_model(tmp_path, fmt):
    """A bfloat16 checkpoint (as transformers saves GPT-2 in bf16) loaded in float16 or int8 is converted a slice
    at a time, as a float32 file is (test_dtypes.py): the peak is the narrow model plus a little, never a float32
    copy of wte and the temporaries of converting it whole; widened to float32, wte takes no second temporary.
    GPT-2 124M, before: 778 MB for int8 (a 126 MB model), 545 MB for float16 (237 MB), 715 MB for float32 (474 MB);
    after: 136, 244, 549. Bound: the model (2x, 1x or 0.53x of the bf16 file) plus 0.3x of the file, and for
    float32 the file's pages too (a matrix widened whole lets go of them only once its float32 copy exists)."""
    config = minigpt2.GPT2Config(n_layer=2, n_embd=256, n_head=4, vocab_size=50257, n_positions=256)
    minigpt2.GPT2LMHeadModel(config, seed=0).bfloat16().save_pretrained(tmp_path / "big")
    minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config.from_preset("tiny"), seed=0).save_pretrained(tmp_path / "tiny")
    size = os.path.getsize(tmp_path / "big" / "model.safetensors")
    code = (
        "import sys, minigpt2\n"
        "def kb(key): return int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1])\n"
        f"options = {{'load_in_8bit': True}} if {fmt!r} == 'int8' else {{'torch_dtype': {fmt!r}}}\n"
        "minigpt2.GPT2LMHeadModel.from_pretrained(sys.argv[2], **options)  # (every module loading needs)\n"
        "before = kb('VmHWM:')\n"
        "m = minigpt2.GPT2LMHeadModel.from_pretrained(sys.argv[1], **options)\n"
        "print((kb('VmHWM:') - before) * 1024)\n")
    env = dict(os.environ, MINIGPT2_BACKEND="numpy")
    run = [sys.executable, "-W", "ignore", "-c", code, str(tmp_path / "big"), str(tmp_path / "tiny")]
    grew = int(subprocess.run(run, capture_output=True, text=True, check=True, env=env).stdout.split()[-1])
    narrow = {"float32": 2.0 + 1.0, "float16": 1.0, "int8": 1.0625 / 2}[fmt]
    assert grew <= (narrow + 0.3) * size, f"loading a bf16 file in {fmt} grew the process by {grew / size:.2f}x it"
