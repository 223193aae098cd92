"""FASTA input: small multi-record files in memory, big genomes by random access (pyfaidx).

:func:`read_fasta` reads every record of a small file (plain or gzip) and checks its structure;
:func:`iter_fasta` yields the same records one at a time, for files too large to hold.
:class:`Genome` wraps ``pyfaidx.Fasta`` for chromosome-scale references: windows are fetched
0-based half-open, and windows running past a chromosome end are padded with ``N`` so that every
window has the requested length (the one-hot of ``N`` is an all-zero row).
"""

import gzip
import io
import os
from collections.abc import Iterator
from typing import NamedTuple, TextIO

_GZIP_MAGIC = b"\x1f\x8b"


class FastaError(ValueError):
    """Malformed FASTA input; the message names the file and the line."""


class GenomeError(ValueError):
    """A genome lookup failed: unknown chromosome, bad range, or an unreadable FASTA."""


class FastaRecord(NamedTuple):
    """One FASTA record: ``name`` is the first word of the header, ``sequence`` as written (case kept)."""

    name: str
    sequence: str


def _is_gzip(path: str | os.PathLike) -> bool:
    """Whether the file starts with the gzip magic bytes (bgzip output is gzip-compatible)."""
    with open(path, "rb") as probe:
        return probe.read(2) == _GZIP_MAGIC


def _open_binary(path: str | os.PathLike):
    """The bytes of ``path``, gzip (and so bgzip) decompressed when it starts with the gzip magic."""
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _open_text(path: str | os.PathLike) -> TextIO:
    """Open a text file, decompressing gzip when the file starts with the gzip magic bytes.

    Sniffing the content rather than the suffix handles ``.fa.gz``, ``.fasta.bgz`` and misnamed
    files alike.
    """
    if _is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_fasta(path: str | os.PathLike) -> list[FastaRecord]:
    """Read all records of a small FASTA file (optionally gzip-compressed).

    Sequence lines are concatenated with surrounding whitespace removed; blank lines are ignored.
    Bases are not validated here: :func:`jaxmotif.sequence.one_hot` does that and names the record.
    For a file too large to hold, :func:`iter_fasta` yields the same records one at a time.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    list of FastaRecord
        In file order.

    Raises
    ------
    FastaError
        One line naming file and line for: an empty file, sequence data before the first ``>``
        header, a header without a name, a record without sequence, or undecodable bytes.
    """
    return list(iter_fasta(path))


def iter_fasta(path: str | os.PathLike) -> Iterator[FastaRecord]:
    """The records of :func:`read_fasta`, yielded one at a time as the file is read (memory: one record).

    Raises the same :class:`FastaError` s, each when the reader gets to its line: a record is
    yielded only once it is complete, so a caller may have consumed earlier records before an
    error in a later one.
    """
    name: str | None = None
    header_line = 0
    chunks: list[str] = []
    line_no = 0
    count = 0

    def finished() -> FastaRecord:
        if not chunks:
            raise FastaError(f"{path}:{header_line}: record {name!r} has no sequence")
        return FastaRecord(name, "".join(chunks))

    try:
        with _open_text(path) as handle:
            for line_no, raw in enumerate(handle, start=1):
                line = raw.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    if name is not None:
                        count += 1
                        yield finished()
                    words = line[1:].split()
                    if not words:
                        raise FastaError(f"{path}:{line_no}: header '>' has no record name")
                    name, header_line, chunks = words[0], line_no, []
                elif name is None:
                    raise FastaError(
                        f"{path}:{line_no}: sequence data before the first '>' header "
                        f"(starts with {line[:20]!r})"
                    )
                else:
                    chunks.append(line)
            if name is not None:
                count += 1
                yield finished()
    except UnicodeDecodeError as err:
        raise FastaError(f"{path}: not a text FASTA file ({err.reason} at byte {err.start})") from None
    except (gzip.BadGzipFile, EOFError) as err:
        raise FastaError(f"{path}: corrupt gzip data ({err})") from None
    if not count:
        what = "empty file" if line_no == 0 else f"only {line_no} blank line(s)"
        raise FastaError(f"{path}: no FASTA records ({what})")


def naming_hint(chrom: str, known) -> str:
    """``"; did you mean 'chr1'? ..."`` when ``chrom`` is in ``known`` under the other naming style.

    UCSC names chromosomes ``chr1`` ... ``chrM``, Ensembl and NCBI ``1`` ... ``MT``; a genome from one
    and a BED or bigWig from the other share no names. Empty when no such counterpart is known.
    """
    known = set(known)
    if chrom.startswith("chr"):
        candidates = [chrom[3:], "MT" if chrom == "chrM" else None]
    else:
        candidates = ["chr" + chrom, "chrM" if chrom == "MT" else None]
    for candidate in candidates:
        if candidate and candidate in known:
            return (
                f"; did you mean {candidate!r}? (the files name chromosomes differently, "
                "UCSC 'chr1' vs Ensembl '1': rename one of them)"
            )
    return ""


