"""quantize, dequantize and fake_quantize."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qlearn as ql
from qlearn.primitives import _BLOCK
from qlearn.qparams import PerAxis, PerGroup, QParams

QP4 = QParams(scale=0.5, zero_point=3, qmin=0, qmax=15)


# --- golden values computed by hand -----------------------------------------------------------
def test_quantize_golden():
    # x / 0.5 = [-3, -0.5, 0, 0.5, 1.5, 2.5, 200] -> rint (half to even) [-3, -0, 0, 0, 2, 2, 200]
    # + 3 -> [0, 3, 3, 3, 5, 5, 203] -> clamp to [0, 15]
    x = np.array([-1.5, -0.25, 0.0, 0.25, 0.75, 1.25, 100.0])
    np.testing.assert_array_equal(ql.quantize(x, QP4), [0, 3, 3, 3, 5, 5, 15])


def test_rounds_half_to_even_not_truncating():
    qp = QParams(scale=1.0, zero_point=0, qmin=-128, qmax=127)
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.9, -0.9])
    np.testing.assert_array_equal(ql.quantize(x, qp), [-2, -2, 0, 0, 2, 2, 1, -1])


def test_dequantize_golden():
    q = np.array([0, 3, 5, 15], dtype=np.uint8)
    out = ql.dequantize(q, QP4)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [-1.5, 0.0, 1.0, 6.0])
    assert ql.dequantize(q, QP4, dtype=np.float64).dtype == np.float64


def test_symmetric_int8_golden():
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0], dtype=np.float32)
    qp = ql.choose_qparams(x, symmetric=True)  # scale 3/127
    np.testing.assert_array_equal(ql.quantize(x, qp), [-127, -42, 0, 42, 127])


def test_per_axis_golden():
    x = np.array([[1.0, -2.0], [10.0, 20.0]])  # (2 channels, 2)
    qp = QParams(scale=[1.0, 10.0], zero_point=[0, 1], qmin=-8, qmax=7, granularity=PerAxis(0))
    np.testing.assert_array_equal(ql.quantize(x, qp), [[1, -2], [2, 3]])
    np.testing.assert_array_equal(ql.dequantize(ql.quantize(x, qp), qp), [[1.0, -2.0], [10.0, 20.0]])


def test_per_group_golden():
    x = np.array([[1.0, 2.0, 30.0, -40.0]])  # one row, 2 groups of 2
    qp = QParams(scale=[[1.0, 10.0]], zero_point=[[0, 0]], qmin=-8, qmax=7, granularity=PerGroup(2))
    np.testing.assert_array_equal(ql.quantize(x, qp), [[1, 2, 3, -4]])


@pytest.mark.parametrize(
    ("qmin", "qmax", "dtype"),
    [
        (0, 255, np.uint8),
        (-128, 127, np.int8),
        (0, 15, np.uint8),
        (-8, 7, np.int8),
        (0, 65535, np.uint16),
        (-32768, 32767, np.int16),
        (-(2**31), 2**31 - 1, np.int32),
    ],
)
def test_result_uses_smallest_integer_dtype(qmin, qmax, dtype):
    qp = QParams(scale=0.1, zero_point=0 if qmin < 0 else qmin, qmin=qmin, qmax=qmax)
    assert ql.quantize(np.array([0.0, 1.0]), qp).dtype == dtype


# --- oracle: a slow, obvious reference ------------------------------------------------------
def reference_quantize(x, scale, zp, qmin, qmax):
    """One value at a time in float64; Python's round() is round-half-to-even."""
    return np.array([min(max(round(v / scale) + zp, qmin), qmax) for v in np.ravel(x)]).reshape(np.shape(x))


@given(
    x=hnp.arrays(np.float64, st.integers(1, 50), elements=st.floats(-1e3, 1e3)),
    bits=st.integers(2, 16),
    symmetric=st.booleans(),
)
def test_quantize_matches_reference(x, bits, symmetric):
    qp = ql.choose_qparams(x, bits, symmetric)
    expected = reference_quantize(x, float(qp.scale), int(qp.zero_point), qp.qmin, qp.qmax)
    np.testing.assert_array_equal(ql.quantize(x, qp), expected)
    np.testing.assert_array_equal(
        ql.dequantize(ql.quantize(x, qp), qp, dtype=np.float64),
        (expected - int(qp.zero_point)) * float(qp.scale),
    )


def test_blocked_path_equals_single_block(rng):
    # a per-tensor array larger than one block goes through the blocked path
    x = (rng.standard_normal(3 * _BLOCK + 17) * 5).astype(np.float32)
    x[::1000] = np.float32(0.5) * 7  # include some exact ties
    qp = ql.choose_qparams(x)
    blocked = ql.quantize(x, qp)
    single = np.concatenate([ql.quantize(x[i : i + 1000], qp) for i in range(0, x.size, 1000)])
    np.testing.assert_array_equal(blocked, single)
    np.testing.assert_array_equal(
        ql.dequantize(blocked, qp),
        np.concatenate([ql.dequantize(blocked[i : i + 1000], qp) for i in range(0, x.size, 1000)]),
    )
    np.testing.assert_array_equal(ql.quantize(x.reshape(-1, 1)[::2], qp), single[::2, None])  # strided input


