"""The key/value cache (``past_key_values``).

What a caller sees is HF's layout: a tuple with one ``(key, value)`` pair per layer, each of shape
[B, H, P, D]. Plain tuples and lists of arrays in that layout are accepted as input too.

What is behind it: decoding one token at a time must not copy the whole cache at every step. The
cache returned by the model is a ``KVCache``, a tuple whose pairs are read-only views into
buffers with room to grow. Feeding it back appends the new keys and values in place. A prompt's
cache is made to its size; the first time it is continued, its buffers are remade once with room for
the model's ``n_positions``, memory the operating system supplies only as positions are written. So
decoding never copies the cache again, and its peak memory is what it holds (doubling when full would
copy at each step up, holding the old and the new buffers at once). If an older cache is fed back
after a newer one was grown from the same buffers (branching, as in trying two continuations), the
older one is copied first, so no cache a caller holds ever changes. The same holds when several
threads continue one cache at once: one of them takes the free space after it, the others copy.
"""
from __future__ import annotations

import mmap
import threading
from collections import namedtuple

import numpy as np

from .checks import check_int, from_torch, is_int

__all__ = ["KVCache", "DynamicCache"]


BOTH_CACHE_NAMES = ("pass the cache once: past_key_values (transformers 4's name) or cache (transformers 5's), "
                    "not both (transformers 5 would use cache and ignore past_key_values, 4.57's forward would "
                    "ignore cache)")


def one_cache(past_key_values, cache):
    """The cache given to a forward as ``past_key_values`` (transformers 4's name) or as ``cache`` (transformers 5's);
    None is no cache given. Both is a ValueError: transformers 5 would use ``cache`` and drop the other (with a
    FutureWarning), 4.57's forward ignores ``cache``, so code written for one version means the other cache."""
    if cache is None:
        return past_key_values
    if past_key_values is not None:
        raise ValueError(BOTH_CACHE_NAMES)
    return cache


def _empty(shape):
    """An uninitialised float32 array for a cache buffer. From 64 KiB on, it is an anonymous memory map of its
    own: the operating system supplies its pages when they are first written (room not yet used costs no
    memory), and when the cache is dropped they go back at once (memory from malloc would stay in the process).
    The map is private (a forked process gets a copy, not the same pages) and, on Linux, kept out of 2 MiB pages:
    one such page would make a whole block of positions resident at the first write."""
    size = int(np.prod(shape)) * 4
    if size < 1 << 16:
        return np.empty(shape, np.float32)
    if hasattr(mmap, "MAP_PRIVATE"):  # POSIX (Windows' maps of the paging file are private to the process)
        buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)  # (fileno -1: anonymous)
    else:
        buffer = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        try:
            buffer.madvise(mmap.MADV_NOHUGEPAGE)
        except OSError:  # only a hint (EINVAL from a Linux built without transparent huge pages)
            pass
    return np.frombuffer(buffer, np.float32).reshape(shape)


class _Buffers:
    """Per-layer key and value buffers [B, H, capacity, D], of which the first ``length`` are filled."""

    def __init__(self, n_layer, batch, n_head, head_dim, capacities):
        """``capacities``: the room to make, in positions, and smaller rooms to try if that much memory cannot be
        mapped (an address-space limit, ``ulimit -v``, as shared servers set)."""
        for capacity in capacities:
            shape = (batch, n_head, capacity, head_dim)
            try:
                self.keys = [_empty(shape) for _ in range(n_layer)]
                self.values = [_empty(shape) for _ in range(n_layer)]
                break
            except OSError as error:
                failed = error
        else:
            raise MemoryError(f"the KV cache for {batch} sequence(s) x {capacities[-1]} positions "
                              f"({2 * n_layer * batch * n_head * capacities[-1] * head_dim * 4 / 1e6:.0f} MB) "
                              f"could not be allocated ({failed}); a smaller batch or a shorter text would fit")
        self.length = 0
        self.lock = threading.Lock()  # two threads extending the same cache: one gets the space, one copies

    @property
    def capacity(self):
        return self.keys[0].shape[2]

    def grow(self, capacities, filled):
        """Reallocate with room for ``capacities[0]`` positions (or the next that can be had), keeping the
        first ``filled``."""
        B, H, _, D = self.keys[0].shape
        new = _Buffers(len(self.keys), B, H, D, capacities)
        for old, fresh in zip(self.keys + self.values, new.keys + new.values):
            fresh[:, :, :filled] = old[:, :, :filled]
        self.keys, self.values = new.keys, new.values


