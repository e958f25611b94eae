"""qrange, QParams, qparams_from_range and choose_qparams."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qlearn as ql
from qlearn.qparams import PerAxis, PerGroup, PerTensor, QParams


# --- qrange --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bits", "signed", "narrow", "expected"),
    [
        (8, True, False, (-128, 127)),
        (8, True, True, (-127, 127)),
        (8, False, False, (0, 255)),
        (8, False, True, (1, 255)),
        (4, True, False, (-8, 7)),
        (2, True, False, (-2, 1)),
        (2, False, False, (0, 3)),
        (16, True, False, (-32768, 32767)),
        (16, False, False, (0, 65535)),
    ],
)
def test_qrange_golden(bits, signed, narrow, expected):
    assert ql.qrange(bits, signed, narrow) == expected


@pytest.mark.parametrize("bits", [1, 17, 0, -8, 32])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match=r"bits must be an integer in \[2, 16\]; got"):
        ql.qrange(bits, True)
    with pytest.raises(ValueError, match="bits"):
        ql.choose_qparams(np.ones(3), bits=bits)


@pytest.mark.parametrize("bits", [8.0, "8", True, None, 7.5])
def test_bits_not_an_integer(bits):
    with pytest.raises(TypeError, match="bits must be an integer"):
        ql.qrange(bits, True)
    with pytest.raises(TypeError, match="bits must be an integer"):
        ql.choose_qparams(np.ones(3), bits=bits)


def test_bits_accepts_numpy_integers():
    assert ql.qrange(np.int64(4), False) == (0, 15)


# --- golden values computed by hand ----------------------------------------------------------
def test_asymmetric_golden():
    # range [-1, 3]: scale = 4 / 255, zero point = 0 - round(-1 / (4/255)) = round(63.75) = 64
    qp = ql.choose_qparams(np.array([-1.0, 0.5, 3.0]))
    assert float(qp.scale) == np.float32(4.0) / np.float32(255)
    assert int(qp.zero_point) == 64
    assert (qp.qmin, qp.qmax, qp.granularity) == (0, 255, PerTensor())


def test_asymmetric_range_is_widened_to_contain_zero():
    # all values in [0.28, 3.34]: the range becomes [0, 3.34], zero point 0 (not negative)
    qp = ql.choose_qparams(np.array([0.28, 1.0, 3.34]))
    assert int(qp.zero_point) == 0
    assert float(qp.scale) == np.float32(3.34) / np.float32(255)
    # all negative: the range becomes [min, 0] and the zero point is qmax
    qp = ql.choose_qparams(np.array([-2.0, -0.5]))
    assert int(qp.zero_point) == 255


def test_symmetric_golden():
    # max|x| = 3: scale = 3 / 127, signed, zero point 0
    qp = ql.choose_qparams(np.array([-1.0, 0.5, 3.0]), symmetric=True)
    assert float(qp.scale) == np.float32(3.0) / np.float32(127)
    assert (int(qp.zero_point), qp.qmin, qp.qmax) == (0, -128, 127)


def test_symmetric_pytorch_half_range():
    # PyTorch: scale = max|x| / ((qmax - qmin) / 2) = 3 / 127.5
    qp = ql.choose_qparams(np.array([-1.0, 3.0]), symmetric=True, half_range=True)
    assert float(qp.scale) == np.float32(3.0) / np.float32(127.5)
    assert int(qp.zero_point) == 0


def test_unsigned_symmetric_zero_point_is_midpoint():
    qp = ql.choose_qparams(np.array([-1.0, 3.0]), symmetric=True, signed=False)
    assert (int(qp.zero_point), qp.qmin, qp.qmax) == (128, 0, 255)
    assert float(qp.scale) == np.float32(3.0) / np.float32(127)
    qp = ql.choose_qparams(np.array([-1.0, 3.0]), symmetric=True, signed=False, half_range=True)
    assert float(qp.scale) == np.float32(3.0) / np.float32(127.5)
    assert int(qp.zero_point) == 128


def test_narrow_symmetric_int8():
    qp = ql.choose_qparams(np.array([-2.0, 1.0]), symmetric=True, narrow=True)
    assert (qp.qmin, qp.qmax, int(qp.zero_point)) == (-127, 127, 0)
    assert float(qp.scale) == np.float32(2.0) / np.float32(127)
    # with the narrow range, PyTorch's half-range formula gives the same scale
    qp2 = ql.choose_qparams(np.array([-2.0, 1.0]), symmetric=True, narrow=True, half_range=True)
    assert qp2 == qp


def test_four_bit_asymmetric_golden():
    # range [-0.5, 1.0], 4 bits: scale = 1.5 / 15 = 0.1, zero point = 0 - round(-5) = 5
    qp = ql.choose_qparams(np.array([-0.5, 1.0]), bits=4)
    assert float(qp.scale) == np.float32(1.5) / np.float32(15)
    assert (int(qp.zero_point), qp.qmax, qp.dtype) == (5, 15, np.dtype(np.uint8))


def test_per_axis_golden():
    w = np.array([[0.1, -0.2, 0.05], [4.0, 2.0, -1.0]])  # (out=2, in=3)
    qp = ql.choose_qparams(w, symmetric=True, axis=0)
    np.testing.assert_array_equal(qp.scale, np.array([0.2, 4.0], np.float32) / np.float32(127))
    assert qp.granularity == PerAxis(0)
    qp = ql.choose_qparams(w, axis=-1)  # per column, asymmetric
    assert qp.granularity == PerAxis(1)
    lo, hi = np.array([0.0, -0.2, -1.0], np.float32), np.array([4.0, 2.0, 0.05], np.float32)
    np.testing.assert_array_equal(qp.scale, (hi - lo) / np.float32(255))


def test_per_group_golden():
    x = np.array([[1.0, -1.0, 8.0, 2.0], [0.5, 0.25, -4.0, 4.0]])  # (2, 4), groups of 2
    qp = ql.choose_qparams(x, symmetric=True, group_size=2)
    assert qp.scale.shape == (2, 2) and qp.granularity == PerGroup(2)
    expected = np.array([[1.0, 8.0], [0.5, 4.0]], np.float32) / np.float32(127)
    np.testing.assert_array_equal(qp.scale, expected)


# --- oracle: a slow, obvious reference --------------------------------------------------------
def reference_qparams(values, bits, symmetric, signed, narrow):
    """Textbook formulas, one scalar at a time, float32 like the frameworks."""
    f = np.float32
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    qmin += int(narrow)
    lo, hi = min(min(values), 0.0), max(max(values), 0.0)
    lo, hi = f(lo), f(hi)
    if symmetric:
        zp = (qmin + qmax + 1) // 2
        scale = max(max(-lo, hi) / f(qmax - zp), f(ql.FLOAT32_EPS))
    else:
        scale = max((hi - lo) / f(qmax - qmin), f(ql.FLOAT32_EPS))
        zp = min(max(qmin - round(float(lo / scale)), qmin), qmax)
    return scale, zp, qmin, qmax


finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@given(
    values=st.lists(finite, min_size=2, max_size=20).filter(lambda v: min(v) != max(v)),
    bits=st.integers(2, 16),
    symmetric=st.booleans(),
    signed=st.booleans(),
    narrow=st.booleans(),
)
def test_matches_reference(values, bits, symmetric, signed, narrow):
    x = np.array(values, dtype=np.float32)
    qp = ql.choose_qparams(x, bits, symmetric, signed=signed, narrow=narrow)
    scale, zp, qmin, qmax = reference_qparams(values, bits, symmetric, signed, narrow)
    assert float(qp.scale) == float(scale)
    assert int(qp.zero_point) == zp
    assert (qp.qmin, qp.qmax) == (qmin, qmax)


@given(
    x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=finite),
    symmetric=st.booleans(),
    data=st.data(),
)
def test_per_axis_equals_per_tensor_of_each_slice(x, symmetric, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    qp = ql.choose_qparams(x, symmetric=symmetric, axis=axis)
    for c in range(x.shape[axis]):
        one = ql.choose_qparams(np.take(x, c, axis=axis), symmetric=symmetric)
        assert qp.scale[c] == one.scale and qp.zero_point[c] == one.zero_point


@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=finite))
def test_zero_point_always_in_range_and_zero_exact(x):
    for symmetric in (False, True):
        qp = ql.choose_qparams(x, bits=4, symmetric=symmetric)
        assert qp.qmin <= int(qp.zero_point) <= qp.qmax
        assert ql.fake_quantize(np.zeros(1, np.float32), qp)[0] == 0.0


# --- degenerate ranges ---------------------------------------------------------------------
@pytest.mark.parametrize("symmetric", [False, True])
def test_all_zero_tensor_gets_small_positive_scale(symmetric):
    x = np.zeros((3, 4), np.float32)
    qp = ql.choose_qparams(x, symmetric=symmetric)
    assert 0 < float(qp.scale) <= ql.FLOAT32_EPS
    np.testing.assert_array_equal(ql.fake_quantize(x, qp), x)
    qp = ql.choose_qparams(x, symmetric=symmetric, axis=0)
    np.testing.assert_array_equal(ql.fake_quantize(x, qp), x)


@given(
    c=st.floats(2.0**-8, 2.0**100, width=32) | st.floats(-(2.0**100), -(2.0**-8), width=32),  # |c| >= 2^15 eps
    bits=st.integers(2, 16),
    symmetric=st.booleans(),
    narrow=st.booleans(),
)
def test_constant_tensor_round_trips_exactly(c, bits, symmetric, narrow):
    x = np.full((2, 3), c, dtype=np.float32)
    for kw in ({}, {"axis": 1}, {"group_size": 3}):
        qp = ql.choose_qparams(x, bits, symmetric, narrow=narrow, **kw)
        assert np.all(qp.scale > 0)
        np.testing.assert_array_equal(ql.fake_quantize(x, qp), x)


def test_tiny_range_is_floored_at_eps():
    qp = ql.choose_qparams(np.array([0.0, 1e-9]))
    assert float(qp.scale) == np.float32(ql.FLOAT32_EPS)
    qp = ql.choose_qparams(np.array([0.0, 1e-9]), eps=1e-12)
    assert float(qp.scale) == np.float32(1e-9) / np.float32(255)


# --- QParams ---------------------------------------------------------------------------------
def test_qparams_is_frozen_and_read_only():
    qp = QParams(scale=0.5, zero_point=3, qmin=0, qmax=15)
    with pytest.raises(AttributeError):
        qp.scale = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        qp.scale[...] = 2.0


def test_qparams_does_not_alias_caller_arrays():
    scale = np.array([0.5, 0.25])
    qp = QParams(scale=scale, zero_point=0, qmin=-8, qmax=7, granularity=PerAxis(0))
    scale[0] = 100.0
    assert qp.scale[0] == np.float32(0.5)
    assert qp.zero_point.shape == (2,)


def test_qparams_equality_and_repr():
    a = QParams(scale=0.5, zero_point=3, qmin=0, qmax=15)
    assert a == QParams(scale=np.float32(0.5), zero_point=np.int64(3), qmin=0, qmax=15)
    assert a != QParams(scale=0.5, zero_point=4, qmin=0, qmax=15)
    assert repr(a) == "QParams(scale=0.5, zero_point=3, qmin=0, qmax=15, granularity=PerTensor())"
    assert (a.bits, a.signed, a.dtype) == (4, False, np.dtype(np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"scale": 0.0}, ValueError, "scale must be finite and at least"),
        ({"scale": -1.0}, ValueError, "scale must be finite"),
        ({"scale": float("nan")}, ValueError, "scale must be finite"),
        ({"scale": float("inf")}, ValueError, "scale must be finite"),
        ({"zero_point": 16}, ValueError, r"zero_point must lie in \[qmin, qmax\] = \[0, 15\]; got 16"),
        ({"zero_point": 1.5}, TypeError, "zero_point must hold integers"),
        ({"qmin": 15, "qmax": 0}, ValueError, "qmin < qmax"),
        ({"qmin": 0.0}, TypeError, "qmin must be an integer"),
        ({"scale": [0.5, 0.5]}, ValueError, "PerTensor needs scale to be a scalar"),
        ({"granularity": PerAxis(0)}, ValueError, "PerAxis needs scale to be a 1-d array"),
        ({"granularity": PerGroup(0), "scale": [1.0]}, ValueError, "group_size must be a positive"),
        ({"granularity": "per-tensor"}, TypeError, "granularity must be"),
    ],
)
def test_qparams_validation(kwargs, error, message):
    fields = {"scale": 0.5, "zero_point": 3, "qmin": 0, "qmax": 15, **kwargs}
    with pytest.raises(error, match=message):
        QParams(**fields)


# --- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (
            np.array([1.0, np.nan]),
            ValueError,
            r"finite numbers; got 1 NaN or infinite value\(s\), the first at index \(1,\)",
        ),
        (np.array([[1.0, np.inf]]), ValueError, r"the first at index \(0, 1\)"),
        (np.array([-np.inf]), ValueError, "finite"),
        (np.array([]), ValueError, r"at least one value; got an empty array of shape \(0,\)"),
        (np.array(["a", "b"]), TypeError, "real numbers .* got dtype <U1"),
        (np.array([1 + 2j]), TypeError, "complex128"),
        (np.array([True, False]), TypeError, "bool"),
        (np.array([None, 1.0], dtype=object), TypeError, "object"),
        (np.array([3e38, -3e38]), ValueError, "too wide for float32"),  # the width overflows float32
    ],
)
def test_choose_qparams_bad_data(x, error, message):
    with pytest.raises(error, match=message):
        ql.choose_qparams(x)


def test_choose_qparams_bad_axis_and_groups():
    x = np.ones((2, 6))
    with pytest.raises(ValueError, match=r"axis must be in \[-2, 1\] .* got 2"):
        ql.choose_qparams(x, axis=2)
    with pytest.raises(TypeError, match="axis must be an integer"):
        ql.choose_qparams(x, axis=1.0)
    with pytest.raises(ValueError, match=r"group_size must be a positive divisor of the last axis \(length 6\); got 4"):
        ql.choose_qparams(x, group_size=4)
    with pytest.raises(ValueError, match="got 0"):
        ql.choose_qparams(x, group_size=0)
    with pytest.raises(ValueError, match="not both"):
        ql.choose_qparams(x, axis=0, group_size=2)
    with pytest.raises(ValueError, match="scalar"):
        ql.choose_qparams(np.float32(1.0), axis=0)


def test_qparams_from_range_bad_input():
    with pytest.raises(ValueError, match="lo must not exceed hi"):
        ql.qparams_from_range(2.0, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        ql.qparams_from_range([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="half_range applies to symmetric"):
        ql.qparams_from_range(-1.0, 1.0, half_range=True)
    with pytest.raises(ValueError, match="eps must be"):
        ql.qparams_from_range(-1.0, 1.0, eps=0.0)
    with pytest.raises(TypeError, match="symmetric must be True or False"):
        ql.qparams_from_range(-1.0, 1.0, symmetric="yes")


def test_qparams_from_range_is_what_choose_qparams_uses(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    for symmetric in (False, True):
        assert ql.choose_qparams(x, 6, symmetric) == ql.qparams_from_range(x.min(), x.max(), 6, symmetric)
        assert ql.choose_qparams(x, symmetric=symmetric, axis=0) == ql.qparams_from_range(
            x.min(axis=1), x.max(axis=1), symmetric=symmetric, granularity=PerAxis(0)
        )


def test_choose_qparams_does_not_mutate(rng):
    x = rng.standard_normal((3, 4))
    before = x.copy()
    ql.choose_qparams(x, axis=1)
    ql.choose_qparams(x, group_size=2, symmetric=True)
    np.testing.assert_array_equal(x, before)


def test_integer_and_float16_data_are_accepted():
    assert ql.choose_qparams([0, 255]) == ql.choose_qparams(np.array([0.0, 255.0]))
    qp = ql.choose_qparams(np.array([-1, 1], dtype=np.float16), symmetric=True)
    assert math.isclose(float(qp.scale), 1 / 127, rel_tol=1e-6)


# --- QParams and the flags refuse what they cannot represent ---------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"scale": 1e39}, ValueError, "after rounding to float32"),  # finite in float64, inf in float32
        ({"scale": [0.5, 1e39], "granularity": PerAxis(0)}, ValueError, "after rounding to float32"),
        ({"scale": 1e-46}, ValueError, "at least"),  # rounds to 0 in float32
        ({"scale": "0.5"}, TypeError, "scale must hold real numbers"),
        ({"scale": True}, TypeError, "scale must hold real numbers"),
        ({"scale": 1 + 0j}, TypeError, "scale must hold real numbers"),
        ({"scale": None}, TypeError, "scale must hold real numbers"),
        ({"scale": [[0.5], [0.5, 0.5]]}, ValueError, "rectangular"),
        ({"scale": 10**400}, TypeError, "scale must hold real numbers"),
        ({"zero_point": "3"}, TypeError, "zero_point must hold integers"),
        ({"zero_point": True}, TypeError, "zero_point must hold integers"),
        ({"zero_point": np.nan}, TypeError, "zero_point must hold integers"),
        ({"qmin": True}, TypeError, "qmin must be an integer"),
        ({"qmin": -(2**31) - 1}, ValueError, "int32"),
        ({"granularity": PerAxis(True), "scale": [1.0]}, TypeError, "PerAxis.axis must be an integer"),
    ],
)
def test_qparams_refuses_unrepresentable_fields(kwargs, error, message):
    fields = {"scale": 0.5, "zero_point": 3, "qmin": 0, "qmax": 15, **kwargs}
    with pytest.raises(error, match=message):
        QParams(**fields)


def test_qparams_scale_is_the_float32_that_is_checked():
    # the largest float32 passes; the value just above rounds to inf and is refused
    qp = QParams(scale=float(np.finfo(np.float32).max), zero_point=0, qmin=-8, qmax=7)
    assert np.isfinite(qp.scale)
    assert QParams(scale=3, zero_point=0, qmin=-8, qmax=7).scale == np.float32(3)  # integers are real numbers


@pytest.mark.parametrize("flag", ["half_range", "narrow", "signed", "symmetric"])
@pytest.mark.parametrize("value", ["yes", 1, 0, None, 1.0, [True]])
def test_bool_flags_refuse_non_bools(flag, value):
    if flag == "signed" and value is None:
        return  # None means "from symmetric"
    kwargs = {"symmetric": True, flag: value}
    with pytest.raises(TypeError, match=f"{flag} must be True or False"):
        ql.qparams_from_range(-1.0, 1.0, **kwargs)
    with pytest.raises(TypeError, match=f"{flag} must be True or False"):
        ql.choose_qparams(np.array([-1.0, 1.0]), **kwargs)


def test_numpy_bools_are_bools():
    qp = ql.qparams_from_range(-1.0, 1.0, symmetric=np.True_, half_range=np.True_, narrow=np.False_)
    assert float(qp.scale) == np.float32(1.0) / np.float32(127.5)


@pytest.mark.parametrize(
    ("lo", "hi", "message"),
    [
        (-1e39, 1.0, r"lo \(as float32\) must contain only finite"),  # overflowed float32 silently before
        (0.0, np.array([1e39]), r"hi \(as float32\) must contain only finite"),
    ],
)
def test_range_that_overflows_float32_is_refused(lo, hi, message):
    with pytest.raises(ValueError, match=message):
        ql.qparams_from_range(lo, hi)
    with pytest.raises(ValueError, match="float32"):
        ql.choose_qparams(np.array([np.min(lo), np.max(hi)], dtype=np.float64))


@pytest.mark.parametrize(
    ("eps", "error"),
    [(1e39, ValueError), (10**400, ValueError), (np.nan, ValueError), ("1e-6", TypeError), (True, TypeError)],
)
def test_eps_must_be_a_normal_float32(eps, error):
    with pytest.raises(error, match="eps must be a float"):
        ql.qparams_from_range(0.0, 1.0, eps=eps)


def test_smallest_int_dtype_has_no_assertion_path():
    from qlearn.qparams import _smallest_int_dtype

    with pytest.raises(ValueError, match="int32 range"):
        _smallest_int_dtype(0, 2**32)
