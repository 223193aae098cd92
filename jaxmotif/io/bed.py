"""BED regions: reading, parsing ``chrom:start-end`` strings, and checking against chromosome sizes.

Coordinates are 0-based half-open everywhere, as in BED: ``chr1:100-200`` is 100 bases,
``chr1[100]`` through ``chr1[199]``.
"""

import os
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from jaxmotif.io.fasta import _open_text, naming_hint

_HEADER_PREFIXES = ("#", "track", "browser")


class BedError(ValueError):
    """Malformed BED input or an invalid region; the message names the file and line or the region."""


class Region(NamedTuple):
    """A genomic interval, 0-based half-open; ``name`` is BED column 4 (``None`` if absent or ``'.'``)."""

    chrom: str
    start: int
    end: int
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.chrom}:{self.start}-{self.end}"


def _parse_coordinate(text: str, what: str) -> int:
    """Non-negative integer or ValueError with a message that fits after ``file:line:``."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not an integer") from None
    if value < 0:
        raise ValueError(f"{what} {value} is negative")
    return value


def _check_interval(chrom: str, start: int, end: int) -> None:
    if not chrom:
        raise ValueError("empty chromosome name")
    if end <= start:
        raise ValueError(f"end {end} <= start {start} (BED intervals are 0-based half-open and non-empty)")


def read_bed(path: str | os.PathLike) -> list[Region]:
    """Read the regions of a BED file (plain or gzip); columns beyond the fourth are ignored.

    Blank lines and ``#``, ``track`` and ``browser`` lines are skipped. Columns are tab-separated;
    lines without tabs are split on whitespace, which many hand-written files use.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    list of Region
        In file order.

    Raises
    ------
    BedError
        Naming file and line for fewer than 3 columns, a non-integer or negative coordinate, or
        ``end <= start``.
    """
    regions = []
    try:
        with _open_text(path) as handle:
            for line_no, raw in enumerate(handle, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip() or line.startswith(_HEADER_PREFIXES):
                    continue
                fields = line.split("\t") if "\t" in line else line.split()
                try:
                    if len(fields) < 3:
                        raise ValueError(
                            f"expected at least 3 columns (chrom, start, end), got {len(fields)}"
                        )
                    chrom = fields[0].strip()
                    start = _parse_coordinate(fields[1].strip(), "start")
                    end = _parse_coordinate(fields[2].strip(), "end")
                    _check_interval(chrom, start, end)
                except ValueError as err:
                    raise BedError(f"{path}:{line_no}: {err}") from None
                name = fields[3].strip() if len(fields) > 3 else ""
                regions.append(Region(chrom, start, end, name if name not in ("", ".") else None))
    except UnicodeDecodeError as err:
        raise BedError(f"{path}: not a text BED file ({err.reason} at byte {err.start})") from None
    return regions


def parse_region(text: str) -> Region:
    """Parse ``"chrom:start-end"`` (0-based half-open, as BED); commas in numbers are allowed.

    The last ``:`` separates the chromosome, so names containing ``:`` (e.g. HLA contigs) work.

    Raises
    ------
    BedError
        For anything else, naming the text.

    Examples
    --------
    >>> parse_region("chr1:1,000-2,000")
    Region(chrom='chr1', start=1000, end=2000, name=None)
    """
    chrom, colon, span = text.strip().rpartition(":")
    start_text, dash, end_text = span.partition("-")
    try:
        if not colon or not dash:
            raise ValueError("expected 'chrom:start-end'")
        start = _parse_coordinate(start_text.replace(",", "").strip(), "start")
        end = _parse_coordinate(end_text.replace(",", "").strip(), "end")
        _check_interval(chrom, start, end)
    except ValueError as err:
        raise BedError(f"invalid region {text!r}: {err}") from None
    return Region(chrom, start, end)


def validate_regions(regions: Iterable[Region], chrom_sizes: Mapping[str, int]) -> None:
    """Check that every region lies on a known chromosome and within its length.

    Validation happens before any device work so that a bad region fails fast, by name.

    Parameters
    ----------
    regions : iterable of Region
    chrom_sizes : mapping of str to int
        E.g. :attr:`jaxmotif.io.fasta.Genome.chrom_sizes`.

    Raises
    ------
    BedError
        Naming the first bad region (its index, coordinates and name) and the reason.
    """
    for index, region in enumerate(regions):
        label = f"region {index} ({region}" + (f" {region.name!r})" if region.name else ")")
        size = chrom_sizes.get(region.chrom)
        if size is None:
            known = list(chrom_sizes)
            shown = ", ".join(repr(c) for c in known[:5]) + (", ..." if len(known) > 5 else "")
            raise BedError(
                f"{label}: unknown chromosome {region.chrom!r} ({len(known)} known: {shown})"
                f"{naming_hint(region.chrom, known)}"
            )
        if region.start < 0 or region.end <= region.start:
            raise BedError(f"{label}: invalid interval (need 0 <= start < end)")
        if region.end > size:
            raise BedError(f"{label}: runs past the end of {region.chrom} (length {size})")


def parse_browser_region(text: str) -> Region:
    """Parse ``"chrom:start-end"`` as a genome browser shows it: 1-based, both ends inclusive.

    ``chr1:1,000,501-1,000,560`` is the 60 bases a browser labels 1,000,501 through 1,000,560, i.e.
    ``Region('chr1', 1000500, 1000560)`` in BED's 0-based half-open coordinates. Commas are allowed.

    Raises
    ------
    BedError
        For malformed text, a start below 1 or an end before the start, naming the text.
    """
    chrom, colon, span = text.strip().rpartition(":")
    start_text, dash, end_text = span.partition("-")
    try:
        if not colon or not dash:
            raise ValueError("expected 'chrom:start-end' (1-based, inclusive)")
        start = _parse_coordinate(start_text.replace(",", "").strip(), "start")
        end = _parse_coordinate(end_text.replace(",", "").strip(), "end")
        if start < 1:
            raise ValueError("start must be at least 1 (browser coordinates are 1-based)")
        if end < start:
            raise ValueError(f"end {end} < start {start}")
        if not chrom:
            raise ValueError("empty chromosome name")
    except ValueError as err:
        raise BedError(f"invalid region {text!r}: {err}") from None
    return Region(chrom, start - 1, end)
