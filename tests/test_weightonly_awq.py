import numpy as np
import pytest

from qlearn.weightonly import activation_scales, awq, rtn, scale_layer


def inputs(rng, n_rows, n_in):
    return rng.standard_normal((n_rows, n_in)) * rng.lognormal(0.0, 1.0, n_in)


def output_error(x, w, w_hat):
    return float(np.mean((x @ (w - w_hat).T) ** 2))


def test_alpha_zero_is_rtn(rng):
    w, x = rng.standard_normal((16, 64)), inputs(rng, 128, 64)
    aq = awq(w, x, 4, 32, alpha=0.0, clip_search=False, scaling="activation")
    ref = rtn(w, 4, 32)
    assert np.all(aq.input_scale == 1.0)
    assert np.all(aq.clip == 1.0) and aq.clip.shape == (16, 2, 2)
    assert np.array_equal(aq.quant.codes, ref.codes)
    np.testing.assert_array_equal(aq.dequantize(np.float64), ref.dequantize(np.float64))


def test_scaled_float_layer_is_the_layer(rng):
    w, x = rng.standard_normal((16, 64)), inputs(rng, 128, 64)
    for alpha in (0.25, 0.5, 1.0):
        for kw in ({}, {"w": w, "group_size": 32}):
            ws, xs = scale_layer(w, x, activation_scales(x, alpha, **kw))
            np.testing.assert_allclose(xs @ ws.T, x @ w.T, rtol=1e-12, atol=1e-12)


def test_activation_scales_by_hand():
    x = np.array([[1.0, -4.0, 0.0], [-3.0, 4.0, 0.0]])  # mean |x|: 2, 4, 0 -> clamped to 1e-4
    m = np.array([2.0, 4.0, 1e-4])
    s = activation_scales(x, 0.5)
    np.testing.assert_allclose(s, m**0.5 / np.sqrt(2.0 * 1e-2))
    assert np.all(activation_scales(x, 0.0) == 1.0)


def test_duo_scales_by_hand():
    x = np.array([[1.0, -4.0, 2.0, 2.0], [-3.0, 4.0, 2.0, -2.0]])  # mean |x|: 2, 4, 2, 2
    w = np.array([[1.0, -2.0, 4.0, 0.0], [2.0, 1.0, -1.0, 3.0]])
    # |w| / max|w| of its (row, group of 2): row 0 [.5, 1 | 1, 0], row 1 [1, .5 | 1/3, 1]
    v = np.array([0.75, 0.75, 2 / 3, 0.5])
    u = np.array([2.0, 4.0, 2.0, 2.0]) ** 0.25 / v**0.75
    np.testing.assert_allclose(activation_scales(x, 0.25, w=w, group_size=2), u / np.sqrt(u.max() * u.min()))
    # alpha = 1 ignores the weights; per channel (group_size None) the groups are whole rows
    np.testing.assert_allclose(activation_scales(x, 1.0, w=w), activation_scales(x, 1.0))
    row = np.abs(w) / np.abs(w).max(axis=1, keepdims=True)
    u0 = 1 / row.mean(axis=0)
    np.testing.assert_allclose(activation_scales(x, 0.0, w=w), u0 / np.sqrt(u0.max() * u0.min()))


@pytest.mark.parametrize("scaling", ["activation", "duo"])
def test_scale_search_never_worse_than_its_grid(rng, scaling):
    # the chosen exponent is the best on the grid, judged after the clipping search
    w, x = rng.standard_normal((32, 64)), inputs(rng, 256, 64)
    best = awq(w, x, 3, 32, scaling=scaling)
    for alpha in (0.0, 0.3, 0.6, 0.95):
        fixed = awq(w, x, 3, 32, alpha=alpha, scaling=scaling)
        assert output_error(x, w, best.dequantize(np.float64)) <= output_error(x, w, fixed.dequantize(np.float64))