def test_nan_in_a_later_block_is_reported(rng):
    x = rng.standard_normal(2 * _BLOCK + 5).astype(np.float32)
    x[-2] = np.nan
    with pytest.raises(ValueError, match=rf"got 1 NaN or infinite value\(s\), the first at index \({x.size - 2},\)"):
        ql.quantize(x, ql.QParams(scale=0.1, zero_point=0, qmin=-128, qmax=127))


def test_fma_mode_rounds_once():
    # x * (1/s) + z rounded once in float32 (FBGEMM's fused multiply-add) versus round(x / s) + z:
    # these three values, found among 16M normals, fall on different sides of a rounding boundary
    qp = QParams(scale=np.float32(0.0371234), zero_point=117, qmin=0, qmax=255)
    x = np.array([0.90952325, 3.025557, -3.2482975], dtype=np.float32)
    np.testing.assert_array_equal(ql.quantize(x, qp), [141, 199, 29])
    np.testing.assert_array_equal(ql.quantize(x, qp, method="fma"), [142, 198, 30])
    inv = np.float64(np.float32(1) / qp.scale)
    fused = np.rint((x.astype(np.float64) * inv + 117).astype(np.float32))
    np.testing.assert_array_equal(ql.quantize(x, qp, method="fma"), fused)
    assert ql.fake_quantize(x, qp, method="fma").dtype == np.float32
    # mul_add: round after the multiplication, again after the addition, then to an integer
    two_step = np.rint((x * (np.float32(1) / qp.scale)).astype(np.float32) + np.float32(117))
    np.testing.assert_array_equal(ql.quantize(x, qp, method="mul_add"), two_step)


# --- properties --------------------------------------------------------------------------------
arrays32 = hnp.arrays(
    np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=8), elements=st.floats(-1e4, 1e4, width=32)
)
schemes = st.fixed_dictionaries({"bits": st.integers(2, 16), "symmetric": st.booleans(), "narrow": st.booleans()})


@given(x=arrays32, scheme=schemes, method=st.sampled_from(["divide", "fma", "mul", "mul_add"]))
def test_codes_within_range_and_error_bounded(x, scheme, method):
    qp = ql.choose_qparams(x, **scheme)
    before = x.copy()
    q = ql.quantize(x, qp, method=method)
    assert q.dtype == qp.dtype and q.shape == x.shape
    assert q.min() >= qp.qmin and q.max() <= qp.qmax
    x_hat = ql.fake_quantize(x, qp, method=method)
    s = np.float64(qp.scale)
    lo, hi = (qp.qmin - int(qp.zero_point)) * s, (qp.qmax - int(qp.zero_point)) * s
    inside = (x >= lo) & (x <= hi)
    err = np.abs(x.astype(np.float64) - x_hat.astype(np.float64))
    # s/2 plus the float32 rounding of x / s (relative 2^-24 of |x|) and of the dequantized value
    slack = 4 * np.finfo(np.float32).eps * (np.abs(x) + s)
    assert np.all(err[inside] <= s / 2 + slack[inside])
    np.testing.assert_array_equal(x, before)


