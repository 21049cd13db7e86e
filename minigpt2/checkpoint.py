"""Reading and writing HF GPT-2 checkpoints (config.json + model.safetensors).

A safetensors file is an 8-byte little-endian header length, a JSON header naming each tensor's
dtype, shape and byte range, then the raw bytes. We read it ourselves so float32 tensors can be
memory-mapped (no copy, pages loaded on first use) and so every defect is reported with the file
and tensor it concerns. Tensors are read as stored (F32 and F16 as NumPy arrays, BF16 as a
weights.BFloat16Weight, all memory-mapped) or widened to float32; they are written in the format each
weight has, so a bfloat16 model saves a BF16 checkpoint that transformers loads as bfloat16.

Only safetensors is loaded. PyTorch's pytorch_model.bin is a pickle, and unpickling runs code.
"""
from __future__ import annotations

import contextlib
import json
import mmap
import os
import re
import struct
import tempfile

import numpy as np

from .snapshots import open_file
from .weights import BFloat16Weight, Int8Weight, widen

__all__ = ["read_safetensors", "write_safetensors", "flatten", "unflatten", "PICKLE_MESSAGE"]

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
PICKLE_MESSAGE = (
    "minigpt2 loads only safetensors checkpoints: {what} is a PyTorch pickle, and loading a pickle can "
    "execute arbitrary code. Convert it once where you trust it, e.g. with transformers: "
    "GPT2LMHeadModel.from_pretrained(path).save_pretrained(out_dir, safe_serialization=True)"
)

_MAX_HEADER = 100 * 1024 * 1024
_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16}
_ITEMSIZE = {"F32": 4, "F16": 2, "F64": 8, "BF16": 2}


def read_safetensors(path, dtype="float32", skip=None) -> dict:
    """All tensors of a .safetensors file, memory-mapped where they are used as stored.

    ``dtype="float32"``: every tensor as a float32 array (F16, BF16 and F64 widened into new arrays).
    ``dtype=None``: as stored: F32, F16 and F64 as arrays of that dtype, BF16 as a BFloat16Weight.
    ``skip(name)``: true for tensors left out unread, whatever their dtype (the causal-mask buffers attn.bias that
    older transformers saved, in uint8 or bool).
    """
    if dtype not in (None, "float32"):
        raise ValueError(f"read_safetensors: dtype must be 'float32' (widen every tensor) or None (as stored), "
                         f"got {dtype!r}")
    widen_all = dtype == "float32"
    path = os.fspath(path)
    with open_file(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise ValueError(f"{path} is not a safetensors file: it is only {size} bytes long")
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > min(_MAX_HEADER, size - 8):
            raise ValueError(f"{path} is not a valid safetensors file (truncated, or not safetensors at all): "
                             f"its header claims {header_len} bytes but the file has {size}")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not a valid safetensors file: its header is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise ValueError(f"{path} is not a valid safetensors file: its header is not a JSON object")
        data_start = 8 + header_len
        data_size = size - data_start
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size > 0 else b""
        _advise_huge_pages(buffer)

    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or (skip is not None and skip(name)):
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"{path}: the header entry of tensor {name!r} is malformed: it needs \"dtype\", "
                             f"\"shape\" and \"data_offsets\" [begin, end]") from None
        for field, value in (("shape", shape), ("data_offsets", [begin, end])):
            if not (isinstance(value, list) and all(_is_count(n) for n in value)):
                raise ValueError(f"{path}: the header entry of tensor {name!r} is malformed: its {field} must be a "
                                 f"list of non-negative integers, got {info[field]!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype}; minigpt2 loads F32, F16, BF16 and F64")
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= begin <= end) or end - begin != count * _ITEMSIZE[dtype]:
            fits = [other for other, size in _ITEMSIZE.items() if other != dtype and end - begin == count * size]
            hint = (f": {end - begin} bytes are {end - begin} / {count} = {_ITEMSIZE[fits[0]]} bytes per value, "
                    f"as in {' or '.join(fits)}; the header's dtype looks wrong, the file was written wrongly"
                    if fits and count else "")
            raise ValueError(f"{path}: tensor {name!r} has byte range {begin}..{end}, which does not fit "
                             f"shape {shape} of {dtype} ({_ITEMSIZE[dtype]} bytes per value){hint}")
        if end > data_size:
            raise ValueError(f"{path} is truncated: tensor {name!r} ends at byte {data_start + end} but the file "
                             f"has {size} bytes")
        raw = np.frombuffer(buffer, dtype=_DTYPES[dtype], count=count, offset=data_start + begin).reshape(shape)
        stored = BFloat16Weight(raw) if dtype == "BF16" else raw  # read-only views of the memory map
        tensors[name] = np.asarray(widen(stored), dtype=np.float32) if widen_all else stored
    return tensors


