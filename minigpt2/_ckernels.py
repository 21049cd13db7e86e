"""The C core's kernels, with the signatures of their NumPy twins in layers.py and activations.py (and
modeling.transformer_block's, which the C core runs as one call of those kernels when decoding).

Each function here checks what the C code assumes (float32, the innermost axis contiguous, shapes
that agree) and calls into ``minigpt2._kernels`` (built from csrc/ by cffi). A case the C code does
not handle returns ``NotImplemented``, and backend.kernel then runs the NumPy reference instead,
which also produces the reference's own error for inputs that are wrong. ``calls`` counts the
calls each C kernel actually served (the tests use it to prove the C path ran).

Which compiled variant of the C core serves a call (or whether NumPy does) is decided per kind of call by
minigpt2/_tuning.py; the ``run_*`` functions call one given variant without any checks of the arrays
(the calibration and the wrappers here use them).

Importing this module fails with ImportError when the extension was not built.
"""
from __future__ import annotations

import weakref
from collections import Counter

import numpy as np

from . import _kernels as _extension
from . import _blas_threads, _tuning, tracing
from ._kernels import ffi, lib
from .cache import _LayerSlot
from .weights import BLOCK, BFloat16Weight, Int8Weight

__all__ = ["linear", "layer_norm", "gelu_new", "attention", "transformer_block", "transformer_blocks", "calls",
           "KERNELS"]

INTERFACE = 7  # csrc/kernels.h MG_INTERFACE: the interface these wrappers call
if getattr(lib, "MG_INTERFACE", None) != INTERFACE:
    raise ImportError(f"the built extension minigpt2._kernels has interface {getattr(lib, 'MG_INTERFACE', 1)}, these "
                      f"sources need {INTERFACE}: it was built from other sources (rebuild it: pip install -e . or "
                      f"python csrc/build_kernels.py)")

F32 = np.dtype(np.float32)
_NARROW = {lib.MG_F16: "float16", lib.MG_BF16: "bfloat16", lib.MG_I8: "int8"}  # format -> _tuning.NARROW's kind
calls = Counter()  # kernel name -> calls served in C
last_variant = {}  # kernel name -> the name of the variant that served its last call in C

# Prompts with at least this many rows (tokens x batch) go to NumPy's BLAS; the crossovers live in
# _tuning.py (this name is kept so that tests and the benchmark can move it).
BLAS_ROWS = _tuning.BLAS_ROWS
# Attention heads wider than this go to NumPy (GPT-2's are 64 wide; the kernel's scratch is 64 x D floats).
MAX_HEAD_DIM = 1024

_ERRORS = {
    lib.MG_ERR_SHAPE: (ValueError, "a size is zero or negative"),
    lib.MG_ERR_NULL: (ValueError, "a required array is missing"),
    lib.MG_ERR_MEMORY: (MemoryError, "out of memory for scratch buffers"),
    lib.MG_ERR_VARIANT: (RuntimeError, "this CPU cannot run the kernel variant asked for"),
    lib.MG_ERR_FORMAT: (ValueError, "unknown weight format or prefetch kind"),
}


# NumPy's OpenBLAS runs its parallel jobs on the C core's threads (minigpt2/_blas_threads.py).
blas_on_pool = (_blas_threads.install(int(ffi.cast("uintptr_t", ffi.addressof(lib, "mg_blas_threads"))),
                                     lib.mg_blas_reserve) if lib.mg_has_threads() else [])


def library_path() -> str:
    """The file of the loaded extension (its hash is part of the calibration cache's key)."""
    return _extension.__file__


def _check(status, kernel):
    if status != lib.MG_OK:
        error, message = _ERRORS.get(status, (RuntimeError, f"error code {status}"))
        raise error(f"C kernel {kernel}: {message}")


def _is_f32(a):
    return isinstance(a, np.ndarray) and a.dtype == F32


def _is_scalar(a):
    """A number, not an array (np.ndim alone takes a microsecond for a Python float or a NumPy scalar)."""
    return type(a) in (float, np.float32) or np.ndim(a) == 0


def _floats(a):
    """A float* to the first element of ``a`` (which must stay alive during the call)."""
    if a.flags.c_contiguous:
        return ffi.from_buffer("float[]", a)  # read-only arrays (memory maps) are fine: C only reads them
    return ffi.cast("float *", a.ctypes.data)


