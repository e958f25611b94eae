"""qlearn.integer: fixed-point multipliers, rounding shifts, requantization, integer matmul."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlearn.integer import (
    FixedPoint,
    fixed_point,
    quantize_bias,
    quantized_matmul,
    requantize,
    rounding_right_shift,
)


def exact_round_half_even(fr: Fraction) -> int:
    return round(fr)  # Python rounds Fractions half to even, exactly


# --- fixed_point ----------------------------------------------------------------------------
def test_fixed_point_golden():
    fp = fixed_point(0.5)  # 0.5 = 2^30 * 2^-31
    assert (int(fp.m0), int(fp.shift)) == (2**30, 31)
    fp = fixed_point(0.75, bits=8)  # 0.75 = 192 / 256
    assert (int(fp.m0), int(fp.shift)) == (192, 8)
    # rounding up to 2^bits carries into the exponent: 0.999 at 4 bits is 16/16 -> 8 * 2^-3
    fp = fixed_point(0.999, bits=4)
    assert (int(fp.m0), int(fp.shift)) == (8, 3) and float(fp.value) == 1.0


@given(m=st.floats(1e-9, 1e3), bits=st.integers(8, 31))
def test_fixed_point_relative_error(m, bits):
    assume(m < 2 ** (bits - 2))  # larger multipliers leave no room for the shift (tested below)
    fp = fixed_point(m, bits)
    assert 2 ** (bits - 1) <= int(fp.m0) < 2**bits
    assert abs(float(fp.value) - m) <= 2.0**-bits * m


def test_fixed_point_vectorised_and_bad_input():
    fp = fixed_point([0.5, 0.25, 0.1])
    assert fp.m0.shape == (3,) and np.allclose(fp.value, [0.5, 0.25, 0.1], rtol=2**-31)
    with pytest.raises(ValueError, match="positive"):
        fixed_point([0.5, 0.0])
    with pytest.raises(ValueError, match="finite"):
        fixed_point(np.nan)
    with pytest.raises(ValueError, match=r"bits must be an integer in \[2, 31\]; got 32"):
        fixed_point(0.5, bits=32)
    with pytest.raises(ValueError, match=r"multiplier must lie in"):
        fixed_point(2.0**40)


# --- rounding_right_shift -----------------------------------------------------------------------
@given(x=st.integers(-(2**61), 2**61), n=st.integers(1, 62))
def test_rounding_right_shift_is_exact_round_half_even(x, n):
    assert int(rounding_right_shift(x, n)) == exact_round_half_even(Fraction(x, 2**n))


def test_rounding_right_shift_ties_and_errors():
    np.testing.assert_array_equal(rounding_right_shift([2, 6, 10, -2, -6, -10], 2), [0, 2, 2, 0, -2, -2])
    with pytest.raises(ValueError, match=r"shift must be in \[1, 62\]"):
        rounding_right_shift(5, 0)
    with pytest.raises(TypeError, match="x must hold integers"):
        rounding_right_shift(5.0, 1)


# --- requantize ------------------------------------------------------------------------------
@given(
    acc=hnp.arrays(np.int32, st.integers(1, 20), elements=st.integers(-(2**31), 2**31 - 1)),
    m=st.floats(1e-6, 0.99),
    z=st.integers(0, 255),
)
def test_requantize_matches_exact_arithmetic(acc, m, z):
    fp = fixed_point(m)
    got = requantize(acc, fp, z, 0, 255)
    mult = Fraction(int(fp.m0), 2 ** int(fp.shift))
    expected = [min(max(exact_round_half_even(int(a) * mult) + z, 0), 255) for a in acc]
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.uint8


def test_requantize_per_channel_and_errors():
    fp = fixed_point([0.5, 0.25])
    np.testing.assert_array_equal(requantize([[8, 8], [-8, -8]], fp, 0, -128, 127), [[4, 2], [-4, -2]])
    with pytest.raises(ValueError, match="int32 accumulators"):
        requantize([2**31], fp, 0, -128, 127)
    with pytest.raises(TypeError, match="FixedPoint"):
        requantize([1], 0.5, 0, -128, 127)
    with pytest.raises(ValueError, match="qmin < qmax"):
        requantize([1], fp, 0, 5, 5)


# --- quantized_matmul -------------------------------------------------------------------------
def test_quantized_matmul_golden():
    qa = np.array([[130, 120], [128, 255]], dtype=np.uint8)  # za = 128 -> [[2, -8], [0, 127]]
    qb = np.array([[3, 0], [-1, 5]], dtype=np.int8)  # zb = [1, 0] -> [[2, 0], [-2, 5]]
    expected = np.array([[2 * 2 + 8 * 2, -40], [-254, 635]])
    np.testing.assert_array_equal(quantized_matmul(qa, 128, qb, [1, 0]), expected)


@given(
    data=st.data(),
    m=st.integers(1, 6),
    k=st.integers(1, 40),
    n=st.integers(1, 6),
    za=st.integers(0, 255),
    per_channel=st.booleans(),
)
def test_quantized_matmul_equals_direct_integer_product(data, m, k, n, za, per_channel):
    qa = data.draw(hnp.arrays(np.uint8, (m, k)))
    qb = data.draw(hnp.arrays(np.int8, (k, n)))
    zb = data.draw(hnp.arrays(np.int8, (n,))) if per_channel else data.draw(st.integers(-128, 127))
    before = qa.copy(), qb.copy()
    direct = (qa.astype(np.int64) - za) @ (qb.astype(np.int64) - np.asarray(zb, dtype=np.int64))
    np.testing.assert_array_equal(quantized_matmul(qa, za, qb, zb), direct)
    np.testing.assert_array_equal(qa, before[0])
    np.testing.assert_array_equal(qb, before[1])


def test_int8_accumulator_cannot_overflow_below_the_bound():
    # |(qa - za)(qb - zb)| <= 255 * 255 for uint8 x int8 codes: K up to 2^31 / 255^2 ≈ 33,000 is safe
    k = 33_000
    qa = np.full((1, k), 255, dtype=np.uint8)
    qb = np.full((k, 1), -128, dtype=np.int8)
    assert quantized_matmul(qa, 0, qb, 127)[0, 0] == k * 255 * -255
    with pytest.raises(OverflowError, match="leaves int32"):
        quantized_matmul(np.full((1, 34_000), 255, dtype=np.uint8), 0, np.full((34_000, 1), -128, np.int8), 127)


def test_quantized_matmul_bad_input():
    with pytest.raises(ValueError, match=r"shapes \(M, K\) and \(K, N\); got \(2, 3\) and \(2, 3\)"):
        quantized_matmul(np.ones((2, 3), np.int8), 0, np.ones((2, 3), np.int8))
    with pytest.raises(TypeError, match="qa must hold integers; got dtype float64"):
        quantized_matmul(np.ones((2, 2)), 0, np.ones((2, 2), np.int8))


# --- quantize_bias ----------------------------------------------------------------------------
def test_quantize_bias():
    np.testing.assert_array_equal(quantize_bias([0.5, -0.25, 0.0], 0.1, 0.01), [500, -250, 0])
    np.testing.assert_array_equal(quantize_bias([0.25, 0.25], 0.5, [0.1, 0.2]), [5, 2])  # 2.5 -> 2 (half to even)
    with pytest.raises(ValueError, match="does not fit in int32"):
        quantize_bias([1e6], 1e-3, 1e-3)
    with pytest.raises(ValueError, match="positive"):
        quantize_bias([1.0], 0.0, 0.1)


def test_fixed_point_is_frozen():
    fp = fixed_point(0.5)
    assert isinstance(fp, FixedPoint)
    with pytest.raises(AttributeError):
        fp.m0 = 3  # type: ignore[misc]