def _is_count(n) -> bool:
    """A size or a byte offset in a safetensors header: a non-negative integer (JSON's, so not a bool)."""
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def release_pages(array) -> None:
    """Let the operating system drop the pages of a memory-mapped file that ``array`` views (after it was
    converted into a new array: loading a float32 file in 16 or 8 bits). The pages of a read-only file map
    are only a cache of the file: dropping them loses nothing (a later read faults them in again), and it
    keeps them from counting in the process's memory, so a 16-bit load peaks near the 16-bit model's size,
    not the float32 file's on top. Does nothing for other arrays or where madvise is not available."""
    array = array.bits if isinstance(array, BFloat16Weight) else array
    if not isinstance(array, np.ndarray):
        return
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    base = base.obj if isinstance(base, memoryview) else base  # (np.frombuffer of an mmap views it so)
    if not isinstance(base, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED") or base.closed:
        return
    start = array.__array_interface__["data"][0] - np.frombuffer(base, np.uint8, count=0).__array_interface__["data"][0]
    page = mmap.PAGESIZE
    first, last = start // page * page, -(-(start + array.nbytes) // page) * page
    try:
        base.madvise(mmap.MADV_DONTNEED, first, min(last, len(base)) - first)
    except (OSError, ValueError):
        pass  # only a hint


def _advise_huge_pages(buffer):
    """Ask Linux to map the file in 2 MiB pages where it can (pages read from disk from now on).

    Decoding streams every weight once per token: in 4 KiB pages that is a page-table walk every 4 KiB, and
    the CPU's translation cache, thrashed by the stream, misses for everything else too (the KV cache, the
    activations). Zen 5, GPT-2 124M in float32, 2 threads: a checkpoint mapped in 4 KiB pages decoded in
    1.04x the time of one mapped mostly in 2 MiB pages, and in 1.08x the time of the same weights copied into
    memory with 2 MiB pages (docs/kernels.md, "Pages"). Only a hint: pages already in memory keep their size."""
    if isinstance(buffer, mmap.mmap) and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            buffer.madvise(mmap.MADV_HUGEPAGE)
        except (OSError, ValueError):
            pass  # (a kernel without transparent huge pages)


def write_safetensors(path, tensors: dict, metadata=None, dtype=None):
    """Write tensors to ``path`` atomically (a temporary file renamed into place).

    Each tensor is written in its own format (float32 -> F32, float16 -> F16, BFloat16Weight -> BF16);
    ``dtype`` ("float32", "float16", "bfloat16") converts every tensor to that dtype first. An Int8Weight
    is refused: safetensors has no int8-with-scales type that transformers reads.
    """
    _write_atomically(os.fspath(path), {name: _storable(name, a, dtype) for name, a in tensors.items()}, metadata)


def _write_atomically(path, arrays, metadata=None):
    """_write into a temporary file of the directory, then renamed to ``path`` (readers see the old file or the
    new one, never half)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            _write(f, arrays, {"format": "pt", **(metadata or {})})
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp made it 0600; a file open() creates follows the umask
        with _explaining_a_file_in_use(path, "replace"):
            os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_checkpoint(directory, tensors: dict, dtype=None, max_shard_size="5GB", variant=None):
    """The weights of a checkpoint, as transformers' save_pretrained writes them: model.safetensors, or, when they
    pass ``max_shard_size`` (bytes, or a string such as "5GB", "500MB", "2GiB"; transformers' default 5GB), shards
    model-00001-of-0000N.safetensors of at most that size with the index model.safetensors.index.json. The shards are
    cut as huggingface_hub cuts them (split_state_dict_into_shards_factory): tensors in order, a new shard when the
    next one would not fit, and a tensor bigger than the size alone in a shard of its own, placed where it comes
    (the shard being filled goes on after it). So the files are transformers' own, byte for byte.

    ``variant`` (e.g. "fp16") names the files as transformers' variants: model.fp16.safetensors, shards
    model.fp16-00001-of-0000N.safetensors, model.safetensors.index.fp16.json. Weights files of an earlier save of
    the same variant in the directory that this one does not rewrite are removed (loaders take model.safetensors
    before an index, so a stale one would be loaded instead); other variants' files stay."""
    limit = shard_bytes(max_shard_size)
    single, index_name, shard_name = weights_names(variant)
    arrays = {name: _storable(name, a, dtype) for name, a in tensors.items()}
    shards, current, size = [], [], 0
    for name, (_, a) in arrays.items():
        if a.nbytes > limit:  # alone, in its own shard
            shards.append([name])
            continue
        if current and size + a.nbytes > limit:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += a.nbytes
    if current or not shards:
        shards.append(current)
    names = [single] if len(shards) == 1 else [shard_name.format(i, len(shards)) for i in range(1, len(shards) + 1)]
    for file_name, members in zip(names, shards):
        _write_atomically(os.path.join(directory, file_name), {name: arrays[name] for name in members})
    written = set(names)
    if len(shards) > 1:
        index = {"metadata": {"total_parameters": sum(a.size for _, a in arrays.values()),  # (as transformers)
                              "total_size": sum(a.nbytes for _, a in arrays.values())},
                 "weight_map": {name: file_name for file_name, members in zip(names, shards) for name in members}}
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)  # renamed into place, as the shards
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
        try:
            os.chmod(tmp, 0o666 & ~current_umask())
            with _explaining_a_file_in_use(os.path.join(directory, index_name), "replace"):
                os.replace(tmp, os.path.join(directory, index_name))
        except BaseException:
            os.unlink(tmp)
            raise
        written.add(index_name)
    shard_pattern = re.compile(re.escape(shard_name.split("{")[0]) + r"\d{5}-of-\d{5}\.safetensors")
    for stale in os.listdir(directory):
        if stale not in written and (stale in (single, index_name) or shard_pattern.fullmatch(stale)):
            with _explaining_a_file_in_use(os.path.join(directory, stale), "remove the earlier save"):
                os.remove(os.path.join(directory, stale))


@contextlib.contextmanager
def _explaining_a_file_in_use(path, action):
    """Replacing or removing ``path`` (``action`` says which), with a PermissionError that says why it may fail: on
    Windows a file a process has open cannot be replaced or removed, and a model loaded from a checkpoint keeps its
    weights file memory-mapped (in this process too); elsewhere, a file another user owns in a shared folder."""
    try:
        yield
    except PermissionError as e:
        raise PermissionError(
            f"cannot {action} {path} ({e.strerror or e}): on "
            f"Windows a file in use cannot be, and a model loaded from this folder (in this process or another) "
            f"keeps its weights file open; elsewhere, it may be another user's. Save to another folder, or close what "
            f"uses it (on Windows, del every model loaded from it) and save again") from None


def weights_names(variant=None):
    """(single file, shard index, shard name pattern for .format(i, n)) of a checkpoint's weights, as transformers
    names them, with its ``variant`` (e.g. "fp16": model.fp16.safetensors) if given."""
    if variant is None:
        return WEIGHTS_NAME, WEIGHTS_INDEX_NAME, "model-{:05d}-of-{:05d}.safetensors"
    return (f"model.{variant}.safetensors", f"model.safetensors.index.{variant}.json",
            f"model.{variant}-{{:05d}}-of-{{:05d}}.safetensors")


def check_variant(variant, what):
    """A weights variant as transformers takes it: None, or a name that goes into file names ("fp16")."""
    if variant is None:
        return None
    if not isinstance(variant, str):
        raise TypeError(f"{what}: variant must be a str such as 'fp16' (it names model.fp16.safetensors) or None, "
                        f"got {type(variant).__name__}")
    if not variant or "/" in variant or "\\" in variant or variant.strip(".") != variant:
        raise ValueError(f"{what}: variant={variant!r} cannot be part of a file name (model.<variant>.safetensors); "
                         f"pass a name such as 'fp16', or None")
    return variant


_SIZE_UNITS = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}


