"""Which of several equal scores comes first, as transformers' beam search and Top-H on the CPU decide it.

Beam search keeps the k best candidates with ``torch.topk`` (Top-H sampling its 100 best tokens), which does not
sort stably: among equal scores its order follows libstdc++'s ``std::partial_sort`` or ``std::nth_element`` then
``std::sort``, whichever torch's CPU kernel uses. Ties are rare with trained weights but certain at max_length (every
candidate ends, the running beams all score -1e9) and with constraints that leave fewer than ``2 * num_beams``
tokens; which tied beam runs on decides the rows of the next step's scores, of ``beam_indices`` and of the returned
cache (for Top-H, which of equal tokens are kept). So minigpt2's beam search (beam.py, ``_best``) and
TopHLogitsWarper replay those algorithms for rows with a tie, and only for them: nothing here changes which scores
win, only the order of equal ones. A learner can skip this file.
"""
from __future__ import annotations

import numpy as np

__all__ = ["torch_topk_order"]


def torch_topk_order(values, k):
    """torch.topk(values, k).indices on the CPU, replaying its kernel on (value, index) pairs with the comparison
    "greater value": for k * 64 <= len(values), libstdc++'s ``std::partial_sort`` (a heap of the k best, then
    heap-sorted); otherwise ``std::nth_element`` (median-of-three partitions while more than 3 remain, then an
    insertion sort) followed by ``std::sort`` of the first k - 1. Checked against torch.topk on thousands of
    tie-heavy rows (tests/test_generation_parity5.py; k = 100, Top-H's: tests/test_hf5_newuser11.py)."""
    if k * 64 <= len(values):
        return _partial_sort_order(values, k)
    q = list(zip(values.tolist(), range(len(values))))
    first, last, nth = 0, len(q), k - 1
    while last - first > 3:  # (the depth limit, 2 log2(n) partitions, is never reached at these sizes)
        lo = _partition_around_median(q, first, last)
        first, last = (lo, last) if lo <= nth else (first, lo)
    _insertion_sort(q, first, last)
    _std_sort(q, 0, k - 1)
    return [index for _, index in q[:k]]


def _partition_around_median(q, first, last):
    """libstdc++'s ``__unguarded_partition_pivot``: the median of q[first + 1], the middle and q[last - 1] moved to
    q[first], then the others split around it (greater ones first); returns where the second part starts."""
    a, b, c = first + 1, first + (last - first) // 2, last - 1
    if q[a][0] > q[b][0]:
        pivot = b if q[b][0] > q[c][0] else c if q[a][0] > q[c][0] else a
    else:
        pivot = a if q[a][0] > q[c][0] else c if q[b][0] > q[c][0] else b
    q[first], q[pivot] = q[pivot], q[first]
    lo, hi = first + 1, last
    while True:  # libstdc++'s unguarded partition around q[first]
        while q[lo][0] > q[first][0]:
            lo += 1
        hi -= 1
        while q[first][0] > q[hi][0]:
            hi -= 1
        if lo >= hi:
            return lo
        q[lo], q[hi] = q[hi], q[lo]
        lo += 1


def _std_sort(q, first, last):
    """libstdc++'s ``std::sort`` of q[first:last]: partitions until every part holds 16 pairs or fewer (a part still
    larger after 2 log2(n) levels is heap-sorted), then one insertion sort of the whole range."""
    _introsort_loop(q, first, last, depth=2 * ((last - first).bit_length() - 1))
    _insertion_sort(q, first, last)


def _introsort_loop(q, first, last, depth):
    while last - first > 16:
        if depth == 0:
            q[first:last] = _heap_sorted(q[first:last])
            return
        depth -= 1
        cut = _partition_around_median(q, first, last)
        _introsort_loop(q, cut, last, depth)  # the second part, then this loop on the first
        last = cut


def _insertion_sort(q, first, last):
    """Each pair in turn moves left past the pairs of strictly lower value (libstdc++'s insertion sorts)."""
    for i in range(first + 1, last):
        item, j = q[i], i
        while j > first and item[0] > q[j - 1][0]:
            q[j] = q[j - 1]
            j -= 1
        q[j] = item


def _partial_sort_order(values, k):
    """libstdc++'s ``std::partial_sort(q, q + k, q.end(), greater)``: a heap of the first k pairs (its top the
    worst kept), each later pair that beats the top replacing it, then the heap sorted. A pair enters only if it
    beats the k-th best of those before it, at least the worst of the first k: the others are skipped at once."""
    heap = _made_heap(list(zip(values[:k].tolist(), range(k))))
    worst_first = values[:k].min()
    for i in (k + np.flatnonzero(values[k:] > worst_first)).tolist():
        if values[i] > heap[0][0]:
            _adjust_heap(heap, 0, k, (float(values[i]), i))
    return [index for _, index in _sorted_heap(heap)]


def _heap_sorted(pairs):
    """libstdc++'s heap sort (``std::partial_sort`` of the whole range), best first."""
    return _sorted_heap(_made_heap(list(pairs)))


def _made_heap(heap):
    for parent in range((len(heap) - 2) // 2, -1, -1):
        _adjust_heap(heap, parent, len(heap), heap[parent])
    return heap


def _sorted_heap(heap):
    for last in range(len(heap) - 1, 0, -1):  # sort_heap: pop the worst to the end, repeatedly
        top, heap[last] = heap[last], heap[0]
        _adjust_heap(heap, 0, last, top)
    return heap


def _adjust_heap(heap, hole, length, item):
    """libstdc++'s ``__adjust_heap`` for a heap whose top is its lowest value: sift the hole at ``hole`` down to a
    leaf (towards the lower child, the right one on ties), then push ``item`` up from there."""
    top, child = hole, hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if heap[child][0] > heap[child - 1][0]:
            child -= 1
        heap[hole] = heap[child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        heap[hole] = heap[child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and heap[parent][0] > item[0]:
        heap[hole] = heap[parent]
        hole, parent = parent, (parent - 1) // 2
    heap[hole] = item