@given(x=arrays32, scheme=schemes)
def test_zero_round_trips_and_requantize_is_identity(x, scheme):
    qp = ql.choose_qparams(x, **scheme)
    assert ql.quantize(np.float32(0.0), qp) == qp.zero_point
    assert ql.dequantize(qp.zero_point.astype(qp.dtype), qp) == 0.0
    codes = np.arange(qp.qmin, qp.qmax + 1, max(1, (qp.qmax - qp.qmin) // 300)).astype(qp.dtype)
    np.testing.assert_array_equal(ql.quantize(ql.dequantize(codes, qp), qp), codes)


@given(x=arrays32, scheme=schemes)
def test_quantize_is_monotone(x, scheme):
    qp = ql.choose_qparams(x, **scheme)
    xs = np.sort(x.ravel())
    assert np.all(np.diff(ql.quantize(xs, qp).astype(np.int64)) >= 0)


@given(x=arrays32, symmetric=st.booleans(), data=st.data())
def test_per_axis_and_group_equal_per_slice(x, symmetric, data):
    axis = data.draw(st.integers(0, x.ndim - 1))
    qp = ql.choose_qparams(x, symmetric=symmetric, axis=axis)
    q = ql.quantize(x, qp)
    for c in range(x.shape[axis]):
        one = QParams(scale=qp.scale[c], zero_point=qp.zero_point[c], qmin=qp.qmin, qmax=qp.qmax)
        np.testing.assert_array_equal(np.take(q, c, axis=axis), ql.quantize(np.take(x, c, axis=axis), one))
    gs = data.draw(st.sampled_from([d for d in range(1, x.shape[-1] + 1) if x.shape[-1] % d == 0]))
    qg = ql.choose_qparams(x, symmetric=symmetric, group_size=gs)
    got = ql.quantize(x, qg).reshape(*x.shape[:-1], -1, gs)
    for idx in np.ndindex(qg.scale.shape):
        one = QParams(scale=qg.scale[idx], zero_point=qg.zero_point[idx], qmin=qg.qmin, qmax=qg.qmax)
        np.testing.assert_array_equal(got[idx], ql.quantize(x.reshape(*x.shape[:-1], -1, gs)[idx], one))


def test_inputs_are_not_mutated(rng):
    x = rng.standard_normal(2 * _BLOCK + 3).astype(np.float32)
    qp = ql.choose_qparams(x)
    x_before = x.copy()
    q = ql.quantize(x, qp)
    q_before = q.copy()
    ql.dequantize(q, qp)
    ql.fake_quantize(x, qp)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(q, q_before)


def test_dtypes_of_fake_quantize():
    qp = ql.choose_qparams(np.array([-1.0, 1.0]))
    assert ql.fake_quantize(np.array([0.1], np.float32), qp).dtype == np.float32
    assert ql.fake_quantize(np.array([0.1], np.float16), qp).dtype == np.float32
    assert ql.fake_quantize(np.array([0.1]), qp).dtype == np.float64
    assert ql.fake_quantize([1, 0], qp).dtype == np.float64


# --- bad input -------------------------------------------------------------------------------
def test_quantize_bad_input():
    with pytest.raises(ValueError, match="finite"):
        ql.quantize(np.array([np.nan]), QP4)
    with pytest.raises(ValueError, match="finite"):
        ql.fake_quantize(np.array([np.inf]), QP4)
    with pytest.raises(ValueError, match="empty"):
        ql.quantize(np.array([]), QP4)
    with pytest.raises(TypeError, match="real numbers"):
        ql.quantize(np.array(["1"]), QP4)
    with pytest.raises(ValueError, match="method must be one of 'divide', 'fma', 'mul', 'mul_add'; got 'round'"):
        ql.quantize(np.ones(2), QP4, method="round")
    with pytest.raises(TypeError, match="qp must be a QParams .* got dict"):
        ql.quantize(np.ones(2), {"scale": 1.0})


def test_shape_must_fit_granularity():
    qp = QParams(scale=[1.0, 2.0], zero_point=0, qmin=-8, qmax=7, granularity=PerAxis(1))
    with pytest.raises(ValueError, match=r"2 channels but the array has length 3 along axis 1 \(shape \(2, 3\)\)"):
        ql.quantize(np.ones((2, 3)), qp)
    with pytest.raises(ValueError, match="at least one dimension"):
        ql.quantize(np.float32(1.0), qp)
    with pytest.raises(ValueError, match=r"axis must be in \[-1, 0\]"):
        ql.quantize(np.ones(2), qp)
    qg = QParams(scale=[[1.0, 2.0]], zero_point=0, qmin=-8, qmax=7, granularity=PerGroup(2))
    with pytest.raises(ValueError, match=r"fit arrays of shape \(1, 4\); got shape \(1, 6\)"):
        ql.quantize(np.ones((1, 6)), qg)


def test_dequantize_bad_input():
    with pytest.raises(TypeError, match="integer codes; got dtype float64"):
        ql.dequantize(np.array([1.0]), QP4)
    with pytest.raises(ValueError, match=r"codes in \[qmin, qmax\] = \[0, 15\]; got values in \[0, 16\]"):
        ql.dequantize(np.array([0, 16]), QP4)
    with pytest.raises(ValueError, match=r"got values in \[-1, 3\]"):
        ql.dequantize(np.array([-1, 3], dtype=np.int8), QP4)
    with pytest.raises(ValueError, match="empty"):
        ql.dequantize(np.array([], dtype=np.uint8), QP4)
    with pytest.raises(TypeError, match="floating-point dtype .* got int32"):
        ql.dequantize(np.array([1], dtype=np.uint8), QP4, dtype=np.int32)


# --- issue 9: exact single rounding, 32-bit ranges, fork safety ------------------------------
# x * inv = P * 2^-47 with P = 2^46 - 2^30 - 1 (a 48-bit product of two 24-bit significands, found by
# trial division): x * inv + 129 lies just below the float32 midpoint 129.5 - 2^-17, closer to it than
# half a float64 ulp, so rounding to float64 and then to float32 lands on 129.5 (tie to even -> 130)
# while a single rounding gives 129.5 - 2^-16 (-> 129)
ADVERSARIAL_FMA = [(11506049, 6115711, 47), (8511266, 16535183, 48)]


def scale_with_inverse(inv):
    """A float32 scale s with float32(1 / s) == inv."""
    s = np.float32(1) / inv
    for c in (s, np.nextafter(s, np.float32(1)), np.nextafter(s, np.float32(0))):
        if np.float32(1) / c == inv:
            return c
    raise AssertionError("no float32 scale has this inverse")


@pytest.mark.parametrize(("x_int", "inv_int", "k"), ADVERSARIAL_FMA)
def test_fma_rounds_once_on_a_double_rounding_trap(x_int, inv_int, k):
    inv, x = np.float32(inv_int * 2.0**-24), np.float32(x_int * 2.0 ** -(k - 24))
    assert x_int * inv_int == 2 ** (k - 1) - 2 ** (k - 17) - (1 if k == 47 else 2)  # the construction
    qp = QParams(scale=scale_with_inverse(inv), zero_point=129, qmin=0, qmax=255)
    xs = np.array([x, -x, x], dtype=np.float32)
    twice = np.rint((xs.astype(np.float64) * np.float64(inv) + 129).astype(np.float32))
    assert twice[0] == 130  # rounding to float64 first would give this
    exact = [rint_fraction(round_f32(Fraction(float(v)) * Fraction(float(inv)) + 129)) for v in xs]
    assert exact[0] == 129  # the exact rational reference: one rounding, then half to even
    np.testing.assert_array_equal(ql.quantize(xs, qp, method="fma"), exact)


def test_fma_agrees_with_an_exact_rational_reference(rng):
    # random near-ties: x * inv + z within a few float32 ulps of a half-integer
    s = np.float32(0.0371234)
    inv = np.float32(1) / s
    k = rng.integers(-120, 120, 4000)
    x = ((k + 0.5) / np.float64(inv)).astype(np.float32)
    x = np.concatenate([x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))])
    qp = QParams(scale=s, zero_point=117, qmin=0, qmax=255)
    got = ql.quantize(x, qp, method="fma")
    expected = [min(max(rint_fraction(round_f32(Fraction(float(v)) * Fraction(float(inv)) + 117)), 0), 255) for v in x]
    np.testing.assert_array_equal(got, expected)


