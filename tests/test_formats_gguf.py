"""qlearn.formats.gguf: byte-identical to gguf's numpy quantizers (llama.cpp's reference), golden bytes."""

import numpy as np
import pytest
from oracles import require

from qlearn.formats import GGUF_BLOCKS, gguf_bits_per_weight, gguf_dequantize, gguf_quantize


def _cases(rng):
    tie = np.zeros((1, 32), np.float32)
    tie[0, 3], tie[0, 5] = -2.0, 2.0  # |min| == |max|: the first one sets the sign of d
    return [
        rng.standard_normal((64, 256)).astype(np.float32),
        np.round(rng.standard_normal((16, 128)) * 4).astype(np.float32),  # many exact ties
        rng.standard_t(2, (32, 128)).astype(np.float32),
        np.zeros((2, 64), np.float32),
        -np.zeros((2, 64), np.float32),
        tie,
        -tie,
        rng.standard_normal(1 << 17).astype(np.float32).reshape(4, -1),  # several chunks
    ]


@pytest.mark.parametrize("kind", list(GGUF_BLOCKS))
def test_byte_identical_to_gguf(kind, rng):
    gguf = require("gguf")
    qtype = gguf.GGMLQuantizationType[kind]
    for x in _cases(rng):
        ref = gguf.quants.quantize(x, qtype)
        ours = gguf_quantize(x, kind)
        assert ours.shape == ref.shape
        np.testing.assert_array_equal(ours, ref)
        np.testing.assert_array_equal(gguf_dequantize(ref, kind), gguf.quants.dequantize(ref, qtype))


def test_golden_q4_0_block():
    x = np.linspace(-1.0, 1.0, 32, dtype=np.float32)
    b = gguf_quantize(x, "Q4_0")
    assert b[:2].view("<f2")[0] == np.float16(0.125)  # d = -1 / -8, stored little-endian
    assert b[2] == (0 | 8 << 4)  # element 0 -> code 0 (low nibble), element 16 -> code 8 (high nibble)
    q8 = gguf_quantize(np.full(32, 0.5, np.float32), "Q8_0")
    assert q8[:2].view("<f2")[0] == np.float16(0.5 / 127) and (q8[2:].view(np.int8) == 127).all()


def test_q8_0_rounds_half_away_from_zero():
    x = np.zeros(32, np.float32)
    x[0], x[1], x[2] = 127.0, 2.5, -2.5  # d = 1: 2.5 -> 3, -2.5 -> -3 (roundf), not 2 (ties to even)
    assert gguf_quantize(x, "Q8_0")[2:5].view(np.int8).tolist() == [127, 3, -3]


def test_bits_per_weight_from_bytes(rng):
    x = rng.standard_normal((4, 256)).astype(np.float32)
    for kind in GGUF_BLOCKS:
        assert gguf_quantize(x, kind).nbytes * 8 / x.size == gguf_bits_per_weight(kind)


def test_error_bound_and_no_mutation(rng):
    x = rng.standard_normal((8, 64)).astype(np.float32)
    before = x.copy()
    xh = gguf_dequantize(gguf_quantize(x, "Q4_1"), "Q4_1")
    d = (x.reshape(-1, 32).max(1) - x.reshape(-1, 32).min(1)) / 15
    assert (np.abs(x - xh).reshape(-1, 32).max(1) <= d * 0.5 + 1e-3).all()
    np.testing.assert_array_equal(x, before)
    one = x[:1, :32].copy()
    gguf_quantize(one, "Q4_0")  # a single block is a view of x internally: still not written to
    np.testing.assert_array_equal(one, x[:1, :32])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: gguf_quantize(np.ones(31, np.float32), "Q4_0"), "multiple of the block size"),
        (lambda: gguf_quantize(np.full(32, np.nan, np.float32), "Q4_0"), "finite"),
        (lambda: gguf_quantize(np.full(32, np.inf, np.float32), "Q8_0"), "finite"),
        (lambda: gguf_quantize(np.ones(32), "Q4_K"), "kind must be one of"),
        (lambda: gguf_dequantize(np.zeros(17, np.uint8), "Q4_0"), "multiple of 18 bytes"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
