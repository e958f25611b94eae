"""mse, sqnr_db, max_abs_error."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import qlearn as ql


def test_golden_values():
    x, x_hat = [1.0, 2.0, 3.0, 4.0], [1.0, 2.5, 2.0, 4.0]
    assert ql.mse(x, x_hat) == pytest.approx((0.25 + 1.0) / 4)
    assert ql.max_abs_error(x, x_hat) == 1.0
    # signal power 30, noise power 1.25
    assert ql.sqnr_db(x, x_hat) == pytest.approx(10 * math.log10(30 / 1.25))


def test_sqnr_edge_cases():
    assert ql.sqnr_db([1.0, 2.0], [1.0, 2.0]) == math.inf
    assert ql.sqnr_db([0.0, 0.0], [0.0, 0.0]) == math.inf
    assert ql.sqnr_db([0.0, 0.0], [0.1, 0.0]) == -math.inf


def test_about_six_db_per_bit(rng):
    x = rng.uniform(-1, 1, 200_000)
    sqnr = [ql.sqnr_db(x, ql.fake_quantize(x, ql.choose_qparams(x, bits=b))) for b in (6, 7, 8, 9, 10)]
    assert np.allclose(np.diff(sqnr), 20 * math.log10(2), atol=0.1)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30))
def test_metrics_against_definitions(values):
    x = np.array(values)
    x_hat = np.round(x, 1)
    assert ql.mse(x, x_hat) == pytest.approx(
        sum((a - b) ** 2 for a, b in zip(x, x_hat, strict=True)) / len(x), abs=1e-12
    )
    assert ql.max_abs_error(x, x_hat) == max(abs(a - b) for a, b in zip(x, x_hat, strict=True))
    assert ql.mse(x, x) == 0.0


@pytest.mark.parametrize("fn", [ql.mse, ql.sqnr_db, ql.max_abs_error])
def test_bad_input(fn):
    with pytest.raises(ValueError, match=r"same shape; got \(2,\) and \(3,\)"):
        fn([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="x_hat must contain only finite"):
        fn([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(TypeError, match="real numbers"):
        fn(["a"], ["b"])


def test_inputs_not_mutated(rng):
    x = rng.standard_normal(10)
    y = x + 0.1
    xb, yb = x.copy(), y.copy()
    ql.mse(x, y), ql.sqnr_db(x, y), ql.max_abs_error(x, y)
    np.testing.assert_array_equal(x, xb)
    np.testing.assert_array_equal(y, yb)


def test_error_split_adds_up_and_separates(rng):
    x = rng.standard_normal(10_000)
    for t in (1.0, 2.0, 4.5):
        qp = ql.qparams_from_range(-t, t, bits=4, symmetric=True)
        rounding, clipping = ql.error_split(x, qp)
        assert rounding + clipping == pytest.approx(ql.mse(x, ql.fake_quantize(x, qp)))
        lo, hi = float(qp.scale) * qp.qmin, float(qp.scale) * qp.qmax  # zero point 0: [-8s, 7s]
        outside = (x < lo) | (x > hi)
        # outside the range every value lands on an end of the grid: its error is the clipped distance
        assert clipping == pytest.approx(np.sum((x[outside] - np.clip(x[outside], lo, hi)) ** 2) / x.size)
        assert rounding <= float(qp.scale) ** 2 / 4  # each value inside is off by at most s/2
    qp = ql.qparams_from_range(0.0, 1.0, bits=8)  # asymmetric: nothing below 0 is representable
    assert ql.error_split([-1.0, 0.5], qp)[1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="per-tensor"):
        ql.error_split(np.ones((2, 2)), ql.choose_qparams(np.ones((2, 2)), axis=0))
