"""qlearn.nn: gradients against finite differences, training on the digits, determinism, errors."""

import copy
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlearn.datasets import load_digits_splits
from qlearn.nn import MLP, BatchNorm1d, Linear, ReLU, fit, softmax_cross_entropy

EPS = 1e-6  # central-difference step, in float64


def numeric_grad(f, x: np.ndarray) -> np.ndarray:
    """Central differences (f(x + h e_i) − f(x − h e_i)) / 2h, one coordinate at a time, on a copy."""
    x = x.astype(np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + EPS
        up = f(x)
        x[i] = old - EPS
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * EPS)
    return grad


def as_float64(obj):
    """A float64 copy of a layer or model (inputs are cast to the parameters' dtype)."""
    twin = copy.deepcopy(obj)
    for layer in twin.layers if isinstance(twin, MLP) else [twin]:
        if isinstance(layer, Linear):
            layer.W, layer.b = layer.W.astype(np.float64), layer.b.astype(np.float64)
    return twin


# --- gradient checks --------------------------------------------------------------------------
def test_linear_gradients_match_finite_differences(rng):
    layer = as_float64(Linear(5, 3, rng))
    layer.b = rng.standard_normal(3)
    x = rng.standard_normal((4, 5))
    r = rng.standard_normal((4, 3))  # L = sum(y * r), so dL/dy = r

    def loss_of(W=layer.W, b=layer.b, x=x):  # L(W, b, x) through the layer's own forward
        twin = copy.deepcopy(layer)
        twin.W, twin.b = W, b
        return float(np.sum(twin.forward(x) * r))

    grad_x, (grad_W, grad_b) = layer.backward(x, r)
    assert grad_x.dtype == grad_W.dtype == grad_b.dtype == np.float64
    np.testing.assert_allclose(grad_x, numeric_grad(lambda v: loss_of(x=v), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_W, numeric_grad(lambda v: loss_of(W=v), layer.W), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_b, numeric_grad(lambda v: loss_of(b=v), layer.b), rtol=1e-6, atol=1e-8)


def test_relu_gradient_matches_finite_differences(rng):
    x = rng.standard_normal((6, 4))
    x[np.abs(x) < 1e-3] = 0.5  # stay away from the kink at 0, where the derivative jumps
    r = rng.standard_normal((6, 4))
    grad_x, params = ReLU().backward(x, r)
    assert params == []
    expected = numeric_grad(lambda v: float(np.sum(ReLU().forward(v) * r)), x)
    np.testing.assert_allclose(grad_x, expected, rtol=1e-6, atol=1e-8)


def test_softmax_cross_entropy_gradient_matches_finite_differences(rng):
    z = rng.standard_normal((5, 4)) * 3
    y = np.array([0, 3, 1, 1, 2])
    _, grad = softmax_cross_entropy(z, y)
    expected = numeric_grad(lambda v: softmax_cross_entropy(v, y)[0], z)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-8)


def test_whole_model_gradients_match_finite_differences(rng):
    model = as_float64(MLP([6, 5, 4, 3], seed=3))
    x, y = rng.standard_normal((7, 6)), np.array([0, 1, 2, 2, 1, 0, 1])
    _, grads = model.loss_and_gradients(x, y)
    assert [g.shape for g in grads] == [p.shape for p in model.parameters()]
    for k, param in enumerate(model.parameters()):

        def loss_with(value, k=k):
            twin = copy.deepcopy(model)
            twin.parameters()[k][...] = value  # the twin's own arrays
            return twin.loss_and_gradients(x, y)[0]

        np.testing.assert_allclose(grads[k], numeric_grad(loss_with, param), rtol=1e-5, atol=1e-8)


# --- softmax cross-entropy: golden values, stability, properties --------------------------------
def test_softmax_cross_entropy_golden():
    loss, grad = softmax_cross_entropy(np.zeros((2, 4)), [1, 3])  # uniform: p = 1/4
    assert loss == pytest.approx(np.log(4))
    np.testing.assert_allclose(grad, [[0.125, -0.375, 0.125, 0.125], [0.125, 0.125, 0.125, -0.375]])
    loss, grad = softmax_cross_entropy(np.array([[1e4, 0.0, -1e4]], dtype=np.float32), [1])  # naive exp overflows
    assert loss == pytest.approx(1e4) and grad.dtype == np.float32
    np.testing.assert_allclose(grad, [[1.0, -1.0, 0.0]])