def test_never_worse_than_rtn(rng):
    for _ in range(5):
        w, x = rng.standard_normal((32, 64)), inputs(rng, 256, 64)
        plain = output_error(x, w, rtn(w, 3, 32).dequantize(np.float64))
        aq = awq(w, x, 3, 32, scaling="activation", clip_search=False)
        assert output_error(x, w, aq.dequantize(np.float64)) <= plain
        assert output_error(x, w, awq(w, x, 3, 32, scaling="activation").dequantize(np.float64)) <= plain


def test_clip_search_helps_and_picks_from_grid(rng):
    w, x = rng.standard_normal((32, 128)), inputs(rng, 256, 128)
    plain = awq(w, x, 3, 32, clip_search=False)
    clipped = awq(w, x, 3, 32)
    assert output_error(x, w, clipped.dequantize(np.float64)) < output_error(x, w, plain.dequantize(np.float64))
    assert clipped.clip.shape == (32, 4, 2)
    assert set(np.round(clipped.clip.ravel() * 20).astype(int)) <= set(range(10, 21))
    assert 0 <= clipped.alpha < 1


def test_clip_ends(rng):
    w, x = rng.standard_normal((32, 128)), inputs(rng, 256, 128)
    shared = awq(w, x, 3, 32, alpha=0.5, clip_ends="shared")
    separate = awq(w, x, 3, 32, alpha=0.5, clip_ends="separate")
    assert np.array_equal(shared.clip[..., 0], shared.clip[..., 1])
    assert not np.array_equal(separate.clip[..., 0], separate.clip[..., 1])
    # the separate search contains every shared pair, so no (row, group) error rises; in total it falls
    assert output_error(x, w, separate.dequantize(np.float64)) < output_error(x, w, shared.dequantize(np.float64))


def test_shared_clip_is_rtn_with_a_shrunk_range(rng):
    w, x = rng.standard_normal((8, 64)), inputs(rng, 128, 64)
    aq = awq(w, x, 4, 32, alpha=0.0, scaling="activation", clip_ends="shared")
    ref = rtn(w, 4, 32, clip=aq.clip[..., 0])
    np.testing.assert_allclose(aq.dequantize(np.float64), ref.dequantize(np.float64), atol=1e-6)


def test_codes_and_range_of_the_clipped_groups(rng):
    w, x = rng.standard_normal((8, 64)), inputs(rng, 128, 64)
    aq = awq(w, x, 3, 16)
    assert aq.quant.codes.min() >= 0 and aq.quant.codes.max() <= 7
    ws = (w * aq.input_scale).reshape(8, 4, 16)
    lo, hi = ws.min(-1) * aq.clip[..., 0], ws.max(-1) * aq.clip[..., 1]
    wh = (aq.quant.dequantize(np.float64)).reshape(8, 4, 16)
    step = aq.quant.scale[..., None].astype(np.float64)
    # every dequantized scaled weight lies within half a step of its group's clipped range
    assert np.all(wh >= np.minimum(lo, 0)[..., None] - step / 2 - 1e-6)
    assert np.all(wh <= np.maximum(hi, 0)[..., None] + step / 2 + 1e-6)


def test_inputs_unchanged(rng):
    w, x = rng.standard_normal((8, 32)), inputs(rng, 64, 32)
    w0, x0 = w.copy(), x.copy()
    awq(w, x, 4, 16)
    activation_scales(x, 0.5, w=w, group_size=16)
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
    with pytest.raises(ValueError, match="scaling must be one of 'activation', 'duo'; got 'smooth'"):
        awq(w, x, 4, 16, scaling="smooth")
    with pytest.raises(ValueError, match="clip_ends must be one of 'shared', 'separate'; got 'both'"):
        awq(w, x, 4, 16, clip_ends="both")
    with pytest.raises(ValueError, match="w must have 32 input columns"):
        activation_scales(x, 0.5, w=w[:, :16])
    with pytest.raises(ValueError, match="group_size is used only with w"):
        activation_scales(x, 0.5, group_size=16)
    with pytest.raises(ValueError, match="group_size must be a positive divisor"):
        activation_scales(x, 0.5, w=w, group_size=5)
    with pytest.raises(ValueError):
        scale_layer(w, x, -np.ones(32))
    with pytest.raises(ValueError):
        scale_layer(w, x, np.ones(31))
