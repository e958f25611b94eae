"""qlearn.rescue.bn_fold: folding batch norm is exact (float64) and leaves the model untouched."""

import copy

import numpy as np
import pytest

from qlearn.nn import MLP, BatchNorm1d, Linear, ReLU
from qlearn.rescue import fold_batch_norm


def random_bn_model(rng, dtype=np.float64):
    model = MLP([6, 5, 4, 3], seed=1, batch_norm=True)
    for layer in model.layers:
        if isinstance(layer, Linear):
            layer.W, layer.b = layer.W.astype(dtype), rng.standard_normal(layer.b.shape).astype(dtype)
        elif isinstance(layer, BatchNorm1d):
            n = layer.num_features
            layer.gamma, layer.beta = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
            layer.running_mean = rng.standard_normal(n).astype(dtype)
            layer.running_var = (rng.random(n) * 3 + 0.1).astype(dtype)
    return model


def test_folding_is_exact_in_float64(rng):
    model = random_bn_model(rng)
    folded = fold_batch_norm(model)
    assert [type(layer) for layer in folded.layers] == [Linear, ReLU, Linear, ReLU, Linear]
    x = rng.standard_normal((20, 6))
    np.testing.assert_allclose(folded.forward(x), model.forward(x), rtol=0, atol=1e-12)
    assert folded.layers[0].W.dtype == np.float64


def test_folding_golden_one_channel():
    model = MLP([1, 1, 1], seed=0, batch_norm=True)
    lin, bn = model.layers[0], model.layers[1]
    lin.W[...], lin.b[...] = 2.0, 1.0
    bn.gamma[...], bn.beta[...], bn.running_mean[...], bn.running_var[...] = 3.0, 0.5, 4.0, 9.0 - 1e-5
    folded = fold_batch_norm(model)
    # gamma / sigma = 3 / 3 = 1: W' = 2, b' = (1 - 4) * 1 + 0.5
    np.testing.assert_allclose([folded.layers[0].W[0, 0], folded.layers[0].b[0]], [2.0, -2.5], rtol=1e-6)


def test_folding_matches_trained_float32_model(rng):
    from qlearn.datasets import load_digits_splits
    from qlearn.nn import fit

    d = load_digits_splits(seed=0)
    model = fit(MLP([64, 32, 10], seed=0, batch_norm=True), d.X_train, d.y_train, epochs=3)
    folded = fold_batch_norm(model)
    np.testing.assert_allclose(folded.forward(d.X_test), model.forward(d.X_test), atol=1e-4)
    assert np.array_equal(folded.predict(d.X_test), model.predict(d.X_test))


def test_input_not_mutated_and_errors(rng):
    model = random_bn_model(rng)
    before = copy.deepcopy(model)
    fold_batch_norm(model)
    for a, b in zip(model.parameters(), before.parameters(), strict=True):
        assert np.array_equal(a, b)
    with pytest.raises(TypeError, match="qlearn.nn.MLP"):
        fold_batch_norm("model")
    bad = MLP([3, 2], seed=0)
    bad.layers.insert(0, BatchNorm1d(3))
    with pytest.raises(ValueError, match="does not follow a Linear"):
        fold_batch_norm(bad)
