"""qlearn.formats.codebooks: NF4 and FP4 equal bitsandbytes' tables and 4-bit quantization; k-means."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import require

from qlearn.formats import (
    FP4_BNB,
    IQ4_NL,
    NF4,
    codebook_assign,
    codebook_dequantize,
    codebook_quantize,
    double_dequantize,
    double_quantize,
    kmeans_codebook,
    nf4_codebook,
    pack,
)


def _bnb():
    require("torch")
    return require("bitsandbytes.functional", "bitsandbytes runs its 4-bit quantizer on CPU")


def test_nf4_from_normal_quantiles_equals_bitsandbytes_table():
    f = _bnb()
    for name, ours in (("nf4", NF4), ("fp4", FP4_BNB)):
        ref = f.get_4bit_type(name, device="cpu").numpy()
        np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


def test_nf4_golden():
    assert NF4[0] == -1.0 and NF4[7] == 0.0 and NF4[15] == 1.0
    assert (np.diff(NF4) > 0).all() and np.array_equal(nf4_codebook(), NF4)
    assert IQ4_NL.tolist()[:3] == [-127, -104, -83] and FP4_BNB[3] == 1.0


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_quantize_4bit_equals_bitsandbytes(quant_type, rng):
    f = _bnb()
    torch = require("torch")
    cb = NF4 if quant_type == "nf4" else FP4_BNB
    x = rng.standard_normal((32, 256)).astype(np.float32)
    x[0, :7] = 0.0
    x[1, :64] = np.round(x[1, :64] * 2) / 2  # values on codebook midpoints of NF4 are rare; pin exact values too
    packed, state = f.quantize_4bit(torch.from_numpy(x), blocksize=64, quant_type=quant_type)
    codes, absmax = codebook_quantize(x, cb, block_size=64)
    np.testing.assert_array_equal(pack(codes.reshape(-1), 4, "high_first"), packed.numpy().reshape(-1))
    np.testing.assert_array_equal(absmax.reshape(-1), state.absmax.numpy())
    np.testing.assert_array_equal(codebook_dequantize(codes, absmax, cb, 64), f.dequantize_4bit(packed, state).numpy())


def _slow_nearest(v, cb):
    d = np.abs(cb.astype(np.float64) - v)
    cands = np.nonzero(d == d.min())[0]
    return min(cands, key=lambda i: cb[i])  # a tie goes to the smaller entry


@given(st.floats(-1, 1, width=32))
def test_assign_is_the_nearest_entry(v):
    assert codebook_assign([v], NF4)[0] == _slow_nearest(v, NF4)


def test_kmeans_beats_uniform_on_normal_data_and_converges(rng):
    x = rng.standard_normal(20000)
    cb = kmeans_codebook(x, k=16, iters=1000)
    err_k = np.mean((x - cb[codebook_assign(x, cb)]) ** 2)
    grid = np.linspace(x.min(), x.max(), 16)
    err_u = np.mean((x - grid[codebook_assign(x, grid)]) ** 2)
    assert err_k < 0.5 * err_u
    # a fixed point of Lloyd: each centre is the mean of its cluster
    a = codebook_assign(x, cb)
    for j in range(16):
        if (a == j).any():
            assert abs(x[a == j].mean() - cb[j]) < 1e-3


def test_double_quantization_round_trip(rng):
    a = np.abs(rng.standard_normal(1024)).astype(np.float32) + 1
    q, s, m = double_quantize(a)
    assert q.dtype == np.int8 and s.shape == (4,)
    assert np.abs(double_dequantize(q, s, m) - a).max() <= s.max() / 2 + 1e-6


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: codebook_quantize(np.ones(10), NF4, block_size=64), "block_size"),
        (lambda: codebook_quantize([np.nan] * 64, NF4), "finite"),
        (lambda: codebook_dequantize([16], [1.0], NF4, block_size=1), r"\[0, 15\]"),
        (lambda: codebook_dequantize([1, 2], [1.0, 2.0, 3.0], NF4, block_size=1), "absmax must have shape"),
        (lambda: kmeans_codebook([1.0, 2.0], k=1), "k must be"),
        (lambda: double_quantize(np.ones(100)), "multiple of block_size"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
