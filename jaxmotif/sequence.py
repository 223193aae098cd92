"""DNA sequence encoding: one-hot, index tracks, decoding and reverse complement.

Conventions (see ``DESIGN.md``): one-hot is channels-last, ``shape=(L, 4)`` for one sequence and
``shape=(N, L, 4)`` for a batch, ``float32``, with columns in the model's alphabet order (a
permutation of ``"ACGT"``, default ``"ACGT"``). ``N``/``n`` is an all-zero row. Lowercase
(soft-masked) bases encode like uppercase. IUPAC ambiguity codes (``RYSWKMBDHV``, any case; real
assemblies carry a few) are an error by default and read as N with ``iupac="n"``
(:func:`count_iupac` counts them, :func:`check_bases` validates a sequence in one pass). Any other
character is an error that names the record, the 0-based position and the character.

Encoding goes through a 256-entry byte lookup table, so whole chromosomes encode in one vectorised
NumPy pass; no Python code runs per base.
"""

from collections.abc import Sequence

import numpy as np

DNA_ALPHABET = "ACGT"
COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}

# Lookup-table codes besides the column index 0..3.
_N_CODE = -1
_INVALID_CODE = -2
_RC_TRANSLATION = str.maketrans("ACGTNacgtn", "TGCANtgcan")
_VALID_BYTES = b"ACGTNacgtn"
IUPAC_AMBIGUITY = "RYSWKMBDHV"  # the IUPAC codes besides ACGTN; read as N with iupac="n"
IUPAC_MODES = ("error", "n")


class SequenceError(ValueError):
    """A sequence holds a character that is not a base (``ACGTN``, any case), or has the wrong length.

    Attributes ``record`` (name or ``None``), ``position`` (0-based, or ``None``) and ``char``
    (the offending character, or ``None``) say where the problem is.
    """

    def __init__(
        self, message: str, *, record: str | None = None, position: int | None = None, char: str | None = None
    ):
        super().__init__(message)
        self.record = record
        self.position = position
        self.char = char


def check_alphabet(alphabet: str) -> str:
    """Return ``alphabet`` in upper case after checking it is a permutation of ``"ACGT"``.

    Raises
    ------
    ValueError
        If ``alphabet`` is not four distinct letters A, C, G, T in some order.
    """
    if not isinstance(alphabet, str) or sorted(alphabet.upper()) != sorted(DNA_ALPHABET):
        raise ValueError(f"alphabet={alphabet!r} must be a permutation of 'ACGT'")
    return alphabet.upper()


def _lookup_table(alphabet: str, iupac: str = "error") -> np.ndarray:
    """Byte -> column code table, ``shape=(256,)``, int8: 0..3 for bases, -1 for N, -2 otherwise.

    ``iupac="n"`` maps the IUPAC ambiguity codes to -1 (N) too. Built per call (a few dozen
    assignments) rather than cached, so there is no module-level state.
    """
    if iupac not in IUPAC_MODES:
        raise ValueError(f"iupac={iupac!r} must be one of {IUPAC_MODES}")
    table = np.full(256, _INVALID_CODE, dtype=np.int8)
    if iupac == "n":
        for code in IUPAC_AMBIGUITY:
            table[ord(code)] = _N_CODE
            table[ord(code.lower())] = _N_CODE
    for column, base in enumerate(alphabet):
        table[ord(base)] = column
        table[ord(base.lower())] = column
    table[ord("N")] = _N_CODE
    table[ord("n")] = _N_CODE
    return table


def _invalid_base_error(record: str | None, position: int, char: str) -> SequenceError:
    where = f"record {record!r} position {position}" if record is not None else f"position {position}"
    iupac = f"; {char!r} is an IUPAC ambiguity code" if char.upper() in IUPAC_AMBIGUITY else ""
    return SequenceError(
        f"{where}: invalid base {char!r} (allowed: ACGTN, any case{iupac})",
        record=record,
        position=position,
        char=char,
    )


