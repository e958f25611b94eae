"""qlearn.ptq and the integer-only model: prepare → calibrate → convert on the digits."""

from functools import partial

import numpy as np
import pytest

import qlearn as ql
from qlearn import nn, ptq
from qlearn.integer import QuantizedLinear
from qlearn.observers import EntropyObserver, MinMaxObserver, MSEObserver, PercentileObserver


@pytest.fixture(scope="module")
def digits():
    return ql.datasets.load_digits_splits(seed=0)


@pytest.fixture(scope="module")
def model(digits):
    return nn.fit(nn.MLP([64, 64, 10], seed=0), digits.X_train, digits.y_train, seed=0)


def quantized(model, digits, w_bits=8, a_bits=8, per_channel=False, act=MinMaxObserver):
    w_obs = partial(MinMaxObserver, bits=w_bits, symmetric=True, axis=1 if per_channel else None)
    p = ptq.prepare(model, w_obs, partial(act, bits=a_bits))
    return ptq.convert(ptq.calibrate(p, np.array_split(digits.X_calibration, 4)))


def test_w8a8_close_to_float(model, digits):
    fp32 = model.accuracy(digits.X_test, digits.y_test)
    for per_channel in (False, True):
        q = quantized(model, digits, per_channel=per_channel)
        assert q.accuracy(digits.X_test, digits.y_test) >= fp32 - 0.005


def test_w4a8_per_channel_within_three_points(model, digits):
    fp32 = model.accuracy(digits.X_test, digits.y_test)
    q = quantized(model, digits, w_bits=4, per_channel=True)
    assert q.accuracy(digits.X_test, digits.y_test) >= fp32 - 0.03


@pytest.mark.parametrize(
    ("w_bits", "a_bits", "act"),
    [(8, 8, MinMaxObserver), (4, 8, MSEObserver), (4, 4, PercentileObserver), (8, 8, EntropyObserver)],
)
def test_integer_path_equals_simulated_model(model, digits, w_bits, a_bits, act):
    q = quantized(model, digits, w_bits, a_bits, per_channel=True, act=act)
    codes = q.forward_codes(digits.X_test)
    simulated = ql.quantize(q.simulate(digits.X_test), q.activation_qparams[-1])
    agreement = np.mean(np.all(codes == simulated, axis=1))
    assert agreement >= 0.99
    np.testing.assert_array_equal(q.predict(digits.X_test)[agreement == 1], np.argmax(simulated, 1)[agreement == 1])


@pytest.mark.parametrize("w_bits", range(2, 9))
@pytest.mark.parametrize("a_bits", range(2, 9))
def test_accumulators_cannot_overflow(model, digits, w_bits, a_bits):
    # convert() refuses a model whose worst case leaves int32; here we show the margin
    q = quantized(model, digits, w_bits, a_bits, per_channel=True)
    assert max(q.accumulator_bounds()) < 2**31 - 1
    # the worst case is reachable: feed the codes that maximise layer 1's accumulator
    layer, qp = q.layers[0], q.activation_qparams[0]
    j = int(np.argmax(np.abs(layer.q_w.astype(np.int64)).sum(axis=0)))
    extreme = np.where(layer.q_w[:, j] > 0, qp.qmax, qp.qmin).astype(qp.dtype)[None, :]
    layer.forward(extreme)  # raises OverflowError if an accumulator left int32


def test_layers_hold_only_integers(model, digits):
    q = quantized(model, digits, per_channel=True)
    for layer in q.layers:
        assert isinstance(layer, QuantizedLinear)
        assert layer.q_w.dtype == np.int8 and layer.q_b.dtype == np.int32
        assert layer.multiplier.m0.dtype == np.int64 and isinstance(layer.z_x, int)
    assert q.forward_codes(digits.X_test[:5]).dtype == np.uint8


def test_size(model, digits):
    assert ptq.float_size_bytes(model) == 4 * (64 * 64 + 64 + 64 * 10 + 10)
    w8 = quantized(model, digits).size_bytes()
    w4 = quantized(model, digits, w_bits=4).size_bytes()
    assert w8 == (64 * 64 + 64 * 10) + 4 * (64 + 10) + 4 * 2 + 8 * 3
    assert w4 < w8 < ptq.float_size_bytes(model) / 3


def test_nothing_is_mutated(model, digits):
    before = [p.copy() for p in model.parameters()]
    x_before = digits.X_calibration.copy()
    quantized(model, digits, per_channel=True)
    for p, b in zip(model.parameters(), before, strict=True):
        np.testing.assert_array_equal(p, b)
    np.testing.assert_array_equal(digits.X_calibration, x_before)


def test_bad_input(model):
    with pytest.raises(TypeError, match="qlearn.nn.MLP"):
        ptq.prepare("model")
    with pytest.raises(ValueError, match="symmetric"):
        ptq.prepare(model, partial(MinMaxObserver, bits=8))
    with pytest.raises(ValueError, match="axis=1"):
        ptq.prepare(model, partial(MinMaxObserver, symmetric=True, axis=0))
    with pytest.raises(ValueError, match="at most 8"):
        ptq.prepare(model, partial(MinMaxObserver, bits=12, symmetric=True))
    with pytest.raises(TypeError, match="returned int"):
        ptq.prepare(model, lambda: 3)
    with pytest.raises(ValueError, match="per tensor"):
        ptq.prepare(model, activation_observer=partial(MinMaxObserver, axis=1))
    with pytest.raises(ValueError, match="at least one batch"):
        ptq.calibrate(ptq.prepare(model), [])
    with pytest.raises(RuntimeError, match="call observe"):
        ptq.convert(ptq.prepare(model))
    with pytest.raises(ValueError, match="shape"):
        ptq.calibrate(ptq.prepare(model), [np.ones((3, 5), np.float32)])
