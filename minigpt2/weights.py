"""Weight formats: how a weight matrix may be stored, and the one way back to float32 (``widen``).

Decoding one token reads every weight once, so its speed is the memory's speed divided by the bytes of the
weights. Fewer bits per weight mean fewer bytes, at the price of rounding each weight. minigpt2 keeps a
weight matrix (a Conv1D weight ``[in, out]``, the token table ``wte [V, E]``, the position table ``wpe``) in
one of four formats:

    format     stored as                                            bytes per weight   relative rounding
    float32    np.ndarray float32                                   4                  2^-24 (exact here)
    float16    np.ndarray float16                                   2                  2^-11 (11 significant bits)
    bfloat16   BFloat16Weight: the top 16 bits of each float32      2                  2^-8  (8 significant bits)
    int8       Int8Weight: int8 values, a float16 scale per block   1.0625             scale/2 per weight
               of 32 weights along the input (reduction) axis

(Relative rounding is the largest relative error of round-to-nearest: half a unit in the last place.)

Everything else stays float32: activations, sums, layer norms, softmax and the KV cache. The only new
error is the rounding of the weights (and, for int8, of the activations a weight multiplies: below), and the
NumPy reference shows exactly that:

    linear(x, w, b) = x @ widen(w) + b         # widen(w) is the float32 matrix the rounded weights stand for
    embedding rows  = widen(wte[ids])          # only the rows taken are widened
    lm_head(h, wte) = h @ widen(wte.T)         # the tied head widens the whole table
    int8: linear(x, w, b) = round_int16(x) @ widen(w) + b

An int8 product also rounds its input: each row of x, per block of 32 along its length, to int16 steps of
the block's largest magnitude / 32767 (``round_int16``: an error of at most 2^-16 of that largest, where the
weights' is 2^-8 of theirs). So the C kernels multiply integers, 16 or 32 products per instruction, instead of
widening every weight to float32 first, which had made int8's decoding speed a matter of arithmetic rather
than of memory (llama.cpp's Q8_0 rounds activations too, to int8). And an int8 matrix is stored column by
column (``q.T`` contiguous, as the tied head wte.T already is), so that one output's weights are one
contiguous stretch of memory: docs/kernels.md has the measurements.

The C kernels read the narrow format and widen in registers, never making a float32 copy of a matrix;
they dispatch on ``format_name(w)``.

Why blocks of 32 along the input axis for int8 (the layout of llama.cpp's Q8_0), not one scale per output
column: a scale is the block's largest magnitude / 127, and every weight in the block is rounded to a
multiple of it. The largest of 32 Gaussian numbers is about 2.1 standard deviations, the largest of 768
about 3.2 and of 3072 about 3.6, so per-column scales are 1.5-1.7x coarser on Gaussian weights, and much
coarser where one input row is an outlier (GPT-2's weights have such rows: a few residual-stream
dimensions carry very large values): that row then sets the scale of every column, while with blocks it
sets the scale of one block per column. Measured in docs/numerics.md ("int8: blocks of 32 or one scale per
column"). The cost is 2 bytes of scale per 32 weights: 1.0625 bytes per weight instead of about 1.0.

Why float16 scales (as Q8_0's): a float32 scale would cost 4 bytes per 32 weights, 6% more bytes to read per
token and to hold in memory, for nothing: a scale is rounded up to a float16 first and q is rounded against
that rounded scale, so every weight is still within half a scale of its value, and the scale is at most one
float16 step above largest / 127 (2^-10 of it; 2^-24 absolute for blocks under 0.0078, where float16 is
subnormal). Rounded up, never down: no |q| passes 127. And q * scale, 8 by 11 significant bits, is exact in
float32.
"""
from __future__ import annotations

import warnings

import numpy as np

__all__ = ["FORMATS", "FormatName", "BFloat16Weight", "Int8Weight", "widen", "format_name", "to_format", "to_bfloat16",
           "to_float16", "quantize_int8", "round_int16", "round_to", "nbytes", "resolve_dtype", "cast_params",
           "config_format", "pop_loading_options", "stored_format", "is_matrix", "BLOCK"]

FORMATS = ("float32", "bfloat16", "float16", "int8")
BLOCK = 32  # int8: weights per scale, along the input (reduction) axis