@given(
    z=hnp.arrays(np.float64, (3, 5), elements=st.floats(-50, 50)),
    y=hnp.arrays(np.int64, 3, elements=st.integers(0, 4)),
    c=st.floats(-100, 100),
)
def test_softmax_cross_entropy_properties(z, y, c):
    loss, grad = softmax_cross_entropy(z, y)
    assert loss >= 0
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-12)  # probabilities sum to 1 on every row
    loss_c, grad_c = softmax_cross_entropy(z + c, y)  # adding a constant to a row changes nothing
    assert loss_c == pytest.approx(loss, abs=1e-9)
    np.testing.assert_allclose(grad_c, grad, atol=1e-12)


# --- layers and model ------------------------------------------------------------------------
def test_he_initialisation_and_float32(rng):
    layer = Linear(400, 300, rng)
    assert layer.W.dtype == layer.b.dtype == np.float32 and layer.W.shape == (400, 300)
    assert layer.W.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02) and abs(layer.W.mean()) < 0.002
    np.testing.assert_array_equal(layer.b, 0)
    model = MLP([8, 6, 3], seed=0)
    acts = model.activations(rng.standard_normal((4, 8)))  # float64 in, float32 everywhere inside
    assert [a.dtype for a in acts] == [np.float32] * 4
    assert repr(model) == "MLP([8, 6, 3], seed=0)" and model.sizes == (8, 6, 3)


def test_model_layers_activations_and_prediction(rng):
    model = MLP([8, 6, 3], seed=0)
    first, relu, last = model.layers
    assert isinstance(first, Linear) and isinstance(relu, ReLU) and isinstance(last, Linear)
    assert model.parameters()[0] is first.W and model.parameters()[3] is last.b
    x = rng.standard_normal((5, 8)).astype(np.float32)
    acts = model.activations(x)
    np.testing.assert_array_equal(acts[1], x @ first.W + first.b)  # (5, 8) @ (8, 6)
    np.testing.assert_array_equal(acts[2], np.maximum(acts[1], 0))
    np.testing.assert_array_equal(acts[3], model.forward(x))
    np.testing.assert_array_equal(model.predict(x), np.argmax(acts[3], axis=1))
    assert model.accuracy(x, model.predict(x)) == 1.0
    assert MLP([8, 6, 3], seed=0).layers[0].W.tolist() == first.W.tolist()  # the seed fixes the weights
    assert not np.array_equal(MLP([8, 6, 3], seed=1).layers[0].W, first.W)


# --- training ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_digits_splits(seed=0)


@pytest.fixture(scope="module")
def trained(digits):
    start = time.perf_counter()
    model = fit(MLP([64, 64, 10], seed=0), digits.X_train, digits.y_train, seed=0)
    return model, time.perf_counter() - start


def test_training_reaches_95_percent_on_digits(digits, trained):
    model, seconds = trained
    acc = model.accuracy(digits.X_test, digits.y_test)
    assert acc >= 0.95, f"test accuracy {acc:.1%} after {seconds:.1f} s"
    assert model.accuracy(digits.X_train, digits.y_train) >= 0.99
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_loss_decreases(digits, trained):
    model, _ = trained
    history = model.loss_history_
    assert len(history) == 30
    assert history[0] > 5 * history[-1] and history[-1] < 0.05
    assert sum(b > a for a, b in zip(history, history[1:], strict=False)) <= 3  # almost always going down
    start = MLP([64, 64, 10], seed=0)
    before, _ = start.loss_and_gradients(digits.X_test, digits.y_test)
    after, _ = model.loss_and_gradients(digits.X_test, digits.y_test)
    assert after < before / 10


