"""Checkpoint I/O: HF's layouts and dtypes, memory mapping, random init, and clear errors for bad files.

The checkpoints come from tests/fixtures/model/checkpoints/ (written by transformers 4.46.3, see
tests/make_fixtures.py): "base" (GPT2LMHeadModel, "transformer." prefix), "base_model_only" (the same
weights saved by GPT2Model: no prefix), "base_fp16" and "base_bf16" (the same weights stored in half
precision). Damaged variants are made from them in tmp directories. Tests that hand files to
transformers skip when it is not installed.
"""
from __future__ import annotations

import json
import mmap
import os
import pathlib
import pickle
import shutil
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import minigpt2
from minigpt2 import checkpoint, weights
from conftest import FIXTURES, assert_close, describe, max_abs_diff, tolerance

CHECKPOINTS = os.path.join(FIXTURES, "checkpoints")
BASE = os.path.join(CHECKPOINTS, "base")
CLASSES = [minigpt2.GPT2Model, minigpt2.GPT2LMHeadModel, minigpt2.GPT2DoubleHeadsModel,
           minigpt2.GPT2ForSequenceClassification]


def flat(model):
    return checkpoint.flatten(model.params)


def backing_buffer(a):
    """What an array's memory ultimately belongs to (following .base and memoryviews)."""
    while True:
        if isinstance(a, np.ndarray) and a.base is not None:
            a = a.base
        elif isinstance(a, memoryview):
            a = a.obj
        else:
            return a


@pytest.fixture
def base_copy(tmp_path):
    """A writable copy of the base checkpoint directory."""
    directory = tmp_path / "checkpoint"
    shutil.copytree(BASE, directory)
    return directory


def rewrite(directory, change):
    """Load the tensors of directory/model.safetensors, apply change(dict), write them back."""
    path = os.path.join(directory, "model.safetensors")
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})
    return path


# -- layouts -------------------------------------------------------------------------------------------

def test_with_and_without_the_transformer_prefix():
    """GPT2Model and GPT2LMHeadModel load the same weights from an LM-head checkpoint and a GPT2Model one."""
    with open(os.path.join(BASE, "model.safetensors"), "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    assert all(k.startswith("transformer.") for k in header if k != "__metadata__")
    ref = flat(minigpt2.GPT2Model.from_pretrained(BASE))
    for cls in (minigpt2.GPT2Model, minigpt2.GPT2LMHeadModel):
        for source in ("base", "base_model_only"):
            params = flat(cls.from_pretrained(os.path.join(CHECKPOINTS, source)))
            assert sorted(params) == sorted(ref), (cls.__name__, source)
            for name in ref:
                assert np.array_equal(params[name], ref[name]), (cls.__name__, source, name)


def test_lm_head_is_tied_to_wte():
    model = minigpt2.GPT2LMHeadModel.from_pretrained(os.path.join(CHECKPOINTS, "base_model_only"))
    out = model(np.array([[1, 2, 3]]))
    hidden = model.transformer(np.array([[1, 2, 3]])).last_hidden_state
    assert_close(out.logits, hidden @ model.params["wte"]["weight"].T, "logits = h @ wte^T")
    assert model.state_dict()["lm_head.weight"] is model.params["wte"]["weight"]  # HF lists the tied head too


def test_state_dict_names_match_hf():
    """A head model saves the transformer under "transformer." and its head at the top, like HF."""
    names = set(minigpt2.GPT2DoubleHeadsModel(minigpt2.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=5,
                                                                   n_positions=4)).state_dict())
    assert "transformer.h.0.attn.c_attn.weight" in names and "transformer.wte.weight" in names
    assert {"multiple_choice_head.summary.weight", "multiple_choice_head.summary.bias"} <= names
    assert not any(n.startswith("h.") for n in names)


