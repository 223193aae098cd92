"""What every command shares: one output policy, one target syntax, one memory option, one error line.

- Outputs: an output that exists is refused with a one-line error unless ``--overwrite`` is given;
  then the new output is written beside it and swapped in with a rename, so no file of an earlier
  run survives next to new ones and a failed run leaves the old output as it was. Parent folders
  are created. ``--resume`` (scans only) is the one way to continue into an existing store.
- Targets: ``--targets`` takes output names or indices, separated by commas or spaces
  (``--targets H3K4me1,H3K27ac``, ``--targets H3K4me1 6``).
- Memory: ``--max-memory`` (``4GB``, ``512MB``, ``2.5G``) bounds what each compiled call holds;
  the default is :func:`default_memory_budget`.
- Errors: a :class:`CliError` becomes ``error: <message>`` on stderr and exit status 1.
"""

import argparse
import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from jaxmotif.memory import CPU_MEMORY_BUDGET, DEVICE_MEMORY_FRACTION  # noqa: F401  (kept importable here)


class CliError(Exception):
    """Bad input or a refused output: reported as one ``error:`` line, exit status 1."""


def run_cli(
    body: Callable[[], int | None],
    *,
    catch: tuple[type[BaseException], ...] = (),
    interrupted: str | None = None,
) -> int:
    """Runs ``body``; a :class:`CliError` (or one of ``catch``) becomes one ``error:`` line and exit 1.

    ``interrupted``: if given, Ctrl-C becomes ``error: interrupted; <interrupted>`` and exit 130
    (the genome scans say what was kept).
    """
    try:
        return body() or 0
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        print(f"error: interrupted; {interrupted}", file=sys.stderr)
        return 130
    except (CliError, *catch) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


# ---- targets ------------------------------------------------------------------------------------


def add_targets_arg(parser: argparse.ArgumentParser, help_text: str = "") -> None:
    parser.add_argument(
        "--targets",
        nargs="+",
        metavar="NAME|INDEX",
        help=(help_text + " " if help_text else "")
        + "Output names or indices, separated by commas or spaces (default: every output).",
    )


def parse_targets(values: Sequence[str] | str | None) -> list[str | int] | None:
    """``["a,b", "3"]`` -> ``["a", "b", 3]``; None or nothing -> None (every output).

    A purely numeric item is an output index; anything else is an output name.
    """
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    items = [item for value in values for item in re.split(r"[,\s]+", value.strip()) if item]
    if not items:
        raise CliError("--targets names no output")
    return [int(item) if re.fullmatch(r"\d+", item) else item for item in items]


def resolve_cli_targets(model, values) -> tuple[int, ...]:
    """Output indices of ``--targets`` values for ``model`` (every output when None)."""
    targets = parse_targets(values)
    try:
        return model.target_indices(targets)
    except ValueError as err:
        raise CliError(f"--targets: {err}") from None


# ---- memory -------------------------------------------------------------------------------------

_UNITS = {
    "": 1,
    "B": 1,
    "K": 2**10,
    "KB": 2**10,
    "M": 2**20,
    "MB": 2**20,
    "G": 2**30,
    "GB": 2**30,
    "T": 2**40,
}


def parse_memory(text: str) -> int:
    """``"4GB"`` / ``"512M"`` / ``"2.5G"`` / ``"1000000"`` -> bytes (binary units)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper().removesuffix("IB") if match else ""
    if not match or unit not in _UNITS:
        raise CliError(f"--max-memory {text!r}: expected a size such as 4GB or 512MB")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise CliError(f"--max-memory {text!r} must be positive")
    return size


def default_memory_budget() -> int:
    """Bytes a compiled call may hold: :func:`jaxmotif.memory.default_memory_budget`."""
    from jaxmotif.memory import default_memory_budget as default

    return default()


def add_max_memory_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-memory",
        type=str,
        default=None,
        metavar="SIZE",
        help="Memory one compiled call may hold, e.g. 4GB or 512MB; chunk sizes are chosen from it "
        "(default: half the accelerator's free memory, or 4GB on a CPU).",
    )


def memory_budget(args) -> int:
    """Bytes from ``--max-memory``, or the default budget."""
    value = getattr(args, "max_memory", None)
    return default_memory_budget() if value is None else parse_memory(value)


# ---- outputs ------------------------------------------------------------------------------------


def add_overwrite_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace an existing output (written beside it, then swapped in whole; nothing stale is left).",
    )


def check_output(path: str | os.PathLike, overwrite: bool, flag: str = "--out") -> Path:
    """Refuses an existing ``path`` unless ``overwrite``; call it before any slow work."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise CliError(f"{flag} {path} exists; pass --overwrite to replace it")
    check_output_parent(path, flag)
    return path