def _room(needed, past_length, max_positions):
    """Capacities for a cache being continued: every position the model has, so that it is never copied again
    (memory comes as positions are written), or, where that much cannot be mapped, twice what it holds."""
    every = max(max_positions, needed)
    return every, min(max(needed, 2 * past_length), every)


class _LayerSlot:
    """One layer's view of the cache during a forward pass: ``extend`` appends and returns everything."""

    def __init__(self, buffers, layer, start):
        self.buffers, self.layer, self.start = buffers, layer, start

    def extend(self, k, v):  # [B, H, T, D] each -> [B, H, P + T, D] each
        end = self.start + k.shape[2]
        keys, values = self.buffers.keys[self.layer], self.buffers.values[self.layer]
        keys[:, :, self.start:end] = k
        values[:, :, self.start:end] = v
        return keys[:, :, :end], values[:, :, :end]


class KVCache(tuple):
    """``past_key_values``: a tuple of (key, value) per layer, each [B, H, P, D], read-only.

    A KVCache never changes: the model returns a new one each call, so the loop is
    ``out = model(ids, past_key_values=past); past = out.past_key_values``. Passing the same cache again continues
    it again from its P positions (a branch). transformers instead grows the DynamicCache passed in, and HF code
    may keep passing that first object: with a KVCache that would silently restart from P at every step, so pass
    the last output's cache, or pass a DynamicCache (minigpt2's or transformers'), which the model grows in place as
    transformers does. Where such a loop also says where it thinks it is (an attention_mask longer than P + T, a
    cache_position past P) the model raises an error saying this. The DynamicCache methods that change a cache
    in place (crop, reorder_cache, ...) raise, naming what to use instead (``reorder`` returns a new cache).

    Iterating gives each layer's (key, value), as transformers 4's caches do and as its legacy tuples hold them.
    transformers 5's DynamicCache gives (keys, values, sliding window or None) and cannot be indexed: code written
    for it unpacks three (``for k, v, _ in cache``), here two. ``cache.layers[i].keys`` / ``.values`` read the same in
    every version.
    """

    NOT_GROWN = ("if the cache passed in is one you passed before, expecting it to have grown (transformers updates "
                 "its DynamicCache in place): a minigpt2 cache never changes, pass the last output's past_key_values "
                 "(or keep one minigpt2.DynamicCache, which the model updates in place)")

    def __new__(cls, buffers: _Buffers, length: int):
        pairs = []
        for k, v in zip(buffers.keys, buffers.values):
            k, v = k[:, :, :length], v[:, :, :length]
            k.flags.writeable = False
            v.flags.writeable = False
            pairs.append((k, v))
        self = super().__new__(cls, pairs)
        self._buffers, self._length = buffers, length
        return self

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """P, the number of positions cached (HF's Cache.get_seq_length; every layer holds the same P). A layer the
        cache has not (``layer_idx >= len(cache)``) holds none: 0, as transformers' DynamicCache answers."""
        return self._length if layer_idx < len(self) else 0

    def reorder(self, index) -> "KVCache":
        """A new cache whose batch row i is this cache's row ``index[i]`` (beam search, batch selection)."""
        index = np.asarray(index)
        src = self._buffers
        n_layer = len(src.keys)
        B, H, _, D = src.keys[0].shape
        dst = _Buffers(n_layer, len(index), H, D, (src.capacity, self._length))
        for i in range(n_layer):
            dst.keys[i][:, :, : self._length] = src.keys[i][index, :, : self._length]
            dst.values[i][:, :, : self._length] = src.values[i][index, :, : self._length]
        dst.length = self._length
        return KVCache(dst, self._length)

    def __reduce__(self):  # pickles and deep-copies as the plain tuple it shows
        return tuple, (tuple(self),)

    # -- transformers' Cache API (4.57's and 5.x's DynamicCache), for code written for it ----------------
    def get_max_cache_shape(self, layer_idx: int = 0) -> int:
        """-1: no fixed maximum, as HF's DynamicCache says (the model's n_positions is the limit)."""
        return -1

    def get_max_length(self, layer_idx=None) -> int:
        """transformers 5's name for get_max_cache_shape: -1, no fixed maximum."""
        return -1

    @property
    def is_initialized(self) -> bool:
        """Whether the cache holds its layers (HF's Cache.is_initialized): True for every cache the model returns,
        False for the empty one (``KVCache.from_legacy_cache(())``)."""
        return len(self) > 0

    @property
    def is_sliding(self) -> list:
        """One False per layer: GPT-2 attends to every earlier position, no sliding window (HF's Cache.is_sliding)."""
        return [False] * len(self)

    def get_mask_sizes(self, query_length, layer_idx: int = 0) -> tuple:
        """(P + T, 0): the keys the T new tokens' attention mask spans and their offset, as HF's DynamicCache
        answers. ``query_length`` is T, an int (transformers 5's form) or the new tokens' ``cache_position``, an
        array of T positions (transformers 4.57's). For a layer the cache has not: (T, 0), as transformers'."""
        if np.ndim(query_length) == 0:  # an int (or a 0-d array or tensor holding one)
            T = query_length if is_int(query_length) else np.asarray(_as_numpy(query_length)).item()
            T = check_int("KVCache.get_mask_sizes: query_length (the number of new tokens)", T, low=0)
        else:
            T = len(query_length)  # (4.57: cache_position, one entry per new token)
        return self.get_seq_length(layer_idx) + T, 0

    def get_query_offset(self, layer_idx: int = 0) -> int:
        """The position of the first new token: P, what get_seq_length says (transformers 5's Cache.get_query_offset,
        which its attention masks read; only its multi-token-prediction caches answer otherwise)."""
        return self.get_seq_length(layer_idx)

    @property
    def is_compileable(self) -> bool:
        """False: a cache of growing arrays, not one of fixed shape for torch.compile (HF's DynamicCache says so)."""
        return False

    @property
    def is_croppable(self) -> bool:
        """True, as transformers 5's DynamicCache answers: going back to fewer positions leaves no trace. Here nothing
        is ever undone in place (``crop`` is refused): the cache from before is unchanged, to be passed again, and
        slicing the arrays gives any shorter one."""
        return True

    @property
    def batch_size(self) -> int:
        """-1, transformers 5's answer for a DynamicCache (its layers do not record a batch size; only static and
        linear-attention layers do). The batch size itself is ``cache[0][0].shape[0]``."""
        return -1

    @property
    def is_linear(self) -> list:
        """One False per layer: every layer is attention, none a linear-attention (Mamba-like) state (HF 5's
        Cache.is_linear)."""
        return [False] * len(self)

    @property
    def is_dummy(self) -> list:
        """One False per layer: every layer keeps its own keys and values, none shares another's (HF 5's
        Cache.is_dummy)."""
        return [False] * len(self)

    @property
    def layers(self) -> tuple:
        """One entry per layer with ``.keys`` and ``.values`` [B, H, P, D] (HF's ``cache.layers[i].keys``)."""
        return tuple(_Layer(k, v) for k, v in self)

    def to_legacy_cache(self) -> tuple:
        """The plain tuple of (key, value) pairs, one per layer (HF's Cache.to_legacy_cache)."""
        return tuple(self)

    @classmethod
    def from_legacy_cache(cls, past_key_values) -> "KVCache":
        """A KVCache holding a copy of ``past_key_values``: (key, value) per layer, each [B, H, P, D], NumPy arrays
        or torch tensors (HF's DynamicCache.from_legacy_cache). None or () give the empty cache."""
        pairs = [tuple(np.asarray(_as_numpy(a), np.float32) for a in pair) for pair in past_key_values or ()]
        B, H, P, D = pairs[0][0].shape if pairs and np.ndim(pairs[0][0]) == 4 else (0, 0, 0, 0)
        if pairs:
            _check_past(pairs, len(pairs), B, H, D)
        buffers = _Buffers(len(pairs), B, H, D, (P,))
        for i, (k, v) in enumerate(pairs):
            buffers.keys[i][...], buffers.values[i][...] = k, v
        buffers.length = P
        return cls(buffers, P)

    def _changes_in_place(name, instead):
        also = "" if name == "update" else (f" (or keep one minigpt2.DynamicCache, which has {name} and which the "
                                            f"model updates in place)")

        def refused(self, *args, **kwargs):
            raise TypeError(f"KVCache.{name}: transformers' DynamicCache.{name} changes the cache in place, but a "
                            f"minigpt2 cache never changes (the model returns a new one); instead: {instead}{also}")
        refused.__name__ = refused.__qualname__ = name
        refused.__doc__ = f"Refused (HF's in-place {name}; a KVCache never changes), with an error saying what to use."
        return refused

    crop = _changes_in_place("crop", "past = tuple((k[:, :, :n], v[:, :, :n]) for k, v in past) keeps n positions")
    reorder_cache = _changes_in_place("reorder_cache", "past = past.reorder(beam_idx)")
    batch_select_indices = _changes_in_place("batch_select_indices", "past = past.reorder(indices)")
    batch_repeat_interleave = _changes_in_place(
        "batch_repeat_interleave", "past = past.reorder(np.repeat(np.arange(batch_size), repeats))")
    update = _changes_in_place("update", "pass the cache to the model and take its output's past_key_values")
    reset = _changes_in_place("reset", "pass past_key_values=None")
    del _changes_in_place

    # -- used by the model --------------------------------------------------------------------------
    @staticmethod
    def check(past, *, n_layer, batch, n_head, head_dim):
        """``past`` (None, a KVCache, or a tuple/list of (key, value) arrays [B, H, P, D]) with any other library's
        tensors as NumPy arrays, and P, the positions it holds; a clear error if its layout does not fit the model.
        transformers' DynamicCache is read as its legacy tuples; an empty cache (``()``, ``DynamicCache()``) as None."""
        if isinstance(past, DynamicCache):  # minigpt2's: the KVCache it holds (None: empty)
            past = past._cache
        elif _is_transformers_cache(past):  # HF's DynamicCache: its tensors (empty: no cache)
            past = transformers_pairs(past) if past.get_seq_length() else None
        if past is None or (isinstance(past, (tuple, list)) and len(past) == 0):  # no cache; an empty one, as ()
            return None, 0
        if not isinstance(past, KVCache) and isinstance(past, (tuple, list)):  # e.g. HF's tuples of tensors
            past = [tuple(_as_numpy(a) for a in _self_attention_pair(pair)) if isinstance(pair, (tuple, list)) else pair
                    for pair in past]
        return past, _check_past(past, n_layer, batch, n_head, head_dim)

    @staticmethod
    def prepare(past, past_length, *, n_layer, batch, n_head, head_dim, new_tokens, max_positions):
        """Buffers ready to receive ``new_tokens`` more positions after ``past`` (as ``check`` returned it, with
        its P), and one slot per layer writing into them. Called once the inputs are known to be good: it may
        take the free space after ``past`` for itself."""
        needed = past_length + new_tokens
        reusable = False
        if isinstance(past, KVCache) and len(past._buffers.keys) == n_layer:
            with past._buffers.lock:  # is the space after `past` still free? Then take it, in one step
                reusable = past._buffers.length == past._length
                if reusable:
                    past._buffers.length = needed
        if reusable:
            buffers = past._buffers
            if buffers.capacity < needed:  # continued for the first time: room for every position, once
                buffers.grow(_room(needed, past_length, max_positions), filled=past_length)
        else:  # a prompt's cache to its size; a continued one (a branch, a copy) with room for every position
            capacities = (needed,) if past is None else _room(needed, past_length, max_positions)
            buffers = _Buffers(n_layer, batch, n_head, head_dim, capacities)
            if past is not None:
                for i, (k, v) in enumerate(past):
                    buffers.keys[i][:, :, :past_length] = k
                    buffers.values[i][:, :, :past_length] = v
        buffers.length = needed
        return buffers, [_LayerSlot(buffers, i, past_length) for i in range(n_layer)]


    @staticmethod
    def returned(given, buffers, length, use_cache):
        """The model's ``past_key_values`` output: a new KVCache of ``length`` positions (None without use_cache).
        Given transformers' DynamicCache, the model does what transformers does: it appends the new positions to
        that object in place (even with use_cache=False) and returns it, so HF code that keeps using the object
        it passed in stays right. minigpt2's DynamicCache is given the new KVCache to hold, likewise."""
        if isinstance(given, DynamicCache):
            given._cache = KVCache(buffers, length)
            return given if use_cache else None
        if not _is_transformers_cache(given):
            return KVCache(buffers, length) if use_cache else None
        fill_transformers_cache(given, KVCache(buffers, length))
        return given if use_cache else None

    @staticmethod
    def check_cache_position(cache_position, past_length, new_tokens):
        """transformers' ``cache_position``, the new tokens' places in the cache: a model appends them after the P
        it holds, so it can only be [P, ..., P + T - 1]; anything else is a clear error."""
        if cache_position is None:
            return
        got = np.asarray(_as_numpy(cache_position)).reshape(-1)
        if got.shape != (new_tokens,) or (got != np.arange(past_length, past_length + new_tokens)).any():
            raise ValueError(
                f"cache_position is {got.tolist()}, but the {new_tokens} new token(s) go after the {past_length} "
                f"cached positions: [{past_length}, ..., {past_length + new_tokens - 1}] (or leave it out); "
                f"{KVCache.NOT_GROWN}")