def _contiguous(a):
    """``a`` C-contiguous and on a 4-byte boundary (C reads floats there), copying only if it is not."""
    a = np.ascontiguousarray(a)
    return a if a.flags.aligned else a.copy()


def _aligned(a):
    """True if every element of ``a`` lies on a 4-byte boundary (float loads in C need it) and no axis
    runs backwards. (The stride of an axis of length 1 is never used, so NumPy may set it to anything.)"""
    return a.flags.aligned and (min(a.strides) >= 0 or all(s >= 0 for s, n in zip(a.strides, a.shape) if n > 1))


def _to_blas():
    """Decline a product NumPy's BLAS will then run: on the C pool's threads, split into as many jobs as the pool
    advises (csrc/parallel.c, mg_blas_width); or on its own threads, and then the pool's idle workers sleep now,
    leaving the cores to those threads (mg_pool_rest)."""
    lib.mg_pool_rest()
    follow_pool()
    return NotImplemented


_steady = [0]  # > 0 while a caller holds OpenBLAS's split at the pool's thread count (backend.same_bits)


def follow_pool():
    """Tell NumPy's OpenBLAS, when its jobs run on the pool, how many to split a product into (the pool's threads,
    or one while other programs crowd the cores: csrc/parallel.c, mg_blas_width; always the pool's threads while
    held steady)."""
    if blas_on_pool:
        _blas_threads.use(lib.mg_get_num_threads() if _steady[0] else lib.mg_blas_width())


_C_DTYPES = {lib.MG_F32: F32, lib.MG_F16: np.dtype(np.float16), lib.MG_BF16: np.dtype(np.uint16),
             lib.MG_I8: np.dtype(np.int8)}  # what each weight format's values are, as the C core reads them


