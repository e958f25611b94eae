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


# --- refuse what the integer path cannot represent ------------------------------------------
@pytest.mark.parametrize(
    "w_obs",
    [
        partial(MinMaxObserver, bits=8, symmetric=True, signed=False),  # zero point 128
        partial(MinMaxObserver, bits=4, symmetric=True, signed=False, axis=1),  # zero point 8 per channel
    ],
)
def test_weight_zero_point_must_be_zero(model, digits, w_obs):
    with pytest.raises(ValueError, match=r"weight zero point 0 .*got zero point\(s\) \[(128|8)\]"):
        ptq.prepare(model, w_obs)
    # a PreparedModel assembled by hand is checked again by convert
    p = ptq.calibrate(ptq.prepare(model), [digits.X_calibration])
    p.weight_observers[0] = w_obs().observe(model.layers[0].W)
    with pytest.raises(ValueError, match="weight zero point 0"):
        ptq.convert(p)


def relu_first(model):
    m = nn.MLP([64, 64, 10], seed=0)
    m.layers = [nn.ReLU(), *model.layers]
    return m


def test_layer_sequences_the_integer_path_cannot_run_are_refused(model):
    with pytest.raises(ValueError, match=r"layer 0 \(ReLU\(\)\) comes first"):
        ptq.prepare(relu_first(model))
    m = nn.MLP([64, 64, 10], seed=0)
    m.layers = [m.layers[0], nn.ReLU(), nn.ReLU(), m.layers[2]]
    with pytest.raises(ValueError, match=r"layer 2 \(ReLU\(\)\) comes after another ReLU"):
        ptq.prepare(m)
    with pytest.raises(TypeError, match="fold batch norm"):
        ptq.prepare(nn.MLP([64, 8, 10], batch_norm=True))
    # a model changed after prepare is refused by calibrate and convert too
    p = ptq.prepare(model)
    p.model = relu_first(model)
    with pytest.raises(ValueError, match="comes first"):
        ptq.convert(p)


def test_a_trailing_relu_is_kept(model, digits):
    m = nn.MLP([64, 64, 10], seed=0)
    m.layers = [*model.layers, nn.ReLU()]  # logits clamped at 0
    q = ptq.convert(ptq.calibrate(ptq.prepare(m), [digits.X_calibration]))
    assert [layer.relu for layer in q.layers] == [True, True]
    assert q.forward(digits.X_test).min() >= 0
    np.testing.assert_array_equal(
        q.forward_codes(digits.X_test), ql.quantize(q.simulate(digits.X_test), q.activation_qparams[-1])
    )


def test_convert_checks_what_it_is_given(model, digits):
    with pytest.raises(TypeError, match="PreparedModel"):
        ptq.convert(model)
    p = ptq.calibrate(ptq.prepare(model), [digits.X_calibration])
    with pytest.raises(ValueError, match="rounding must be one of"):
        ptq.convert(p, rounding="nearest")
    p.activation_observers = p.activation_observers[:-1]
    with pytest.raises(ValueError, match="needs 2 weight observers and 3 activation observers; got 2 and 2"):
        ptq.convert(p)


def test_forward_checks_the_input_shape(model, digits):
    q = quantized(model, digits)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 64\); got shape \(3, 5\)"):
        q.forward(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"x \(as float32\) must contain only finite"):
        q.simulate(np.full((1, 64), 1e39))


# --- one input path, one dtype: the integer model equals simulate() exactly ---------------------
@pytest.mark.parametrize("a_bits", range(2, 9))
@pytest.mark.parametrize("act", [MinMaxObserver, PercentileObserver])
def test_integer_codes_equal_simulate_at_every_activation_width(model, digits, a_bits, act):
    x = np.concatenate([digits.X_test, digits.X_calibration])
    for w_bits, per_channel in ((8, False), (4, True)):
        q = quantized(model, digits, w_bits, a_bits, per_channel=per_channel, act=act)
        codes = q.forward_codes(x)
        np.testing.assert_array_equal(codes, ql.quantize(q.simulate(x), q.activation_qparams[-1]))
        # the input is quantized once, in float32, for both
        np.testing.assert_array_equal(q.quantize_input(x), ql.quantize(x.astype(np.float32), q.activation_qparams[0]))