def shard_bytes(max_shard_size) -> int:
    """transformers' max_shard_size in bytes: an int, or a number with a unit ("5GB", "500MB", "2GiB")."""
    if isinstance(max_shard_size, (int, np.integer)) and not isinstance(max_shard_size, bool) and max_shard_size > 0:
        return int(max_shard_size)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMG]I?B|B)\s*", str(max_shard_size), re.IGNORECASE)
    if isinstance(max_shard_size, str) and match and float(match[1]) > 0:
        return int(float(match[1]) * _SIZE_UNITS[match[2].upper()])
    raise ValueError(f"max_shard_size={max_shard_size!r}: give a positive number of bytes, or a size with its "
                     f"unit such as \"5GB\", \"500MB\" or \"2GiB\"")


def _storable(name, a, dtype):
    """(safetensors dtype, contiguous array of the bytes) for one tensor."""
    from .weights import to_format

    if isinstance(a, Int8Weight):
        raise ValueError(f"tensor {name!r} is int8: minigpt2 does not save int8 weights (transformers could not "
                         f"read them); save the float checkpoint and load it with load_in_8bit=True")
    if dtype is not None:
        a = to_format(a, dtype)
    if isinstance(a, BFloat16Weight):
        return "BF16", np.ascontiguousarray(a.bits)
    a = np.asarray(a)
    if a.dtype == np.float16:
        return "F16", np.ascontiguousarray(a)
    return "F32", np.ascontiguousarray(a, dtype=np.float32)