@pytest.mark.parametrize("stored, mantissa_bits", [("base_fp16", 10), ("base_bf16", 7)])
def test_half_precision_tensors_load_as_float32(stored, mantissa_bits):
    """fp16/bf16 tensors become float32 holding exactly the stored half-precision values."""
    half, full = flat(minigpt2.GPT2LMHeadModel.from_pretrained(os.path.join(CHECKPOINTS, stored))), \
        flat(minigpt2.GPT2LMHeadModel.from_pretrained(BASE))
    for name, a in half.items():
        assert a.dtype == np.float32, name
        # Representable in the half format: the low mantissa bits of the float32 are zero.
        low_bits = a.view(np.uint32) & np.uint32((1 << (23 - mantissa_bits)) - 1)
        normal = np.abs(a) >= 2.0 ** -14  # fp16 subnormals keep fewer bits; compare only normal numbers
        assert not np.any(low_bits[normal]), f"{name} holds values no {stored[5:]} can store"
        # ... and the nearest such value to the float32 original (within half an ulp).
        assert np.all(np.abs(a - full[name]) <= np.abs(full[name]) * 2.0 ** -(mantissa_bits + 1) + 2.0 ** -25), name


def test_float32_tensors_are_memory_mapped():
    """float32 tensors are read-only views of the file's memory map, not copies; half precision is converted."""
    params = flat(minigpt2.GPT2LMHeadModel.from_pretrained(BASE))
    buffers = {id(backing_buffer(a)) for a in params.values()}
    assert len(buffers) == 1 and isinstance(backing_buffer(next(iter(params.values()))), mmap.mmap)
    assert not any(a.flags.writeable for a in params.values())
    halves = flat(minigpt2.GPT2LMHeadModel.from_pretrained(os.path.join(CHECKPOINTS, "base_fp16")))
    assert not any(isinstance(backing_buffer(a), mmap.mmap) for a in halves.values())


def mapping_flags(path):
    """VmFlags of this process's mappings of ``path`` (Linux's /proc/self/smaps), one set per mapping."""
    found, current = [], None
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if ":" not in fields[0]:  # a mapping's header: address range, permissions, offset, device, inode, path
                current = len(fields) > 5 and os.path.realpath(" ".join(fields[5:])) == os.path.realpath(path)
            elif current and fields[0] == "VmFlags:":
                found.append(set(fields[1:]))
    return found


@pytest.mark.skipif(not os.path.exists("/sys/kernel/mm/transparent_hugepage"), reason="Linux with transparent "
                    "huge pages only")
def test_the_weights_file_is_mapped_with_the_advice_for_huge_pages():
    """madvise(MADV_HUGEPAGE) on the map ("hg" in smaps' VmFlags): pages read from disk may then come in 2 MiB,
    which a decode step, streaming every weight, needs (checkpoint._advise_huge_pages)."""
    model = minigpt2.GPT2LMHeadModel.from_pretrained(BASE)
    flags = mapping_flags(os.path.join(BASE, "model.safetensors"))
    assert flags and all("hg" in f for f in flags), flags
    del model


def test_an_int8_model_holds_nothing_of_the_file():
    """load_in_8bit copies the float32 parameters it keeps (biases, layer norms): a view of the memory map
    would fault in the file's pages around each small vector, which then count in the process's memory."""
    params = flat(minigpt2.GPT2LMHeadModel.from_pretrained(BASE, load_in_8bit=True))
    arrays = [a for w in params.values() for a in ((w.q, w.scales) if hasattr(w, "scales") else (w,))]
    assert arrays and not any(isinstance(backing_buffer(a), mmap.mmap) for a in arrays)


