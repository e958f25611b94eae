import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qlearn as ql
from qlearn.activations import (
    channel_ranges,
    inject_outliers,
    llm_int8_matmul,
    outlier_ratio,
    smooth_model,
    smoothing_factors,
    w8a8_hook,
    w8a8_matmul,
)

CFG = ql.lm.LMConfig(vocab_size=7, d_model=16, n_layers=2, n_heads=2, d_ff=32, context=8)
TOK = np.array([[0, 1, 2, 3, 4, 5, 6, 0], [3, 3, 1, 0, 6, 2, 5, 4]])


@pytest.fixture(scope="module")
def model():
    return ql.lm.Transformer.initialize(CFG, seed=1)


def test_outlier_ratio_golden_and_errors():
    assert outlier_ratio([1.0, 2.0, 3.0, 40.0]) == 16.0
    for bad in ([], [[1.0]], [1.0, -1.0], [0.0, 0.0, 1.0], [np.nan]):
        with pytest.raises(ValueError):
            outlier_ratio(bad)


def test_channel_ranges_match_capture(model):
    r = channel_ranges(model, TOK)
    x = model.capture_inputs(TOK)["blocks.1.mlp.fc1"]
    np.testing.assert_array_equal(r["blocks.1.mlp.fc1"], np.abs(x.astype(np.float64)).max(axis=0))
    with pytest.raises(TypeError):
        channel_ranges("model", TOK)


def test_injection_keeps_function_and_creates_outliers(model):
    m2 = inject_outliers(model, [3, 7], 25.0)
    np.testing.assert_allclose(m2.forward(TOK), model.forward(TOK), atol=2e-4)
    r0, r1 = channel_ranges(model, TOK), channel_ranges(m2, TOK)
    np.testing.assert_allclose(r1["blocks.0.attn.qkv"][[3, 7]], 25 * r0["blocks.0.attn.qkv"][[3, 7]], rtol=1e-5)
    assert outlier_ratio(r1["blocks.0.attn.qkv"]) > 5 * outlier_ratio(r0["blocks.0.attn.qkv"])
    with pytest.raises(ValueError):
        inject_outliers(model, [16], 2.0)
    with pytest.raises(ValueError):
        inject_outliers(model, [0], -2.0)
    with pytest.raises(ValueError):
        inject_outliers(model, [0], 2.0, norms=("ln_f",))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_smoothing_exact_in_float64(seed, alpha):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((20, 6)) * np.array([1, 30, 1, 0.1, 5, 1])
    w = rng.standard_normal((4, 6))
    s = smoothing_factors(np.abs(x).max(0), w, alpha)
    np.testing.assert_allclose((x / s) @ (w * s).T, x @ w.T, rtol=0, atol=1e-12 * np.abs(x @ w.T).max() * 10)
    # smoothed ranges follow the formula
    ax, aw = np.abs(x).max(0), np.abs(w).max(0)
    np.testing.assert_allclose(np.abs(x / s).max(0), ax ** (1 - alpha) * aw ** (1 - alpha), rtol=1e-10)
    np.testing.assert_allclose(np.abs(w * s).max(0), ax**alpha * aw**alpha, rtol=1e-10)


def test_smoothing_golden_and_errors():
    np.testing.assert_allclose(smoothing_factors([9.0, 1.0], [[1.0, 4.0]], 0.5), [3.0, 0.5])
    with pytest.raises(ValueError):
        smoothing_factors([1.0], [[1.0]], 1.5)
    with pytest.raises(ValueError):
        smoothing_factors([1.0, 2.0], [[1.0]], 0.5)
    with pytest.raises(ValueError):
        smoothing_factors([-1.0], [[1.0]], 0.5)


def test_folded_model_equals_unfolded(model):
    m = inject_outliers(model, [2], 40.0)
    r = channel_ranges(m, TOK)
    sm = smooth_model(m, r, 0.5)
    np.testing.assert_allclose(sm.forward(TOK), m.forward(TOK), atol=2e-4)
    r2 = channel_ranges(sm, TOK)
    assert r2["blocks.0.attn.qkv"].max() < r["blocks.0.attn.qkv"].max() / 3
    with pytest.raises(ValueError):
        smooth_model(m, {}, 0.5)


def test_integer_w8a8_equals_dequantized_float():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((9, 24)), rng.standard_normal((5, 24))
    y, acc = w8a8_matmul(x, w)
    assert acc.dtype == np.int32
    qpx = ql.choose_qparams(x, symmetric=True, narrow=True, axis=0)
    qpw = ql.choose_qparams(w, symmetric=True, narrow=True, axis=0)
    ref = ql.fake_quantize(x, qpx) @ ql.fake_quantize(w, qpw).T
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-9)
    # slow obvious integer reference
    qx, qw = ql.quantize(x, qpx).astype(int), ql.quantize(w, qpw).astype(int)
    slow = [[sum(qx[i, k] * qw[j, k] for k in range(24)) for j in range(5)] for i in range(9)]
    np.testing.assert_array_equal(acc, slow)
    with pytest.raises(ValueError):
        w8a8_matmul(x, w.T)


def test_w8a8_hook_modes_and_errors(model):
    y = model.forward(TOK)
    yd = model.forward(TOK, linear=w8a8_hook("dynamic"))
    assert 0 < np.abs(yd - y).max() < 0.1
    qps = {n: ql.choose_qparams(x) for n, x in model.capture_inputs(TOK).items()}
    ys = model.forward(TOK, linear=w8a8_hook("static", qps))
    assert 0 < np.abs(ys - y).max() < 0.2
    with pytest.raises(ValueError):
        w8a8_hook("per-channel")
    with pytest.raises(ValueError):
        w8a8_hook("static")


def test_llm_int8_all_float_equals_float():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((6, 10)) * 3, rng.standard_normal((4, 10))
    y, cost = llm_int8_matmul(x, w, threshold=-1.0)
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-12)
    assert cost["outliers"] == 10 and cost["int8_macs"] == 0 and cost["float_macs"] == 6 * 4 * 10
    x[:, 3] *= 10
    y, cost = llm_int8_matmul(x, w, threshold=6.0)
    out = np.abs(x).max(0) > 6.0
    assert cost["outliers"] == out.sum() and cost["weight_bytes"] == 4 * (10 - out.sum()) + 16 + 8 * out.sum()
    ref = x[:, out] @ w[:, out].T + w8a8_matmul(x[:, ~out], w[:, ~out])[0]
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    with pytest.raises(ValueError):
        llm_int8_matmul(x, w, np.nan)
