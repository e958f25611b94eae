"""qlearn.formats.packing: golden bytes, slow references of the GPTQ/AWQ loops, round trips, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlearn.formats import AWQ_ORDER, pack, pack_int32, unpack, unpack_int32


def test_golden_bytes_4bit_both_orders():
    assert pack([0x1, 0x2, 0x3, 0x4], 4).tolist() == [0x21, 0x43]
    assert pack([0x1, 0x2, 0x3, 0x4], 4, order="high_first").tolist() == [0x12, 0x34]
    assert pack([0xF, 0x0, 0x5], 4).tolist() == [0x0F, 0x05]  # odd length: a zero code pads the last byte


def test_golden_bytes_2bit_and_1bit():
    assert pack([1, 2, 3, 0], 2).tolist() == [0b00_11_10_01]
    assert pack([1, 2, 3, 0], 2, order="high_first").tolist() == [0b01_10_11_00]
    assert pack([1, 0, 0, 0, 0, 0, 0, 1], 1).tolist() == [0b1000_0001]


def test_golden_words():
    assert pack_int32(np.arange(8), order="gptq").view(np.uint32).tolist() == [0x76543210]
    assert pack_int32(np.arange(8), order="awq").view(np.uint32).tolist() == [0x75316420]
    assert pack_int32(np.full(8, 15), order="gptq").tolist() == [-1]  # stored as signed int32
    assert pack_int32([1, 2, 3] * 5 + [0], bits=2).view(np.uint32).tolist() == [0x39E79E79 & 0x3FFFFFFF]


def _gptq_loop(intweight, bits):
    """AutoGPTQ's QuantLinear.pack, written as its loop: along axis 0, word row r gets rows r*k .. r*k+k-1."""
    per = 32 // bits
    rows = -(-intweight.shape[0] // per)
    out = np.zeros((rows, intweight.shape[1]), dtype=np.uint64)
    for r in range(rows):
        for j in range(per):
            if r * per + j < intweight.shape[0]:
                out[r] |= intweight[r * per + j].astype(np.uint64) << np.uint64(bits * j)
    return out.astype(np.uint32).view(np.int32)


def _awq_loop(intweight):
    """AutoAWQ's pack: along the last axis, nibble i of word c gets column c*8 + order_map[i]."""
    order_map = [0, 2, 4, 6, 1, 3, 5, 7]
    out = np.zeros((intweight.shape[0], intweight.shape[1] // 8), dtype=np.uint64)
    for col in range(intweight.shape[1] // 8):
        for i in range(8):
            out[:, col] |= intweight[:, col * 8 + order_map[i]].astype(np.uint64) << np.uint64(i * 4)
    return out.astype(np.uint32).view(np.int32)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_gptq_matches_the_loop(rng, bits):
    q = rng.integers(0, 1 << bits, size=(64, 12))
    np.testing.assert_array_equal(pack_int32(q, bits, "gptq", axis=0), _gptq_loop(q, bits))
    np.testing.assert_array_equal(unpack_int32(_gptq_loop(q, bits), bits, 64, "gptq", axis=0), q)


def test_awq_matches_the_loop(rng):
    q = rng.integers(0, 16, size=(5, 32))
    np.testing.assert_array_equal(pack_int32(q, 4, "awq"), _awq_loop(q))
    np.testing.assert_array_equal(unpack_int32(_awq_loop(q), 4, order="awq"), q)
    assert AWQ_ORDER == (0, 2, 4, 6, 1, 3, 5, 7)


def test_bitsandbytes_is_high_first(rng):
    """bitsandbytes packs two 4-bit codes per byte as (first << 4) | second."""
    q = rng.integers(0, 16, size=(4, 10))
    np.testing.assert_array_equal(pack(q, 4, "high_first"), (q[:, ::2] << 4 | q[:, 1::2]).astype(np.uint8))


@given(
    hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=9), elements=st.integers(0, 15)),
    st.sampled_from(["low_first", "high_first"]),
)
def test_byte_round_trip(q, order):
    for axis in range(q.ndim):
        packed = pack(q, 4, order, axis=axis)
        assert packed.shape[axis] == -(-q.shape[axis] // 2)
        np.testing.assert_array_equal(unpack(packed, 4, q.shape[axis], order, axis=axis), q)
    q2 = q & 3
    np.testing.assert_array_equal(unpack(pack(q2, 2, order), 2, q.shape[-1], order), q2)


@given(
    hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=20), elements=st.integers(0, 15)),
    st.sampled_from(["gptq", "awq"]),
)
def test_word_round_trip(q, order):
    np.testing.assert_array_equal(unpack_int32(pack_int32(q, 4, order), 4, q.shape[-1], order), q)


def test_inputs_not_mutated(rng):
    q = rng.integers(0, 16, size=16)
    before = q.copy()
    pack(q, 4)
    pack_int32(q)
    np.testing.assert_array_equal(q, before)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: pack([16], 4), ValueError, r"\[0, 15\]"),
        (lambda: pack([-1], 4), ValueError, r"\[0, 15\]"),
        (lambda: pack([1.0], 4), TypeError, "integer"),
        (lambda: pack([1], 9), ValueError, r"\[1, 8\]"),
        (lambda: pack([1], 3, order="high_first"), ValueError, "1, 2 or 4"),
        (lambda: unpack(np.zeros(2, np.uint8), 3, n=6), ValueError, "ceil"),
        (lambda: pack([1], 4, order="middle"), ValueError, "low_first"),
        (lambda: unpack(np.zeros(2, np.uint8), 4, n=5), ValueError, "n must be in"),
        (lambda: unpack(np.zeros(2, np.int32), 4, n=4), TypeError, "uint8"),
        (lambda: pack_int32([1], bits=2, order="awq"), ValueError, "AWQ"),
        (lambda: pack_int32([1], bits=5), ValueError, "2, 3, 4 or 8"),
        (lambda: unpack_int32(np.zeros(2, np.int32), bits=3), ValueError, "triples"),
        (lambda: unpack_int32(np.zeros(3, np.int32), bits=3, n=33), ValueError, "n must be in"),
        (lambda: unpack_int32(np.zeros(1, np.int32), n=9), ValueError, "n must be in"),
        (lambda: unpack_int32(np.zeros(1, np.int64)), TypeError, "int32"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("bits", range(1, 9))
def test_every_width_is_the_little_endian_bit_stream(bits):
    # oracle: the codes as one Python integer, code i at bits [bits*i, bits*(i+1)), read byte by byte
    rng = np.random.default_rng(bits)
    q = rng.integers(0, 2**bits, size=(4, 29))
    packed = pack(q, bits)
    assert packed.shape == (4, -(-29 * bits // 8))
    for row, codes in zip(packed, q, strict=True):
        v = sum(int(c) << (bits * i) for i, c in enumerate(codes))
        assert row.tolist() == [(v >> (8 * m)) & 255 for m in range(row.size)]
    np.testing.assert_array_equal(unpack(packed, bits, 29), q)
    np.testing.assert_array_equal(unpack(pack(q.T, bits, axis=0), bits, 29, axis=0), q.T)


def test_gptq_three_bit_words_continue_the_stream():
    # AutoGPTQ packs 32 three-bit codes into 3 words: one 96-bit little-endian stream, codes 10 and 21
    # straddling words; oracle with Python integers
    rng = np.random.default_rng(3)
    q = rng.integers(0, 8, size=(64, 6))  # (in, out), packed along the input axis as qweight is
    words = pack_int32(q, 3, axis=0)
    assert words.shape == (6, 6) and words.dtype == np.int32
    for col in range(6):
        for t in range(2):
            v = sum(int(q[32 * t + i, col]) << (3 * i) for i in range(32))
            got = [int(x) & 0xFFFFFFFF for x in words[3 * t : 3 * t + 3, col]]
            assert got == [(v >> (32 * k)) & 0xFFFFFFFF for k in range(3)]
    np.testing.assert_array_equal(unpack_int32(words, 3, 64, axis=0), q)
    short = rng.integers(0, 8, size=40)  # padded to 64 codes, 6 words
    np.testing.assert_array_equal(unpack_int32(pack_int32(short, 3), 3, 40), short)