_Layer = namedtuple("_Layer", "keys values")  # KVCache.layers[i]


class DynamicCache:
    """A cache object that the model updates in place, as transformers' DynamicCache.

    Why it exists: HF code often makes one cache and keeps passing that same object::

        cache = DynamicCache()
        out = model(ids, past_key_values=cache, use_cache=True)   # cache now holds ids
        out = model(next_ids, past_key_values=cache)              # and now next_ids too

    A KVCache never changes (each forward returns a new one), so this small box holds the latest KVCache and the
    model, and generate, put the new one in it. Continuing costs what continuing the KVCache costs: its buffers are
    reused, nothing is copied per step. ``cache[i]`` and iteration give each layer's (key, value), NumPy arrays.
    Read-only members (get_mask_sizes, is_initialized, ...) answer as KVCache's.

    Differences from transformers: ``crop(n)`` follows 4.57 (keep n positions; negative: drop -n), where 5.x takes
    only negative n; ``reset()`` empties the cache, as 5.x does (4.57 zeroed it and kept its length); ``update`` is
    refused: the model appends to the cache itself.
    """

    def __init__(self, ddp_cache_data=None, config=None, offloading: bool = False, offload_only_non_sliding=False):
        """Empty, or holding ``ddp_cache_data`` ((key, value) per layer, as from_legacy_cache). ``config`` is
        accepted and not needed (GPT-2 has no sliding-window layers); ``offloading`` (to a GPU's host) is not."""
        if offloading:
            raise ValueError("DynamicCache(offloading=True) moves a GPU's cache to the CPU: minigpt2's cache is "
                             "already in the CPU's memory, leave offloading out")
        self._cache = None  # the latest KVCache, or None (empty)
        if ddp_cache_data is not None:
            self._set(KVCache.from_legacy_cache(ddp_cache_data))

    def _set(self, cache):
        self._cache = cache if cache is not None and len(cache) else None

    def _latest(self) -> KVCache:
        return self._cache if self._cache is not None else KVCache.from_legacy_cache(())

    # -- reading ---------------------------------------------------------------------------------------------
    def get_seq_length(self, layer_idx: int = 0) -> int:
        """P, the positions held (0 when empty or for a layer it has not)."""
        return self._latest().get_seq_length(layer_idx)

    def get_max_cache_shape(self, layer_idx: int = 0) -> int:
        """-1: no fixed maximum (the model's n_positions is the limit)."""
        return -1

    def __len__(self):  # layers held: 0 when empty, as transformers' (so an empty cache is falsy)
        return len(self._latest())

    def __iter__(self):
        return iter(self._latest())

    def __getitem__(self, layer_idx):
        if isinstance(layer_idx, int) and layer_idx >= len(self):  # (4.57 raises KeyError here)
            raise KeyError(f"layer {layer_idx} is not in this cache, which holds {len(self)} layer(s)")
        return self._latest()[layer_idx]

    @property
    def layers(self) -> tuple:
        """One entry per layer with ``.keys`` and ``.values`` [B, H, P, D]."""
        return self._latest().layers

    def to_legacy_cache(self) -> tuple:
        """The plain tuple of (key, value) pairs, one per layer (() when empty)."""
        return tuple(self._latest())

    @classmethod
    def from_legacy_cache(cls, past_key_values) -> "DynamicCache":
        """A DynamicCache holding a copy of ``past_key_values`` ((key, value) per layer, NumPy arrays or torch
        tensors; None or () give an empty one)."""
        return cls(past_key_values)

    _READ_ONLY = ("get_mask_sizes", "get_query_offset", "get_max_length", "is_initialized", "is_sliding",
                  "is_compileable", "is_croppable", "batch_size", "is_linear", "is_dummy")

    def __getattr__(self, name):  # (only called for names not found above)
        if name in DynamicCache._READ_ONLY:
            return getattr(self._latest(), name)
        raise AttributeError(f"'DynamicCache' object has no attribute '{name}'")

    def __reduce__(self):  # copies and pickles hold their own arrays
        return DynamicCache.from_legacy_cache, (self.to_legacy_cache(),)

    def __repr__(self):
        return f"DynamicCache({len(self)} layers, {self.get_seq_length()} positions)"

    # -- changing it in place ---------------------------------------------------------------------------------
    def crop(self, max_length: int) -> None:
        """Keep the first ``max_length`` positions; a negative ``max_length`` drops that many (transformers 4.57's
        meaning; 5.x takes only the negative form). Continuing afterwards copies the kept positions once."""
        P = self.get_seq_length()
        keep = max(P + max_length, 0) if max_length < 0 else max_length
        if self._cache is not None and keep < P:  # (a shorter view: the positions after it stay for older views)
            self._cache = KVCache(self._cache._buffers, keep)

    def _select_rows(self, index) -> None:
        if self.get_seq_length() > 0:  # (an empty cache has no rows to select, as in transformers)
            index = np.asarray(_as_numpy(index))
            self._cache = self._cache.reorder(np.flatnonzero(index) if index.dtype == bool else index)

    def reorder_cache(self, beam_idx) -> None:
        """Batch row i becomes row ``beam_idx[i]`` (beam search)."""
        self._select_rows(beam_idx)

    def batch_select_indices(self, indices) -> None:
        """Keep the batch rows ``indices``."""
        self._select_rows(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Each batch row ``repeats`` times in a row (rows 0, 0, 1, 1, ... for 2)."""
        if self.get_seq_length() > 0:
            self._select_rows(np.repeat(np.arange(self._cache[0][0].shape[0]), repeats))

    def reset(self) -> None:
        """Empty the cache, as transformers 5 does (4.57 zeroed its arrays and kept their length)."""
        self._cache = None

    def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
        """Refused: appending to one layer at a time would leave the layers of different lengths. The model
        appends to the cache itself; to make one from arrays, use DynamicCache.from_legacy_cache(pairs)."""
        raise NotImplementedError("DynamicCache.update: minigpt2's model appends to the cache itself (pass the cache "
                                  "to it); to build one from (key, value) arrays per layer, use "
                                  "DynamicCache.from_legacy_cache(pairs)")


def fill_transformers_cache(given, past) -> None:
    """Make transformers' Cache ``given`` (passed to generate) hold what ``past``, the KVCache generate ended with,
    holds, as transformers' generate leaves the Cache it is given: its rows repeated for the returned sequences
    or beams (each prompt's row, as generate repeats them), then every new position appended."""
    import torch  # (a transformers Cache was given: torch is there)

    given = _self_attention_part(given)
    start, rows = given.get_seq_length(), past[0][0].shape[0]
    if start:
        given_rows = transformers_pairs(given)[0][0].shape[0]
        if given_rows != rows:
            given.batch_repeat_interleave(rows // given_rows)
    for i, (k, v) in enumerate(past):
        given.update(torch.from_numpy(np.array(k[:, :, start:])), torch.from_numpy(np.array(v[:, :, start:])), i)


def _is_transformers_cache(past) -> bool:
    """Is ``past`` a transformers Cache object (DynamicCache), rather than None, a tuple, a list or minigpt2's
    DynamicCache? (4.x's has to_legacy_cache(); 5.x's has not, but keeps its tensors in .layers[i].keys / .values and
    grows by update().)"""
    return past is not None and not isinstance(past, (tuple, list, DynamicCache)) and (
        hasattr(past, "to_legacy_cache") or all(hasattr(past, name) for name in ("layers", "update", "get_seq_length")))


def transformers_pairs(cache) -> tuple:
    """A transformers Cache's (key, value) tensors per layer, [B, H, P, D] each (its legacy tuples), in any
    transformers version."""
    cache = _self_attention_part(cache)
    if hasattr(cache, "to_legacy_cache"):
        return cache.to_legacy_cache()
    return tuple((layer.keys, layer.values) for layer in cache.layers)


def _self_attention_part(cache):
    """The self-attention cache inside transformers' EncoderDecoderCache (what a model with cross-attention returns), or
    ``cache`` itself. Its other part, the encoder's keys and values, minigpt2 does not keep: it computes them again
    from encoder_hidden_states, which every call of such a model is given (the same numbers)."""
    return getattr(cache, "self_attention_cache", cache)


def _self_attention_pair(layer):
    """One layer of a legacy cache: (key, value), or transformers' encoder-decoder layout (self-attention key, value,
    cross-attention key, value), of which the self-attention pair is kept (see _self_attention_part)."""
    return layer[:2] if len(layer) == 4 else layer


def _as_numpy(a):
    """A tensor of another library (torch) as a NumPy array; anything else unchanged (_check_past judges it)."""
    if isinstance(a, np.ndarray) or not hasattr(a, "__array__"):
        return a
    try:
        return np.asarray(from_torch(a))  # (torch: the values, not their gradient; bfloat16 as float32)
    except (TypeError, ValueError, RuntimeError):  # e.g. a tensor on a GPU
        return a


def _check_past(past, n_layer, batch, n_head, head_dim) -> int:
    """Validate the layout of past_key_values and return P."""
    if type(past) is KVCache and len(past) == n_layer and past[0][0].shape == (batch, n_head, past._length, head_dim):
        return past._length  # (a model's own output: every pair float32, cut from one set of buffers of one shape)
    if not isinstance(past, (tuple, list)) or len(past) != n_layer:
        got = f"{len(past)} entries" if isinstance(past, (tuple, list)) else type(past).__name__
        raise ValueError(
            f"past_key_values must be a tuple with one (key, value) pair per layer ({n_layer}), got {got}"
        )
    expected = None
    for i, pair in enumerate(past):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            got = f"{len(pair)} item(s)" if isinstance(pair, (tuple, list)) else type(pair).__name__
            raise ValueError(f"past_key_values[{i}] must be a (key, value) pair of arrays [batch, n_head, past_length, "
                             f"head_dim] (or transformers' encoder-decoder layout of 4, the self-attention pair first), "
                             f"got {got}")
        for name, a in zip(("key", "value"), pair):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"past_key_values[{i}] {name} must be a numpy array, got {type(a).__name__}")
            if a.ndim != 4 or a.shape[0] != batch or a.shape[1] != n_head or a.shape[3] != head_dim:
                raise ValueError(
                    f"past_key_values[{i}] {name} has shape {a.shape}; expected (batch={batch}, n_head={n_head}, "
                    f"past_length, head_dim={head_dim})"
                )
            if expected is None:
                expected = a.shape[2]
            elif a.shape[2] != expected:
                raise ValueError(
                    f"past_key_values[{i}] {name} holds {a.shape[2]} positions but layer 0 holds {expected}"
                )
            if a.dtype.kind != "f":  # (np.issubdtype(a.dtype, np.floating), 20x faster: 24 arrays per token)
                raise TypeError(f"past_key_values[{i}] {name} must be a float array, got dtype {a.dtype}")
    return expected