def test_training_is_deterministic(digits, trained):
    model, _ = trained
    again = fit(MLP([64, 64, 10], seed=0), digits.X_train, digits.y_train, seed=0)
    for p, q in zip(model.parameters(), again.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)
    assert again.loss_history_ == model.loss_history_
    other = fit(MLP([64, 64, 10], seed=0), digits.X_train, digits.y_train, epochs=1, seed=1)
    first_epoch = fit(MLP([64, 64, 10], seed=0), digits.X_train, digits.y_train, epochs=1, seed=0)
    assert not np.array_equal(other.layers[0].W, first_epoch.layers[0].W)  # the seed sets the shuffle


def test_nothing_is_mutated(rng):
    X = rng.standard_normal((20, 4))  # float64: fit casts a copy, never this array
    y = rng.integers(0, 3, 20)
    X0, y0 = X.copy(), y.copy()
    model = MLP([4, 5, 3], seed=0)
    params0 = [p.copy() for p in model.parameters()]
    trained = fit(model, X, y, epochs=3, batch_size=8)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    for p, p0 in zip(model.parameters(), params0, strict=True):
        np.testing.assert_array_equal(p, p0)  # the model passed in is untouched
    assert not hasattr(model, "loss_history_") and len(trained.loss_history_) == 3
    x32 = X.astype(np.float32)
    g = rng.standard_normal((20, 5)).astype(np.float32)
    x_copy, g_copy = x32.copy(), g.copy()
    layer = trained.layers[0]
    layer.forward(x32)
    layer.backward(x32, g)
    ReLU().backward(g, g)
    softmax_cross_entropy(g[:, :3], y)
    np.testing.assert_array_equal(x32, x_copy)
    np.testing.assert_array_equal(g, g_copy)


def test_progress_bar_goes_to_stderr_only_when_asked(rng, capsys):
    X, y = rng.standard_normal((10, 4)), rng.integers(0, 3, 10)
    fit(MLP([4, 3], seed=0), X, y, epochs=2)
    assert capsys.readouterr() == ("", "")
    fit(MLP([4, 3], seed=0), X, y, epochs=2, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("\repoch 1/2 [") and err.count("\r") == 2 and err.endswith("\n")
    assert "epoch 2/2 [" + "#" * 30 + "] loss " in err


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (np.zeros((2, 7)), ValueError, r"x must have shape \(batch, 8\); got shape \(2, 7\)"),
        (np.zeros(8), ValueError, r"x must have shape \(batch, 8\); got shape \(8,\)"),
        (np.array([[0.0] * 7 + [np.nan]]), ValueError, r"finite numbers; got 1 NaN .*, the first at index \(0, 7\)"),
        (np.array([["a"] * 8]), TypeError, r"x must hold real numbers"),
        (np.ones((2, 8), dtype=bool), TypeError, r"x must hold real numbers .*; got dtype bool"),
        (np.zeros((0, 8)), ValueError, r"x must contain at least one value"),
    ],
)
def test_bad_x_raises_clear_errors(x, error, message):
    model = MLP([8, 6, 3], seed=0)
    for call in (model.forward, model.predict, model.activations, model.layers[0].forward):
        with pytest.raises(error, match=message):
            call(x)


@pytest.mark.parametrize(
    ("y", "error", "message"),
    [
        (np.array([0.0, 1.0]), TypeError, r"y must hold integer class labels; got dtype float64"),
        (np.array([0, 1, 2]), ValueError, r"y must have shape \(2,\), one label per row of x; got shape \(3,\)"),
        (np.array([0, 3]), ValueError, r"y must hold labels in \[0, 2\]; got values in \[0, 3\]"),
        (np.array([-1, 0]), ValueError, r"y must hold labels in \[0, 2\]; got values in \[-1, 0\]"),
    ],
)
def test_bad_labels_raise_clear_errors(y, error, message):
    model, x = MLP([4, 3], seed=0), np.zeros((2, 4))
    with pytest.raises(error, match=message):
        model.accuracy(x, y)
    with pytest.raises(error, match=message):
        fit(model, x, y)
    with pytest.raises(error, match=message):
        softmax_cross_entropy(np.zeros((2, 3)), y)


