"""qlearn.rescue.qat: STE masks, LSQ gradients against finite differences, conversion to integers."""

import copy
from functools import partial

import numpy as np
import pytest

from qlearn import ptq
from qlearn.datasets import load_digits_splits
from qlearn.nn import MLP, fit
from qlearn.observers import MinMaxObserver, MSEObserver
from qlearn.rescue import QATMLP, fake_quantize_lsq, fake_quantize_ste, fold_batch_norm, lsq_grad_scale, qat_fit

H = 1e-6


def away_from_boundaries(rng, s, n=200):
    """Values x with x / s at least 0.1 away from every half-integer (where rounding jumps)."""
    v = rng.uniform(-6, 6, n)
    v = np.where(np.abs(v - np.floor(v) - 0.5) < 0.1, v + 0.3, v)
    return v * s


# --- the quantizers -----------------------------------------------------------------------------
def test_ste_masks_golden():
    x = np.array([-3.0, -2.6, -2.4, 0.4, 1.4, 1.6, 9.0])
    y, clipped = fake_quantize_ste(x, 1.0, 0, -2, 1)
    np.testing.assert_array_equal(y, [-2, -2, -2, 0, 1, 1, 1])
    np.testing.assert_array_equal(clipped, [0, 0, 1, 1, 1, 0, 0])  # round(x) + z inside [-2, 1]
    _, identity = fake_quantize_ste(x, 1.0, 0, -2, 1, clipped=False)
    np.testing.assert_array_equal(identity, np.ones(7))
    y, mask = fake_quantize_ste([0.0, 0.3, 2.0], 0.25, 2, 0, 7)  # asymmetric: codes 2, 3, 10 -> 7
    np.testing.assert_allclose(y, [0.0, 0.25, 1.25])
    np.testing.assert_array_equal(mask, [1, 1, 0])


def test_lsq_step_gradient_equals_finite_difference_plus_ste_term(rng):
    s, z, qmin, qmax = 0.37, 1, -4, 3
    x = away_from_boundaries(rng, s)
    y, grad_x, grad_s = fake_quantize_lsq(x, s, z, qmin, qmax)
    fd = (fake_quantize_ste(x, s + H, z, qmin, qmax)[0] - fake_quantize_ste(x, s - H, z, qmin, qmax)[0]) / (2 * H)
    inside = grad_x == 1
    assert 0.3 < inside.mean() < 0.9  # both regions are exercised
    # clamped: y = s (q_lim - z) exactly, so the gradient is the finite difference
    np.testing.assert_allclose(grad_s[~inside], fd[~inside], rtol=1e-6)
    # inside: the true derivative is round(v) (the codes do not move); LSQ adds the STE's -x/s
    np.testing.assert_allclose(grad_s[inside], fd[inside] - x[inside] / s, rtol=1e-6, atol=1e-8)
    # and LSQ's gradient is the exact derivative of the STE's surrogate s (x/s + c), c frozen
    c = np.rint(x / s) - x / s
    surrogate = lambda t: t * (x / t + c)  # noqa: E731
    np.testing.assert_allclose(grad_s[inside], ((surrogate(s + H) - surrogate(s - H)) / (2 * H))[inside], atol=1e-6)


def test_lsq_grad_scale_golden():
    assert lsq_grad_scale(64, 1) == 0.125
    assert lsq_grad_scale(16, 15) == pytest.approx(1 / np.sqrt(240))
    assert lsq_grad_scale(4, 0) == 0.5  # at least one positive level
    with pytest.raises(ValueError, match="positive integer"):
        lsq_grad_scale(0, 3)


# --- the QAT model: gradients of the whole network --------------------------------------------
def small_prepared(rng, w_bits=3, a_bits=4):
    model = MLP([5, 6, 4, 3], seed=4)
    x = rng.random((200, 5)).astype(np.float32)
    w_obs = partial(MinMaxObserver, bits=w_bits, symmetric=True, axis=1)
    return ptq.calibrate(ptq.prepare(model, w_obs, partial(MinMaxObserver, bits=a_bits)), [x]), x


