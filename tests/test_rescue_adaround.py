"""qlearn.rescue.adaround: decisions end binary, on the grid, and never reconstruct worse than RTN."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlearn import choose_qparams, fake_quantize
from qlearn.nn import MLP, Linear
from qlearn.rescue import adaround, adaround_layer, mse_weight_qparams, rectified_sigmoid


def test_rectified_sigmoid_reaches_zero_and_one():
    h = rectified_sigmoid([-10.0, -2.3, 0.0, 2.3, 10.0])  # exactly 0 below -ln 11 = -2.398
    assert h[0] == 0.0 and h[-1] == 1.0 and abs(h[2] - 0.5) < 1e-12
    assert 0 < h[1] < 0.01 and 0.99 < h[3] < 1  # just inside the stretch: (1.1 * sigmoid - 0.1) still soft


@settings(max_examples=15)
@given(st.integers(0, 10_000), st.sampled_from([2, 3, 4]), st.booleans())
def test_decisions_binary_on_grid_and_not_worse_than_rtn(seed, bits, per_channel):
    rng = np.random.default_rng(seed)
    W, X = rng.standard_normal((12, 5)), rng.standard_normal((60, 12))
    qp = choose_qparams(W, bits=bits, symmetric=True, axis=1 if per_channel else None)
    r = adaround_layer(W, X, X @ W, qp, iterations=200)
    assert r.up.dtype == np.bool_ and r.up.shape == W.shape
    s = qp.scale.astype(np.float64)
    np.testing.assert_allclose(r.W, s * np.clip(np.floor(W / s) + r.up, qp.qmin, qp.qmax), rtol=0, atol=1e-12)
    assert r.error <= r.rtn_error
    rtn = fake_quantize(W, qp).astype(np.float64)
    np.testing.assert_allclose(r.rtn_error, ((X @ rtn - X @ W) ** 2).sum() / 60, rtol=1e-10)


def test_learned_rounding_beats_rtn_on_digits():
    from qlearn.datasets import load_digits_splits
    from qlearn.nn import fit

    d = load_digits_splits(seed=0)
    model = fit(MLP([64, 32, 10], seed=0), d.X_train, d.y_train, epochs=10)
    W = model.layers[0].W
    qp = mse_weight_qparams(W, bits=2)
    r = adaround_layer(W, d.X_calibration, d.X_calibration @ W, qp)
    assert not r.used_rtn and r.error < 0.8 * r.rtn_error
    # decisions differ from round-to-nearest for some weights, and it's not all "up"
    nearest = np.rint(W / qp.scale) > np.floor(W / qp.scale)
    assert 0 < np.mean(r.up != nearest) < 0.5


def test_whole_model_weights_on_grid_and_input_untouched(rng):
    model = MLP([6, 8, 3], seed=0)
    before = copy.deepcopy(model)
    X = rng.random((50, 6)).astype(np.float32)
    qps = [mse_weight_qparams(layer.W, 3) for layer in model.layers if isinstance(layer, Linear)]
    out = adaround(model, qps, X, iterations=100)
    for layer, qp in zip(out.layers[::2], qps, strict=True):
        np.testing.assert_allclose(layer.W, fake_quantize(layer.W, qp), rtol=0, atol=1e-7)
    assert all(np.array_equal(a, b) for a, b in zip(model.parameters(), before.parameters(), strict=True))


def test_errors(rng):
    W, X = rng.standard_normal((4, 3)), rng.standard_normal((10, 4))
    qp = choose_qparams(W, bits=3, symmetric=True)
    with pytest.raises(ValueError, match="need W"):
        adaround_layer(W, X.T, X @ W, qp)
    with pytest.raises(ValueError, match="zero point 0"):
        adaround_layer(W, X, X @ W, choose_qparams(W, bits=3))
    with pytest.raises(ValueError, match="iterations >= 1"):
        adaround_layer(W, X, X @ W, qp, iterations=0)
    with pytest.raises(TypeError, match="QParams"):
        adaround_layer(W, X, X @ W, 0.1)
    with pytest.raises(ValueError, match="one QParams per Linear"):
        adaround(MLP([4, 3, 2]), [qp], X)
