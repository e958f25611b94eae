"""LLM.int8(): the paper's decomposition, its cost counters, and bit-for-bit conformance with bitsandbytes."""

import numpy as np
import pytest
from oracles import require

from qlearn.activations import LLM_INT8_CONVENTIONS, llm_int8_hook, llm_int8_matmul, w8a8_matmul


def _data(seed, m=12, k=40, n=9, cols=(3, 17)):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, k)) * 2).astype(np.float32)
    x[:, list(cols)] *= 8  # outlier columns, as in a large model's LayerNorm output
    w = (rng.standard_normal((n, k)) * 0.3).astype(np.float32)
    return x, w


def test_paper_decomposition_by_hand():
    x, w = _data(0)
    y, cost = llm_int8_matmul(x, w, 6.0)
    out = np.abs(x).max(axis=0) > 6.0
    # by hand: float columns plus per-token x per-channel int8 over the remaining columns
    xr, wr = x[:, ~out].astype(np.float64), w[:, ~out].astype(np.float64)
    sx = (np.abs(xr).max(axis=1, keepdims=True) / 127).astype(np.float32)  # qlearn keeps scales in float32
    sw = (np.abs(wr).max(axis=1, keepdims=True) / 127).astype(np.float32)
    acc = np.rint(xr / sx) @ np.rint(wr / sw).T
    hand = x[:, out].astype(np.float64) @ w[:, out].T.astype(np.float64) + sx * acc * sw.T
    np.testing.assert_allclose(y, hand, rtol=1e-12, atol=1e-12)
    m, k, n = x.shape[0], x.shape[1], w.shape[0]
    n_out = int(out.sum())
    assert n_out >= 2
    assert cost == {
        "outliers": n_out,
        "float_macs": m * n * n_out,
        "int8_macs": m * n * (k - n_out),
        "weight_bytes": n * (k - n_out) + 4 * n + 2 * n * n_out,
    }


def test_threshold_extremes():
    x, w = _data(1)
    y, cost = llm_int8_matmul(x, w, np.inf)  # nothing is an outlier: plain W8A8
    np.testing.assert_array_equal(y, w8a8_matmul(x, w)[0])
    assert cost["outliers"] == 0
    y, cost = llm_int8_matmul(x, w, -1.0)  # everything in float
    np.testing.assert_allclose(y, x.astype(np.float64) @ w.T.astype(np.float64), rtol=1e-12)
    assert cost["int8_macs"] == 0
    _, cost = llm_int8_matmul(x, w, 0.0, convention="bitsandbytes")  # bitsandbytes: 0 turns it off
    assert cost["outliers"] == 0


def test_bad_input():
    x, w = _data(2)
    for kwargs, err in [
        (dict(threshold=np.nan), ValueError),
        (dict(threshold="6"), TypeError),
        (dict(threshold=True), TypeError),
        (dict(convention="torch"), ValueError),
    ]:
        with pytest.raises(err):
            llm_int8_matmul(x, w, **kwargs)
    with pytest.raises(ValueError, match="shapes"):
        llm_int8_matmul(x, w.T)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        llm_int8_matmul(bad, w)
    with pytest.raises(ValueError):
        llm_int8_hook(convention="cuda")


def test_hook_accumulates_costs_and_keeps_dtype():
    x, w = _data(3)
    stats = {}
    hook = llm_int8_hook(6.0, stats)
    y = hook("l", x[None], w, np.zeros(w.shape[0], np.float32))
    assert y.dtype == np.float32 and y.shape == (1, x.shape[0], w.shape[0])
    hook("l", x[None], w, np.zeros(w.shape[0], np.float32))
    assert stats["outliers"] == 2 * llm_int8_matmul(x, w)[1]["outliers"]


def _bnb_linear(bnb, torch, w):
    n, k = w.shape
    lin = bnb.nn.Linear8bitLt(k, n, bias=False, has_fp16_weights=False, threshold=6.0)
    lin.weight = bnb.nn.Int8Params(torch.from_numpy(w.copy()), requires_grad=False, has_fp16_weights=False)
    return lin.to("cpu").eval()  # eval: in training mode bitsandbytes' CPU path dequantizes the weights


def test_codes_equal_bitsandbytes():
    torch = require("torch")
    bnb = require("bitsandbytes", "bitsandbytes runs LLM.int8() on CPU")
    from qlearn.activations.llm_int8 import _bnb_rowwise

    rng = np.random.default_rng(4)
    for _ in range(20):
        x, w = _data(int(rng.integers(1 << 30)), m=int(rng.integers(1, 30)), k=int(rng.integers(20, 200)))
        ca, sca, cols = bnb.functional.int8_vectorwise_quant(torch.from_numpy(x).half(), 6.0)
        x16 = x.astype(np.float16)
        big = np.abs(x16) >= 6.0
        qx, sx = _bnb_rowwise(np.where(big, np.float16(0), x16))
        qx[:, big.any(axis=0)] = 0
        np.testing.assert_array_equal(qx, ca.numpy())
        np.testing.assert_array_equal(sx, sca.numpy())
        np.testing.assert_array_equal(np.flatnonzero(big.any(axis=0)), cols.numpy())
        lin = _bnb_linear(bnb, torch, w)
        qw, sw = _bnb_rowwise(w.astype(np.float16))
        np.testing.assert_array_equal(qw, lin.weight.CB.numpy())
        np.testing.assert_array_equal(sw, lin.weight.SCB.numpy())


def test_output_equals_bitsandbytes_linear8bitlt():
    torch = require("torch")
    bnb = require("bitsandbytes", "bitsandbytes runs LLM.int8() on CPU")
    rng = np.random.default_rng(5)
    exact = 0
    for trial in range(30):
        x, w = _data(int(rng.integers(1 << 30)), m=int(rng.integers(1, 30)), k=int(rng.integers(20, 200)))
        if trial % 3 == 0:
            x = np.clip(x, -5.9, 5.9)  # no outliers: the int8 path alone, elementwise rescaling
        lin = _bnb_linear(bnb, torch, w)
        with torch.no_grad():
            ref = lin(torch.from_numpy(x.copy())).numpy()
        y, cost = llm_int8_matmul(x, w, 6.0, convention="bitsandbytes")
        if cost["outliers"] == 0:
            np.testing.assert_array_equal(y.astype(np.float32), ref)
        # with outliers, the float part is one float32 matmul whose summation order is torch's own
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
        exact += np.array_equal(y.astype(np.float32), ref)
    assert exact >= 10


def test_bitsandbytes_dequant_constant_is_not_one_over_127_squared():
    torch = require("torch")
    require("bitsandbytes", "bitsandbytes runs LLM.int8() on CPU")
    acc = torch.tensor([[16129]], dtype=torch.int32)  # 127 * 127: should come back as 127 * 127 / 127**2 * 127**2
    one = torch.tensor([127.0], dtype=torch.float32)
    got = torch.ops.bitsandbytes.int8_mm_dequant(acc, one, one, dtype=torch.float32).item()
    assert got != 16129.0 and abs(got / 16129.0 - 1 - 1.8e-5) < 1e-6  # 6.200124e-05 instead of 6.2000124e-05
    y, _ = llm_int8_matmul(np.full((1, 1), 127.0), np.full((1, 1), 127.0), 0.0, convention="bitsandbytes")
    np.testing.assert_array_equal(np.float32(y[0, 0]), np.float32(got))
    assert "bitsandbytes" in LLM_INT8_CONVENTIONS
