import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qlearn.weightonly import GroupQuant, group_params, rtn


def test_golden_asymmetric_int_zero():
    # range [-1, 2] over 3 steps: s = 1, z = 1; 0.5 / 1 + 1 = 1.5 rounds half to even: code 2
    gq = rtn(np.array([[-1.0, 0.0, 0.5, 2.0]]), bits=2, group_size=None)
    assert gq.scale.tolist() == [[1.0]] and gq.zero.tolist() == [[1.0]]
    assert gq.codes.tolist() == [[0, 1, 2, 3]]
    assert gq.dequantize().tolist() == [[-1.0, 0.0, 1.0, 2.0]]


def test_golden_symmetric_groups():
    w = np.array([[0.3, -0.6, 0.9, 0.0]])
    gq = rtn(w, bits=3, group_size=2, zero="symmetric")
    # groups [0.3, -0.6] and [0.9, 0.0]: s = 0.6/3 = 0.2 and 0.9/3 = 0.3
    np.testing.assert_allclose(gq.scale, [[0.2, 0.3]], rtol=1e-6)
    # 0.3 / float32(0.2) = 1.4999999776 in float64: rounds to 1, not to the tie's even 2
    assert gq.codes.tolist() == [[1, -3, 3, 0]]
    assert gq.zero.tolist() == [[0.0, 0.0]]


def test_golden_float_zero_is_min_based():
    # [0.5, 3.5] at 4 bits: s = 3/15 = 0.2, min = 0.5 (not widened to 0), w = q * s + min
    w = np.array([[0.5, 1.1, 3.5]])
    gq = rtn(w, bits=4, group_size=None, zero="float")
    np.testing.assert_allclose(gq.scale, [[0.2]], rtol=1e-6)
    assert gq.codes.tolist() == [[0, 3, 15]]
    np.testing.assert_allclose(gq.dequantize(), gq.codes * 0.2 + 0.5, rtol=1e-6)
    # torchao's convention: zero_t = min + s * 2^(b-1), w = (q - 2^(b-1)) * s + zero_t
    zero_t = 0.5 + 0.2 * 8
    np.testing.assert_allclose(gq.dequantize(), (gq.codes.astype(np.float64) - 8) * 0.2 + zero_t, rtol=1e-6)


def test_float_zero_beats_int_zero_on_offset_group(rng):
    w = rng.uniform(1.0, 2.0, size=(32, 64))  # positive groups: the int grid must reach down to 0
    err = {z: np.mean((w - rtn(w, 4, 32, zero=z).dequantize(np.float64)) ** 2) for z in ("int", "float")}
    # the float zero point fits [min, max] = [1, 2]; the integer one must cover [0, 2]: twice the step
    assert err["float"] < err["int"] / 3


def reference_rtn(w, bits, gs, symmetric):
    out = np.empty_like(w)
    for i in range(w.shape[0]):
        for g in range(w.shape[1] // gs):
            v = w[i, g * gs : (g + 1) * gs].astype(np.float32)
            if symmetric:
                qmax = 2 ** (bits - 1) - 1
                s = max(float(np.abs(v).max()) / qmax, float(np.finfo(np.float32).eps))
                s = np.float32(s)
                q = np.clip(np.rint(v / s), -qmax - 1, qmax)
                out[i, g * gs : (g + 1) * gs] = q * s
            else:
                lo, hi = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
                s = np.float32(
                    max((np.float32(hi) - np.float32(lo)) / np.float32(2**bits - 1), np.finfo(np.float32).eps)
                )
                z = np.clip(-np.rint(np.float32(lo) / s), 0, 2**bits - 1)
                q = np.clip(np.rint(v / s) + z, 0, 2**bits - 1)
                out[i, g * gs : (g + 1) * gs] = (q - z) * s
    return out


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
@pytest.mark.parametrize("gs", [None, 16])
@pytest.mark.parametrize("symmetric", [True, False])
def test_matches_slow_reference(rng, bits, gs, symmetric):
    w = rng.standard_normal((6, 64)).astype(np.float32)
    gq = rtn(w, bits, gs, zero="symmetric" if symmetric else "int")
    np.testing.assert_allclose(gq.dequantize(), reference_rtn(w, bits, gs or 64, symmetric), rtol=1e-6, atol=1e-7)


@given(
    arrays(np.float64, (3, 16), elements=st.floats(-10, 10, allow_subnormal=False)),
    st.sampled_from([2, 3, 4, 8]),
    st.sampled_from(["symmetric", "int", "float"]),
)
def test_properties(w, bits, zero):
    before = w.copy()
    gq = rtn(w, bits, 8, zero=zero)
    assert np.array_equal(w, before)
    assert gq.codes.min() >= gq.qmin and gq.codes.max() <= gq.qmax
    err = np.abs(w - gq.dequantize(np.float64))
    s = np.repeat(gq.scale.astype(np.float64), 8, axis=1)
    assert np.all(err <= s / 2 * (1 + 1e-5) + 1e-6)  # nothing clips at clip=1.0


def test_group_params_shapes_and_clip(rng):
    w = rng.standard_normal((4, 32))
    s1, _ = group_params(w, 4, 8)
    s2, _ = group_params(w, 4, 8, clip=0.5)
    assert s1.shape == (4, 4)
    np.testing.assert_allclose(s2, s1 * 0.5, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(w=np.ones(4)), ValueError),
        (dict(w=np.ones((2, 6)), group_size=4), ValueError),
        (dict(w=np.ones((2, 4)), bits=1), ValueError),
        (dict(w=np.ones((2, 4)), zero="half"), ValueError),
        (dict(w=np.ones((2, 4)), clip=1.5), ValueError),
        (dict(w=np.ones((2, 4)), clip=np.ones((3, 1))), ValueError),
        (dict(w=np.array([[np.nan, 1.0]])), ValueError),
        (dict(w=np.array([["a", "b"]])), TypeError),
    ],
)
def test_bad_input(kwargs, exc):
    kwargs.setdefault("group_size", None)
    with pytest.raises(exc):
        rtn(**kwargs)


def test_groupquant_is_frozen(rng):
    gq = rtn(rng.standard_normal((2, 8)), 4, 4)
    assert isinstance(gq, GroupQuant)
    with pytest.raises(AttributeError):
        gq.bits = 3  # type: ignore[misc]