def surrogate_loss(qat, x, y, w_scale, a_scale, weights, base):
    """The network with every rounding offset and clamp decision frozen at ``base`` (a slow reference).

    Each quantizer is y = s (u/s + c) inside and s (q_lim - z) where clamped, with c and the
    clamp decision taken from the base point: exactly the function whose derivative the
    straight-through estimator and LSQ use.
    """
    from qlearn.nn import softmax_cross_entropy

    record = base is None
    base = [] if record else list(base)

    def quant(u, s, z, lo, hi):
        if record:
            code = np.rint(u / s) + z
            state = (code - z - u / s, np.where(code < lo, lo - z, np.where(code > hi, hi - z, np.nan)))
            base.append(state)
        else:
            state = base.pop(0)
        c, clamped = state
        inside = np.isnan(clamped)
        return np.where(inside, u + s * c, s * clamped)

    h = quant(x.astype(np.float64), a_scale[0], qat.a_zero[0], *qat.a_range[0])
    for k, W in enumerate(weights):
        wq = quant(W, w_scale[k], 0, *qat.w_range[k])
        z = h @ wq + qat._bias(k)
        u = np.maximum(z, 0) if qat.relu[k] else z
        h = quant(u, a_scale[k + 1], qat.a_zero[k + 1], *qat.a_range[k + 1])
    return softmax_cross_entropy(h, y)[0], base


def test_lsq_network_gradients_match_finite_differences_of_the_surrogate(rng):
    prepared, x = small_prepared(rng)
    qat = QATMLP(prepared, method="lsq")
    # Pre-activations are s_x s_w times an integer, so a ReLU input is often exactly 0 (give or take a
    # rounding residue), where the ReLU has a kink a finite difference cannot see past: keep the rows
    # whose ReLU inputs are all clear of 0.
    _, cache = qat._run(x)
    clear = np.all([np.abs(c[4]).min(axis=1) > 1e-6 for c, r in zip(cache[1:], qat.relu, strict=True) if r], axis=0)
    assert clear.sum() >= 20
    x = x[clear]
    y = rng.integers(0, 3, len(x))
    loss, grads = qat.loss_and_gradients(x, y)
    weights = [layer.W.astype(np.float64) for layer in qat.linears]
    w_scale = [s.copy() for s in qat.w_scale]
    a_scale = [float(s) for s in qat.a_scale]
    ref_loss, base = surrogate_loss(qat, x, y, w_scale, a_scale, weights, None)
    assert ref_loss == pytest.approx(loss, rel=1e-6)
    n = len(qat.linears)
    g_w, g_sw, g_sa = grads[0 : 2 * n : 2], grads[2 * n : 3 * n], grads[3 * n :]

    def fd(change):
        up, down = change(+H), change(-H)
        return (surrogate_loss(qat, x, y, *up, base)[0] - surrogate_loss(qat, x, y, *down, base)[0]) / (2 * H)

    for k in range(n):
        for c in range(len(w_scale[k])):

            def bump(h, k=k, c=c):
                ws = [s.copy() for s in w_scale]
                ws[k][c] += h
                return ws, a_scale, weights

            gs = lsq_grad_scale(weights[k].shape[0], qat.w_range[k][1])
            assert g_sw[k][c] == pytest.approx(fd(bump) * gs, rel=1e-4, abs=1e-8)
        i, j = 1, 0

        def bump_w(h, k=k, i=i, j=j):
            ws = [w.copy() for w in weights]
            ws[k][i, j] += h
            return w_scale, a_scale, ws

        assert g_w[k][i, j] == pytest.approx(fd(bump_w), rel=1e-4, abs=1e-7)
    for j in range(n + 1):

        def bump_a(h, j=j):
            a = list(a_scale)
            a[j] += h
            return w_scale, a, weights

        width = qat.model.sizes[j] if j < n else qat.model.sizes[-1]
        gs = lsq_grad_scale(width, qat.a_range[j][1] - qat.a_zero[j])
        assert float(g_sa[j]) == pytest.approx(fd(bump_a) * gs, rel=1e-4, abs=1e-8)


def test_ste_has_no_step_gradients_and_identity_variant_passes_clamped_values(rng):
    prepared, x = small_prepared(rng, w_bits=2, a_bits=2)
    y = rng.integers(0, 3, len(x))
    clipped = QATMLP(prepared, method="ste")
    identity = QATMLP(prepared, method="ste", clipped=False)
    for qat in (clipped, identity):
        qat.w_scale[0] = qat.w_scale[0] * 0.5  # a clipping range inside min-max, so some weights clamp
    assert len(clipped.parameters()) == 2 * len(clipped.linears)
    g_c = clipped.loss_and_gradients(x, y)[1]
    g_i = identity.loss_and_gradients(x, y)[1]
    W = clipped.linears[0].W
    _, mask = fake_quantize_ste(W, clipped.w_scale[0], 0, *clipped.w_range[0])
    assert np.all(g_c[0][mask == 0] == 0) and (mask == 0).any()  # clipped STE: no gradient where clamped
    assert np.any(g_i[0][mask == 0] != 0)