def check_output_parent(path: str | os.PathLike, flag: str = "--out") -> None:
    """Refuses ``path`` when the nearest existing folder above it is a file, not a folder.

    Parent folders are created at write time; this says why that would fail before any work
    (``mkdir`` would raise ``FileExistsError: 'x'`` after the compute).
    """
    for parent in Path(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise CliError(f"{flag} {path}: {parent} is a file, not a folder")
            return


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def new_output(
    path: str | os.PathLike, overwrite: bool, *, folder: bool, flag: str = "--out"
) -> Iterator[Path]:
    """Yields a fresh temporary file or folder beside ``path``; on success it becomes ``path``.

    An existing ``path`` is refused unless ``overwrite``; with it, the old output is replaced only
    once the new one is complete (a failure leaves the old one untouched and removes the new).
    Parent folders are created.
    """
    path = check_output(path, overwrite, flag)
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    else:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o755 if folder else 0o644)  # mkdtemp/mkstemp create 0700/0600
        if path.exists() or path.is_symlink():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


# ---- inputs -------------------------------------------------------------------------------------


def add_strict_bases_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict-bases",
        action="store_true",
        help="refuse IUPAC ambiguity codes (R, Y, K, ...) in FASTA input instead of reading them as N",
    )


def read_fasta_records(path: str | os.PathLike, strict_bases: bool = False, flag: str = "--fasta") -> list:
    """Every record of a FASTA file, IUPAC codes read as N (one ``warning:`` line with the count).

    With ``strict_bases`` an IUPAC code is refused by record and position instead. Other invalid
    characters are left for the encoder, which names them the same way.
    """
    tally = IupacTally()
    out = list(iter_fasta_records(path, flag, tally))
    tally.report(path, strict_bases, flag)
    return out


class IupacTally:
    """IUPAC codes counted over records (for :func:`iter_fasta_records`), reported in one line."""

    def __init__(self):
        self.total = 0
        self.first: tuple[str, int, str] | None = None  # (record, position, code)

    def report(self, path, strict_bases: bool, flag: str = "--fasta") -> None:
        """With ``strict_bases`` any code is a :class:`CliError`; else one ``warning:`` line on stderr."""
        if not self.total:
            return
        name, pos, char = self.first
        if strict_bases:
            raise CliError(
                f"{flag} {path}: record {name!r} position {pos}: IUPAC code {char!r} "
                f"({self.total} in all; --strict-bases refuses them)"
            )
        print(
            f"warning: {flag} {path}: {self.total} IUPAC ambiguity code(s) read as N "
            f"(first: record {name!r} position {pos} {char!r}); --strict-bases refuses them",
            file=sys.stderr,
        )


def iter_fasta_records(
    path: str | os.PathLike, flag: str = "--fasta", tally: IupacTally | None = None
) -> Iterator:
    """The records of :func:`read_fasta_records` one at a time (memory: one record), IUPAC codes
    read as N and counted in ``tally`` (report them with ``tally.report`` once the file is read).

    A missing file or malformed FASTA is a :class:`CliError`, raised when the reader gets to it.
    """
    from jaxmotif.io.fasta import FastaError, FastaRecord, iter_fasta
    from jaxmotif.sequence import iupac_to_n

    if not Path(path).is_file():
        raise CliError(f"{flag} {path}: no such file")
    records = iter_fasta(path)
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except FastaError as err:
            raise CliError(str(err)) from None
        text, count = iupac_to_n(record.sequence)
        if count and tally is not None:
            if tally.first is None:
                pos = next(i for i, (a, b) in enumerate(zip(record.sequence, text, strict=True)) if a != b)
                tally.first = (record.name, pos, record.sequence[pos])
            tally.total += count
        yield FastaRecord(record.name, text) if count else record