def _write(f, arrays, metadata):
    """The safetensors layout: an 8-byte little-endian header length, the JSON header (padded with spaces to a
    multiple of 8 bytes), then each tensor's bytes, little-endian, C order, one after the other."""
    # As the safetensors library orders them: the widest dtype first, then by name. So every tensor starts at a
    # multiple of its own size (a float32 after an odd number of float16s would not be aligned, and the C kernels
    # decline an unaligned matrix: NumPy would then run it, slowly).
    def library_order(name):
        dtype, a = arrays[name]
        return -a.dtype.itemsize, dtype != "BF16", name  # (of two 2-byte dtypes, the library puts BF16 first)

    arrays = {name: arrays[name] for name in sorted(arrays, key=library_order)}
    header, offset = {"__metadata__": metadata}, 0
    for name, (dtype, a) in arrays.items():
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for _, a in arrays.values():
        f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (os.umask can only set it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once (what huggingface_hub does too)
    os.umask(mask)
    return mask


def find_weights(name_or_path, variant=None, **hub_kwargs) -> list:
    """The safetensors file(s) of a checkpoint: one file, or the shards an index names; of ``variant`` if given
    (model.fp16.safetensors, model.safetensors.index.fp16.json: transformers' names)."""
    from .hub import resolve_file

    single_name, index_name, _ = weights_names(variant)
    single = resolve_file(name_or_path, single_name, required=False, **hub_kwargs)
    if single is not None:
        return [single]
    index = resolve_file(name_or_path, index_name, required=False, **hub_kwargs)
    if index is not None:
        try:
            with open_file(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # bad JSON, or no {"weight_map": {...}}
            raise ValueError(f"{index} is not a shard index: it needs a JSON object with a \"weight_map\" of tensor "
                             f"names to file names ({type(e).__name__}: {e})") from None
        return [resolve_file(name_or_path, shard, **hub_kwargs) for shard in shards]
    pickles = PICKLE_NAMES if variant is None else (f"pytorch_model.{variant}.bin",
                                                    f"pytorch_model.bin.index.{variant}.json")
    for pickle_name in pickles:
        if resolve_file(name_or_path, pickle_name, required=False, **hub_kwargs) is not None:
            raise ValueError(PICKLE_MESSAGE.format(what=f"{name_or_path}/{pickle_name}"))
    if not os.path.isdir(name_or_path):  # a Hub name: say why (offline and not in the cache, or not on the Hub)
        resolve_file(name_or_path, single_name, **hub_kwargs)
    raise FileNotFoundError(f"{name_or_path} has no {single_name} (nor {index_name})"
                            + _other_variants(os.path.join(name_or_path, hub_kwargs.get("subfolder") or "")))


def _other_variants(directory) -> str:
    """What to pass instead, when ``directory`` holds weights of other variants than the one asked for."""
    found = {}
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        match = re.fullmatch(r"model(?:\.(.+?))?(?:-\d{5}-of-\d{5})?\.safetensors", name)
        if match:
            found.setdefault(match[1], name)
    if not found:
        return ""
    return "; it has " + ", ".join(f"{name} (variant={v!r})" for v, name in found.items())


# -- nested parameter dicts <-> flat checkpoint names ----------------------------------------------

def flatten(params, prefix="") -> dict:
    """{"h": [{"ln_1": {"weight": w}}]} -> {"h.0.ln_1.weight": w}"""
    items = params.items() if isinstance(params, dict) else enumerate(params)
    flat = {}
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list)):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def unflatten(flat: dict):
    """{"h.0.ln_1.weight": w} -> {"h": [{"ln_1": {"weight": w}}]}: numbered parts become lists."""
    root = {}
    for name, value in flat.items():
        node = root
        parts = name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _numbered_to_lists(root)


def _numbered_to_lists(node):
    if not isinstance(node, dict):
        return node
    if node and all(re.fullmatch(r"\d+", k) for k in node):
        return [_numbered_to_lists(node[str(i)]) for i in range(len(node))]
    return {k: _numbered_to_lists(v) for k, v in node.items()}
