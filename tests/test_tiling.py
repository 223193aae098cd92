"""Tiling: every base of every region is assigned to exactly one window, the most central one."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmotif.tiling import Window, merge_intervals, tile_region, tile_regions, window_starts


def coverage(windows, length):
    counts = np.zeros(length, int)
    for w in windows:
        assert w.start <= w.assign_start < w.assign_end <= w.end
        counts[w.assign_start : w.assign_end] += 1
    return counts


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 500),
    length=st.integers(1, 900),
    window=st.integers(1, 200),
    stride_frac=st.floats(0.01, 1.0),
)
def test_every_base_exactly_once_and_most_central(start, length, window, stride_frac):
    stride = max(1, int(window * stride_frac))
    windows = tile_region("c", start, start + length, window, stride)
    counts = coverage(windows, start + length)
    assert np.all(counts[start:] == 1) and np.all(counts[:start] == 0)
    assert all(w.end - w.start == window for w in windows)
    # No other window is strictly more central for any base (a naive check over all windows).
    centres = np.array([w.start + window / 2 for w in windows])
    for w in windows:
        for x in range(w.assign_start, w.assign_end):
            d = np.abs(x + 0.5 - centres)
            assert abs(x + 0.5 - (w.start + window / 2)) <= d.min() + 1e-9


def test_default_stride_and_short_regions():
    # 250 bp with window 100: windows at 0, 100 and the last shifted back to end at 250.
    assert window_starts(0, 250, 100, 100) == [0, 100, 150]
    ws = tile_region("c", 0, 250, 100)
    assert [(w.assign_start, w.assign_end) for w in ws] == [(0, 100), (100, 175), (175, 250)]
    # A short region gets one centred window; it may run past the chromosome start (N-padded).
    (w,) = tile_region("c", 10, 31, 100)
    assert (w.start, w.end, w.assign_start, w.assign_end) == (-29, 71, 10, 31)
    assert window_starts(0, 100, 100, 100) == [0]


def test_overlapping_regions_merge_and_chrom_order():
    assert merge_intervals([(5, 10), (0, 6), (10, 12), (20, 30)]) == [(0, 10), (10, 12), (20, 30)]
    regions = [("b", 0, 50), ("a", 10, 90), ("a", 50, 120), ("b", 40, 60)]
    ws = tile_regions(regions, 64, chrom_order=["b", "a"])
    assert [w.chrom for w in ws][:1] == ["b"]
    counts_a = coverage([w for w in ws if w.chrom == "a"], 200)
    assert np.all(counts_a[10:120] == 1) and counts_a.sum() == 110
    assert isinstance(ws[0], Window)


def test_bad_arguments():
    with pytest.raises(ValueError, match="stride=20 larger"):
        window_starts(0, 100, 10, 20)
    with pytest.raises(ValueError, match="is empty"):
        tile_regions([("a", 5, 5)], 10)
    with pytest.raises(ValueError, match="'z' is not in chrom_order"):
        tile_regions([("z", 0, 5)], 10, chrom_order=["a"])