def _as_bytes(seq: str | bytes) -> bytes:
    """One byte per character of ``seq``.

    Non-ASCII characters become ``b"?"`` (itself invalid), so byte offsets stay character
    positions and the lookup table finds the first invalid character wherever it is.
    """
    if isinstance(seq, bytes | bytearray | memoryview):
        return bytes(seq)
    if not isinstance(seq, str):
        raise TypeError(f"sequence must be str or bytes, got {type(seq).__name__}")
    return seq.encode("ascii", errors="replace")


def _char_at(seq: str | bytes, position: int) -> str:
    """The original character at ``position`` (for messages: ``_as_bytes`` may have replaced it)."""
    return seq[position] if isinstance(seq, str) else chr(seq[position])


def _encode_bytes(data: bytes, alphabet: str, iupac: str = "error") -> np.ndarray:
    """Codes of ``data`` through the lookup table, ``shape=(len(data),)``, int8 (may contain -2)."""
    return _lookup_table(alphabet, iupac)[np.frombuffer(data, dtype=np.uint8)]


def _first_invalid(codes: np.ndarray) -> int | None:
    bad = codes == _INVALID_CODE
    if not bad.any():
        return None
    return int(np.argmax(bad))


def count_iupac(seq: str | bytes) -> tuple[int, int | None]:
    """(number of IUPAC ambiguity codes in ``seq``, 0-based position of the first, or None)."""
    table = np.zeros(256, dtype=bool)
    for code in IUPAC_AMBIGUITY:
        table[ord(code)] = table[ord(code.lower())] = True
    hits = table[np.frombuffer(_as_bytes(seq), dtype=np.uint8)]
    count = int(hits.sum())
    return count, (int(np.argmax(hits)) if count else None)


def check_bases(seq: str | bytes, *, name: str | None = None, iupac: str = "n") -> int:
    """Validates ``seq`` in one vectorised pass; returns its number of IUPAC ambiguity codes.

    Raises :class:`SequenceError` (naming record, position and character) for a character that is
    neither ``ACGTN`` nor, with ``iupac="n"``, an IUPAC code; with ``iupac="error"`` for those too.
    """
    codes = _encode_bytes(_as_bytes(seq), DNA_ALPHABET, iupac)
    position = _first_invalid(codes)
    if position is not None:
        raise _invalid_base_error(name, position, _char_at(seq, position))
    return count_iupac(seq)[0] if iupac == "n" else 0


def encode_indices(
    seq: str | bytes, alphabet: str = DNA_ALPHABET, *, name: str | None = None, iupac: str = "error"
) -> np.ndarray:
    """Column index of each base in ``alphabet``; ``-1`` for ``N``.

    This compact form (one byte per base) is what genome reference tracks store; expand it with
    :func:`one_hot_from_indices`, on the host or on the device.

    Parameters
    ----------
    seq : str or bytes, length L
        Bases ``ACGTN`` in any case.
    alphabet : str
        Column order, a permutation of ``"ACGT"``.
    name : str, optional
        Record name used in error messages.
    iupac : ``"error"`` (default) or ``"n"``
        What an IUPAC ambiguity code (``RYSWKMBDHV``) is: an error, or an N (all-zero row).

    Returns
    -------
    np.ndarray, shape=(L,), dtype=int8
        Values in ``{-1, 0, 1, 2, 3}``.

    Raises
    ------
    SequenceError
        For any character other than ``ACGTN`` (any case; IUPAC codes too unless ``iupac="n"``),
        naming record, position and character.
    """
    alphabet = check_alphabet(alphabet)
    codes = _encode_bytes(_as_bytes(seq), alphabet, iupac)
    position = _first_invalid(codes)
    if position is not None:
        raise _invalid_base_error(name, position, _char_at(seq, position))
    return codes