# Said after pyfaidx's indexing errors: what random access needs and one way to get there.
_REWRAP = (
    "; random access (pyfaidx, like samtools faidx) needs every line of a record but its last to "
    "have the same width and no sequence after a blank line: rewrap it, e.g. "
    "`seqkit seq -w 60 in.fa > out.fa`"
)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0].rstrip(".") if text else type(err).__name__


def _refuse_bare_cr(path: str) -> None:
    """:class:`GenomeError` for a FASTA with classic-Mac ``\\r`` line endings (no ``\\n``).

    pyfaidx sees such a file as one header line and indexes every chromosome but the first as
    missing and the first as empty, which would surface later as a misleading "unknown chromosome".
    The first 64 KiB (decompressed) decide; ``\\r\\n`` (Windows) is fine.
    """
    try:
        with _open_binary(path) as handle:
            head = handle.read(1 << 16)
    except (OSError, EOFError):
        return  # unreadable or corrupt: pyfaidx says why
    if b"\r" in head and b"\n" not in head:
        raise GenomeError(
            f"cannot index genome FASTA {path}: its lines end in a bare carriage return (old Mac "
            "line endings); convert them, e.g. `tr '\\r' '\\n' < in.fa > out.fa`"
        )


def _write_index_past_blank_lines(path: str) -> bool:
    """Writes ``path.fai`` when the FASTA's only irregularity is blank lines; else False, nothing written.

    The samtools index (name, length, offset of the first base, bases per line, bytes per line)
    locates base ``i`` of a record at ``offset + (i // bases) * bytes + i % bases``; blank (or
    whitespace-only) lines after a record's last sequence line hold no base and change none of
    that. Everything else is checked as pyfaidx and samtools do: within a record every line but
    the last has the same width, and no sequence follows a shorter or blank line. Plain files only
    (a bgzip index also needs block offsets). One pass over the file, only when pyfaidx refused it.
    """
    if _is_gzip(path):
        return False
    rows: list[list] = []  # [name, length, offset, bases per line, bytes per line, closed]
    offset = 0
    with open(path, "rb") as handle:
        for raw in handle:
            offset += len(raw)
            body = raw.rstrip(b"\r\n")
            if raw.startswith(b">"):
                words = body[1:].split()
                if not words:
                    return False
                try:
                    rows.append([words[0].decode("utf-8"), 0, offset, 0, 0, False])
                except UnicodeDecodeError:
                    return False
            elif not body.strip():
                if rows:
                    rows[-1][5] = True  # only blank lines until the next header
            elif not rows or rows[-1][5]:
                return False  # text before the first header, or sequence after a short/blank line
            else:
                row = rows[-1]
                if row[3] == 0:
                    row[3], row[4] = len(body), len(raw)
                elif len(body) != row[3] or len(raw) != row[4]:
                    if len(body) > row[3]:
                        return False
                    row[5] = True  # a shorter line ends the record
                row[1] += len(body)
    names = [row[0] for row in rows]
    if not rows or len(set(names)) != len(names):
        return False
    index = f"{path}.fai"
    temporary = f"{index}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w") as out:
            out.writelines(f"{n}\t{length}\t{o}\t{b}\t{w}\n" for n, length, o, b, w, _ in rows)
        os.replace(temporary, index)
    except OSError as err:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise GenomeError(f"cannot index genome FASTA {path}: cannot write {index}: {err}") from None
    return True


def _import_pyfaidx():
    try:
        import pyfaidx
    except ImportError as err:
        raise ImportError(
            "reading genomes needs pyfaidx; install it with: pip install 'jaxmotif[genome]'"
        ) from err
    return pyfaidx


