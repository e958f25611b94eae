"""qlearn.rescue.cle: the function is unchanged (1e-12) and the ranges become sqrt(r1 r2)."""

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qlearn.nn import MLP, Linear
from qlearn.rescue import cross_layer_equalize, equalization_scales


def float64_model(sizes, rng):
    model = MLP(sizes, seed=2)
    for layer in model.layers:
        if isinstance(layer, Linear):
            # unequal channel ranges: columns scaled over three decades
            layer.W = layer.W.astype(np.float64) * 10 ** rng.uniform(-1.5, 1.5, layer.W.shape[1])
            layer.b = rng.standard_normal(layer.b.shape)
    return model


@given(st.integers(0, 10_000))
def test_outputs_unchanged_and_ranges_equalized(seed):
    rng = np.random.default_rng(seed)
    model = float64_model([5, 7, 3], rng)
    r1 = np.abs(model.layers[0].W).max(axis=0)
    r2 = np.abs(model.layers[2].W).max(axis=1)
    eq = cross_layer_equalize(model)
    x = rng.standard_normal((30, 5))
    np.testing.assert_allclose(eq.forward(x), model.forward(x), rtol=1e-12, atol=1e-12)
    new1, new2 = np.abs(eq.layers[0].W).max(axis=0), np.abs(eq.layers[2].W).max(axis=1)
    np.testing.assert_allclose(new1, np.sqrt(r1 * r2), rtol=1e-12)
    np.testing.assert_allclose(new2, np.sqrt(r1 * r2), rtol=1e-12)


def test_deeper_model_unchanged_and_iterations_converge(rng):
    model = float64_model([6, 8, 8, 4], rng)
    x = rng.standard_normal((25, 6))
    spread = []
    for it in (1, 2, 5):
        eq = cross_layer_equalize(model, iterations=it)
        np.testing.assert_allclose(eq.forward(x), model.forward(x), rtol=1e-12, atol=1e-12)
        r = [np.abs(eq.layers[i].W).max(axis=a) for i, a in ((0, 0), (2, 1))]
        spread.append(np.abs(np.log(r[0] / r[1])).max())
    assert spread[2] < spread[0]


def test_scales_golden_and_zero_channel():
    np.testing.assert_allclose(equalization_scales([[4.0, 1.0, 0.0]], [[1.0], [4.0], [2.0]]), [2.0, 0.5, 1.0])


def test_input_not_mutated_and_errors(rng):
    model = float64_model([4, 3, 2], rng)
    before = copy.deepcopy(model)
    cross_layer_equalize(model)
    assert all(np.array_equal(a, b) for a, b in zip(model.parameters(), before.parameters(), strict=True))
    with pytest.raises(ValueError, match="fold_batch_norm first"):
        cross_layer_equalize(MLP([4, 3, 2], batch_norm=True))
    with pytest.raises(ValueError, match="iterations must be"):
        cross_layer_equalize(model, iterations=0)
    with pytest.raises(ValueError, match="must chain"):
        equalization_scales(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(TypeError, match="qlearn.nn.MLP"):
        cross_layer_equalize(None)