def one_hot_from_indices(idx, alphabet_size: int = 4, dtype=np.float32):
    """Expand base indices to one-hot rows; works for NumPy and ``jax.numpy`` arrays (also under jit).

    Parameters
    ----------
    idx : array, shape=(..., L), integer
        Column indices; any value outside ``[0, alphabet_size)`` (``-1`` for ``N``) gives an
        all-zero row.
    alphabet_size : int
        Number of columns.
    dtype
        Output dtype.

    Returns
    -------
    array, shape=(..., L, alphabet_size)
        Same array library as ``idx`` (a ``jax.Array`` stays on its device).
    """
    if not hasattr(idx, "ndim"):
        idx = np.asarray(idx)
    # Columns shaped with the full rank and idx's dtype, so the comparison neither rank-promotes
    # nor dtype-promotes (the test config makes both errors under jax).
    columns = np.arange(alphabet_size, dtype=idx.dtype).reshape((1,) * idx.ndim + (alphabet_size,))
    return (idx[..., None] == columns).astype(dtype)


def one_hot(seq: str | bytes, alphabet: str = DNA_ALPHABET, *, name: str | None = None) -> np.ndarray:
    """One-hot encode one DNA sequence, channels-last.

    ``alphabet[j]`` (or its lowercase) sets column ``j``; ``N``/``n`` gives an all-zero row.

    Parameters
    ----------
    seq : str or bytes, length L
        Bases ``ACGTN`` in any case.
    alphabet : str
        Column order, a permutation of ``"ACGT"`` (the model's alphabet).
    name : str, optional
        Record name used in error messages (e.g. ``"chr1:100-200"``).

    Returns
    -------
    np.ndarray, shape=(L, 4), dtype=float32

    Raises
    ------
    SequenceError
        For any other character, e.g.
        ``record 'chr1:100-200' position 17: invalid base 'X' (allowed: ACGTN, any case)``.
    """
    return one_hot_from_indices(encode_indices(seq, alphabet, name=name))


def one_hot_batch(
    seqs: Sequence[str | bytes], alphabet: str = DNA_ALPHABET, names: Sequence[str] | None = None
) -> np.ndarray:
    """One-hot encode equal-length sequences into one batch.

    Parameters
    ----------
    seqs : sequence of str or bytes, N sequences of length L
    alphabet : str
        Column order, a permutation of ``"ACGT"``.
    names : sequence of str, optional, length N
        Record names for error messages; records are called ``#i`` (0-based) otherwise.

    Returns
    -------
    np.ndarray, shape=(N, L, 4), dtype=float32

    Raises
    ------
    SequenceError
        If a sequence's length differs from the first one's (naming the first record that differs),
        or for an invalid character (naming record and position within it).
    """
    return one_hot_from_indices(encode_indices_batch(seqs, alphabet, names))


def encode_indices_batch(
    seqs: Sequence[str | bytes], alphabet: str = DNA_ALPHABET, names: Sequence[str] | None = None
) -> np.ndarray:
    """Base indices of equal-length sequences, one batch: :func:`encode_indices` per record.

    One byte per base (a sixteenth of float32 one-hot) for kernels that expand it on the device
    with :func:`one_hot_from_indices`. Arguments and errors as :func:`one_hot_batch`.

    Returns
    -------
    np.ndarray, shape=(N, L), dtype=int8
        Values in ``{-1, 0, 1, 2, 3}`` (``-1`` for ``N``); shape (0, 0) for no sequences.
    """
    alphabet = check_alphabet(alphabet)
    if isinstance(seqs, str | bytes):
        raise TypeError("seqs must be a sequence of sequences; use one_hot() for a single sequence")
    seqs = list(seqs)
    if names is None:
        names = [f"#{i}" for i in range(len(seqs))]
    else:
        names = [str(n) for n in names]
        if len(names) != len(seqs):
            raise ValueError(f"got {len(names)} names for {len(seqs)} sequences")
    if not seqs:
        return np.zeros((0, 0), dtype=np.int8)
    chunks = [_as_bytes(s) for s in seqs]
    length = len(chunks[0])
    for chunk, record in zip(chunks, names, strict=True):
        if len(chunk) != length:
            raise SequenceError(
                f"record {record!r} has length {len(chunk)}, expected {length} "
                f"(the length of record {names[0]!r}); all sequences in a batch must have equal length",
                record=record,
            )
    # One lookup over the concatenation: the per-record loop above touches lengths only.
    codes = _encode_bytes(b"".join(chunks), alphabet)
    flat = _first_invalid(codes)
    if flat is not None:
        record, position = divmod(flat, length)
        raise _invalid_base_error(names[record], position, _char_at(seqs[record], position))
    return codes.reshape(len(chunks), length)