class Genome:
    """Random access to a (large) FASTA reference through ``pyfaidx``.

    The ``.fai`` index is built beside the FASTA on first use (the folder must be writable then).
    Compressed references must be bgzip-compressed, as pyfaidx requires. Line endings may be
    ``\n`` or ``\r\n``; blank lines may follow any record (pyfaidx alone takes one ``\n``). Other
    irregular files (uneven line widths within a record, old-Mac ``\r`` endings, duplicate names)
    are refused with one :class:`GenomeError` line that names the file and the fix.

    Parameters
    ----------
    path : str or os.PathLike
        FASTA file, plain or bgzip.
    uppercase : bool
        Return uppercase bases; by default soft-masked (lowercase) bases are kept as stored,
        which the one-hot encoder accepts.

    Examples
    --------
    >>> with Genome("hg38.fa") as genome:                     # doctest: +SKIP
    ...     window = genome.fetch("chr1", -10, 990)            # 10 'N's, then chr1[0:990]
    """

    def __init__(self, path: str | os.PathLike, *, uppercase: bool = False):
        pyfaidx = _import_pyfaidx()
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"genome FASTA not found: {self.path}")
        gzipped = _is_gzip(self.path)
        # pyfaidx picks its reader by the suffix: a gzip file named .fa would fail to decode.
        if gzipped and not self.path.lower().endswith((".gz", ".bgz")):
            raise GenomeError(
                f"cannot index genome FASTA {self.path}: it is gzip-compressed but not named .gz or .bgz "
                "(random access needs bgzip and that suffix: `gunzip -c in > g.fa; bgzip g.fa`)"
            )
        if not gzipped and self.path.lower().endswith((".gz", ".bgz")):
            raise GenomeError(
                f"cannot index genome FASTA {self.path}: it is named .gz but not compressed; rename it"
            )
        _refuse_bare_cr(self.path)

        def open_fasta():
            return pyfaidx.Fasta(self.path, as_raw=True, sequence_always_upper=uppercase)

        try:
            try:
                self._fasta = open_fasta()
            except (pyfaidx.FastaIndexingError, RuntimeError):
                # pyfaidx allows one "\n" after a record's last line; more blank lines (or a
                # "\r\n" one) hold no base, so the index that ignores them is exact: write it.
                if not _write_index_past_blank_lines(self.path):
                    raise
                self._fasta = open_fasta()
        except pyfaidx.FastaIndexingError as err:
            hint = _REWRAP if "line length" in str(err).lower() else ""
            raise GenomeError(f"cannot index genome FASTA {self.path}: {_first_line(err)}{hint}") from err
        except RuntimeError as err:
            # pyfaidx's check_bad_lines raises a bare RuntimeError (its text asks for a bug report)
            # for some blank-line patterns; those the index above could not take have sequence
            # after a blank line.
            entry = str(err).partition(" at entry ")[2].partition("Please report")[0]
            raise GenomeError(
                f"cannot index genome FASTA {self.path}: blank lines inside or after record {entry!r}"
                f"{_REWRAP}"
            ) from err
        except (pyfaidx.UnsupportedCompressionFormat, ValueError) as err:
            raise GenomeError(f"cannot index genome FASTA {self.path}: {_first_line(err)}") from err
        except OSError as err:
            # e.g. pyfaidx cannot write the .fai beside a FASTA in a read-only folder
            raise GenomeError(f"cannot index genome FASTA {self.path}: {_first_line(err)}") from err
        except ImportError as err:
            # pyfaidx reads bgzip through Biopython (in jaxmotif[genome]; a bare install may lack it)
            raise GenomeError(
                f"cannot read bgzip FASTA {self.path}: {_first_line(err)} (pip install biopython, "
                "or decompress it)"
            ) from err
        # Sizes are read once from the index so fetch() needs no pyfaidx call for bounds checks.
        self._sizes = {name: len(record) for name, record in self._fasta.records.items()}

    @property
    def chrom_sizes(self) -> dict[str, int]:
        """Chromosome name -> length, in FASTA order (a copy)."""
        return dict(self._sizes)

    def __contains__(self, chrom: object) -> bool:
        return chrom in self._sizes

    def chrom_size(self, chrom: str) -> int:
        """Length of ``chrom``; :class:`GenomeError` naming it if unknown."""
        try:
            return self._sizes[chrom]
        except KeyError:
            known = list(self._sizes)
            shown = ", ".join(repr(c) for c in known[:5]) + (", ..." if len(known) > 5 else "")
            raise GenomeError(
                f"unknown chromosome {chrom!r} in {self.path} ({len(known)} known: {shown})"
                f"{naming_hint(chrom, known)}"
            ) from None

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Bases ``[start, end)`` of ``chrom`` (0-based, half-open), ``N``-padded past either end.

        Parameters
        ----------
        chrom : str
        start, end : int
            ``start`` may be negative and ``end`` may exceed the chromosome length; those positions
            come back as ``'N'``, so the result always has length ``end - start``.

        Returns
        -------
        str, length end - start

        Raises
        ------
        GenomeError
            For an unknown chromosome (listing a few known ones) or ``end < start``.
        """
        size = self.chrom_size(chrom)
        start, end = int(start), int(end)
        if end < start:
            raise GenomeError(f"invalid range {chrom}:{start}-{end}: end < start")
        inner_start, inner_end = max(start, 0), min(end, size)
        if inner_start >= inner_end:
            return "N" * (end - start)
        bases = str(self._fasta[chrom][inner_start:inner_end])
        return "N" * (inner_start - start) + bases + "N" * (end - inner_end)

    def close(self) -> None:
        """Release the file handle (safe to call twice)."""
        self._fasta.close()

    def __enter__(self) -> "Genome":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Genome({self.path!r}, {len(self._sizes)} sequences)"
