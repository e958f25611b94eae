"""Exact rational oracles (fractions.Fraction) for the scale/zero-point math and for integer
requantization. Run randomized with thousands of examples: ``HYPOTHESIS_PROFILE=fuzz``."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import qlearn as ql
from qlearn.integer import FixedPoint, fixed_point, requantize

F32 = np.float32
HALF = Fraction(1, 2)


def round_to_float32(fr: Fraction) -> F32:
    """The float32 nearest to the rational ``fr``, ties to even: IEEE rounding, done exactly."""
    guess = F32(float(fr))  # within an ulp or so (double rounding); settle among its neighbours
    candidates = [np.nextafter(guess, F32(-np.inf)), guess, np.nextafter(guess, F32(np.inf))]
    candidates = [c for c in candidates if np.isfinite(c)]

    def key(c: F32) -> tuple[Fraction, int]:
        mantissa_odd = int(np.frombuffer(c.tobytes(), np.uint32)[0]) & 1
        return abs(Fraction(float(c)) - fr), mantissa_odd

    return min(candidates, key=key)


def round_half_even(fr: Fraction) -> int:
    return round(fr)  # Python rounds a Fraction half to even, exactly


def f32_div(a: F32, b: F32) -> F32:
    """float32 a / b, as IEEE computes it: the exact quotient rounded once."""
    return round_to_float32(Fraction(float(a)) / Fraction(float(b)))


def f32_sub(a: F32, b: F32) -> F32:
    return round_to_float32(Fraction(float(a)) - Fraction(float(b)))


finite32 = st.floats(-1e6, 1e6, width=32, allow_subnormal=False) | st.floats(-(2.0**-20), 2.0**-20, width=32)
eps32 = F32(ql.FLOAT32_EPS)


@given(lo=finite32, hi=finite32, bits=st.integers(2, 16), signed=st.booleans(), narrow=st.booleans())
def test_asymmetric_qparams_are_the_exact_float32_formula(lo, hi, bits, signed, narrow):
    lo, hi = sorted((F32(lo), F32(hi)))
    assume(lo != hi or lo == 0)  # constant ranges have their own rule (below)
    qp = ql.qparams_from_range(lo, hi, bits, signed=signed, narrow=narrow)
    qmin, qmax = ql.qrange(bits, signed, narrow)
    lo_w, hi_w = min(lo, F32(0)), max(hi, F32(0))
    width = f32_sub(hi_w, lo_w)
    scale = max(f32_div(width, F32(qmax - qmin)), eps32)
    assert F32(qp.scale) == scale
    zp = min(max(qmin - round_half_even(Fraction(float(f32_div(lo_w, scale)))), qmin), qmax)
    assert int(qp.zero_point) == zp
    # what that means, exactly: 0.0 is a code, and the grid covers [lo_w, hi_w] up to one rounding
    s = Fraction(float(scale))
    assert qmin <= zp <= qmax
    if scale > eps32:
        assert abs((zp - qmin) * s + Fraction(float(lo_w))) <= s / 2 * (1 + Fraction(1, 2**20))
        assert abs((qmax - qmin) * s - Fraction(float(width))) <= (qmax - qmin) * s * Fraction(1, 2**23)


@given(
    lo=finite32,
    hi=finite32,
    bits=st.integers(2, 16),
    signed=st.booleans(),
    narrow=st.booleans(),
    half_range=st.booleans(),
)
def test_symmetric_qparams_are_the_exact_float32_formula(lo, hi, bits, signed, narrow, half_range):
    lo, hi = sorted((F32(lo), F32(hi)))
    assume(lo != hi or lo == 0)
    qp = ql.qparams_from_range(lo, hi, bits, True, signed=signed, narrow=narrow, half_range=half_range)
    qmin, qmax = ql.qrange(bits, signed, narrow)
    zp = (qmin + qmax + 1) // 2
    amax = max(-min(lo, F32(0)), max(hi, F32(0)))
    denom = F32((qmax - qmin) / 2) if half_range else F32(qmax - zp)
    assert Fraction(float(denom)) == (Fraction(qmax - qmin, 2) if half_range else qmax - zp)  # exact in float32
    assert F32(qp.scale) == max(f32_div(amax, denom), eps32)
    assert int(qp.zero_point) == zp


@given(
    c=st.floats(2.0**-100, 2.0**100, width=32) | st.floats(-(2.0**100), -(2.0**-100), width=32),
    bits=st.integers(2, 16),
    symmetric=st.booleans(),
    narrow=st.booleans(),
)
def test_constant_range_scale_is_a_power_of_two_division(c, bits, symmetric, narrow):
    qp = ql.qparams_from_range(c, c, bits, symmetric, narrow=narrow)
    qmin, qmax = qp.qmin, qp.qmax
    beside = qmax - (qmin + qmax + 1) // 2 if symmetric else qmax - qmin
    step = 2 ** (beside.bit_length() - 1)
    expected = max(round_to_float32(abs(Fraction(float(c))) / step), eps32)
    assert F32(qp.scale) == expected
    if expected > eps32 and Fraction(float(expected)) * step == abs(Fraction(float(c))):
        code = ql.quantize(np.array([c], F32), qp)  # c itself is a code: it round-trips exactly
        assert ql.dequantize(code, qp)[0] == F32(c)


@given(
    x=st.lists(finite32, min_size=1, max_size=12),
    bits=st.integers(2, 16),
    symmetric=st.booleans(),
)
def test_choose_qparams_is_qparams_from_range_of_min_and_max(x, bits, symmetric):
    arr = np.array(x, dtype=F32)
    assert ql.choose_qparams(arr, bits, symmetric) == ql.qparams_from_range(arr.min(), arr.max(), bits, symmetric)


# --- integer requantization -------------------------------------------------------------------
multipliers = st.floats(2.0**-30, 0.999, allow_subnormal=False)


@given(m=st.floats(2.0**-40, 2.0**20, allow_subnormal=False), bits=st.integers(2, 31))
def test_fixed_point_error_bound_exactly(m, bits):
    assume(m >= 2.0 ** (bits - 63))
    if m >= 2.0 ** (bits - 1) * (1 - 2.0 ** -(bits + 1)):  # rounds to 2^(bits-1) or more: shift would be 0
        with pytest.raises(ValueError, match=r"multiplier must lie in .* giving shift\(s\) in \[(0|-\d+), "):
            fixed_point(m, bits)
        return
    fp = fixed_point(m, bits)
    value = Fraction(int(fp.m0), 2 ** int(fp.shift))
    assert 2 ** (bits - 1) <= int(fp.m0) < 2**bits
    assert abs(value - Fraction(m)) <= Fraction(m) / 2**bits


acc32 = st.integers(-(2**31), 2**31 - 1) | st.integers(-(2**20), 2**20)


@given(acc=acc32, m=multipliers, bits=st.sampled_from([31, 24, 16]))
def test_half_even_is_the_exact_rounding(acc, m, bits):
    fp = fixed_point(m, bits)
    v = Fraction(acc * int(fp.m0), 2 ** int(fp.shift))
    i32 = np.iinfo(np.int32)
    assert int(requantize([acc], fp, 0, int(i32.min), int(i32.max))[0]) == max(
        min(round_half_even(v), i32.max), i32.min
    )


@given(acc=acc32, m0=st.integers(1, 2**31 - 1), shift=st.integers(1, 62))
def test_gemmlowp_differs_only_next_to_a_half_integer(acc, m0, shift):
    fp = FixedPoint(m0=m0, shift=shift)
    if not -(2**31) <= acc * 2 ** max(31 - shift, 0) <= 2**31 - 1:
        return  # refused (tested in test_integer)
    i32 = np.iinfo(np.int32)
    v = Fraction(acc * m0, 2**shift)  # the exact acc * M
    one = int(requantize([acc], fp, 0, int(i32.min), int(i32.max))[0])
    two = int(requantize([acc], fp, 0, int(i32.min), int(i32.max), rounding="gemmlowp")[0])
    if one == two or abs(v) > 2**31 - 2:
        return
    assert abs(one - two) == 1
    nearest_half = math.floor(v) + HALF
    if shift <= 31:  # one rounding only: a difference is an exact tie (half to even vs toward +inf)
        assert v == nearest_half
    else:  # the first rounding moved v onto the half-integer: v was at most 2^-(shift - 30) away
        assert abs(v - nearest_half) <= Fraction(1, 2 ** (shift - 30))
        assert two == math.floor(nearest_half) + (1 if nearest_half > 0 else 0)  # away from zero


@given(acc=acc32, m=multipliers)
def test_gemmlowp_is_within_one_code_of_the_exact_product(acc, m):
    fp = fixed_point(m)
    v = Fraction(acc * int(fp.m0), 2 ** int(fp.shift))
    two = int(requantize([acc], fp, 0, -(2**31), 2**31 - 1, rounding="gemmlowp")[0])
    assert abs(two - v) <= HALF + Fraction(1, 2 ** (int(fp.shift) - 31)) / 2


def test_fixed_point_range_edges_found_by_fuzzing():
    # fuzz: 1.75 at 2 bits rounds its mantissa 3.5 -> 4 = 2^2, carrying to 2 = 2^(bits-1): refused,
    # and the message now says so (it used to claim 1.75 was inside the allowed range)
    with pytest.raises(ValueError, match=r"once its mantissa is rounded to 2 bits"):
        fixed_point(1.75, 2)
    assert float(fixed_point(1.5, 2).value) == 1.5
    fp = fixed_point(2.0**-32, 31)  # the smallest power of two that fits: shift 62
    assert (int(fp.m0), int(fp.shift)) == (2**30, 62)
    with pytest.raises(ValueError, match=r"\[2\^-32, 2\^30\)"):
        fixed_point(2.0**-33, 31)