def _stored(weight):
    """How the C core reads a weight matrix [n_in, n_out]: (format code, the array as stored, the int8 scales or
    None, transposed), where transposed is 0 when the rows of the matrix are contiguous in memory (a Conv1D
    weight) and 1 when its columns are (wte.T, the tied head); None for what the C core does not take."""
    if isinstance(weight, np.ndarray):
        if weight.dtype == F32:
            code, values, scales = lib.MG_F32, weight, None
        elif weight.dtype == np.float16:
            code, values, scales = lib.MG_F16, weight, None
        else:
            return None
    elif isinstance(weight, BFloat16Weight):
        code, values, scales = lib.MG_BF16, weight.bits, None
    elif isinstance(weight, Int8Weight) and weight.axis == 0:  # blocks of 32 down the columns: the summed axis
        code, values, scales = lib.MG_I8, weight.q, weight.scales
    else:
        return None
    # (the constructors check dtypes and shapes, and a weight's arrays cannot be replaced; but an array's own dtype
    # and shape can be set in place, w.bits.dtype = np.uint8 or w.q.shape = ..., which would have C read past its
    # end: checked again here)
    if values.dtype != _C_DTYPES[code] or values.ndim != 2 or not values.flags.aligned:
        return None
    if scales is not None and not (scales.dtype == np.float16
                                   and scales.shape == (-(-values.shape[0] // BLOCK), values.shape[1])):
        return None
    if values.flags.c_contiguous:
        transposed = 0
    elif values.flags.f_contiguous:
        transposed = 1
    else:
        return None
    if scales is not None and not (scales.flags.aligned  # (C reads them as uint16_t: a 2-byte boundary)
                                   and (scales.flags.f_contiguous if transposed else scales.flags.c_contiguous)):
        return None
    return code, values, scales, transposed


def _pick_linear(code, transposed, rows):
    """(variant, prefetch, name) of what serves a product in C, or None where NumPy's BLAS does."""
    plan = _tuning.current()
    by_rows = plan.linear if code == lib.MG_F32 else plan.narrow_linear[_NARROW[code]]
    return by_rows[transposed][min(rows, _tuning.DECODE_MAX_ROWS + 1)]


def linear(x, weight, bias=None):
    """x @ weight + bias, weight in any format of weights.py.  # [..., in] -> [..., out]"""
    if not _is_f32(x) or x.ndim == 0 or x.size == 0:
        return NotImplemented
    stored = _stored(weight)
    if stored is None:
        return NotImplemented
    code, values, scales, transposed = stored
    n_in, n_out = values.shape
    rows = x.size // n_in if n_in else 0
    if x.shape[-1] != n_in or n_in == 0 or n_out == 0:
        return NotImplemented
    if code == lib.MG_F32 and rows >= BLAS_ROWS:
        return _to_blas()  # (a prompt's product with a float32 weight is BLAS's; a narrow one stays in C,
        # which widens a block at a time, instead of NumPy widening the whole matrix)
    if bias is not None:
        if not (_is_f32(bias) and bias.shape == (n_out,)):
            return NotImplemented
        bias = _contiguous(bias)
    pick = _pick_linear(code, transposed, rows)
    if pick is None:
        return _to_blas()
    x = _contiguous(x)
    y = np.empty(x.shape[:-1] + (n_out,), F32)
    if transposed:
        values, scales = values.T, None if scales is None else scales.T
    status = lib.mg_linear(pick[0], pick[1], code, ffi.from_buffer("float[]", x), n_in, ffi.from_buffer(values),
                           values.shape[1], ffi.NULL if scales is None else ffi.from_buffer("uint16_t[]", scales),
                           0 if scales is None else scales.shape[1], transposed,
                           ffi.NULL if bias is None else ffi.from_buffer("float[]", bias),
                           ffi.from_buffer("float[]", y), n_out, rows, n_in, n_out)
    if status == lib.MG_ERR_MEMORY:  # no room for the kernel's scratch buffers: NumPy may still manage
        return NotImplemented
    if status:
        _check(status, "linear")
    calls["linear"] += 1
    last_variant["linear"] = pick[2]
    return y


def layer_norm(x, weight, bias, eps=1e-5):
    """Normalise each vector, then scale and shift.  # [..., E] -> [..., E]"""
    if not (_is_f32(x) and _is_f32(weight) and _is_f32(bias)) or x.ndim == 0 or x.size == 0:
        return NotImplemented
    n = x.shape[-1]
    if weight.shape != (n,) or bias.shape != (n,) or not _is_scalar(eps):
        return NotImplemented
    pick = _tuning.current().layer_norm
    if pick is None:
        return NotImplemented
    x, weight, bias = _contiguous(x), _contiguous(weight), _contiguous(bias)
    y = np.empty_like(x)
    status = lib.mg_layer_norm(pick[0], _floats(x), n, _floats(weight), _floats(bias), _floats(y), n, x.size // n, n,
                               float(eps))
    _check(status, "layer_norm")
    calls["layer_norm"] += 1
    last_variant["layer_norm"] = pick[2]
    return y


def gelu_new(x):
    """GPT-2's tanh GELU.  # [...] -> [...]"""
    if not _is_f32(x) or x.size == 0 or x.ndim == 0:
        return NotImplemented
    pick = _tuning.current().gelu_new
    if pick is None:
        return NotImplemented
    x = _contiguous(x)
    y = np.empty_like(x)
    _check(lib.mg_gelu_new(pick[0], _floats(x), _floats(y), x.size), "gelu_new")
    calls["gelu_new"] += 1
    last_variant["gelu_new"] = pick[2]
    return y


def _strides3(*arrays):
    """The (batch, head, position) strides of each [B, H, N, D] array, in floats, one after the other."""
    return ffi.new("long[]", [s // 4 for a in arrays for s in a.strides[:3]])


def attention(q, k, v, *, scale, causal, key_bias=None, head_mask=None):
    """Fused softmax(q k^T * scale + masks) v: the output [B, H, T, D], never the probabilities.

    Declines (the NumPy reference serves) for layouts the C code does not take: key_bias must be
    [B or 1, 1, 1, K], head_mask [1, H, 1, 1].
    """
    if not (_is_f32(q) and _is_f32(k) and _is_f32(v)) or q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        return NotImplemented
    if not _is_scalar(scale) or (isinstance(scale, (np.ndarray, np.generic)) and scale.dtype != F32):
        return NotImplemented  # an array, or a float64 NumPy scale (with which NumPy computes in float64)
    B, H, T, D = q.shape
    K = k.shape[2]
    if D > MAX_HEAD_DIM:  # the kernel keeps a 64 x D block in scratch memory: NumPy serves huge heads
        return NotImplemented
    if k.shape != (B, H, K, D) or v.shape != (B, H, K, D) or 0 in q.shape or K == 0 or (causal and T > K):
        return NotImplemented
    if D > 1 and not q.strides[3] == k.strides[3] == v.strides[3] == 4:
        return NotImplemented
    if not (_aligned(q) and _aligned(k) and _aligned(v)):
        return NotImplemented
    bias, bias_stride = ffi.NULL, 0
    if key_bias is not None:
        if not _is_f32(key_bias) or key_bias.ndim != 4 or key_bias.shape[1:] != (1, 1, K) \
                or key_bias.shape[0] not in (1, B):
            return NotImplemented
        key_bias = _contiguous(key_bias)
        bias, bias_stride = _floats(key_bias), (K if key_bias.shape[0] == B else 0)
    mask = ffi.NULL
    if head_mask is not None:
        if not _is_f32(head_mask) or head_mask.shape != (1, H, 1, 1):
            return NotImplemented
        head_mask = _contiguous(head_mask)
        mask = _floats(head_mask)
    plan = _tuning.current()
    pick = plan.attention_decode if T == 1 else plan.attention_prompt
    if pick is None:
        return _to_blas()
    out = np.empty((B, T, H, D), F32)  # merge_heads' layout: its transpose back is free
    strides = _strides3(q, k, v)
    status = lib.mg_attention(pick[0], pick[1], _floats(q), strides, _floats(k), strides + 3, _floats(v), strides + 6,
                              _floats(out), B, H, T, K, D, float(np.float32(scale)), bool(causal), bias,
                              bias_stride, mask)
    if status == lib.MG_ERR_MEMORY:  # no room for the kernel's scratch buffers: NumPy may still manage
        return NotImplemented
    _check(status, "attention")
    calls["attention"] += 1
    last_variant["attention"] = pick[2]
    return out.transpose(0, 2, 1, 3)


# -- a decoding step's block in one call --------------------------------------------------------------------

def _address(a):
    """The address of ``a``'s first element, as a pointer that keeps nothing alive (see _block_weights)."""
    return ffi.cast("void *", a.ctypes.data)


def _buffers(weight):
    """The arrays C reads for a weight in any format of weights.py."""
    if type(weight) is np.ndarray:
        return (weight,)
    if isinstance(weight, BFloat16Weight):
        return (weight.bits,)
    if isinstance(weight, Int8Weight):
        return (weight.q, weight.scales)
    return (weight,)


def _block_linear(args, layer, rows, n_in, n_out):
    """Fill ``args`` (a struct mg_linear_args) for ``layer`` (a {"weight", "bias"} dict) with ``rows`` rows in C;
    False if C does not serve that product as the model would call it."""
    stored = _stored(layer["weight"])
    if stored is None:
        return False
    code, values, scales, transposed = stored
    bias = layer.get("bias")
    if values.shape != (n_in, n_out) or not (bias is None or _plain(bias, n_out)):
        return False
    pick = _pick_linear(code, transposed, rows)
    if pick is None:
        return False
    if transposed:
        values, scales = values.T, None if scales is None else scales.T
    args.variant, args.prefetch, args.w_format, args.w_transposed = pick[0], pick[1], code, transposed
    args.w, args.w_stride = _address(values), values.shape[1]
    if scales is not None:
        args.scales, args.s_stride = _address(scales), scales.shape[1]
    if bias is not None:
        args.bias = _address(bias)
    args.n_in, args.n_out = n_in, n_out
    return True


def _plain(a, n):
    """True for a contiguous float32 vector of n values on a 4-byte boundary (C reads it where it lies)."""
    return _is_f32(a) and a.shape == (n,) and a.flags.c_contiguous and a.flags.aligned


# (id(params of a block), rows, n_embd, scale, eps) -> (plan, the ids of the arrays C reads, weak references to them,
# the block's arguments without those of one step). Building the arguments took ~35 us a block, more than the
# block's C call on a small model. The entry keeps nothing alive: when one of its arrays goes, the weak reference's
# callback drops the entry, so an entry whose ids are those of the arrays the block reads now (its params, its
# layer's cache buffers) points into those very arrays.
_block_weights = {}


def _block_arguments(p, rows, n_embd, plan, cache, scale, eps):
    """A struct mg_block_args with what does not change between decoding steps: the weights, biases and layer
    norms, the variants chosen for them, this layer's cache buffers (``cache`` as _layer_cache gives it), the
    attention scale (_c_scale's) and the layer norms' epsilon; None if C does not serve this block. Shared by every
    step: copy it before filling in a step's own fields (two threads may decode with one model at once)."""
    keys, values, _ = cache
    layers = (p["attn"]["c_attn"], p["attn"]["c_proj"], p["mlp"]["c_fc"], p["mlp"]["c_proj"])
    norms = (p["ln_1"]["weight"], p["ln_1"]["bias"], p["ln_2"]["weight"], p["ln_2"]["bias"])
    arrays = (*_buffers(layers[0]["weight"]), *_buffers(layers[1]["weight"]), *_buffers(layers[2]["weight"]),
              *_buffers(layers[3]["weight"]), *(layer.get("bias") for layer in layers), *norms, keys, values)
    key = (id(p), rows, n_embd, scale, eps)
    cached = _block_weights.get(key)
    if cached is not None and cached[0] is plan and cached[1] == tuple(map(id, arrays)):
        return cached[3]
    c_fc = _stored(layers[2]["weight"])  # (None for a weight C does not read: a list, float64, ...)
    if c_fc is None:
        return None
    args = ffi.new("struct mg_block_args *")
    E, F = n_embd, c_fc[1].shape[1]
    H, D = keys.shape[1], keys.shape[3]
    if not (values.shape == keys.shape and keys.strides[3] == values.strides[3] == 4 and _aligned(keys)
            and _aligned(values) and keys.flags.writeable and values.flags.writeable):
        return None
    if not (all(_plain(a, E) for a in norms) and _block_linear(args.c_attn, layers[0], rows, E, 3 * E)
            and _block_linear(args.attn_proj, layers[1], rows, E, E)
            and _block_linear(args.c_fc, layers[2], rows, E, F)
            and _block_linear(args.mlp_proj, layers[3], rows, F, E)):
        return None
    args.rows, args.n_embd, args.n_inner = rows, E, F
    args.ln_variant, args.gelu_variant = plan.layer_norm[0], plan.gelu_new[0]
    args.attention_variant, args.attention_prefetch = plan.attention_decode[0], plan.attention_decode[1]
    args.ln_1_weight, args.ln_1_bias, args.ln_2_weight, args.ln_2_bias = (_address(a) for a in norms)
    args.keys, args.values, args.n_head, args.head_dim = _address(keys), _address(values), H, D
    args.k_strides = [s // 4 for s in keys.strides[:3]]
    args.v_strides = [s // 4 for s in values.strides[:3]]
    args.eps, args.scale = eps, scale
    if len(_block_weights) >= 1024:  # (models come and go: forget them all now and then)
        _block_weights.clear()
    forget = lambda _, key=key: _block_weights.pop(key, None)  # noqa: E731 (an array of the entry went)
    refs = [None if a is None else weakref.ref(a, forget) for a in arrays]
    _block_weights[key] = (plan, tuple(map(id, arrays)), refs, args)
    return args


def _declines(config, output_attentions, encoder_states, head_masks):
    """True for what the fused block does not compute: cross-attention, head masks, attention probabilities,
    tracing, another activation."""
    return (encoder_states is not None or any(h is not None for h in head_masks) or output_attentions
            or tracing.active() or config.activation_function != "gelu_new")


def _layer_cache(cache, B, H, D, mask):
    """(keys, values, position): a decoding step's cache slot (buffers [B, H, capacity, D] with room at
    ``position``), or None if it is not one or the mask (as _decoding_inputs gives it) has not one bias per key up
    to position. (Whether C can write into the buffers where they lie, _block_arguments asks once.)"""
    if type(cache) is not _LayerSlot:
        return None
    keys, values, position = cache.buffers.keys[cache.layer], cache.buffers.values[cache.layer], cache.start
    B_, H_, capacity, D_ = keys.shape
    if B_ != B or H_ != H or D_ != D or position >= capacity:
        return None
    if mask is not None and mask.shape[3] != position + 1:  # (C reads position + 1 biases a row)
        return None
    return keys, values, position


def _c_scale(scale):
    """The attention scale as C takes it (a float32 number), or None where NumPy must compute (a float64 NumPy
    scale computes in float64, as attention() does)."""
    if scale is None or not _is_scalar(scale) or (isinstance(scale, (np.ndarray, np.generic)) and scale.dtype != F32):
        return None
    return float(np.float32(scale))


def _block_step(args, x, out, scratch, position, mask):
    """Fill a copy of _block_arguments' struct (``args``, a struct mg_block_args) with one step's own fields:
    x, out and scratch (float pointers), the cache position written, and the mask (its float32 bias, as
    _decoding_inputs gives it, or None)."""
    if mask is not None:
        args.key_bias, args.key_bias_stride = _floats(mask), position + 1 if mask.shape[0] == args.rows else 0
    args.x, args.out, args.scratch, args.position = x, out, scratch, position


def _block_fits(x, config, plan):
    """True if C serves a decoding block for x [B, 1, E] with this config and plan."""
    B, E, H = x.shape[0], config.n_embd, config.n_head
    return (B <= _tuning.DECODE_MAX_ROWS and E % H == 0 and E // H <= MAX_HEAD_DIM
            and None not in (plan.layer_norm, plan.gelu_new, plan.attention_decode))


def _decoding_inputs(x, config, mask, caches):
    """x and mask as C reads them for a decoding step (x [B, 1, E] contiguous float32; mask the float32 bias
    [1 or B, 1, 1, P + 1] for P cached positions, contiguous), or None if C does not serve the step."""
    if not _is_f32(x) or x.ndim != 3 or x.shape[1] != 1 or x.shape[2] != config.n_embd:
        return None
    if mask is not None:
        K = caches[0].start + 1 if isinstance(caches[0], _LayerSlot) else -1
        if not _is_f32(mask) or mask.ndim != 4 or mask.shape[1:] != (1, 1, K) or mask.shape[0] not in (1, x.shape[0]):
            return None
        mask = _contiguous(mask)
    return _contiguous(x), mask


def _served(blocks, args):
    calls.update(transformer_block=blocks, linear=4 * blocks, layer_norm=2 * blocks, attention=blocks,
                 gelu_new=blocks)  # (what ran in C)
    names = _tuning.variant_names()  # (what the call's arguments named: the tests check that they follow the plan)
    last_variant.update(layer_norm=names[args.ln_variant], attention=names[args.attention_variant],
                        gelu_new=names[args.gelu_variant], linear=names[args.mlp_proj.variant])


def transformer_block(x, p, *, layer_idx, config, cache, mask, head_mask, output_attentions,
                      encoder_states=None, encoder_mask=None, scale=None):
    """modeling.transformer_block for a decoding step (one new token per sequence), as one C call: the same
    kernels in the same order, so the same result (csrc/block.c). Declines everything else: a prompt, cross-
    attention, head masks, attention probabilities, tracing, another activation, or a kernel that NumPy serves."""
    inputs = None if _declines(config, output_attentions, encoder_states, [head_mask]) else _decoding_inputs(
        x, config, mask, [cache])
    if inputs is None:
        return NotImplemented
    x, mask = inputs
    B, E, H = x.shape[0], config.n_embd, config.n_head
    plan, scale = _tuning.current(), _c_scale(scale)
    kv = _layer_cache(cache, B, H, E // H, mask) if _block_fits(x, config, plan) else None
    eps = float(config.layer_norm_epsilon)
    shared = None if kv is None or scale is None else _block_arguments(p, B, E, plan, kv, scale, eps)
    if shared is None:
        return NotImplemented
    out = np.empty_like(x)
    scratch = np.empty(B * (6 * E + shared.n_inner), F32)
    args = ffi.new("struct mg_block_args *", shared[0])
    _block_step(args, _floats(x), _floats(out), _floats(scratch), kv[2], mask)
    status = lib.mg_transformer_block(args)  # (mask, x, out, scratch, keys, values: alive in this frame till here)
    if status == lib.MG_ERR_MEMORY:  # no room for a kernel's scratch: the Python path may still manage (it writes
        return NotImplemented         # the same keys and values into the cache again)
    _check(status, "transformer_block")
    _served(1, args)
    return out, None, None


def transformer_blocks(x, blocks, *, config, scales, caches, mask, head_masks, output_attentions,
                       output_hidden_states, encoder_states=None, encoder_mask=None):
    """modeling.transformer_blocks for a decoding step: every block's mg_block_args, then one C call for them all
    (csrc/block.c: each return to Python between blocks cost more than the Python itself). Declines what
    transformer_block declines, and output_hidden_states."""
    if output_hidden_states or not blocks or _declines(config, output_attentions, encoder_states, head_masks):
        return NotImplemented
    inputs = _decoding_inputs(x, config, mask, caches)
    if inputs is None:
        return NotImplemented
    x, mask = inputs
    n, B, E, H = len(blocks), x.shape[0], config.n_embd, config.n_head
    plan = _tuning.current()
    if not _block_fits(x, config, plan):
        return NotImplemented
    kvs = [_layer_cache(cache, B, H, E // H, mask) for cache in caches]
    scales = [_c_scale(scale) for scale in scales]
    if None in kvs or None in scales:
        return NotImplemented
    eps = float(config.layer_norm_epsilon)
    shared = [_block_arguments(p, B, E, plan, kv, scale, eps) for p, kv, scale in zip(blocks, kvs, scales)]
    if None in shared:
        return NotImplemented
    xs = np.empty((n + 1,) + x.shape, F32)  # xs[i]: the input of block i; xs[n] the output
    xs[0] = x
    scratch = np.empty(B * (6 * E + max(args.n_inner for args in shared)), F32)  # (the blocks run in turn)
    xp, sp, step = _floats(xs), _floats(scratch), B * E
    all_args = ffi.new("struct mg_block_args[]", n)
    for i in range(n):
        all_args[i] = shared[i][0]
        _block_step(all_args[i], xp + i * step, xp + (i + 1) * step, sp, kvs[i][2], mask)
    status = lib.mg_transformer_blocks(all_args, n)  # (every array the arguments point into is alive here)
    if status == lib.MG_ERR_MEMORY:  # (as in transformer_block: the Python path writes the cache again)
        return NotImplemented
    _check(status, "transformer_blocks")
    calls.update(transformer_blocks=1)
    _served(n, all_args[n - 1])
    return xs[n], [], [None] * n, [None] * n


# -- one given variant, no checks (for the calibration in _tuning.py) ------------------------------------

def run_linear(variant, prefetch, x, w):
    """x @ w with variant ``variant``: x C-contiguous [rows, n_in]; w [n_in, n_out] in any format ``linear`` takes,
    C- or F-contiguous."""
    code, values, scales, transposed = _stored(w)
    if transposed:
        values, scales = values.T, None if scales is None else scales.T
    y = np.full((x.shape[0], w.shape[1]), np.nan, F32)  # (not empty: an output a kernel never wrote shows)
    _check(lib.mg_linear(variant, prefetch, code, ffi.from_buffer("float[]", x), x.shape[1], ffi.from_buffer(values),
                         values.shape[1], ffi.NULL if scales is None else ffi.from_buffer("uint16_t[]", scales),
                         0 if scales is None else scales.shape[1], transposed, ffi.NULL,
                         ffi.from_buffer("float[]", y), w.shape[1], x.shape[0], w.shape[0], w.shape[1]), "linear")
    return y


def run_attention(variant, prefetch, q, k, v, scale):
    B, H, T, D = q.shape
    out = np.full((B, T, H, D), np.nan, F32)
    strides = _strides3(q, k, v)
    _check(lib.mg_attention(variant, prefetch, _floats(q), strides, _floats(k), strides + 3, _floats(v),
                            strides + 6, _floats(out), B, H, T, k.shape[2], D, scale, 1, ffi.NULL, 0, ffi.NULL),
           "attention")
    return out


def run_layer_norm(variant, x, weight, bias, eps=1e-5):
    y = np.empty_like(x)
    n = x.shape[-1]
    _check(lib.mg_layer_norm(variant, _floats(x), n, _floats(weight), _floats(bias), _floats(y), n, x.size // n, n,
                             eps), "layer_norm")
    return y


def run_gelu_new(variant, x):
    y = np.empty_like(x)
    _check(lib.mg_gelu_new(variant, _floats(x), _floats(y), x.size), "gelu_new")
    return y


KERNELS = {"linear": linear, "layer_norm": layer_norm, "gelu_new": gelu_new, "attention": attention,
           "transformer_block": transformer_block,
           "transformer_blocks": transformer_blocks}