class FormatName(str):
    """A format's name ("bfloat16"), as ``model.dtype`` and a narrow weight's ``dtype`` give it, which also equals
    torch's and NumPy's dtype of that name: ``model.dtype == torch.bfloat16`` is True, as for a transformers model.
    (NumPy has no bfloat16 and minigpt2 never imports torch, so the dtype is a name; its hash is the name's.)"""

    def __eq__(self, other):
        if isinstance(other, str) or other is None:
            return str.__eq__(self, other)
        try:
            return resolve_dtype(other, int8=True) == str(self)
        except (TypeError, ValueError):  # not a dtype minigpt2 knows (float64, a number...)
            return False

    def __ne__(self, other):
        return not self == other

    __hash__ = str.__hash__


# BFloat16Weight's and Int8Weight's attributes are set once, by the constructor, which checks them together: a new
# weight is made rather than an array replaced (values may still be written into the arrays in place). A copy or a
# pickle is made again by the constructor, from __reduce__.

def _refuse_setting(self, name, value):
    raise AttributeError(f"{type(self).__name__}.{name} cannot be set: a weight's attributes are checked together "
                         f"when it is made; make a new {type(self).__name__} (values may still be written into its "
                         f"arrays in place)")


def _refuse_deleting(self, name):
    raise AttributeError(f"{type(self).__name__}.{name} cannot be deleted: a weight's attributes are fixed when it is "
                         f"made")


class BFloat16Weight:
    """A matrix in bfloat16: ``bits`` (uint16) holds the top half of each value's float32 bit pattern.

    float32 is 1 sign bit, 8 exponent bits, 23 fraction bits. bfloat16 keeps the sign, all 8 exponent bits
    (so the same range as float32) and the top 7 fraction bits: 8 significant bits with the implicit one.
    Widening is exact: put the 16 bits back on top and fill the low half with zeros.
    ``bits`` is fixed when the weight is made (other bits make another weight); its values may be written in place.
    """

    __slots__ = ("bits",)
    format = "bfloat16"

    def __init__(self, bits):
        bits = np.asarray(bits)
        if bits.dtype != np.uint16:
            raise TypeError(f"BFloat16Weight: bits must have dtype uint16, got {bits.dtype} (the top halves of "
                            f"float32 bit patterns; BFloat16Weight.from_float32 rounds float values to them)")
        object.__setattr__(self, "bits", bits)

    __setattr__, __delattr__ = _refuse_setting, _refuse_deleting

    def __reduce__(self):
        return type(self), (self.bits,)

    @classmethod
    def from_float32(cls, a) -> "BFloat16Weight":
        """Round float32 values to the nearest bfloat16, ties to even (as torch and CPUs do).

        Dropping the low 16 bits alone would truncate (round towards zero): every weight would shrink in
        magnitude by half a unit on average, a bias that accumulates through a matrix product.
        """
        u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
        lowest_kept = (u >> 16) & 1
        rounded = ((u + np.uint32(0x7FFF) + lowest_kept) >> 16).astype(np.uint16)  # a carry may run into the
        # exponent: that is right (1.99999 rounds to 2.0; the largest float32s round to infinity, as in torch)
        nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)  # NaN stays NaN (the carry could make it inf)
        if nan.any():
            rounded[nan] = ((u[nan] >> 16) | np.uint32(0x0040)).astype(np.uint16)
        return cls(rounded)

    def widen(self) -> np.ndarray:
        """The float32 values: the 16 bits become the top half of a float32 whose low half is zero."""
        wide = self.bits.astype(np.uint32)
        wide <<= 16  # (in place: a second temporary of the float32 size would double the peak of widening wte)
        return wide.view(np.float32)

    # (a name, as model.dtype: NumPy has no bfloat16; ``next(model.parameters()).dtype`` works)
    dtype = FormatName("bfloat16")
    shape = property(lambda self: self.bits.shape)
    ndim = property(lambda self: self.bits.ndim)
    size = property(lambda self: self.bits.size)
    nbytes = property(lambda self: self.bits.nbytes)
    T = property(lambda self: BFloat16Weight(self.bits.T), doc="The transpose, a view (as ndarray.T).")

    def __getitem__(self, index) -> "BFloat16Weight":
        return BFloat16Weight(self.bits[index])

    def __array__(self, dtype=None, copy=None):
        return _as_numpy(self, dtype, copy)

    def astype(self, dtype, copy=True) -> np.ndarray:
        """The values (``widen``) as a new array of ``dtype``, as np.asarray(w, dtype) gives them (there is no
        copy to spare: ``copy=False`` makes one too, as ndarray.astype does when it must)."""
        return _as_numpy(self, dtype, None)

    def __repr__(self):
        return f"BFloat16Weight(shape={self.shape})"