def test_big_kv_cache_buffers_are_memory_maps_of_their_own():
    """From 64 KiB on, a KV cache buffer is its own anonymous memory map, so a dropped cache's memory goes back to
    the operating system (malloc's would stay in the process), and a private one: a forked process writing into
    its copy (a worker continuing a cache) does not write into the parent's."""
    from minigpt2 import cache

    small, big = cache._empty((1, 2, 8, 64)), cache._empty((1, 12, 256, 64))
    assert not isinstance(backing_buffer(small), mmap.mmap)
    assert isinstance(backing_buffer(big), mmap.mmap) and big.shape == (1, 12, 256, 64) and big.dtype == np.float32
    big[0, 11, 255] = 1.0  # writable to its last value
    assert big[0, 11, 255, 0] == 1.0
    if hasattr(os, "fork"):
        pid = os.fork()
        if pid == 0:
            big[0, 11, 255] = 2.0
            os._exit(0)
        os.waitpid(pid, 0)
        assert big[0, 11, 255, 0] == 1.0, "a forked child's write reached the parent's cache buffer"


def resident_bytes(a):
    """Linux: how many of the bytes of array ``a``'s pages are in memory (present bits of /proc/self/pagemap)."""
    page = mmap.PAGESIZE
    first = a.__array_interface__["data"][0] // page
    last = (a.__array_interface__["data"][0] + a.nbytes - 1) // page
    try:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(first * 8)
            entries = np.frombuffer(f.read((last - first + 1) * 8), np.uint64)
    except OSError as e:
        pytest.skip(f"/proc/self/pagemap is not readable here: {e}")
    return int(np.count_nonzero(entries >> np.uint64(63))) * page