def round_f32(v):
    """Round a Fraction to the nearest float32 (ties to even), exactly."""
    if v == 0:
        return Fraction(0)
    sign, a = (1, v) if v > 0 else (-1, -v)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    ulp = Fraction(2) ** (max(e, -126) - 23)
    return sign * rint_fraction(a / ulp) * ulp


def rint_fraction(v):
    """Round a Fraction half to even."""
    f = v.numerator // v.denominator
    r = v - f
    return f + (1 if r > Fraction(1, 2) or (r == Fraction(1, 2) and f % 2) else 0)


@pytest.mark.parametrize("method", ["divide", "fma", "mul", "mul_add"])
def test_int32_range_clamps_exactly(method):
    # float32 cannot hold 2^31 - 1: clamping in float32 would give 2^31, which wraps to -2^31 in int32
    qp = QParams(scale=1.0, zero_point=0, qmin=-(2**31), qmax=2**31 - 1)
    x = np.array([3e9, -3e9, 2**31, 1.5, -2.5, 0.0], dtype=np.float32)
    np.testing.assert_array_equal(ql.quantize(x, qp, method=method), [2**31 - 1, -(2**31), 2**31 - 1, 2, -2, 0])
    qz = QParams(scale=1.0, zero_point=2**30 + 1, qmin=-(2**31), qmax=2**31 - 1)  # a zero point float32 rounds
    got = ql.quantize(np.array([0.0, 4.0, 2**30], dtype=np.float32), qz, method="divide")
    np.testing.assert_array_equal(got, [2**30 + 1, 2**30 + 5, 2**31 - 1])
    big = np.full(3 * _BLOCK, 5e9, dtype=np.float32)  # the blocked path too
    assert np.all(ql.quantize(big, qp, method=method) == 2**31 - 1)


def _quantize_large_in_child(queue):
    x = np.arange(8 * _BLOCK, dtype=np.float32)
    queue.put(int(ql.quantize(x, ql.QParams(scale=1.0, zero_point=0, qmin=0, qmax=255))[-1]))


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_threaded_path_survives_fork():
    import multiprocessing

    ql.quantize(np.zeros(8 * _BLOCK, dtype=np.float32), QP4)  # the parent's pool now exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_quantize_large_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():  # deadlocked on the parent's dead pool
        child.kill()
        child.join()
        pytest.fail("a process forked after a large quantize call hung in its own next large call")
    assert child.exitcode == 0 and queue.get(timeout=5) == 255
