"""mse, sqnr_db, max_abs_error."""

import math

import numpy as np
import pytest
from hypothesis import assume, given
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


# --- magnitudes whose squares leave float64 ---------------------------------------------------
def exact_sqnr_db(x, x_hat):
    """10 log10(sum x^2 / sum (x - x_hat)^2) from the floats' exact rational values."""
    from fractions import Fraction

    signal = sum(Fraction(float(a)) ** 2 for a in x)
    noise = sum((Fraction(float(a)) - Fraction(float(b))) ** 2 for a, b in zip(x, x_hat, strict=True))
    log10 = lambda fr: math.log10(fr.numerator) - math.log10(fr.denominator)  # noqa: E731  exact for huge ints
    return 10 * (log10(signal) - log10(noise))


@pytest.mark.parametrize("magnitude", [1e-30, 1e30, 1e-160, 1e160, 1e-300, 1e300, 5e-324 * 2**20])
def test_sqnr_is_exact_at_any_magnitude(magnitude):
    x, x_hat = np.array([1.0, -1.0]), np.array([0.9, -1.1])
    assert ql.sqnr_db(x, x_hat) == pytest.approx(20.0, abs=1e-12)
    xs, xs_hat = x * magnitude, x_hat * magnitude  # squares under- or overflow float64 for most of these
    assert ql.sqnr_db(xs, xs_hat) == pytest.approx(exact_sqnr_db(xs, xs_hat), abs=1e-9)
    if magnitude > 1e-300:  # (subnormal inputs are themselves rounded coarsely)
        assert ql.sqnr_db(xs, xs_hat) == pytest.approx(20.0, abs=1e-9)


def test_sqnr_golden_exact_against_fractions():
    from fractions import Fraction

    x, x_hat = [1.0, 2.0, 3.0, 4.0], [1.0, 2.5, 2.0, 4.0]
    signal = sum(Fraction(a) ** 2 for a in x)
    noise = sum((Fraction(a) - Fraction(b)) ** 2 for a, b in zip(x, x_hat, strict=True))
    assert ql.sqnr_db(x, x_hat) == pytest.approx(10 * math.log10(signal / noise), rel=1e-15)
    assert ql.sqnr_db([3.0, 4.0], [3.0, 4.0 + 2.0**-40]) == pytest.approx(10 * math.log10(25 * 2.0**80), rel=1e-15)


def test_differences_that_overflow_float64():
    big = np.finfo(np.float64).max
    assert ql.sqnr_db([big, big], [-big, -big]) == pytest.approx(10 * math.log10(1 / 4))  # noise = (2x)^2
    assert ql.max_abs_error([big], [-big]) == math.inf  # 2 * max is beyond float64: the correct rounding
    assert ql.mse([1e200], [-1e200]) == math.inf
    assert ql.mse([1e-200], [0.0]) == 0.0  # 1e-400 underflows, no warning
    assert ql.mse([1e150], [0.0]) == pytest.approx(1e300)


@given(
    values=st.lists(st.floats(-1e3, 1e3).filter(lambda v: v != 0), min_size=1, max_size=20),
    exponent=st.integers(-300, 300),
)
def test_sqnr_against_exact_rational_oracle(values, exponent):
    x = np.array(values) * 10.0**exponent
    x_hat = x * 0.75 + 10.0**exponent * 0.125
    assume(np.all(np.isfinite(x)) and np.all(x != 0) and np.any(x != x_hat))
    assert ql.sqnr_db(x, x_hat) == pytest.approx(exact_sqnr_db(x, x_hat), abs=1e-9)


def test_shape_mismatch_names_both_shapes_not_numpy_broadcasting():
    for fn in (ql.mse, ql.sqnr_db, ql.max_abs_error):
        with pytest.raises(ValueError, match=r"same shape; got \(2, 3\) and \(3,\)"):
            fn(np.ones((2, 3)), np.ones(3))  # broadcastable, still refused
        with pytest.raises(ValueError, match="rectangular array"):
            fn([[1.0, 2.0], [3.0]], [1.0])


@pytest.mark.parametrize("bad", [None, "qp", 0.5, object()])
def test_error_split_refuses_non_qparams_with_a_value_error(bad):
    with pytest.raises(ValueError, match="per-tensor QParams"):
        ql.error_split([1.0], bad)
