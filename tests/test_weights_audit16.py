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
