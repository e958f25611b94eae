"""qlearn.rescue.bias_correction: mean output error on the calibration data driven to ~0."""

import copy

import numpy as np
import pytest

from qlearn import choose_qparams, fake_quantize
from qlearn.nn import MLP, Linear
from qlearn.rescue import correct_bias


def pre_activations(model, x):
    """The output of every Linear layer (before its ReLU), in the parameters' dtype."""
    out = []
    for layer in model.layers:
        x = layer.forward(x)
        if isinstance(layer, Linear):
            out.append(x)
    return out


def test_mean_error_of_every_layer_is_zero(rng):
    model = MLP([8, 16, 16, 4], seed=0)
    for layer in model.layers:
        if isinstance(layer, Linear):
            layer.W, layer.b = layer.W.astype(np.float64), layer.b.astype(np.float64) + 0.1
    x = rng.random((100, 8))
    qps = [choose_qparams(layer.W, bits=2, symmetric=True, axis=1) for layer in model.layers[::2]]
    naive = copy.deepcopy(model)
    for layer, qp in zip(naive.layers[::2], qps, strict=True):
        layer.W = fake_quantize(layer.W, qp).astype(np.float64)
    fixed = correct_bias(model, qps, x)
    for ref, before, after in zip(
        pre_activations(model, x), pre_activations(naive, x), pre_activations(fixed, x), strict=True
    ):
        assert np.abs((before - ref).mean(axis=0)).max() > 1e-3  # 2-bit weights shift the mean
        np.testing.assert_allclose((after - ref).mean(axis=0), 0, atol=1e-12)
    for layer, qp in zip(fixed.layers[::2], qps, strict=True):  # weights are the quantized ones
        np.testing.assert_array_equal(layer.W, fake_quantize(layer.W, qp))


def test_bias_correction_helps_on_digits():
    from qlearn.datasets import load_digits_splits
    from qlearn.nn import fit

    d = load_digits_splits(seed=0)
    model = fit(MLP([64, 64, 10], seed=0), d.X_train, d.y_train, epochs=10)
    qps = [choose_qparams(layer.W, bits=3, symmetric=True) for layer in model.layers[::2]]
    naive = copy.deepcopy(model)
    for layer, qp in zip(naive.layers[::2], qps, strict=True):
        layer.W = fake_quantize(layer.W, qp)
    fixed = correct_bias(model, qps, d.X_calibration)
    err = [np.abs((m.forward(d.X_test) - model.forward(d.X_test)).mean(axis=0)).mean() for m in (naive, fixed)]
    assert err[1] < err[0]


def test_errors(rng):
    model = MLP([4, 3, 2])
    qp = choose_qparams(model.layers[0].W, bits=4, symmetric=True)
    with pytest.raises(ValueError, match="one QParams per Linear"):
        correct_bias(model, [qp], rng.random((5, 4)))
    with pytest.raises(ValueError, match="fold_batch_norm"):
        correct_bias(MLP([4, 3, 2], batch_norm=True), [qp, qp], rng.random((5, 4)))
    with pytest.raises(TypeError, match="qlearn.nn.MLP"):
        correct_bias([], [qp], rng.random((5, 4)))
