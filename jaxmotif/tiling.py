"""Regions -> model windows, each base assigned to exactly one window.

Rules (issue 3):

- A region is tiled with windows of the model's length ``L`` at ``stride`` (default ``L``, so
  every base is scored once). The last window is shifted back to end at the region's end, so no
  base is dropped.
- A region shorter than ``L`` gets one window centred on it.
- Windows may run past a chromosome end; the caller pads those positions with N.
- With overlapping windows each base takes the window where it is most central (ties go to the
  earlier window). A window's assigned bases (``assign_start``, ``assign_end``) are the only ones
  it writes.
- Overlapping regions on one chromosome are merged first, so no base is assigned twice.
"""

from collections.abc import Iterable, Sequence
from typing import NamedTuple


class Window(NamedTuple):
    """One model window and the bases it is responsible for, 0-based half-open coordinates.

    ``start``/``end`` may run past the chromosome (negative start, end > length): those bases are
    N. ``assign_start <= assign_end`` lie inside both the window and the (merged) region.
    """

    chrom: str
    start: int
    end: int
    assign_start: int
    assign_end: int

    @property
    def offset(self) -> int:
        """Index of ``assign_start`` inside the window."""
        return self.assign_start - self.start


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted union of half-open intervals; overlapping ones are merged (touching ones are not)."""
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def window_starts(start: int, end: int, window: int, stride: int) -> list[int]:
    """Window starts covering ``[start, end)``: every ``stride``, the last shifted to end at ``end``."""
    if window < 1 or stride < 1:
        raise ValueError(f"window={window} and stride={stride} must be positive")
    if stride > window:
        raise ValueError(f"stride={stride} larger than the window ({window}) would leave bases unscored")
    length = end - start
    if length <= window:
        return [start - (window - length) // 2]
    starts = list(range(start, end - window, stride))
    starts.append(end - window)
    return starts


def tile_region(chrom: str, start: int, end: int, window: int, stride: int | None = None) -> list[Window]:
    """Windows of one region with the bases each is assigned (most central window wins)."""
    stride = window if stride is None else stride
    starts = window_starts(start, end, window, stride)
    windows = []
    lo = start
    for i, s in enumerate(starts):
        if i + 1 < len(starts):
            # Base x is at least as central in window i as in window i+1 iff
            # 2x + 1 <= s_i + s_{i+1} + window (comparing distances to the two centres).
            hi = (s + starts[i + 1] + window - 1) // 2 + 1
        else:
            hi = end
        hi = min(max(hi, lo), end, s + window)
        windows.append(Window(chrom, s, s + window, lo, hi))
        lo = hi
    return [w for w in windows if w.assign_end > w.assign_start]


def tile_regions(
    regions: Iterable[Sequence],
    window: int,
    stride: int | None = None,
    chrom_order: Sequence[str] | None = None,
) -> list[Window]:
    """Windows for many regions (anything with chrom, start, end first), sorted by chromosome and start.

    Overlapping regions on a chromosome are merged first. ``chrom_order`` (e.g. the FASTA's order)
    sorts chromosomes; otherwise they are sorted by name.
    """
    by_chrom: dict[str, list[tuple[int, int]]] = {}
    for region in regions:
        chrom, start, end = region[0], int(region[1]), int(region[2])
        if end <= start:
            raise ValueError(f"region {chrom}:{start}-{end} is empty")
        by_chrom.setdefault(chrom, []).append((start, end))
    order = list(chrom_order) if chrom_order is not None else sorted(by_chrom)
    missing = [c for c in by_chrom if c not in order]
    if missing:
        raise ValueError(f"chromosome {missing[0]!r} is not in chrom_order")
    windows = []
    for chrom in order:
        for start, end in merge_intervals(by_chrom.get(chrom, ())):
            windows.extend(tile_region(chrom, start, end, window, stride))
    return windows