@pytest.mark.skipif(not os.path.exists("/proc/self/pagemap"), reason="reads Linux's /proc/self/pagemap")
def test_a_continued_kv_cache_is_made_once_and_costs_what_it_holds():
    """Decoding continues a cache many times: the first continuation remakes its buffers once with room for
    n_positions, and later steps write into them in place (no copy, no second buffer held beside the first);
    the room costs memory only where positions were written (no 2 MiB pages made resident at the first write)."""
    config = minigpt2.GPT2Config(vocab_size=50, n_positions=4096, n_embd=256, n_layer=2, n_head=4)  # 4 MiB buffers
    model = minigpt2.GPT2LMHeadModel(config)
    out = model(np.array([[1, 2, 3, 4]]))
    prompt_keys = out.past_key_values[0][0]
    out = model(np.array([[5]]), past_key_values=out.past_key_values)
    keys = backing_buffer(out.past_key_values[0][0])
    assert backing_buffer(prompt_keys) is not keys, "the first continuation should remake the prompt's buffers"
    buffer = out.past_key_values._buffers.keys[0]
    assert buffer.shape == (1, 4, 4096, 64)
    for step in range(60):
        out = model(np.array([[step % 50]]), past_key_values=out.past_key_values)
        assert backing_buffer(out.past_key_values[0][0]) is keys, f"step {step}: the cache was copied"
    held = 65 * 64 * 4  # positions written x head_dim x 4 bytes, per head
    page = mmap.PAGESIZE
    rounded = 4 * -(-held // page) * page  # each head's positions are contiguous: whole pages per head
    resident = resident_bytes(buffer)
    assert resident <= rounded, f"{resident} bytes resident for {4 * held} held ({buffer.nbytes} reserved)"


ADDRESS_SPACE_LIMIT = """
import resource, sys
import numpy as np
import minigpt2

config = minigpt2.GPT2Config(vocab_size=50, n_positions=1024, n_embd=64, n_layer=4, n_head=2)
model = minigpt2.GPT2LMHeadModel(config)
ids = np.random.default_rng(0).integers(0, 50, (256, 8))
prompt = model(ids).past_key_values
first = model(ids[:, :1], past_key_values=prompt)  # room for 1024 positions: 8 x 64 MiB of address space
if first.past_key_values._buffers.capacity != 1024:
    sys.exit("SKIP: this process's address space is already limited below 8 x 64 MiB")
expected = first.logits
del prompt, first  # (the prompt's buffers are those it grew into)
with open("/proc/self/status") as f:
    size = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
if hard != resource.RLIM_INFINITY and hard < size + 256 * 2**20:
    sys.exit("SKIP: the hard address-space limit is already below what this test sets")
resource.setrlimit(resource.RLIMIT_AS, (size + 256 * 2**20, hard))
prompt = model(ids).past_key_values
out = model(ids[:, :1], past_key_values=prompt)
assert np.array_equal(out.logits, expected), "different logits with less room"
print("capacity", out.past_key_values._buffers.capacity)
try:
    model(np.zeros((256 * 64, 8), np.int64))
except MemoryError as e:
    print("MemoryError:", e)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc/self/status")
def test_a_kv_cache_under_an_address_space_limit():
    """Where a shared server limits each process's address space (ulimit -v), room for every position may not
    be had: the cache then makes room for twice what it holds, with the same logits; where even that fails, a
    MemoryError says what was asked for."""
    pytest.importorskip("resource")
    env = dict(os.environ, MINIGPT2_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.path.dirname(os.path.dirname(minigpt2.__file__)))
    done = subprocess.run([sys.executable, "-c", ADDRESS_SPACE_LIMIT], env=env, capture_output=True, text=True)
    if done.stderr.startswith("SKIP: "):
        pytest.skip(done.stderr[6:].strip())
    assert done.returncode == 0, done.stderr
    assert "capacity 16\n" in done.stdout, done.stdout  # 2 x the 8 positions held, not 1024
    assert "MemoryError: the KV cache for 16384 sequence(s) x 8 positions" in done.stdout, done.stdout
    assert "a smaller batch or a shorter text would fit" in done.stdout


def test_saving_over_the_loaded_checkpoint(base_copy):
    """save_pretrained into the directory a model was loaded (memory-mapped) from works, and both agree."""
    model = minigpt2.GPT2LMHeadModel.from_pretrained(base_copy)
    before = model(np.array([[5, 6, 7]])).logits.copy()
    model.save_pretrained(base_copy)
    again = minigpt2.GPT2LMHeadModel.from_pretrained(base_copy)
    assert np.array_equal(model(np.array([[5, 6, 7]])).logits, before)
    assert np.array_equal(again(np.array([[5, 6, 7]])).logits, before)


def test_sharded_checkpoint(base_copy):
    """model.safetensors.index.json and its shards, as HF writes large checkpoints."""
    tensors = load_file(base_copy / "model.safetensors")
    os.remove(base_copy / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, members in shards.items():
        save_file({n: tensors[n] for n in members}, base_copy / shard, metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {n: s for s, members in shards.items() for n in members}}
    (base_copy / "model.safetensors.index.json").write_text(json.dumps(index))
    a, b = minigpt2.GPT2LMHeadModel.from_pretrained(base_copy), minigpt2.GPT2LMHeadModel.from_pretrained(BASE)
    assert all(np.array_equal(x, flat(b)[n]) for n, x in flat(a).items())


def test_buffers_of_older_checkpoints_are_ignored(base_copy):
    """Older HF checkpoints store the causal mask (attn.bias) and attn.masked_bias; they are not weights."""
    def add_buffers(t):
        for i in range(2):
            t[f"transformer.h.{i}.attn.bias"] = np.tril(np.ones((16, 16), np.float32))[None, None]
            t[f"transformer.h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    rewrite(base_copy, add_buffers)
    ids = np.array([[3, 1, 4]])
    assert np.array_equal(minigpt2.GPT2LMHeadModel.from_pretrained(base_copy)(ids).logits,
                          minigpt2.GPT2LMHeadModel.from_pretrained(BASE)(ids).logits)


def test_hfs_loading_options_are_accepted(tmp_path):
    """Code written for transformers passes torch_dtype and attn_implementation: eager is what minigpt2 does,
    float32 a weight format (tests/test_dtypes.py has the others); none of them ends up in the config as
    anything but a name (which must still save as JSON)."""
    for options in (dict(torch_dtype="float32", attn_implementation="eager"), dict(torch_dtype="auto"),
                    dict(torch_dtype=np.float32), dict(attn_implementation="sdpa")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = minigpt2.GPT2LMHeadModel.from_pretrained(BASE, **options)
        assert model.dtype == "float32"
        model.save_pretrained(tmp_path / "saved")
    torch = pytest.importorskip("torch")
    model = minigpt2.GPT2LMHeadModel.from_pretrained(BASE, torch_dtype=torch.float32)
    model.save_pretrained(tmp_path / "saved")


def test_a_missing_task_head_is_initialised_with_a_warning():
    with pytest.warns(UserWarning, match=r"score\.weight.*initialised randomly"):
        model = minigpt2.GPT2ForSequenceClassification.from_pretrained(BASE, num_labels=3, seed=0)
    assert model.params["score"]["weight"].shape == (3, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the LM head is tied: nothing is missing, nothing to warn about
        minigpt2.GPT2LMHeadModel.from_pretrained(os.path.join(CHECKPOINTS, "base_model_only"))


# -- random init ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_random_init_follows_hfs_scheme(cls):
    """N(0, initializer_range) weights, zero biases, layer norms 1 and 0, c_proj std / sqrt(2 n_layer).

    Sample standard deviations of >= 4096 draws are within 1.2% of the true one (1 sigma); the margin
    is 6%, five sigmas. Means within five standard errors of 0."""
    config = minigpt2.GPT2Config(vocab_size=300, n_positions=80, n_embd=64, n_head=4, n_layer=4, num_labels=3,
                                 initializer_range=0.05, add_cross_attention=cls is minigpt2.GPT2LMHeadModel)
    params = flat(cls(config, seed=0))
    residual_std = 0.05 / np.sqrt(2 * 4)
    seen = set()
    for name, a in params.items():
        assert a.dtype == np.float32, name
        if ".ln_" in f".{name}":
            assert np.all(a == (1.0 if name.endswith("weight") else 0.0)), name
            seen.add("layer norm")
        elif name.endswith("bias"):
            assert np.all(a == 0), name
            seen.add("bias")
        else:
            expected = residual_std if name.endswith("c_proj.weight") else 0.05
            seen.add("c_proj" if name.endswith("c_proj.weight") else "weight")
            if a.size >= 4096:
                assert abs(a.std() / expected - 1) < 0.06, f"{name}: std {a.std():.4g}, expected {expected:.4g}"
                assert abs(a.mean()) < 5 * expected / np.sqrt(a.size), f"{name}: mean {a.mean():.3g}"
            else:  # small heads: only that the spread is of the right order
                assert 0.5 * expected < a.std() < 1.5 * expected, name
    assert seen == {"layer norm", "bias", "weight", "c_proj"}


def test_random_init_is_seedable():
    config = minigpt2.GPT2Config(vocab_size=20, n_positions=8, n_embd=8, n_head=2, n_layer=1)
    a, b, c = (flat(minigpt2.GPT2LMHeadModel(config, seed=s)) for s in (1, 1, 2))
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(a["wte.weight"], c["wte.weight"])


# -- refusing pickles ----------------------------------------------------------------------------------

class _Touch:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.path),)


@pytest.mark.parametrize("filename", ["pytorch_model.bin", "pytorch_model.bin.index.json"])
def test_pickle_checkpoints_are_refused_unopened(tmp_path, filename):
    shutil.copy(os.path.join(BASE, "config.json"), tmp_path / "config.json")
    marker = tmp_path / "the pickle ran"
    (tmp_path / filename).write_bytes(pickle.dumps(_Touch(str(marker))))
    with pytest.raises(ValueError) as raised:
        minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path)
    message = str(raised.value)
    assert filename in message and "pickle" in message and "execute" in message
    assert "safe_serialization=True" in message  # how to convert
    assert not marker.exists()


# -- bad files: errors name the file and the tensor ----------------------------------------------------

def test_missing_files(tmp_path, base_copy):
    with pytest.raises(FileNotFoundError, match="config.json"):
        minigpt2.GPT2Model.from_pretrained(tmp_path)
    os.remove(base_copy / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        minigpt2.GPT2Model.from_pretrained(base_copy)
    with pytest.raises((FileNotFoundError, OSError), match="nowhere"):
        minigpt2.GPT2Model.from_pretrained(str(tmp_path / "nowhere" / "at" / "all"))


@pytest.mark.parametrize("damage, expected", [
    (lambda raw: raw[: len(raw) // 2], r"is truncated: tensor '.+' ends at byte \d+ but the file has \d+ bytes"),
    (lambda raw: raw[:5], "is not a safetensors file: it is only 5 bytes long"),
    (lambda raw: b"", "is not a safetensors file: it is only 0 bytes long"),
    (lambda raw: struct.pack("<Q", 1 << 40) + raw[8:], "header claims 1099511627776 bytes"),
    (lambda raw: raw[:8] + b"\xff" * (len(raw) - 8), "its header is not JSON"),
    (lambda raw: struct.pack("<Q", 2) + b"[]", "its header is not a JSON object"),
    (lambda raw: _with_header(raw, lambda h: h["transformer.wte.weight"].update(data_offsets=[0, 12])),
     r"tensor 'transformer.wte.weight' has byte range 0..12, which does not fit shape \[99, 32\] of F32"),
    (lambda raw: _with_header(raw, lambda h: h["transformer.wpe.weight"].update(dtype="I64")),
     "tensor 'transformer.wpe.weight' has dtype I64; minigpt2 loads F32, F16, BF16 and F64"),
    (lambda raw: _with_header(raw, lambda h: h["transformer.ln_f.bias"].pop("shape")),
     "the header entry of tensor 'transformer.ln_f.bias' is malformed"),
])
def test_corrupt_safetensors(base_copy, damage, expected):
    path = base_copy / "model.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=expected) as raised:
        minigpt2.GPT2LMHeadModel.from_pretrained(base_copy)
    assert str(path) in str(raised.value)


def _with_header(raw, edit):
    """The file's bytes with its JSON header edited (the data left where it was)."""
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + raw[8 + n:]  # data offsets count from the data's start


@pytest.mark.parametrize("change, expected", [
    (lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"), r"lacks weights the config needs: h\.1\.mlp\.c_fc\.bias"),
    (lambda t: t.update({"transformer.h.0.attn.c_attn.weight": np.zeros((96, 32), np.float32)}),
     r"tensor 'transformer.h.0.attn.c_attn.weight' has shape \(96, 32\), but the config needs \(32, 96\)"),
    (lambda t: t.update({"transformer.wte.weight": np.zeros((100, 32), np.float32)}),
     r"tensor 'transformer.wte.weight' has shape \(100, 32\), but the config needs \(99, 32\)"),
    (lambda t: [t.pop(k) for k in list(t) if k.startswith("transformer.h.1.")],
     r"lacks weights the config needs: h\.1\.ln_1\.weight.* and \d+ more"),
    (lambda t: t.clear(), r"lacks weights the config needs: wte\.weight"),
])
def test_missing_and_misshaped_tensors(base_copy, change, expected):
    path = rewrite(base_copy, change)
    with pytest.raises(ValueError, match=expected) as raised:
        minigpt2.GPT2LMHeadModel.from_pretrained(base_copy)
    assert path in str(raised.value)


@pytest.mark.parametrize("config_change, expected", [
    (dict(n_layer=3), r"lacks weights the config needs: h\.2\."),
    (dict(n_embd=64), r"tensor 'transformer\..+' has shape \(.+\), but the config needs \(.+\)"),
    (dict(vocab_size=50257), r"'transformer.wte.weight' has shape \(99, 32\), but the config needs \(50257, 32\)"),
    (dict(n_inner=64), r"tensor 'transformer\.h\.\d\.mlp\.c_(fc|proj)\.\w+' has shape \(.*128.*\), but the config "
                       r"needs \(.*64.*\)"),
    (dict(add_cross_attention=True), r"lacks weights the config needs: h\.0\.crossattention\.c_attn\.weight"),
])
def test_config_and_weights_that_do_not_belong_together(base_copy, config_change, expected):
    config = json.loads((base_copy / "config.json").read_text())
    config.update(config_change)
    (base_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=expected) as raised:
        minigpt2.GPT2LMHeadModel.from_pretrained(base_copy)
    assert "model.safetensors" in str(raised.value)


@pytest.mark.parametrize("load", [{}, dict(torch_dtype="bfloat16"), dict(torch_dtype="float16"),
                                  dict(load_in_8bit=True)], ids=["float32", "bfloat16", "float16", "int8"])
def test_an_untied_lm_head_is_used_in_the_weights_format(base_copy, load):
    """A stored lm_head.weight (here -wte) is ignored while the head is tied (the default; HF ignores it too) and
    used with tie_word_embeddings false, in the format the weights were loaded in (an int8 model holds no float32
    head). Every format rounds -w to -round(w) (int8: the same scales, q negated), so the untied logits are exactly
    the tied ones negated."""
    rewrite(base_copy, lambda t: t.update({"lm_head.weight": -t["transformer.wte.weight"]}))
    ids = np.array([[1, 2, 3, 4, 5]])
    tied = minigpt2.GPT2LMHeadModel.from_pretrained(base_copy, **load)
    assert "lm_head" not in tied.params
    config = json.loads((base_copy / "config.json").read_text())
    (base_copy / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    untied = minigpt2.GPT2LMHeadModel.from_pretrained(base_copy, **load)
    head, wte = untied.params["lm_head"]["weight"], untied.params["wte"]["weight"]
    assert weights.format_name(head) == weights.format_name(wte) and weights.nbytes(head) == weights.nbytes(wte)
    np.testing.assert_array_equal(untied(ids).logits, -tied(ids).logits)
    untied.resize_token_embeddings(untied.config.vocab_size + 3)  # the head grows with wte, in its format
    head = untied.params["lm_head"]["weight"]
    assert head.shape[0] == untied.config.vocab_size and weights.format_name(head) == weights.format_name(wte)
    minigpt2.GPT2Model.from_pretrained(base_copy)  # no LM head: lm_head.weight is not used, and not a surprise


# -- exchanging checkpoints with transformers ----------------------------------------------------------

@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_save_pretrained_loads_in_transformers_with_identical_outputs(cls, tmp_path):
    """Every class: transformers loads our files with no missing or unexpected keys and gives our outputs."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    config = minigpt2.GPT2Config(vocab_size=40, n_positions=12, n_embd=16, n_layer=2, n_head=4, num_labels=3,
                                 pad_token_id=39, activation_function="gelu", reorder_and_upcast_attn=True)
    ours = cls(config, seed=5)
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [cls.__name__] and saved["model_type"] == "gpt2"
    theirs, info = getattr(transformers, cls.__name__).from_pretrained(
        tmp_path, attn_implementation="eager", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    theirs.eval()
    shape = (2, 3, 6) if cls is minigpt2.GPT2DoubleHeadsModel else (2, 6)
    ids = np.random.default_rng(0).integers(0, 39, shape)
    o = ours(ids, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        r = theirs(torch.from_numpy(ids), output_hidden_states=True, output_attentions=True)
    for field in o.keys():
        if field in ("past_key_values",):
            pairs = zip((a for kv in o[field] for a in kv), (a.numpy() for kv in r[field] for a in kv))
        elif isinstance(o[field], tuple):
            pairs = zip(o[field], (a.numpy() for a in r[field]))
        else:
            pairs = [(o[field], r[field].numpy())]
        for i, (a, b) in enumerate(pairs):
            assert max_abs_diff(a, b) <= tolerance(b), describe(f"{field}[{i}]", a, b)


def test_transformers_fp16_checkpoint_matches_its_float32_outputs(tmp_path):
    """A checkpoint transformers saves in float16 gives what transformers computes from it in float32."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from conftest import write_hf_checkpoint

    model = write_hf_checkpoint(tmp_path / "fp32", seed=3)
    model.half().save_pretrained(tmp_path / "fp16")
    reference = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "fp16", torch_dtype=torch.float32,
                                                             attn_implementation="eager").eval()
    ids = np.array([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        expected = reference(torch.from_numpy(ids)).logits.numpy()
    assert_close(minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "fp16")(ids).logits, expected, "logits")


def test_weights_the_config_does_not_describe_are_left_out_with_a_warning(base_copy):
    """As in transformers: a checkpoint holding more than the config describes (a third layer here) loads what
    the config describes and warns, naming what was not used."""
    rewrite(base_copy, lambda t: t.update({"transformer.h.2.ln_1.weight": np.ones(32, np.float32)}))
    with pytest.warns(UserWarning, match=r"not used: transformer\.h\.2\.ln_1\.weight"):
        model = minigpt2.GPT2LMHeadModel.from_pretrained(base_copy)
    assert model.config.n_layer == 2 and len(model.params["h"]) == 2


@pytest.mark.parametrize("load", [minigpt2.GPT2LMHeadModel.from_pretrained, minigpt2.GPT2Config.from_pretrained,
                                  minigpt2.AutoModelForCausalLM.from_pretrained, minigpt2.AutoTokenizer.from_pretrained],
                         ids=["model", "config", "auto model", "tokenizer"])
def test_what_cannot_name_a_checkpoint_is_said_plainly(base_copy, load):
    """None or a number: a TypeError saying what names a checkpoint (not os.fspath's or stat's); the checkpoint's
    weights file given for the checkpoint: an error naming its directory (it was read as a JSON config before)."""
    for bad in (None, 3):
        with pytest.raises(TypeError, match="a directory or a Hub repository id such as 'gpt2'"):
            load(bad)
    if load.__self__ is not minigpt2.AutoTokenizer:  # (the tokenizer says it is not a directory)
        weights_file = base_copy / "model.safetensors"
        with pytest.raises(ValueError, match=f"is a file; a checkpoint is the directory .*\\({base_copy}\\)"):
            load(weights_file)


def test_save_pretrained_shards_as_transformers_and_cleans_up_after_itself(tmp_path):
    """max_shard_size: shards of at most that size (HF's names) and an index, which both libraries load; saving
    again unsharded removes the shards and the index (a stale model.safetensors or index would be loaded instead of
    the new weights). HF's other arguments: is_main_process=False writes nothing; safe_serialization=False, push_to_hub
    and a size without a unit are refused before anything is written."""
    model = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(vocab_size=300, n_positions=16, n_embd=32, n_layer=2, n_head=2),
                                     seed=1)
    ids = np.array([[1, 2, 3, 4]])
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (tmp_path / "model.safetensors").exists()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shards
    assert set(index["weight_map"]) == set(dict(model.named_parameters()))  # (the tied head is wte, saved once)
    for shard in shards:  # at most 20 kB, or a single tensor bigger than that
        assert (tmp_path / shard).stat().st_size <= 20_000 + 1024 or \
            len([n for n, f in index["weight_map"].items() if f == shard]) == 1
    again = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path)
    np.testing.assert_array_equal(again(ids).logits, model(ids).logits)
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    with torch.no_grad():
        np.testing.assert_allclose(theirs(torch.from_numpy(ids)).logits.numpy(), model(ids).logits, rtol=1e-5,
                                   atol=1e-5)  # (float32 rounding of two layers; test_models_hf checks it closely)
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]
    for options, error in ((dict(safe_serialization=False), ValueError), (dict(push_to_hub=True), TypeError),
                           (dict(max_shard_size="5 parsecs"), ValueError), (dict(max_shard_size=0), ValueError)):
        with pytest.raises(error, match="safetensors only|does not take push_to_hub|max_shard_size="):
            model.save_pretrained(tmp_path / "refused", **options)
        assert not (tmp_path / "refused").exists()
    model.save_pretrained(tmp_path / "not_main", is_main_process=False)
    assert not (tmp_path / "not_main").exists()