def _as_numpy(w, dtype, copy):
    """NumPy's ``__array__`` for a narrow weight: the float32 values it stands for (``widen``), a new array, so
    np.asarray(w) and torch.as_tensor(np.asarray(w)) give its values, as for a float32 weight."""
    if copy is False:
        article = "an" if w.format == "int8" else "a"
        raise ValueError(f"{article} {w.format} weight cannot be viewed as a float32 array without a copy: its values "
                         f"are widened into a new one (np.asarray(w), or w.widen())")
    return w.widen() if dtype is None else w.widen().astype(dtype)


class Int8Weight:
    """A matrix quantized to int8: ``q`` (int8, -127..127) times a float16 scale per block of 32 weights.

    The blocks run along ``axis``, the axis a matrix product sums over (``quantize`` stores a Conv1D weight
    column by column, q and scales in Fortran order, so that each output's weights are contiguous):
      axis 0, a Conv1D weight [in, out]:    value[i, j] = q[i, j] * scales[i // 32, j];  scales [ceil(in/32), out]
      axis -1, a table wte / wpe [rows, E]: value[i, j] = q[i, j] * scales[i, j // 32];  scales [rows, ceil(E/32)]
    (``wte.T``, the tied LM head's [E, V] view, has its blocks along axis 0, like a Conv1D weight; rows taken
    from a table, ``wte[ids]``, keep their scales, so ``q`` may then have any number of axes.) A block's scale
    is its largest magnitude / 127, rounded up to a float16, and every weight is off by at most half a scale.
    The last block is shorter when the axis is not a multiple of 32. q, scales and axis are checked together and
    fixed when the weight is made (other arrays make another weight); their values may be written in place.
    """

    __slots__ = ("q", "scales", "axis")
    format = "int8"

    def __init__(self, q, scales, axis=0):
        q, scales = np.asarray(q), np.asarray(scales)
        made_by = "Int8Weight.quantize rounds float values to int8 q and float16 scales"
        if q.dtype != np.int8:
            raise TypeError(f"Int8Weight: q must have dtype int8, got {q.dtype} ({made_by})")
        if scales.dtype != np.float16:
            raise TypeError(f"Int8Weight: scales must have dtype float16, got {scales.dtype} ({made_by})")
        if not isinstance(axis, (int, np.integer)) or isinstance(axis, (bool, np.bool_)) or axis not in (0, -1):
            raise ValueError(f"Int8Weight: axis must be 0 (blocks down the columns of a matrix [in, out]) or -1 "
                             f"(along the rows of a table), got {axis!r}")
        axis = int(axis)
        if axis == 0 and q.ndim != 2:
            raise ValueError(f"Int8Weight: q must be a matrix [in, out] for axis 0, got shape {q.shape}")
        if q.ndim == 0:
            raise ValueError(f"Int8Weight: q must have at least one axis (the blocks run along the last), got shape ()")
        blocks = list(q.shape)
        blocks[axis] = -(-q.shape[axis] // BLOCK)
        if scales.shape != tuple(blocks):
            raise ValueError(f"Int8Weight: q has shape {q.shape}, so scales (one per {BLOCK} along axis {axis}) "
                             f"must have shape {tuple(blocks)}, got {scales.shape}")
        for name, value in (("q", q), ("scales", scales), ("axis", axis)):
            object.__setattr__(self, name, value)

    __setattr__, __delattr__ = _refuse_setting, _refuse_deleting

    def __reduce__(self):
        return type(self), (self.q, self.scales, self.axis)

    @classmethod
    def quantize(cls, a, axis=0) -> "Int8Weight":
        """Round float values to int8 steps of their block's scale (largest magnitude / 127 rounded up to a
        float16), nearest."""
        a = np.asarray(a, dtype=np.float32)
        if a.ndim != 2:
            raise ValueError(f"int8 quantization takes a matrix, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("int8 quantization needs finite weights; this matrix holds NaN or infinity")
        blocked = _blocks(a if axis == 0 else a.T)  # [n_blocks, 32, other] (zero-padded to whole blocks)
        scales = _float16_up(np.abs(blocked).max(axis=1) / np.float32(127))  # [n_blocks, other]
        safe = np.where(scales > 0, scales, np.float16(1)).astype(np.float32)  # an all-zero block: q = 0, scale 0
        q = np.rint(blocked / safe[:, None, :]).astype(np.int8)  # |q| <= 127: the scale was rounded up
        q = q.reshape(-1, q.shape[-1])[:a.shape[axis]]  # [in, out], or [E, rows] for a table
        if axis == 0:  # stored column by column: each output's weights one contiguous stretch (as wte.T's)
            return cls(np.asfortranarray(q), np.asfortranarray(scales), 0)
        return cls(np.ascontiguousarray(q.T), np.ascontiguousarray(scales.T), -1)

    def widen(self) -> np.ndarray:
        """The float32 values: each int8 times its block's scale."""
        n = self.q.shape[self.axis]
        per_weight = np.repeat(self.scales, BLOCK, axis=self.axis)  # one scale per weight (and some to spare)
        per_weight = per_weight[:n] if self.axis == 0 else per_weight[..., :n]
        return self.q.astype(np.float32) * per_weight.astype(np.float32)

    dtype = FormatName("int8")  # (the format's name, as model.dtype; the values are ``q``, their scales ``scales``)
    shape = property(lambda self: self.q.shape)
    ndim = property(lambda self: self.q.ndim)
    size = property(lambda self: self.q.size)
    nbytes = property(lambda self: self.q.nbytes + self.scales.nbytes)

    @property
    def T(self) -> "Int8Weight":
        """The transpose of a matrix, a view (its blocks then run along the other axis)."""
        if self.q.ndim != 2:
            raise ValueError(f"Int8Weight: only a matrix has a transpose, not shape {self.q.shape}")
        return Int8Weight(self.q.T, self.scales.T, -1 - self.axis)

    def __getitem__(self, rows) -> "Int8Weight":
        """Rows of a table whose blocks run along its rows (wte, wpe): ``widen(wte[ids])`` widens only those.
        The index is NumPy's, but the last axis is taken whole: a part of it would take its blocks' scales apart
        (``widen(w)[:, 1:33]`` takes any part of the values)."""
        if self.axis != -1:
            raise TypeError("Int8Weight: rows can be taken only from a table quantized along its rows (axis -1: "
                            "wte, wpe), not from a Conv1D weight")
        if not _leaves_last_axis(rows, self.q.ndim):
            raise IndexError(f"Int8Weight: an index takes rows of the table {self.q.shape} (its leading axes); the "
                             f"last axis, along which the blocks of {BLOCK} run, is taken whole. Got {rows!r:.80}")
        return Int8Weight(self.q[rows], self.scales[rows], -1)

    def __array__(self, dtype=None, copy=None):
        return _as_numpy(self, dtype, copy)

    def astype(self, dtype, copy=True) -> np.ndarray:
        """The values (``widen``) as a new array of ``dtype``, as np.asarray(w, dtype) gives them (there is no
        copy to spare: ``copy=False`` makes one too, as ndarray.astype does when it must)."""
        return _as_numpy(self, dtype, None)

    def __repr__(self):
        return f"Int8Weight(shape={self.shape}, blocks of {BLOCK} along axis {self.axis})"


def _leaves_last_axis(index, ndim) -> bool:
    """True if NumPy's ``a[index]``, ``a`` of ``ndim`` axes, takes the last axis whole, and last: the index stops
    before it (``a[ids]``, ``a[2:5]``, ``a[ids, ...]``) or ends with a bare ``:`` for it (``a[..., 0, :]``)."""
    items = index if isinstance(index, tuple) else (index,)
    if items and isinstance(items[-1], slice) and items[-1] == slice(None):
        items = items[:-1]  # the last axis whole, after what indexes the axes before it
    elif any(item is Ellipsis for item in items[:-1]):
        return False  # an item after an Ellipsis indexes from the last axis (a[..., 0], a[..., None])
    taken = 0
    for item in items:
        if item is None or item is Ellipsis or isinstance(item, (bool, np.bool_)):  # a new axis; the axes between
            continue
        if isinstance(item, (int, np.integer, slice)):
            taken += 1
        else:
            item = np.asarray(item)
            taken += item.ndim if item.dtype == bool else 1  # a mask indexes as many axes as it has
    return taken < ndim


def _float16_up(s):
    """float32 scales -> the float16 at or above each (so that no |q| passes 127). A scale beyond float16's
    range means weights of magnitude beyond 127 * 65504 ~ 8.3e6, which int8 blocks do not hold."""
    with np.errstate(over="ignore"):
        half = s.astype(np.float16)
    below = half.astype(np.float32) < s
    half[below] = np.nextafter(half[below], np.float16(np.inf))
    if np.isinf(half).any():
        raise ValueError(f"a weight of magnitude {s.max() * 127:.4g} is too large for int8 blocks with float16 "
                         f"scales (largest 127 * 65504 = 8.3e6); use bfloat16, which has float32's range")
    return half


def _blocks(a):
    """[n, other] -> [ceil(n / 32), 32, other], zero-padded to whole blocks."""
    n = a.shape[0]
    padded = np.zeros((-(-n // BLOCK) * BLOCK, a.shape[1]), np.float32)
    padded[:n] = a
    return padded.reshape(-1, BLOCK, a.shape[1])


# -- the two functions every kernel needs --------------------------------------------------------------

def format_name(w) -> str:
    """"float32", "float16", "bfloat16" or "int8": the format of a weight matrix."""
    if isinstance(w, (BFloat16Weight, Int8Weight)):
        return FormatName(w.format)
    if isinstance(w, np.ndarray) and w.dtype in (np.float32, np.float16):
        return FormatName(w.dtype.name)
    raise TypeError(f"not a weight in one of the formats {', '.join(FORMATS)}: {type(w).__name__}"
                    f"{' of dtype ' + str(w.dtype) if isinstance(w, np.ndarray) else ''}")


def widen(w):
    """The float32 matrix a weight stands for (the NumPy reference: ``linear`` is ``x @ widen(w) + b``).

    float32 arrays are returned as they are (no copy); float16 arrays are converted exactly; BFloat16Weight
    and Int8Weight widen themselves. Anything else (a float64 array, a list) is returned unchanged, so
    NumPy's own rules and errors apply to it.
    """
    if isinstance(w, (BFloat16Weight, Int8Weight)):
        return w.widen()
    if isinstance(w, np.ndarray) and w.dtype == np.float16:
        return w.astype(np.float32)
    return w


def nbytes(w) -> int:
    """Bytes the weight occupies (int8: values and scales)."""
    return int(w.nbytes)


# -- converting ------------------------------------------------------------------------------------------

def to_bfloat16(a) -> BFloat16Weight:
    """float values -> BFloat16Weight, rounded to nearest, ties to even."""
    return a if isinstance(a, BFloat16Weight) else BFloat16Weight.from_float32(widen(a))


def to_float16(a) -> np.ndarray:
    """float values -> float16 (IEEE round to nearest even); a value beyond float16's range (65504) is an
    error, not a silent infinity."""
    if isinstance(a, np.ndarray) and a.dtype == np.float16:
        return a
    a = widen(a)
    with np.errstate(over="ignore"):
        half = np.asarray(a, dtype=np.float32).astype(np.float16)
    if np.isinf(half).any() and not np.isinf(np.asarray(a)[np.isinf(half)]).all():
        raise ValueError(f"a weight of magnitude {np.abs(a).max():.4g} does not fit float16 (largest 65504); "
                         f"use bfloat16, which has float32's range")
    return half


def quantize_int8(a, axis=0) -> Int8Weight:
    """float values -> Int8Weight with blocks of 32 along ``axis`` (0 for [in, out], -1 for wte/wpe)."""
    return Int8Weight.quantize(widen(a), axis)


def round_int16(x) -> np.ndarray:
    """x as an int8 product takes it: each row (the last axis) in blocks of 32 rounded to int16 steps of
    the block's largest magnitude / 32767, nearest (ties to even), as float32. A block of zeros (or of values
    so small that the step is 0) stays 0; a block holding NaN or infinity becomes all NaN."""
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[-1]
    padded = np.zeros(x.shape[:-1] + (-(-n // BLOCK) * BLOCK,), np.float32)
    padded[..., :n] = x
    blocks = padded.reshape(x.shape[:-1] + (-1, BLOCK))  # [..., n_blocks, 32]
    step = np.abs(blocks).max(axis=-1, keepdims=True) / np.float32(32767)  # NaN or inf if the block has one
    usable = np.isfinite(step) & (step > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xi = np.where(usable, np.rint(blocks / step), 0).astype(np.int16)  # -32767 .. 32767
    rounded = xi * np.where(np.isfinite(step), step, np.float32(np.nan))
    return rounded.reshape(padded.shape)[..., :n]


def to_format(w, fmt, axis=0, replaced=None):
    """``w`` (any format) in format ``fmt``; ``axis`` is where int8's blocks run (see Int8Weight).
    ``replaced(part)``: see cast_params (called with row slices of a big matrix as they are converted)."""
    if fmt == "float32":
        return np.ascontiguousarray(widen(w), dtype=np.float32)
    if fmt not in ("bfloat16", "float16", "int8"):
        raise ValueError(f"unknown weight format {fmt!r}; the formats are {', '.join(FORMATS)}")
    if isinstance(w, np.ndarray) and w.dtype == np.float64:  # (a float64 checkpoint: read in float32, as torch does)
        w = w.astype(np.float32)
    if format_name(w) == fmt and (fmt != "int8" or w.axis == axis):
        return w
    convert = {"bfloat16": to_bfloat16, "float16": to_float16, "int8": lambda a: quantize_int8(a, axis)}[fmt]
    if not (isinstance(w, (np.ndarray, BFloat16Weight)) and w.ndim == 2 and w.size > SLICE):
        return convert(w)
    return _convert_in_slices(w, fmt, axis, convert, replaced)


# A big matrix is converted a slice of rows at a time: a conversion makes temporaries of several times the
# slice's size (loading GPT-2 124M in bfloat16 would otherwise need about 0.5 GB of them for wte alone), and
# the file's rows already converted (float32, float16 or bfloat16) can be let go (`replaced`) while the rest is
# converted.
SLICE = 1 << 18  # weights per slice (1 MB of float32)


def _convert_in_slices(w, fmt, axis, convert, replaced=None):
    """convert(w), computed over slices of rows and written into the result as they come: the same values as
    convert(w) in one go (each weight, and each int8 block, depends only on itself; int8's blocks down the
    columns, axis 0, are 32 rows tall, so those slices are whole blocks)."""
    block_rows = fmt == "int8" and axis == 0
    step = max(1, SLICE // w.shape[1])
    if block_rows:
        step = max(BLOCK, step // BLOCK * BLOCK)
    out = None
    for i in range(0, w.shape[0], step):
        piece = convert(w[i:i + step])
        if out is None:  # an empty result of the right kind, from the first piece
            if fmt == "int8":
                blocks = (-(-w.shape[0] // BLOCK), w.shape[1]) if block_rows else (w.shape[0], piece.scales.shape[1])
                order = "F" if block_rows else "C"  # as Int8Weight.quantize stores them
                out = Int8Weight(np.empty(w.shape, np.int8, order=order), np.empty(blocks, np.float16, order=order),
                                 axis)
            elif fmt == "bfloat16":
                out = BFloat16Weight(np.empty(w.shape, np.uint16))
            else:
                out = np.empty(w.shape, np.float16)
        if fmt == "int8":
            first = i // BLOCK if block_rows else i
            out.q[i:i + step], out.scales[first:first + piece.scales.shape[0]] = piece.q, piece.scales
        elif fmt == "bfloat16":
            out.bits[i:i + step] = piece.bits
        else:
            out[i:i + step] = piece
        if replaced is not None:
            replaced(w[i:i + step])
    return out


def round_to(a, fmt) -> np.ndarray:
    """float32 values rounded to what format ``fmt`` can hold, as a float32 array (biases of a 16-bit model).
    For int8 they keep their values, in a copy: a view of a memory-mapped file would fault in whole blocks of
    the file's pages around each small vector, a dozen megabytes the int8 model otherwise does not hold."""
    if fmt == "float32":
        return np.asarray(widen(a), dtype=np.float32)
    if fmt == "int8":
        return np.array(widen(a), dtype=np.float32)
    return np.asarray(widen(to_format(a, fmt)), dtype=np.float32)


# -- a model's parameters ------------------------------------------------------------------------------

# Stored [rows, n_embd] and read by row: the tables are looked up by row, and an untied LM head (lm_head.weight, wte's
# layout) is read as the tied head reads wte, lm_head.weight.T. Their int8 blocks run along the row (axis -1).
_TABLES = ("wte.weight", "wpe.weight", "lm_head.weight")


def lm_head_weight(params):
    """The LM head's matrix [V, E] in a model's nested params: its own lm_head.weight when it has one
    (config.tie_word_embeddings false), else the token table wte (GPT-2's tied head)."""
    return params["lm_head"]["weight"] if "lm_head" in params else params["wte"]["weight"]


def is_matrix(name, w) -> bool:
    """True for the weights kept in the narrow format: wte, wpe, an untied lm_head and the Conv1D weights of the
    blocks (which ``linear`` and the embedding lookups read). Biases, layer norms and the small task heads (score,
    multiple_choice_head, read by a plain ``@``) stay float32 arrays."""
    return name in _TABLES or (name.startswith("h.") and name.endswith(".weight") and len(w.shape) == 2)


def cast_params(flat: dict, fmt: str, replaced=None) -> dict:
    """Flat parameters {checkpoint name without prefix: array or weight} in format ``fmt``.

    ``replaced(w)``, if given, is called with each parameter as soon as its converted copy exists (loading
    uses it to let go of the file's pages: checkpoint.release_pages).

    Matrices (``is_matrix``) take the format. The other parameters stay float32 arrays; for a 16-bit format
    they are rounded to it (as transformers keeps every parameter in the dtype), so the model in memory is
    exactly what save_pretrained writes; for int8 they keep their float32 values.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; the formats are {', '.join(FORMATS)}")
    out = {}
    for name, w in flat.items():
        try:
            if is_matrix(name, w):
                out[name] = to_format(w, fmt, axis=-1 if name in _TABLES else 0, replaced=replaced)
            else:
                out[name] = round_to(w, fmt)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        if replaced is not None and out[name] is not w:
            replaced(w)
    return out


_ALIASES = {"float32": "float32", "float": "float32", "fp32": "float32", "float16": "float16", "half": "float16",
            "fp16": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def resolve_dtype(dtype, what="torch_dtype", int8=False):
    """A dtype as HF code passes it -> "float32", "float16", "bfloat16", "auto" or None (not given).

    Accepts the names ("bfloat16", "float16", "float32", "auto", also "torch.bfloat16"), torch dtypes
    (``torch.bfloat16``; torch is never imported here) and NumPy dtypes (np.float32, np.float16). With ``int8``
    (model.to()), "int8" and torch.int8 name int8 weights and "auto" is refused: it is for loading.
    """
    if dtype is None or (isinstance(dtype, str) and dtype == "auto" and not int8):
        return dtype
    if isinstance(dtype, str):
        text = dtype
    elif type(dtype).__module__ == "torch":  # torch.bfloat16 is a torch.dtype; its str is "torch.bfloat16"
        text = str(dtype)
    else:
        try:
            text = np.dtype(dtype).name
        except TypeError:
            text = repr(dtype)
    short = text[len("torch."):] if text.startswith("torch.") else text
    if int8 and short == "int8":
        return FormatName("int8")
    name = _ALIASES.get(short)
    if name is None:
        if int8:
            choices = "float32, bfloat16, float16 or int8" + ("; 'auto' is for loading (the checkpoint's own dtype)"
                                                               if text == "auto" else "")
        else:
            choices = "float32, bfloat16, float16 or auto (the checkpoint's own)" + (
                "; 8-bit weights come from load_in_8bit=True" if "int8" in text else "")
        raise ValueError(f"{what}={text}: not a weight dtype minigpt2 can hold; use {choices}")
    return FormatName(name)  # (which equals torch.bfloat16: model.config.torch_dtype == torch.bfloat16, as in HF)


def config_format(named):
    """torch_dtype="auto": config.json's dtype as a weight format, or an error saying what to pass instead."""
    try:
        fmt = resolve_dtype(named)
    except ValueError:
        fmt = None
    if fmt in (None, "auto"):
        raise ValueError(f"torch_dtype='auto' takes config.json's dtype, {named!r}, which is not a weight dtype "
                         f"minigpt2 can hold; pass torch_dtype='float32', 'bfloat16' or 'float16' (or "
                         f"load_in_8bit=True) instead")
    return fmt


def pop_loading_options(options: dict):
    """Take HF's precision options out of from_pretrained's keyword arguments.

    ``torch_dtype`` (transformers 4) or ``dtype`` (transformers 5): a 16-bit or 32-bit format, or "auto"
    (the checkpoint's own); ``load_in_8bit=True`` (or a ``quantization_config`` that says it): int8 weights,
    quantized at load. Returns "auto", a format name, or None (not given: float32, transformers 4's default).
    HF's other quantization options are errors.
    """
    torch_dtype = resolve_dtype(options.pop("torch_dtype", None), "torch_dtype")
    dtype = resolve_dtype(options.pop("dtype", None), "dtype")
    if torch_dtype is not None and dtype is not None and torch_dtype != dtype:
        raise ValueError(f"torch_dtype={torch_dtype} and dtype={dtype} disagree; pass one of them (dtype is "
                         f"transformers 5's name for torch_dtype)")
    dtype = dtype or torch_dtype
    load_in_8bit = options.pop("load_in_8bit", None)  # (None: not given)
    if options.pop("load_in_4bit", False):
        raise ValueError("load_in_4bit: minigpt2 has no 4-bit weights; load_in_8bit=True gives int8 weights")
    quantization = options.pop("quantization_config", None)
    if quantization is not None:
        _check_8bit_config(quantization)
        if load_in_8bit is False:
            raise ValueError("load_in_8bit=False with a quantization_config asking for 8-bit weights: pass one of "
                             "them")
        load_in_8bit = True
    load_in_8bit = False if load_in_8bit is None else load_in_8bit
    if not isinstance(load_in_8bit, (bool, np.bool_)):
        raise TypeError(f"load_in_8bit must be True or False, got {load_in_8bit!r}")
    if not load_in_8bit:
        return dtype
    if dtype in ("bfloat16", "float16"):  # (as HF's 8-bit recipes pass it, for the parts they do not quantize)
        warnings.warn(f"8-bit weights with {'torch_dtype' if torch_dtype else 'dtype'}={dtype}: minigpt2 keeps an "
                      f"int8 model's biases, layer norms and task heads, and every activation, in float32, so the "
                      f"{dtype} is not applied; the weight matrices are int8 as asked", UserWarning, stacklevel=3)
    return "int8"


def _check_8bit_config(quantization) -> None:
    """Pass transformers' BitsAndBytesConfig(load_in_8bit=True), or a dict saying the same (read by name:
    minigpt2 never imports transformers), with its 8-bit options at their defaults; raise for every other
    quantization and every option set otherwise, which minigpt2 cannot give."""
    if not (isinstance(quantization, dict) or hasattr(quantization, "quant_method")
            or hasattr(quantization, "load_in_8bit")):
        raise TypeError(f"quantization_config must be transformers' BitsAndBytesConfig(load_in_8bit=True) or a dict "
                        f"saying the same ({{'load_in_8bit': True}}), got {type(quantization).__name__} "
                        f"{quantization!r:.60}; or pass load_in_8bit=True")

    def field(name, default=None):
        return quantization.get(name, default) if isinstance(quantization, dict) else getattr(quantization, name,
                                                                                                default)
    method = field("quant_method", "bitsandbytes")
    method = str(getattr(method, "value", method))  # (transformers' QuantizationMethod enum, or its value)
    what = f"quantization_config={type(quantization).__name__}"
    if method != "bitsandbytes":
        raise ValueError(f"{what} asks for {method} quantization; minigpt2 has only its own int8 weights: pass "
                         f"load_in_8bit=True or BitsAndBytesConfig(load_in_8bit=True)")
    if field("load_in_4bit", False):
        raise ValueError(f"{what} asks for 4-bit weights (load_in_4bit=True); minigpt2 has no 4-bit weights, only "
                         f"int8: BitsAndBytesConfig(load_in_8bit=True)")
    if not field("load_in_8bit", False):
        raise ValueError(f"{what} asks for neither 8-bit nor 4-bit weights; minigpt2 takes load_in_8bit=True "
                         f"(int8 weights in blocks of 32, see minigpt2.weights)")
    for name, (default, reason) in _BITSANDBYTES_8BIT_OPTIONS.items():
        value = field(name, default)
        if value != default:
            raise ValueError(f"{what} sets {name}={value!r}, which minigpt2's int8 weights cannot honour: {reason}. "
                             f"Leave it at its default ({default!r}), or load 16-bit weights (torch_dtype='bfloat16')")


# BitsAndBytesConfig's 8-bit options (with transformers' defaults), each of which asks for something minigpt2's int8
# does not do: refused when set, rather than ignored.
_BITSANDBYTES_8BIT_OPTIONS = {
    "llm_int8_threshold": (6.0, "it has no LLM.int8() split of outlier features into 16 bits; every weight matrix "
                                "is int8, in blocks of 32 weights with a scale each"),
    "llm_int8_skip_modules": (None, "it quantizes every weight matrix (wte, which is also the tied LM head, wpe and "
                                    "the blocks'), it cannot leave modules out"),
    "llm_int8_enable_fp32_cpu_offload": (False, "nothing is offloaded to stay float32: everything runs on the CPU, "
                                                "every weight matrix int8"),
    "llm_int8_has_fp16_weight": (False, "it keeps no 16-bit copy of the int8 weights"),
}


def stored_format(tensors: dict) -> str:
    """The format a checkpoint stores, for torch_dtype="auto" when config.json names none, as transformers 4.57 reads
    it: the first tensor's by name (of the first file: ``tensors`` are its {name: tensor}), float64 -> float32. Not
    wte's alone: a checkpoint that keeps its embeddings in float32 and the blocks in float16 is a float16 one."""
    w = tensors[min(tensors)] if tensors else None
    if isinstance(w, (BFloat16Weight, Int8Weight)) or (isinstance(w, np.ndarray) and w.dtype == np.float16):
        return format_name(w)
    return "float32"
