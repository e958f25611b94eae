"""qlearn.integer: fixed-point multipliers, rounding shifts, requantization, integer matmul."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlearn.integer import (
    FixedPoint,
    _divide_by_pot,
    _doubling_high_mul,
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


# --- gemmlowp / TFLite requantization ---------------------------------------------------------
I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def c_div(p: int, q: int) -> int:
    """C's integer division: truncates toward zero."""
    return abs(p) // abs(q) * (1 if (p >= 0) == (q > 0) else -1)


def ref_doubling_high_mul(a: int, b: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul, line by line in Python ints."""
    if a == b == I32_MIN:
        return I32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def ref_divide_by_pot(x: int, e: int) -> int:
    """RoundingDivideByPOT's meaning: x / 2^e to nearest, ties away from zero (exact Fractions)."""
    fr = Fraction(x, 2**e)
    away = math.floor(abs(fr) + Fraction(1, 2))
    return away if x >= 0 else -away


def ref_gemmlowp(acc: int, m0: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier(acc, m0, 31 - shift)."""
    tfl = 31 - shift
    left, right = max(tfl, 0), max(-tfl, 0)
    return ref_divide_by_pot(ref_doubling_high_mul(acc * (1 << left), m0), right)


int32s = st.integers(I32_MIN, I32_MAX) | st.sampled_from([I32_MIN, I32_MIN + 1, -1, 0, 1, I32_MAX - 1, I32_MAX])


@given(a=int32s, b=int32s)
def test_doubling_high_mul_matches_gemmlowp(a, b):
    got = int(_doubling_high_mul(np.int64(a), np.int64(b)))
    assert got == ref_doubling_high_mul(a, b)
    if not a == b == I32_MIN:  # the meaning: round(ab / 2^31), ties toward +inf, always within int32
        assert got == math.floor(Fraction(a * b, 2**31) + Fraction(1, 2))
        assert I32_MIN <= got <= I32_MAX


def test_doubling_high_mul_extremes_and_ties():
    a = np.array([I32_MIN, I32_MIN, I32_MAX, I32_MAX, -3, 3, -(2**30), 2**30, 1, -1], dtype=np.int64)
    b = np.array([I32_MIN, I32_MAX, I32_MAX, I32_MIN, 2**30, 2**30, 1, 1, 2**30, 2**30], dtype=np.int64)
    expected = [ref_doubling_high_mul(int(x), int(y)) for x, y in zip(a, b, strict=True)]
    np.testing.assert_array_equal(_doubling_high_mul(a, b), expected)
    assert expected[0] == I32_MAX  # the saturating case
    assert expected[4:6] == [-1, 2]  # -1.5 -> -1 and 1.5 -> 2: ties go toward +inf
    assert expected[8:] == [1, 0]  # 0.5 -> 1, -0.5 -> 0


@given(x=int32s, e=st.integers(0, 31))
def test_divide_by_pot_matches_exact_rounding(x, e):
    assert int(_divide_by_pot(np.int64(x), np.int64(e))) == ref_divide_by_pot(x, e)


@given(
    acc=hnp.arrays(np.int32, st.integers(1, 20), elements=int32s),
    m=st.floats(1e-9, 0.99),
    bits=st.sampled_from([31, 31, 24, 16, 8]),
)
def test_requantize_gemmlowp_matches_reference(acc, m, bits):
    fp = fixed_point(m, bits)
    m0, shift = int(fp.m0), int(fp.shift)
    ok = all(I32_MIN <= int(a) << max(31 - shift, 0) <= I32_MAX for a in acc)
    if not ok:  # TFLite's left shift would overflow int32: refused, never wrapped
        with pytest.raises(ValueError, match="fit in int32"):
            requantize(acc, fp, 0, I32_MIN, I32_MAX, rounding="gemmlowp")
        return
    got = requantize(acc, fp, 3, I32_MIN, I32_MAX, rounding="gemmlowp")
    np.testing.assert_array_equal(got, [min(ref_gemmlowp(int(a), m0, shift) + 3, I32_MAX) for a in acc])


def test_requantize_gemmlowp_golden_and_chapter_multiplier():
    fp = fixed_point(0.25)  # m0 = 2^30, shift 32: acc / 2 exactly, then / 2 rounded away from zero
    np.testing.assert_array_equal(
        requantize([-6, -2, 2, 6, 5], fp, 0, -128, 127, rounding="gemmlowp"), [-2, -1, 1, 2, 2]
    )  # 5/4 = 1.25 becomes 2: the high multiply rounds 2.5 up to 3, then 3/2 = 1.5 goes away from zero
    np.testing.assert_array_equal(requantize([-6, -2, 2, 6, 5], fp, 0, -128, 127), [-2, 0, 0, 2, 1])  # half to even
    # chapter 2's multiplier: the two roundings differ on about 1 accumulator in 2^(n - 30) = 1024, none a tie
    fp = FixedPoint(m0=1_979_870_352, shift=40)
    acc = np.arange(-(2**16), 2**16 + 1)
    single = requantize(acc, fp, 0, I32_MIN, I32_MAX)
    double = requantize(acc, fp, 0, I32_MIN, I32_MAX, rounding="gemmlowp")
    differ = single != double
    assert 0.0008 < differ.mean() < 0.0012
    assert np.abs(single.astype(np.int64) - double).max() == 1
    ties = (acc.astype(np.int64) * fp.m0) % 2**40 == 2**39
    assert not ties.any()
    for a in acc[differ][:50]:  # every difference is the reference's
        assert int(double[acc == a][0]) == ref_gemmlowp(int(a), int(fp.m0), 40)
        assert int(single[acc == a][0]) == exact_round_half_even(Fraction(int(a) * int(fp.m0), 2**40))


def test_requantize_gemmlowp_exact_tie_goes_away_from_zero():
    fp = FixedPoint(m0=2**30, shift=33)  # M = 1/8: acc = 4 and 12 are ties 0.5 and 1.5
    np.testing.assert_array_equal(requantize([4, 12, -4, -12], fp, 0, -128, 127), [0, 2, 0, -2])
    np.testing.assert_array_equal(requantize([4, 12, -4, -12], fp, 0, -128, 127, rounding="gemmlowp"), [1, 2, -1, -2])


def test_requantize_rounding_is_validated():
    with pytest.raises(ValueError, match=r"rounding must be one of 'half_even', 'gemmlowp'; got 'up'"):
        requantize([1], fixed_point(0.5), 0, 0, 255, rounding="up")


# --- no silent wrap; FixedPoint validated -------------------------------------------------------
def test_uint64_beyond_int64_is_refused_not_wrapped():
    big = np.array([2**63 + 5], dtype=np.uint64)  # astype(int64) would give a negative number
    with pytest.raises(ValueError, match="fit in int64"):
        rounding_right_shift(big, 1)
    with pytest.raises(ValueError, match="fit in int64"):
        quantized_matmul(big[None, :], 0, np.ones((1, 1), np.int8))
    np.testing.assert_array_equal(rounding_right_shift(np.array([2**63 - 2], np.uint64), 1), [2**62 - 1])


def test_quantized_matmul_float_path_is_exact_at_its_bound():
    # below 2**53 the product runs in float64 BLAS. Partial sums that swing to ~2**46 and cancel to a
    # result that fits int32: float32 (24 bits) or a wrong bound would lose the small remainder
    k = 64
    top = int((2**53 / k) ** 0.5) - 1  # k * top**2 < 2**53: the float path is taken
    qa = np.full((2, k), top, dtype=np.int64)
    qa[1, ::2] = -top
    qb = np.zeros((k, 2), dtype=np.int64)
    qb[:, 0] = [top, -top] * (k // 2)  # row 0 gives 0, row 1 gives -k * top**2 (out of range)
    qb[:, 1] = [top, -top] * (k // 2 - 1) + [5, 0]
    exact = (qa[:1].astype(object) @ qb.astype(object)).astype(np.int64)  # Python ints: the reference
    assert exact[0, 0] == 0 and exact[0, 1] == 5 * top and 5 * top < I32_MAX
    np.testing.assert_array_equal(quantized_matmul(qa[:1], 0, qb), exact)
    with pytest.raises(ValueError, match="leaves int32"):
        quantized_matmul(qa, 0, qb)
    # int8 codes with zero points, the everyday case: identical to the int64 loop
    rng = np.random.default_rng(7)
    a8 = rng.integers(-128, 128, size=(33, 200), dtype=np.int8)
    b8 = rng.integers(-128, 128, size=(200, 17), dtype=np.int8)
    ref = (a8.astype(np.int64) - 3) @ (b8.astype(np.int64) - 5)
    np.testing.assert_array_equal(quantized_matmul(a8, 3, b8, 5), ref)


def test_quantized_matmul_never_wraps_int64():
    # (2^31 - 1)^2 * 3 leaves int64 in the partial sums; the exact result is still refused or exact
    big = np.full((1, 3), I32_MAX, dtype=np.int64)
    with pytest.raises(ValueError, match="leaves int32") as info:
        quantized_matmul(big, 0, big.T)
    assert isinstance(info.value, OverflowError)  # also an OverflowError, for older callers
    # large codes whose products cancel: exact, although an int64 matmul would wrap
    qa = np.array([[2**40, 2**40]], dtype=np.int64)
    qb = np.array([[2**30], [-(2**30)]], dtype=np.int64)
    assert quantized_matmul(qa, 0, qb)[0, 0] == 0
    qa = np.array([[2**62, 1]], dtype=np.int64)
    qb = np.array([[4], [5]], dtype=np.int64)
    with pytest.raises(ValueError, match="leaves int32"):  # 2^64 + 5 would wrap to 5 in int64
        quantized_matmul(qa, 0, qb)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"m0": 0, "shift": 3}, ValueError, r"m0 must lie in \[1, 2\^31 - 1\]"),
        ({"m0": 2**31, "shift": 3}, ValueError, r"m0 must lie in"),
        ({"m0": 5, "shift": 0}, ValueError, r"shift must lie in \[1, 62\]"),
        ({"m0": 5, "shift": 63}, ValueError, r"shift must lie in"),
        ({"m0": 5.0, "shift": 3}, TypeError, "m0 must hold integers"),
        ({"m0": True, "shift": 3}, TypeError, "m0 must hold integers"),
        ({"m0": [5, 6], "shift": [3, 4, 5]}, ValueError, "shape of m0"),
        ({"m0": np.array([], np.int64), "shift": 3}, ValueError, "at least one"),
    ],
)
def test_fixed_point_validated_at_construction(kwargs, error, message):
    with pytest.raises(error, match=message):
        FixedPoint(**kwargs)


def test_fixed_point_construction_normalises():
    fp = FixedPoint(m0=[5, 6], shift=3)
    assert fp.shift.tolist() == [3, 3] and fp.m0.dtype == np.int64
    with pytest.raises(ValueError, match="read-only"):
        fp.m0[0] = 7
    # a huge m0 could make acc * m0 wrap in int64: it is refused at construction
    with pytest.raises(ValueError):
        requantize([I32_MAX], FixedPoint(m0=2**40, shift=40), 0, 0, 255)


def test_requantize_refuses_what_would_wrap_or_broadcast():
    fp = fixed_point([0.5, 0.25])
    with pytest.raises(ValueError, match=r"zero_point must hold int32 values"):
        requantize([1, 1], fp, 2**62, 0, 255)
    with pytest.raises(ValueError, match=r"multiplier shape \(2,\).*broadcast against acc of shape \(3,\)"):
        requantize([1, 2, 3], fp, 0, 0, 255)
    with pytest.raises(ValueError, match=r"zero_point shape \(3,\)"):
        requantize([[1, 2]], fixed_point(0.5), [0, 1, 2], 0, 255)
    with pytest.raises(ValueError, match="inside the int32 range"):
        requantize([1], fixed_point(0.5), 0, 0, 2**40)
    with pytest.raises(TypeError, match="qmax must be an integer"):
        requantize([1], fixed_point(0.5), 0, 0, True)
    with pytest.raises(ValueError, match="broadcast against x"):
        rounding_right_shift([1, 2, 3], [1, 2])


def test_quantized_matmul_zero_points_validated():
    with pytest.raises(ValueError, match="za must be an int32 integer"):
        quantized_matmul([[1]], 10**30, [[1]])
    with pytest.raises(ValueError, match=r"zb must be a scalar or have shape \(1,\)"):
        quantized_matmul([[1]], 0, [[1]], [1, 2])
    with pytest.raises(ValueError, match="must not be empty"):
        quantized_matmul(np.ones((0, 2), np.int8), 0, np.ones((2, 1), np.int8))
    with pytest.raises(ValueError, match="rectangular array"):
        quantized_matmul([[1, 2], [3]], 0, [[1]])


# --- quantize_bias refuses what it cannot represent --------------------------------------------
@pytest.mark.parametrize(
    ("bias", "sx", "sw", "message"),
    [
        ([0.0], 1e-200, 1e-200, "finite normal float64"),  # s_x s_w underflows to 0: 0/0 was -2^31
        ([1.0], 1e-170, 1e-170, "finite normal float64"),
        ([1.0], 1e200, 1e200, "finite normal float64"),  # the product overflows
        ([1.0], -0.1, 0.1, "positive"),
        ([1.0], 0.1, [0.1, 0.0], "positive|shape"),
        ([1.0, 2.0], 0.1, [0.1, 0.2, 0.3], r"shapes \(2,\) and \(3,\)"),
        ([1.0], [0.1, 0.2], 0.1, "scale_x must be a scalar"),
        ([1e300], 1e-10, 1e-10, "does not fit in int32"),  # b / unit overflows to inf
        ([2**31 * 0.01], 0.1, 0.1, "does not fit in int32"),  # 2^31 exactly: one past int32
    ],
)
def test_quantize_bias_refuses(bias, sx, sw, message):
    with pytest.raises(ValueError, match=message):
        quantize_bias(bias, sx, sw)


@given(
    b=st.floats(-1e3, 1e3),
    sx=st.floats(1e-8, 1e2),
    sw=st.floats(1e-8, 1e2),
)
def test_quantize_bias_is_exact_rounding_or_refused(b, sx, sw):
    unit = sx * sw
    exact = Fraction(b) / Fraction(unit)
    if abs(exact) >= 2**31 - 1:
        with pytest.raises(ValueError, match="does not fit"):
            quantize_bias([b], sx, sw)
        return
    got = int(quantize_bias([b], sx, sw)[0])
    # float64 division rounds b / unit once: the code is the exact rounding, or one off at a near-tie
    assert abs(got - exact) <= Fraction(1, 2) + Fraction(1, 2**20)
