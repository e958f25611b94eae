import numpy as np
import pytest

from qlearn.weightonly import gptq, group_params, hessian, inverse_cholesky_upper, rtn


def correlated_inputs(rng, n_rows, n_in):
    """Activations as a transformer's look: correlated channels, very different sizes, a few outliers."""
    mix = np.eye(n_in) + 0.5 * rng.standard_normal((n_in, n_in)) / np.sqrt(n_in)
    size = rng.lognormal(0.0, 0.7, n_in)
    size[rng.choice(n_in, 2, replace=False)] *= 8  # outlier channels
    return (rng.standard_normal((n_rows, n_in)) @ mix) * size


def gptq_reference(w, h, bits, gs, zero, percdamp=0.01, act_order=False):
    """The paper's algorithm, literally: one column at a time, H^-1 downdated after each."""
    w = w.astype(np.float64).copy()
    h = h.astype(np.float64).copy()
    n = w.shape[1]
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(n)
    h += percdamp * np.mean(np.diag(h)) * np.eye(n)
    h_inv = np.linalg.inv(h)
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if zero == "symmetric" else (0, 2**bits - 1)
    codes = np.zeros(w.shape)
    params = {}
    for q in order:
        g = q // gs
        if g not in params:  # fitted to the group's current weights when its first column comes up
            params[g] = group_params(w[:, g * gs : (g + 1) * gs], bits, None, zero=zero)
        s, z = (p[:, 0].astype(np.float64) for p in params[g])
        code = np.clip(np.rint(w[:, q] / s + z), qmin, qmax)
        codes[:, q] = code
        err = (w[:, q] - (code - z) * s) / h_inv[q, q]
        w -= np.outer(err, h_inv[q, :])  # OBS: the best correction of the columns still free
        h_inv -= np.outer(h_inv[:, q], h_inv[q, :]) / h_inv[q, q]  # remove column q from the inverse
    return codes


@pytest.mark.parametrize("bits, gs, zero", [(4, 32, "int"), (3, None, "symmetric"), (2, 16, "float"), (8, 64, "int")])
def test_identity_hessian_is_rtn(rng, bits, gs, zero):
    w = rng.standard_normal((32, 128))
    gq = gptq(w, 3.0 * np.eye(128), bits, gs, zero=zero, block_size=48)
    ref = rtn(w, bits, gs, zero=zero)
    assert np.array_equal(gq.codes, ref.codes)
    np.testing.assert_array_equal(gq.scale, ref.scale)
    np.testing.assert_array_equal(gq.zero, ref.zero)


@pytest.mark.parametrize(
    "bits, gs, zero, act_order, block",
    [
        (4, 32, "int", False, 128),
        (3, 16, "int", False, 40),
        (4, None, "symmetric", False, 32),
        (3, 32, "int", True, 24),
        (4, 16, "float", True, 128),
        (2, None, "int", True, 50),
    ],
)
def test_matches_literal_algorithm(rng, bits, gs, zero, act_order, block):
    w = rng.standard_normal((24, 96))
    x = correlated_inputs(rng, 400, 96)
    x[:, 5] = 0  # a dead input
    h = hessian(x)
    gq = gptq(w, h, bits, gs, zero=zero, act_order=act_order, block_size=block)
    ref = gptq_reference(w, h, bits, gs or 96, zero, act_order=act_order)
    assert np.array_equal(gq.codes, ref)


def layer_error(x, w, w_hat):
    return float(np.sum((x @ (w - w_hat).T) ** 2))


def test_never_worse_than_rtn_on_20_layers(rng):
    for k in range(20):
        n_in = int(rng.choice([64, 128]))
        w = rng.standard_normal((48, n_in)) * rng.lognormal(0, 0.3, (48, 1))
        x = correlated_inputs(rng, 512, n_in)
        bits, gs = (3, 32) if k % 2 else (4, None)
        e_gptq = layer_error(x, w, gptq(w, hessian(x), bits, gs, act_order=k % 4 == 1).dequantize(np.float64))
        e_rtn = layer_error(x, w, rtn(w, bits, gs).dequantize(np.float64))
        assert e_gptq <= e_rtn, (k, e_gptq, e_rtn)


def test_float32_close_to_float64(rng):
    w = rng.standard_normal((32, 128))
    x = correlated_inputs(rng, 512, 128)
    e64 = layer_error(x, w, gptq(w, hessian(x), 4, 32).dequantize(np.float64))
    e32 = layer_error(x, w, gptq(w.astype(np.float32), hessian(x).astype(np.float32), 4, 32).dequantize(np.float64))
    assert abs(e32 - e64) < 0.02 * e64


def test_inverse_cholesky(rng):
    a = rng.standard_normal((600, 300))
    h = a.T @ a + np.eye(300)
    u = inverse_cholesky_upper(h)
    assert np.allclose(np.tril(u, -1), 0)
    np.testing.assert_allclose(u.T @ u, np.linalg.inv(h), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(u, np.linalg.cholesky(np.linalg.inv(h)).T, rtol=1e-7, atol=1e-10)


def test_hessian_and_inputs_unchanged(rng):
    x = rng.standard_normal((2, 10, 8))
    np.testing.assert_allclose(hessian(x), 2 * x.reshape(-1, 8).T @ x.reshape(-1, 8))
    w = rng.standard_normal((4, 8))
    h = hessian(x)
    w0, h0 = w.copy(), h.copy()
    gptq(w, h, 4, None)
    assert np.array_equal(w, w0) and np.array_equal(h, h0)


def test_bad_input(rng):
    w = rng.standard_normal((4, 8))
    with pytest.raises(ValueError):
        gptq(w, np.eye(7), 4, None)
    with pytest.raises(ValueError):
        gptq(w, np.eye(8), 4, 3)
    with pytest.raises(ValueError):
        gptq(w, np.eye(8), 4, None, percdamp=-0.1)
    with pytest.raises(ValueError):
        gptq(w, np.eye(8), 4, None, block_size=0)
    with pytest.raises(TypeError):
        gptq(w, np.eye(8), 4, None, act_order=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        gptq(w, -np.eye(8), 4, None, percdamp=0.0)
    with pytest.raises(ValueError):
        inverse_cholesky_upper(np.ones((3, 4)))
