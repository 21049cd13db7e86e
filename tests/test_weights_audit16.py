"""The 16- and 8-bit weight classes (minigpt2/weights.py, audit 16): what their constructors take, that their
arrays cannot be swapped afterwards, and how they behave for a NumPy user (indexing, astype, pickling, copying).
Expected values come from the reference: the widening twin ``widen`` of weights.py, or torch's conversions."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from minigpt2 import weights
from minigpt2.weights import BFloat16Weight, Int8Weight, widen

try:
    from minigpt2 import _ckernels as ck
except ImportError:  # (the C extension is not built: the tests of what C declines are skipped)
    ck = None
needs_c = pytest.mark.skipif(ck is None, reason="the C extension is not built (see test_backend.py)")


def made(seed=0, shape=(64, 48)):
    """A float32 matrix and it in bfloat16, in int8 as a Conv1D weight (axis 0) and as a table (axis -1)."""
    a = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    return a, BFloat16Weight.from_float32(a), Int8Weight.quantize(a), Int8Weight.quantize(a, axis=-1)


# -- the constructors name what they refuse -------------------------------------------------------------

@pytest.mark.parametrize("build, error, match", [
    (lambda: BFloat16Weight(np.zeros((2, 3), np.float32)), TypeError, r"bits must have dtype uint16, got float32"),
    (lambda: BFloat16Weight([[1, 2]]), TypeError, r"bits must have dtype uint16, got int64"),
    (lambda: Int8Weight(np.zeros((64, 3), np.int16), np.zeros((2, 3), np.float16)), TypeError,
     r"\bq must have dtype int8, got int16"),
    (lambda: Int8Weight(np.zeros((64, 3), np.int8), np.zeros((2, 3), np.float32)), TypeError,
     r"scales must have dtype float16, got float32"),
    (lambda: Int8Weight(np.zeros((64, 3), np.int8), np.zeros((2, 3), np.float16), axis=1), ValueError,
     r"axis must be 0 .* or -1 .*, got 1"),
    (lambda: Int8Weight(np.zeros((64, 3), np.int8), np.zeros((2, 3), np.float16), axis=True), ValueError,
     r"axis must be 0 .* or -1 .*, got True"),
    (lambda: Int8Weight(np.zeros((64, 3), np.int8), np.zeros((2, 3), np.float16), axis="0"), ValueError,
     r"axis must be 0 .* or -1 .*, got '0'"),
    (lambda: Int8Weight(np.zeros(64, np.int8), np.zeros(2, np.float16), axis=0), ValueError,
     r"\bq must be a matrix .* for axis 0, got shape \(64,\)"),
    (lambda: Int8Weight(np.zeros((), np.int8), np.zeros((), np.float16), axis=-1), ValueError,
     r"\bq must have at least one axis .*, got shape \(\)"),
    (lambda: Int8Weight(np.zeros((64, 3), np.int8), np.zeros((1, 3), np.float16)), ValueError,
     r"scales .* must have shape \(2, 3\), got \(1, 3\)"),
])
def test_a_constructor_names_the_attribute_what_it_was_and_what_is_allowed(build, error, match):
    """Each refusal names the attribute (bits, q, scales, axis), what it was and what it may be. An int8 weight's
    messages named all three at once ("takes int8 values, float16 scales and axis 0 (a matrix) or -1"), whichever
    was wrong, and an axis of True or "0" was a TypeError about dtypes (False was taken: False == 0)."""
    with pytest.raises(error, match=match):
        build()


def test_an_integer_axis_of_any_kind_is_kept_as_a_python_int():
    q = Int8Weight.quantize(np.ones((64, 3), np.float32))
    w = Int8Weight(q.q, q.scales, np.int64(0))
    assert type(w.axis) is int and w.axis == 0 and type(w.T.axis) is int
    assert repr(Int8Weight(q.T.q, q.T.scales, np.intp(-1))) == "Int8Weight(shape=(3, 64), blocks of 32 along axis -1)"
    with pytest.raises(ValueError, match="got False"):
        Int8Weight(q.q, q.scales, False)


# -- made once, never swapped ----------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["bf16", "conv", "table"])
def test_a_weights_attributes_cannot_be_set_or_deleted(which):
    """The constructor checks bits, or q, scales and axis together; replacing one afterwards skipped that (C then
    declined, NumPy widened garbage or raised deep inside a product). The attributes are now fixed: a new weight
    is made instead. Writing values into the arrays in place stays possible (it changes no shape nor dtype)."""
    a, bf16, conv, table = made()
    w = {"bf16": bf16, "conv": conv, "table": table}[which]
    names = ("bits",) if which == "bf16" else ("q", "scales", "axis")
    for name in names:
        with pytest.raises(AttributeError, match=rf"{type(w).__name__}\.{name} cannot be set"):
            setattr(w, name, getattr(w, name))
        with pytest.raises(AttributeError, match=rf"{type(w).__name__}\.{name} cannot be deleted"):
            delattr(w, name)
    with pytest.raises(AttributeError, match="extra cannot be set"):
        w.extra = 1
    before = widen(w)
    (w.bits if which == "bf16" else w.q)[0] = 0  # in place: allowed
    expected = before.copy()
    expected[0] = 0
    np.testing.assert_array_equal(widen(w), expected)


# -- pickling and copying --------------------------------------------------------------------------------------

def weights_to_check():
    a, bf16, conv, table = made(1, (70, 40))  # (not a multiple of 32 along either axis)
    return {"bf16": bf16, "bf16 view": bf16[::2].T, "conv": conv, "table": table, "head": table.T,
            "rows": table[np.array([[3, 0], [69, 7]])]}


@pytest.mark.parametrize("name", list(weights_to_check()))
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_in_every_protocol_gives_the_same_weight(name, protocol):
    """Protocols 0 and 1 raised TypeError ("a class that defines __slots__ without defining __getstate__ cannot be
    pickled"). Now every protocol makes the weight again through its constructor (so a pickle is checked as a new
    weight is): same class, values, shape and int8 axis."""
    w = weights_to_check()[name]
    back = pickle.loads(pickle.dumps(w, protocol))
    assert type(back) is type(w) and back.shape == w.shape and getattr(back, "axis", None) == getattr(w, "axis", None)
    np.testing.assert_array_equal(widen(back), widen(w))


@pytest.mark.parametrize("name", list(weights_to_check()))
def test_copies_are_independent_and_keep_the_layout(name):
    w = weights_to_check()[name]
    deep, shallow = copy.deepcopy(w), copy.copy(w)
    np.testing.assert_array_equal(widen(deep), widen(w))
    np.testing.assert_array_equal(widen(shallow), widen(w))
    for attr in ("bits",) if isinstance(w, BFloat16Weight) else ("q", "scales"):
        assert not np.shares_memory(getattr(deep, attr), getattr(w, attr))
        for flag in ("C_CONTIGUOUS", "F_CONTIGUOUS"):  # (C reads a matrix in its order: a copy keeps it)
            if getattr(w, attr).flags[flag]:
                assert getattr(deep, attr).flags[flag], (attr, flag)


@needs_c
def test_a_pickled_int8_conv1d_weight_is_still_served_by_c():
    _, _, conv, _ = made()
    x = np.random.default_rng(2).standard_normal((2, 64), dtype=np.float32)
    assert ck.linear(x, conv) is not NotImplemented
    for back in (pickle.loads(pickle.dumps(conv, 0)), pickle.loads(pickle.dumps(conv)), copy.deepcopy(conv)):
        np.testing.assert_array_equal(ck.linear(x, back), ck.linear(x, conv))


# -- astype ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(weights_to_check()))
def test_astype_gives_the_values_in_that_dtype_as_torch_converts_them(name):
    """``w.astype(np.float32)``, as for an array, was AttributeError (np.asarray(w) worked, astype did not). It is
    the widened values (widen(w)) in that dtype, as torch converts a bfloat16 tensor (or the float32 values an
    int8 weight stands for) with .to(dtype); always a new array, also with copy=False (as ndarray.astype when
    the dtype differs)."""
    torch = pytest.importorskip("torch")
    w = weights_to_check()[name]
    if isinstance(w, BFloat16Weight):
        source = torch.from_numpy(np.ascontiguousarray(w.bits).view(np.int16)).view(torch.bfloat16)
    else:
        source = torch.from_numpy(widen(w))
    for dtype, torch_dtype in ((np.float32, torch.float32), (np.float16, torch.float16), (np.float64, torch.float64)):
        for got in (w.astype(dtype), w.astype(dtype, copy=False)):
            assert isinstance(got, np.ndarray) and got.dtype == dtype and got.shape == w.shape
            np.testing.assert_array_equal(got, source.to(torch_dtype).numpy())
    fresh = w.astype(np.float32, copy=False)
    fresh[...] = 0  # a new array: the weight keeps its values
    np.testing.assert_array_equal(widen(w), source.to(torch.float32).numpy())


# -- rows of a table ---------------------------------------------------------------------------------------

TABLE_ROWS = [np.array([[3, 0, 39], [7, 7, 1]]), 5, -1, slice(2, 9), slice(None, None, -3), (Ellipsis,),
              (slice(1, 4), Ellipsis), np.arange(40) % 3 == 0, None, (None, slice(1, 4)), (3, None), [1, 2],
              np.array(True), (slice(2, 5), slice(None))]


@pytest.mark.parametrize("rows", TABLE_ROWS, ids=repr)
def test_rows_of_a_table_widen_to_the_same_rows(rows):
    a, _, _, table = made(3, (40, 70))
    np.testing.assert_array_equal(widen(table[rows]), widen(table)[rows])


@pytest.mark.parametrize("index", [(slice(None), slice(1, 33)), ([1], [1]), (Ellipsis, slice(None, None, -1)),
                                   (0, 0), (slice(None), slice(None, 32)), (slice(None), 5), (Ellipsis, 0),
                                   (Ellipsis, None), (np.ones((40, 70), bool),)], ids=repr)
def test_an_index_into_the_axis_a_tables_blocks_run_along_is_refused(index):
    """An int8 table's scales are one per 32 weights along its last axis; an index that takes part of that axis
    took the same index of the scales, which then belonged to other weights: t[:, 1:33] and t[[1], [1]] were
    silently wrong values (each weight times another block's scale), others failed with a message about
    the scales' shape. Such an index is now refused, naming the axis."""
    a, _, _, table = made(3, (40, 70))
    with pytest.raises(IndexError, match="last axis"):
        table[index]


@pytest.mark.parametrize("index", [0, slice(1, 3), (Ellipsis, 0), [1, 2]], ids=repr)
def test_a_row_of_a_table_is_taken_whole(index):
    a, _, _, table = made(3, (40, 70))
    with pytest.raises(IndexError, match="last axis"):
        table[5][index]
    np.testing.assert_array_equal(widen(table[5][...]), widen(table)[5])


def test_rows_of_rows_of_a_table_widen_to_the_same_values():
    a, _, _, table = made(4, (40, 70))
    ids = np.array([[3, 0, 39], [7, 7, 1]])
    np.testing.assert_array_equal(widen(table[ids][1, ::-1]), widen(table)[ids][1, ::-1])
    np.testing.assert_array_equal(widen(table[ids][..., 0, :]), widen(table)[ids][..., 0, :])


# -- what the C core still checks itself ---------------------------------------------------------------------

@needs_c
def test_arrays_changed_in_place_to_what_c_would_read_past_are_declined():
    """The arrays stay NumPy arrays, whose shape and dtype can be set in place (``w.bits.dtype = np.uint8``,
    ``w.q.shape = ...``): no constructor sees that, so C still checks what it would read out of bounds on, and
    declines."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 64), dtype=np.float32)
    bf16 = BFloat16Weight.from_float32(rng.standard_normal((64, 48), dtype=np.float32))
    assert ck.linear(x, bf16) is not NotImplemented
    bf16.bits.dtype = np.uint8  # [64, 96] bytes: C would read 2 bytes per value, twice the array
    assert ck.linear(x, bf16) is NotImplemented
    q = Int8Weight.quantize(rng.standard_normal((64, 48), dtype=np.float32))
    rowwise = Int8Weight(np.ascontiguousarray(q.q), np.ascontiguousarray(q.scales), 0)  # (C reads this order too)
    assert ck.linear(x, rowwise) is not NotImplemented
    rowwise.q.shape = (16, 192)  # scales for 2 x 48 blocks, C would read 1 x 192
    assert ck.linear(x[:, :16], rowwise) is NotImplemented
    assert ck.linear(x, q) is not NotImplemented
    q.scales.shape = (1, 2, 48)  # (a scales array of another shape)
    assert ck.linear(x, q) is NotImplemented