def test_float64_input_that_float32_rounds_differently(model, digits):
    # at 2-bit activations, find float64 inputs whose code differs between float64 and float32
    # quantization (they sit within a float32 rounding of a half step); both paths must use float32
    q = quantized(model, digits, 8, 2)
    qp = q.activation_qparams[0]
    s = float(qp.scale)
    ties = (np.arange(qp.qmin, qp.qmax) - int(qp.zero_point) + 0.5) * s  # half steps, float64
    candidates = np.concatenate([ties * (1 - 2.0**-30), ties * (1 + 2.0**-30)])
    candidates = candidates[candidates >= 0]
    c64, c32 = ql.quantize(candidates, qp), ql.quantize(candidates.astype(np.float32), qp)
    assert np.any(c64 != c32)  # the inputs do exercise the float64/float32 difference
    x = np.tile(candidates[c64 != c32][:1], (1, 64))  # (1, 64)
    np.testing.assert_array_equal(q.forward_codes(x), ql.quantize(q.simulate(x), q.activation_qparams[-1]))
    np.testing.assert_array_equal(q.quantize_input(x), np.tile(c32[c64 != c32][:1], (1, 64)))


def test_gemmlowp_rounding_through_convert(model, digits):
    p = ptq.calibrate(ptq.prepare(model), np.array_split(digits.X_calibration, 4))
    half_even, gemmlowp = ptq.convert(p), ptq.convert(p, rounding="gemmlowp")
    assert {layer.rounding for layer in gemmlowp.layers} == {"gemmlowp"}
    a, b = half_even.forward_codes(digits.X_test), gemmlowp.forward_codes(digits.X_test)
    assert np.abs(a.astype(np.int64) - b).max() <= 1  # a code at most, rarely


def test_convert_accepts_a_plain_mlp_built_by_hand(digits):
    # what batch-norm folding produces: a plain MLP whose Linear layers were rewritten
    m = nn.MLP([64, 32, 10], seed=1)
    m.layers[0].W = m.layers[0].W * np.float32(0.5)
    m.layers[0].b = np.full(32, 0.1, np.float32)
    q = ptq.convert(ptq.calibrate(ptq.prepare(m), [digits.X_calibration]))
    np.testing.assert_array_equal(
        q.forward_codes(digits.X_test), ql.quantize(q.simulate(digits.X_test), q.activation_qparams[-1])
    )


def test_bad_input_gives_value_or_type_errors_that_say_what(model, digits):
    q = quantized(model, digits)
    with pytest.raises(ValueError, match=r"y must hold integer class labels of shape \(359,\).*shape \(5,\)"):
        q.accuracy(digits.X_test, digits.y_test[:5])  # was numpy's broadcast message
    with pytest.raises(ValueError, match="got dtype float64"):
        q.accuracy(digits.X_test, digits.y_test.astype(float))
    with pytest.raises(TypeError, match="model must be a qlearn.nn.MLP; got str"):
        ptq.float_size_bytes("model")  # was AttributeError
    with pytest.raises(TypeError, match="batches must be an iterable"):
        ptq.calibrate(ptq.prepare(model), 3)
    with pytest.raises(TypeError, match="weight_observer must be a callable"):
        ptq.prepare(model, 3)
    with pytest.raises(ValueError, match="rectangular array"):
        q.simulate([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 64\); got shape \(64,\)"):
        q.predict(np.ones(64))


def test_quantized_linear_is_validated():
    from qlearn.integer import fixed_point

    ok = dict(
        q_w=np.ones((2, 3), np.int8),
        q_b=np.zeros(3, np.int32),
        z_x=0,
        multiplier=fixed_point(0.5),
        z_y=0,
        qmin_y=-128,
        qmax_y=127,
    )
    QuantizedLinear(**ok)
    for change, error, message in [
        ({"q_w": np.ones(3, np.int8)}, ValueError, "q_w must be a non-empty 2-d"),
        ({"q_w": np.ones((2, 3))}, TypeError, "q_w must hold integers"),
        ({"q_b": np.zeros(2, np.int32)}, ValueError, r"q_b must have shape \(3,\)"),
        ({"multiplier": 0.5}, TypeError, "FixedPoint"),
        ({"multiplier": fixed_point([0.5, 0.5])}, ValueError, r"multiplier must be a scalar or have shape \(3,\)"),
        ({"z_y": 200}, ValueError, r"z_y in \[qmin_y, qmax_y\]"),
        ({"z_x": 2**40}, ValueError, "z_x must be an int32 integer"),
        ({"relu": "yes"}, TypeError, "relu must be True or False"),
        ({"rounding": "up"}, ValueError, "rounding must be one of"),
    ]:
        with pytest.raises(error, match=message):
            QuantizedLinear(**{**ok, **change})
