import numpy as np
import pytest

from qlearn.weightonly import activation_scales, awq, rtn, scale_layer


def inputs(rng, n_rows, n_in):
    return rng.standard_normal((n_rows, n_in)) * rng.lognormal(0.0, 1.0, n_in)


def test_alpha_zero_is_rtn(rng):
    w, x = rng.standard_normal((16, 64)), inputs(rng, 128, 64)
    aq = awq(w, x, 4, 32, alpha=0.0, clip_search=False)
    ref = rtn(w, 4, 32)
    assert np.all(aq.input_scale == 1.0)
    assert np.array_equal(aq.quant.codes, ref.codes)
    np.testing.assert_array_equal(aq.dequantize(np.float64), ref.dequantize(np.float64))


def test_scaled_float_layer_is_the_layer(rng):
    w, x = rng.standard_normal((16, 64)), inputs(rng, 128, 64)
    for alpha in (0.25, 0.5, 1.0):
        ws, xs = scale_layer(w, x, activation_scales(x, alpha))
        np.testing.assert_allclose(xs @ ws.T, x @ w.T, rtol=1e-12, atol=1e-12)


def test_activation_scales_by_hand():
    x = np.array([[1.0, -4.0, 0.0], [-3.0, 4.0, 0.0]])  # mean |x|: 2, 4, 0 -> clamped to 1e-4
    m = np.array([2.0, 4.0, 1e-4])
    s = activation_scales(x, 0.5)
    np.testing.assert_allclose(s, m**0.5 / np.sqrt(2.0 * 1e-2))
    assert np.all(activation_scales(x, 0.0) == 1.0)


def output_error(x, w, w_hat):
    return float(np.mean((x @ (w - w_hat).T) ** 2))


def test_scale_search_never_worse_than_rtn(rng):
    for _ in range(10):
        w, x = rng.standard_normal((32, 64)), inputs(rng, 256, 64)
        aq = awq(w, x, 3, 32, clip_search=False)
        assert output_error(x, w, aq.dequantize(np.float64)) <= output_error(x, w, rtn(w, 3, 32).dequantize(np.float64))


def test_clip_search_helps_and_picks_from_grid(rng):
    w, x = rng.standard_normal((32, 128)), inputs(rng, 256, 128)
    plain = awq(w, x, 3, 32, clip_search=False)
    clipped = awq(w, x, 3, 32)
    assert output_error(x, w, clipped.dequantize(np.float64)) < output_error(x, w, plain.dequantize(np.float64))
    assert set(np.round(clipped.clip.ravel() * 20).astype(int)) <= set(range(10, 21))
    assert 0 <= clipped.alpha < 1


def test_inputs_unchanged(rng):
    w, x = rng.standard_normal((8, 32)), inputs(rng, 64, 32)
    w0, x0 = w.copy(), x.copy()
    awq(w, x, 4, 16)
    assert np.array_equal(w, w0) and np.array_equal(x, x0)


def test_bad_input(rng):
    w, x = rng.standard_normal((8, 32)), inputs(rng, 64, 32)
    with pytest.raises(ValueError):
        awq(w, x[:, :31], 4, 16)
    with pytest.raises(ValueError):
        awq(w, x, 4, 16, alpha=1.5)
    with pytest.raises(ValueError):
        awq(w, x, 4, 16, max_shrink=1.0)
    with pytest.raises(ValueError):
        awq(w, x, 4, 16, n_grid=0)
    with pytest.raises(ValueError):
        scale_layer(w, x, -np.ones(32))
    with pytest.raises(ValueError):
        scale_layer(w, x, np.ones(31))
