"""W8A8 calibration and the static hook: one scale per linear input, from the calibration tokens."""

import numpy as np
import pytest

import qlearn as ql
from qlearn.activations import calibrate_activations, w8a8_hook

CFG = ql.lm.LMConfig(vocab_size=7, d_model=16, n_layers=2, n_heads=2, d_ff=32, context=8)
TOK = np.array([[0, 1, 2, 3, 4, 5, 6, 0], [3, 3, 1, 0, 6, 2, 5, 4]])


@pytest.fixture(scope="module")
def model():
    return ql.lm.Transformer.initialize(CFG, seed=3)


def test_calibration_is_min_max_of_each_input(model):
    qps = calibrate_activations(model, TOK)
    xs = model.capture_inputs(TOK)
    assert sorted(qps) == sorted(model.linear_names())
    for name, x in xs.items():
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        assert float(qps[name].scale) == pytest.approx((hi - lo) / 255, rel=1e-6)
        assert qps[name].qmin == 0 and qps[name].qmax == 255
    sym = calibrate_activations(model, TOK, bits=4, symmetric=True)
    x = xs["head"]
    assert float(sym["head"].scale) == pytest.approx(np.abs(x).max() / 7, rel=1e-6)
    assert int(sym["head"].zero_point) == 0
    with pytest.raises(ValueError):
        calibrate_activations(model, TOK, bits=1)
    with pytest.raises(ValueError):
        calibrate_activations(model, [[0, 1, 99]])  # a token outside the vocabulary


def test_static_hook_fake_quantizes_with_the_calibrated_parameters(model):
    qps = calibrate_activations(model, TOK)
    hook = w8a8_hook("static", qps)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 5, 16)).astype(np.float32)
    w = model.params["blocks.0.attn.qkv.weight"]
    b = model.params["blocks.0.attn.qkv.bias"]
    y = hook("blocks.0.attn.qkv", x, w, b)
    wq = ql.fake_quantize(w, ql.choose_qparams(w, 8, symmetric=True, narrow=True, axis=0))
    ref = ql.fake_quantize(x[0], qps["blocks.0.attn.qkv"]) @ wq.T + b
    np.testing.assert_allclose(y[0], ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no entry for the linear 'head'"):
        w8a8_hook("static", {"blocks.0.attn.qkv": qps["blocks.0.attn.qkv"]})("head", x, w, b)
    # the calibrated model is close to float, and bits=4 is further away
    y8 = model.forward(TOK, linear=hook)
    y4 = model.forward(TOK, linear=w8a8_hook("static", calibrate_activations(model, TOK, bits=4), bits=4))
    e8, e4 = np.abs(y8 - model.forward(TOK)).max(), np.abs(y4 - model.forward(TOK)).max()
    assert 0 < e8 < e4


def test_smoothquant_undoes_a_diagonal_injection(model):
    # the caution of the chapter: smoothed ranges depend only on max|X_j| * max|W_j|, which a
    # function-preserving injection leaves unchanged, so SmoothQuant sees the same model either way
    from qlearn.activations import channel_ranges, inject_outliers, smooth_model

    big = inject_outliers(model, [1, 9], 30.0)
    for alpha in (0.0, 0.5, 1.0):
        r0 = channel_ranges(smooth_model(model, channel_ranges(model, TOK), alpha), TOK)
        r1 = channel_ranges(smooth_model(big, channel_ranges(big, TOK), alpha), TOK)
        for name in ("blocks.0.attn.qkv", "blocks.1.mlp.fc1"):
            np.testing.assert_allclose(r1[name], r0[name], rtol=1e-4)
    assert (
        channel_ranges(big, TOK)["blocks.0.attn.qkv"].max() > 10 * channel_ranges(model, TOK)["blocks.0.attn.qkv"].max()
    )


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_integer_path_equals_the_simulation(model, mode):
    qps = calibrate_activations(model, TOK) if mode == "static" else None
    sim = model.forward(TOK, linear=w8a8_hook(mode, qps))
    acc = model.forward(TOK, linear=w8a8_hook(mode, qps, integer=True))
    np.testing.assert_allclose(acc, sim, atol=2e-4)
    assert not np.allclose(sim, model.forward(TOK), atol=1e-6)  # and both differ from float
    with pytest.raises(TypeError):
        w8a8_hook(mode, qps, integer=1)


def test_weight_cache_is_not_fooled_by_a_reused_id(model):
    # a hook kept across models must not serve one model's quantized weights to another
    hook = w8a8_hook("dynamic")
    x = np.ones((1, 2, 16), np.float32)
    b = np.zeros(16, np.float32)
    for seed in range(20):  # fresh arrays, some at addresses just freed
        w = np.random.default_rng(seed).standard_normal((16, 16)).astype(np.float32)
        ref = w8a8_hook("dynamic")("l", x, w, b)
        np.testing.assert_array_equal(hook("l", x, w, b), ref)
        del w