# --- training, freezing and conversion on the digits -------------------------------------------
@pytest.fixture(scope="module")
def digits_setup():
    d = load_digits_splits(seed=0)
    model = fit(MLP([64, 64, 64, 10], seed=0, batch_norm=True), d.X_train, d.y_train, seed=0)
    folded = fold_batch_norm(model)
    w_obs = partial(MinMaxObserver, bits=2, symmetric=True, axis=1)
    prepared = ptq.calibrate(
        ptq.prepare(folded, w_obs, partial(MSEObserver, bits=4)), np.array_split(d.X_calibration, 4)
    )
    return d, folded, prepared


def test_converted_integer_codes_equal_fake_quant_forward(digits_setup):
    d, _, prepared = digits_setup
    trained = qat_fit(QATMLP(prepared, method="lsq"), d.X_train, d.y_train, epochs=2)
    q = trained.convert()
    w_qps, a_qps = trained.qparams()
    for layer, qlayer, qp in zip(trained.linears, q.layers, w_qps, strict=True):  # the weight codes: exactly
        np.testing.assert_array_equal(qlayer.q_w, np.clip(np.rint(layer.W / qp.scale), qp.qmin, qp.qmax))
    out = a_qps[-1]
    expected = np.rint(trained.forward(d.X_test) / np.float64(out.scale)) + int(out.zero_point)
    codes = q.forward_codes(d.X_test).astype(np.int64)
    assert np.abs(codes - expected).max() <= 1  # the fixed-point multiplier may round a tie the other way
    assert np.mean(codes == expected) > 0.999
    assert np.mean(q.predict(d.X_test) == trained.predict(d.X_test)) > 0.99


def test_qat_rescues_w2a4_and_is_deterministic(digits_setup):
    d, folded, prepared = digits_setup
    fp32 = folded.accuracy(d.X_test, d.y_test)
    ptq_acc = ptq.convert(prepared).accuracy(d.X_test, d.y_test)
    before = copy.deepcopy(prepared.model.parameters())
    a = qat_fit(QATMLP(prepared, method="lsq"), d.X_train, d.y_train, epochs=8, seed=1)
    b = qat_fit(QATMLP(prepared, method="lsq"), d.X_train, d.y_train, epochs=8, seed=1)
    assert all(np.array_equal(p, q) for p, q in zip(prepared.model.parameters(), before, strict=True))
    assert all(np.array_equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    acc = a.convert().accuracy(d.X_test, d.y_test)
    assert ptq_acc < 0.8 and acc > fp32 - 0.03


def test_observers_follow_then_freeze(digits_setup):
    d, _, prepared = digits_setup
    qat = QATMLP(prepared, method="ste")
    frozen_now = qat_fit(qat, d.X_train, d.y_train, epochs=1, freeze_observers_after=0)
    assert all(np.array_equal(s, t) for s, t in zip(frozen_now.w_scale, qat.w_scale, strict=True))
    moving = qat_fit(qat, d.X_train, d.y_train, epochs=2, freeze_observers_after=1)
    assert moving.frozen and any(not np.array_equal(s, t) for s, t in zip(moving.w_scale, qat.w_scale, strict=True))
    scales = [s.copy() for s in moving.w_scale]
    moving.observe(d.X_train[:32])  # frozen: nothing moves
    assert all(np.array_equal(s, t) for s, t in zip(moving.w_scale, scales, strict=True))


def test_errors(digits_setup, rng):
    d, _, prepared = digits_setup
    bn = ptq.PreparedModel(MLP([64, 4, 10], batch_norm=True), prepared.weight_observers, prepared.activation_observers)
    with pytest.raises(ValueError, match="fold batch norm before QAT"):
        QATMLP(bn)
    with pytest.raises(ValueError, match="'lsq' or 'ste'"):
        QATMLP(prepared, method="dorefa")
    with pytest.raises(TypeError, match="PreparedModel"):
        QATMLP(MLP([4, 2]))
    with pytest.raises(ValueError, match="lr > 0"):
        qat_fit(QATMLP(prepared), d.X_train, d.y_train, lr=0)
    with pytest.raises(ValueError, match=r"shape \(batch, 64\)"):
        QATMLP(prepared).forward(np.ones((2, 3)))