def test_bad_layer_and_model_arguments(rng):
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator"):
        Linear(3, 2, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"in_features and out_features must be positive; got 0, 2"):
        Linear(0, 2, rng)
    with pytest.raises(TypeError, match=r"in_features must be an integer; got 3.0"):
        Linear(3.0, 2, rng)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sizes must be a sequence of at least two layer widths"):
        MLP([64])
    with pytest.raises(ValueError, match=r"layer widths must be positive; got \[64, 0, 10\]"):
        MLP([64, 0, 10])
    with pytest.raises(ValueError, match=r"grad_y must have the shape of the layer's output \(2, 2\)"):
        Linear(3, 2, rng).backward(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"logits must have shape \(batch, n_classes\); got shape \(3,\)"):
        softmax_cross_entropy(np.zeros(3), [0, 1, 2])
    assert MLP(np.array([4, 3])).sizes == (4, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"epochs": 0}, ValueError, r"epochs and batch_size must be positive integers; got 0 and 32"),
        ({"batch_size": 2.5}, TypeError, r"batch_size must be an integer; got 2.5"),
        ({"lr": 0.0}, ValueError, r"lr must be a positive finite number; got 0.0"),
        ({"lr": float("nan")}, ValueError, r"lr must be a positive finite number; got nan"),
        ({"lr": "0.1"}, TypeError, r"lr must be a real number; got '0.1' of type str"),
        ({"momentum": 1.0}, ValueError, r"momentum must be in \[0, 1\); got 1.0"),
        ({"seed": None}, TypeError, r"seed must be an integer; got None"),
        ({"progress": 1}, TypeError, r"progress must be True or False; got 1"),
    ],
)
def test_bad_fit_settings(kwargs, error, message):
    with pytest.raises(error, match=message):
        fit(MLP([4, 3]), np.zeros((2, 4)), np.array([0, 1]), **kwargs)