def decode(onehot, alphabet: str = DNA_ALPHABET) -> str:
    """Turn one-hot rows back into a base string.

    Parameters
    ----------
    onehot : array, shape=(L, 4)
        One-hot (or any scores: each row decodes to its argmax column).
    alphabet : str
        Column order, a permutation of ``"ACGT"``.

    Returns
    -------
    str, length L
        Uppercase bases; ``'N'`` for all-zero rows.
    """
    alphabet = check_alphabet(alphabet)
    x = np.asarray(onehot)
    if x.ndim != 2 or x.shape[-1] != len(alphabet):
        raise ValueError(f"onehot must have shape (L, {len(alphabet)}), got {x.shape}")
    letters = np.frombuffer((alphabet + "N").encode("ascii"), dtype=np.uint8)
    columns = np.argmax(x, axis=-1)
    columns[~np.any(x != 0, axis=-1)] = len(alphabet)
    return letters[columns].tobytes().decode("ascii")


def complement_permutation(alphabet: str = DNA_ALPHABET) -> np.ndarray:
    """Column permutation that complements one-hot rows: ``x[..., perm]`` swaps A<->T and C<->G.

    Returns
    -------
    np.ndarray, shape=(4,), dtype=int
        ``perm[j]`` is the column of the complement of ``alphabet[j]``.
    """
    alphabet = check_alphabet(alphabet)
    return np.array([alphabet.index(COMPLEMENT[base]) for base in alphabet])


def reverse_complement(x, alphabet: str = DNA_ALPHABET, *, name: str | None = None):
    """Reverse complement a sequence string or one-hot array.

    Parameters
    ----------
    x : str, bytes, or array of shape=(..., L, 4)
        A string keeps its case and ``N`` stays ``N``. An array (NumPy or ``jax.numpy``, also under
        jit) has its positions reversed and each base column moved to its complement's column
        according to ``alphabet``; all-zero (``N``) rows stay all-zero.
    alphabet : str
        Column order of an array input, a permutation of ``"ACGT"``; ignored for strings.
    name : str, optional
        Record name used in error messages for string input.

    Returns
    -------
    Same type as ``x``: str, bytes or array of shape=(..., L, 4).

    Raises
    ------
    SequenceError
        For a string holding characters other than ``ACGTN`` (any case).
    """
    if isinstance(x, str | bytes | bytearray):
        data = _as_bytes(x)
        leftover = data.translate(None, _VALID_BYTES)
        if leftover:
            position = data.index(leftover[:1])
            raise _invalid_base_error(name, position, _char_at(x, position))
        reversed_complement = data.decode("ascii").translate(_RC_TRANSLATION)[::-1]
        return reversed_complement if isinstance(x, str) else reversed_complement.encode("ascii")
    perm = complement_permutation(alphabet)
    if x.ndim < 2 or x.shape[-1] != len(perm):
        raise ValueError(f"one-hot input must have shape (..., L, {len(perm)}), got {x.shape}")
    return x[..., ::-1, :][..., perm]


_IUPAC_TO_N = str.maketrans({c: "N" for c in "RYSWKMBDHVryswkmbdhv"})


def iupac_to_n(text: str) -> tuple[str, int]:
    """IUPAC ambiguity codes (``RYSWKMBDHV``, any case) replaced by ``N``: ``(text, how many)``.

    Real assemblies carry a few of them; the encoders read only ``ACGTN``. Other characters are
    left for the encoder to reject by record and position.
    """
    out = text.translate(_IUPAC_TO_N)
    if out == text:
        return text, 0
    return out, sum(a != b for a, b in zip(text, out, strict=True))
