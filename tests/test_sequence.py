"""Tests for jaxmotif.sequence: one-hot encoding, decoding, reverse complement, error messages."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxmotif.sequence import (
    SequenceError,
    complement_permutation,
    decode,
    encode_indices,
    encode_indices_batch,
    one_hot,
    one_hot_batch,
    one_hot_from_indices,
    reverse_complement,
)

ALPHABETS = ["".join(p) for p in itertools.permutations("ACGT")]
bases = st.text(alphabet="ACGTNacgtn", max_size=200)
alphabets = st.sampled_from(ALPHABETS)
NAIVE_COMPLEMENT = {
    "A": "T",
    "C": "G",
    "G": "C",
    "T": "A",
    "N": "N",
    "a": "t",
    "c": "g",
    "g": "c",
    "t": "a",
    "n": "n",
}


def naive_one_hot(seq, alphabet="ACGT"):
    """Reference implementation: one Python step per base."""
    out = np.zeros((len(seq), 4), dtype=np.float32)
    for i, base in enumerate(seq.upper()):
        if base != "N":
            out[i, alphabet.index(base)] = 1.0
    return out


def naive_reverse_complement(seq):
    return "".join(NAIVE_COMPLEMENT[b] for b in reversed(seq))


def test_one_hot_known_values():
    x = one_hot("ACGTNacgtn")
    assert x.dtype == np.float32 and x.shape == (10, 4)
    expected = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(x, np.concatenate([expected, expected]))


def test_one_hot_accepts_bytes_and_empty():
    np.testing.assert_array_equal(one_hot(b"ACGT"), one_hot("ACGT"))
    assert one_hot("").shape == (0, 4)


@given(bases, alphabets)
def test_one_hot_matches_naive_and_round_trips(seq, alphabet):
    x = one_hot(seq, alphabet)
    np.testing.assert_array_equal(x, naive_one_hot(seq, alphabet))
    assert decode(x, alphabet) == seq.upper()


@given(bases, alphabets)
def test_encode_indices_then_expand_equals_one_hot(seq, alphabet):
    idx = encode_indices(seq, alphabet)
    assert idx.dtype == np.int8 and idx.shape == (len(seq),)
    assert np.all((idx == -1) == np.array([b in "Nn" for b in seq], dtype=bool))
    np.testing.assert_array_equal(one_hot_from_indices(idx), one_hot(seq, alphabet))


def test_alphabet_must_be_permutation_of_acgt():
    for bad in ["ACG", "ACGU", "AACG", "ACGTN"]:
        with pytest.raises(ValueError, match="permutation"):
            one_hot("ACGT", bad)
    np.testing.assert_array_equal(one_hot("ACGT", "tgca"), one_hot("ACGT", "TGCA"))


def test_error_message_format():
    with pytest.raises(SequenceError) as info:
        one_hot("ACGTACGTACGTACGTAXGT", name="chr1:100-200")
    assert str(info.value) == "record 'chr1:100-200' position 17: invalid base 'X' (allowed: ACGTN, any case)"
    assert isinstance(info.value, ValueError)
    assert (info.value.record, info.value.position, info.value.char) == ("chr1:100-200", 17, "X")


@given(
    prefix=st.text(alphabet="ACGTNacgtn", max_size=50),
    bad=st.characters(blacklist_characters="ACGTNacgtn", blacklist_categories=("Cs",)),
    suffix=st.text(max_size=20),
    name=st.text(min_size=1, max_size=10),
)
def test_error_names_record_and_first_invalid_position(prefix, bad, suffix, name):
    seq = prefix + bad + suffix
    for encode in (
        lambda: one_hot(seq, name=name),
        lambda: encode_indices(seq, name=name),
        lambda: reverse_complement(seq, name=name),
    ):
        with pytest.raises(SequenceError) as info:
            encode()
        assert info.value.position == len(prefix)
        assert info.value.char == bad
        assert f"record {name!r} position {len(prefix)}: invalid base {bad!r}" in str(info.value)


@given(st.integers(1, 6), st.integers(0, 30), alphabets, st.data())
def test_one_hot_batch_equals_stacked(n, length, alphabet, data):
    seqs = [data.draw(st.text(alphabet="ACGTNacgtn", min_size=length, max_size=length)) for _ in range(n)]
    batch = one_hot_batch(seqs, alphabet)
    assert batch.shape == (n, length, 4) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, np.stack([one_hot(s, alphabet) for s in seqs]))
    codes = encode_indices_batch(seqs, alphabet)
    assert codes.shape == (n, length) and codes.dtype == np.int8
    np.testing.assert_array_equal(codes, [encode_indices(s, alphabet) for s in seqs])


def test_one_hot_batch_errors_name_record():
    with pytest.raises(
        SequenceError, match=r"record 'b' has length 3, expected 4 \(the length of record 'a'\)"
    ):
        one_hot_batch(["ACGT", "ACG", "AC"], names=["a", "b", "c"])
    with pytest.raises(SequenceError, match=r"record '#1' has length 5"):
        one_hot_batch(["ACGT", "ACGTA"])
    with pytest.raises(SequenceError) as info:
        one_hot_batch(["ACGT", "ACGT", "ACZT"], names=["a", "b", "c"])
    assert (info.value.record, info.value.position) == ("c", 2)
    assert str(info.value).startswith("record 'c' position 2: invalid base 'Z'")
    with pytest.raises(ValueError, match="2 names for 3 sequences"):
        one_hot_batch(["A", "C", "G"], names=["a", "b"])
    with pytest.raises(TypeError):
        one_hot_batch("ACGT")
    assert one_hot_batch([]).shape == (0, 0, 4)


def test_decode_argmax_and_n_rows():
    scores = np.array([[0.1, 0.7, 0.2, 0.0], [0, 0, 0, 0], [0, 0, 0, -1], [0.2, 0.1, 0.0, 0.3]], np.float32)
    assert decode(scores) == "CNAT"
    assert decode(scores, "TGCA") == "GNTA"
    with pytest.raises(ValueError, match="shape"):
        decode(np.zeros((2, 3, 4)))


@given(bases)
def test_reverse_complement_string_matches_naive_and_is_involution(seq):
    rc = reverse_complement(seq)
    assert rc == naive_reverse_complement(seq)
    assert reverse_complement(rc) == seq
    assert reverse_complement(seq.encode()) == rc.encode()


@given(bases, alphabets)
def test_reverse_complement_array_commutes_with_one_hot(seq, alphabet):
    x = one_hot(seq, alphabet)
    np.testing.assert_array_equal(reverse_complement(x, alphabet), one_hot(reverse_complement(seq), alphabet))
    np.testing.assert_array_equal(reverse_complement(reverse_complement(x, alphabet), alphabet), x)


@pytest.mark.parametrize("alphabet", ALPHABETS)
def test_complement_permutation_is_an_involution(alphabet):
    perm = complement_permutation(alphabet)
    np.testing.assert_array_equal(perm[perm], np.arange(4))
    for j, base in enumerate(alphabet):
        assert alphabet[perm[j]] == {"A": "T", "C": "G", "G": "C", "T": "A"}[base]


def test_reverse_complement_batched_array_and_shape_check():
    seqs = ["ACGTTN", "GGGNCA"]
    batch = one_hot_batch(seqs)
    np.testing.assert_array_equal(
        reverse_complement(batch), one_hot_batch([reverse_complement(s) for s in seqs])
    )
    with pytest.raises(ValueError, match="shape"):
        reverse_complement(np.zeros((5, 3)))


def test_jax_paths_under_jit_with_strict_promotion():
    seqs = ["ACGTNACGTT", "nnacgtTTGA"]
    idx = np.stack([encode_indices(s, "TGCA") for s in seqs])
    expected = one_hot_batch(seqs, "TGCA")
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        got = jax.jit(one_hot_from_indices)(jnp.asarray(idx))
        assert isinstance(got, jax.Array) and got.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(got), expected)
        rc = jax.jit(lambda x: reverse_complement(x, "TGCA"))(got)
        np.testing.assert_array_equal(np.asarray(rc), reverse_complement(expected, "TGCA"))


def test_large_sequence_is_vectorised():
    # A few megabases must encode without a Python loop per base (this runs in milliseconds).
    rng = np.random.default_rng(0)
    seq = rng.choice(np.frombuffer(b"ACGTNacgtn", np.uint8), size=3_000_000).tobytes()
    idx = encode_indices(seq)
    assert idx.shape == (3_000_000,)
    assert decode(one_hot_from_indices(idx[:1000])) == seq[:1000].decode().upper()


def test_iupac_codes_read_as_n_on_request():
    from jaxmotif.sequence import check_bases, count_iupac

    np.testing.assert_array_equal(encode_indices("ACRyGT", iupac="n"), [0, 1, -1, -1, 2, 3])
    with pytest.raises(SequenceError, match="invalid base 'R'.*IUPAC ambiguity code") as info:
        encode_indices("ACRyGT", name="x")
    assert info.value.position == 2
    assert count_iupac("ACRyGTn") == (2, 2) and count_iupac("ACGT") == (0, None)
    assert check_bases("ACRyGT") == 2
    with pytest.raises(SequenceError, match="position 2"):
        check_bases("ACRyGT", iupac="error")
    with pytest.raises(SequenceError, match="invalid base 'X'"):
        check_bases("ACXR")  # not an IUPAC code: refused either way
    with pytest.raises(ValueError, match="iupac='maybe'"):
        encode_indices("ACGT", iupac="maybe")