def test_fit_needs_a_model_and_matching_data():
    with pytest.raises(TypeError, match=r"model must be an MLP; got Linear"):
        fit(Linear(4, 3, np.random.default_rng(0)), np.zeros((2, 4)), [0, 1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"X must have shape \(batch, 4\); got shape \(2, 5\)"):
        fit(MLP([4, 3]), np.zeros((2, 5)), [0, 1])
    with pytest.raises(ValueError, match=r"X must contain only finite numbers"):
        fit(MLP([4, 3]), np.array([[0, 0, np.inf, 0]]), [0])


# --- batch norm ---------------------------------------------------------------------------------
def bn_float64(obj):
    """A float64 copy of a layer or model, batch-norm parameters and statistics included."""
    twin = as_float64(obj)
    for layer in twin.layers if isinstance(twin, MLP) else [twin]:
        if isinstance(layer, BatchNorm1d):
            for name in ("gamma", "beta", "running_mean", "running_var"):
                setattr(layer, name, getattr(layer, name).astype(np.float64))
    return twin


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradients_match_finite_differences(rng, training):
    layer = bn_float64(BatchNorm1d(3))
    layer.gamma, layer.beta = rng.standard_normal(3), rng.standard_normal(3)
    layer.running_mean, layer.running_var = rng.standard_normal(3), rng.random(3) + 0.5
    layer.training = training
    x, r = rng.standard_normal((6, 3)) * 2 + 1, rng.standard_normal((6, 3))

    def loss_of(gamma=layer.gamma, beta=layer.beta, x=x):
        twin = copy.deepcopy(layer)
        twin.gamma, twin.beta = gamma, beta
        return float(np.sum(twin.forward(x) * r))

    grad_x, (grad_g, grad_b) = layer.backward(x, r)
    np.testing.assert_allclose(grad_x, numeric_grad(lambda v: loss_of(x=v), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_g, numeric_grad(lambda v: loss_of(gamma=v), layer.gamma), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_b, numeric_grad(lambda v: loss_of(beta=v), layer.beta), rtol=1e-6, atol=1e-8)


def test_whole_batch_norm_model_gradients_in_training_mode(rng):
    model = bn_float64(MLP([6, 5, 4, 3], seed=3, batch_norm=True)).train(True)
    x, y = rng.standard_normal((7, 6)), np.array([0, 1, 2, 2, 1, 0, 1])
    _, grads = model.loss_and_gradients(x, y)
    assert [g.shape for g in grads] == [p.shape for p in model.parameters()]
    for k, param in enumerate(model.parameters()):

        def loss_with(value, k=k):
            twin = copy.deepcopy(model)
            twin.parameters()[k][...] = value
            return twin.loss_and_gradients(x, y)[0]

        np.testing.assert_allclose(grads[k], numeric_grad(loss_with, param), rtol=1e-5, atol=1e-8)


def test_batch_norm_golden_statistics_and_modes():
    bn = bn_float64(BatchNorm1d(2, momentum=0.5))
    x = np.array([[1.0, 0.0], [3.0, 0.0], [5.0, 6.0]])
    assert not bn.training  # a fresh layer evaluates with mean 0, variance 1
    np.testing.assert_allclose(bn.forward(x), x / np.sqrt(1 + 1e-5))
    bn.training = True
    y = bn.forward(x)  # batch mean (3, 2), biased variance (8/3, 8)
    np.testing.assert_allclose(y[:, 0], [-2, 0, 2] / np.sqrt(8 / 3 + 1e-5))
    np.testing.assert_allclose(bn.running_mean, [1.5, 1.0])  # 0.5 * 0 + 0.5 * mean
    np.testing.assert_allclose(bn.running_var, [0.5 + 0.5 * 4.0, 0.5 + 0.5 * 12.0])  # unbiased: 4, 12
    bn.training = False
    np.testing.assert_allclose(bn.forward(x)[:, 1], (x[:, 1] - 1.0) / np.sqrt(6.5 + 1e-5))
    grad_x, _ = bn.backward(x, np.ones_like(x))  # evaluation: gamma / sigma per feature
    np.testing.assert_allclose(grad_x[0], 1 / np.sqrt([2.5 + 1e-5, 6.5 + 1e-5]))


def test_batch_norm_training_output_is_standardised(rng):
    bn = BatchNorm1d(4)
    bn.training = True
    y = bn.forward(rng.standard_normal((50, 4)).astype(np.float32) * 3 + 2)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=0), 1, atol=1e-3)
    with pytest.raises(ValueError, match="at least 2 rows"):
        bn.forward(np.ones((1, 4), np.float32))


def test_batch_norm_model_layers_fit_and_modes(digits):
    model = MLP([64, 16, 10], seed=0, batch_norm=True)
    assert repr(model.layers) == "[Linear(64, 16), BatchNorm1d(16), ReLU(), Linear(16, 10)]"
    assert repr(model) == "MLP([64, 16, 10], seed=0, batch_norm=True)"
    trained = fit(model, digits.X_train, digits.y_train, epochs=5, batch_size=33)  # 1238 = 37 * 33 + 17
    assert not trained.layers[1].training and not model.layers[1].training
    assert np.all(model.layers[1].running_mean == 0)  # the argument is untouched
    assert not np.all(trained.layers[1].running_mean == 0)
    assert trained.accuracy(digits.X_test, digits.y_test) > 0.9
    a, b = trained.predict(digits.X_test), trained.predict(digits.X_test)
    assert np.array_equal(a, b)  # evaluation mode: no statistics move between calls


def test_batch_norm_bad_arguments():
    with pytest.raises(ValueError, match="num_features must be positive"):
        BatchNorm1d(0)
    with pytest.raises(ValueError, match="momentum must be in"):
        BatchNorm1d(3, momentum=0.0)
    with pytest.raises(ValueError, match="eps must be positive"):
        BatchNorm1d(3, eps=0.0)
    with pytest.raises(TypeError, match="batch_norm must be True or False"):
        MLP([4, 3], batch_norm=1)
    with pytest.raises(TypeError, match="mode must be True or False"):
        MLP([4, 3]).train("yes")
