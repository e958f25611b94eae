"""qlearn.formats.minifloat against ml_dtypes, bit for bit: every code, all ties, 10^6+ random values."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import require

from qlearn.formats import BF16, E2M1, E2M3, E3M2, E4M3, E5M2, E8M0, FP16, Minifloat, cast, decode, encode

FORMATS = {
    "E4M3": (E4M3, "float8_e4m3fn"),
    "E5M2": (E5M2, "float8_e5m2"),
    "E3M2": (E3M2, "float6_e3m2fn"),
    "E2M3": (E2M3, "float6_e2m3fn"),
    "E2M1": (E2M1, "float4_e2m1fn"),
    "E8M0": (E8M0, "float8_e8m0fnu"),
    "FP16": (FP16, "float16"),
    "BF16": (BF16, "bfloat16"),
}


def _dtype(name):
    if name == "float16":
        return np.float16
    return getattr(require("ml_dtypes"), name)


def _codes_of(arr, fmt):
    return arr.view(np.uint8 if fmt.bits <= 8 else np.uint16)


def test_golden_values():
    assert (E4M3.max, E5M2.max, E3M2.max, E2M3.max, E2M1.max) == (448.0, 57344.0, 28.0, 7.5, 6.0)
    assert E2M1.values()[:8].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    assert (E4M3.min_subnormal, E5M2.min_subnormal, E8M0.min_normal) == (2.0**-9, 2.0**-16, 2.0**-127)
    assert (E4M3.nan_code, E5M2.nan_code, E8M0.nan_code, FP16.nan_code, BF16.nan_code) == (
        0x7F,
        0x7E,
        0xFF,
        0x7E00,
        0x7FC0,
    )
    assert encode([1.0, -2.0, 448.0, 2.0**-9], E4M3).tolist() == [0x38, 0xC0, 0x7E, 0x01]
    assert encode([1.0, 2.0**-127, 2.0**127], E8M0).tolist() == [127, 0, 254]
    # ties to even: 17 lies between 16 (mantissa 000) and 18 (001) in E4M3
    assert cast([17.0, 19.0, -17.0], E4M3).tolist() == [16.0, 20.0, -16.0]


def test_no_nan_formats_refuse_nan():
    for fmt in (E3M2, E2M3, E2M1):
        with pytest.raises(ValueError, match="has no NaN"):
            encode([1.0, np.nan], fmt)
        with pytest.raises(ValueError, match="has no NaN"):
            fmt.nan_code  # noqa: B018


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_code_decodes_as_ml_dtypes(name):
    fmt, dt = FORMATS[name]
    codes = np.arange(1 << fmt.bits, dtype=np.uint8 if fmt.bits <= 8 else np.uint16)
    ref = codes.view(_dtype(dt)).astype(np.float32)
    ours = decode(codes, fmt)
    np.testing.assert_array_equal(ours.view(np.uint32)[~np.isnan(ref)], ref.view(np.uint32)[~np.isnan(ref)])
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    # every non-NaN code survives decode -> encode (the format's own rule for inf)
    keep = ~np.isnan(ours)
    np.testing.assert_array_equal(encode(ours[keep], fmt, overflow="nonfinite"), codes[keep])


def _ties(fmt):
    v = fmt.values().astype(np.float64)
    pos = np.unique(v[np.isfinite(v) & (v >= 0)])
    mids = (pos[:-1] + pos[1:]) / 2  # exactly halfway: ties
    above = pos[-1] + (pos[-1] - pos[-2]) / 2  # the tie just past max
    return np.concatenate([mids, -mids, [above, -above]])


def _sample(rng, n=1_000_000):
    bits = (
        rng.integers(0, 1 << 32, size=n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    )  # every exponent, NaN, inf
    normal = (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 6, n)).astype(np.float32)
    return np.concatenate([bits, normal])


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_values_and_all_ties_equal_ml_dtypes(name, dtype, rng):
    fmt, dt = FORMATS[name]
    with np.errstate(invalid="ignore"):  # the random bit patterns include signalling NaNs
        x = np.concatenate([_sample(rng).astype(dtype), _ties(fmt).astype(dtype), [0.0, -0.0, np.inf, -np.inf]])
    if dtype == np.float64:  # values between float32 neighbours: no detour through float32 allowed
        x = np.concatenate([x, (_ties(fmt) * (1 + 2.0**-40)), (_ties(fmt) * (1 - 2.0**-40))])
    if not fmt.has_nan:
        x = x[~np.isnan(x)]
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(_dtype(dt))
    codes, want = encode(x, fmt, overflow="nonfinite"), _codes_of(ref, fmt)
    nan_in = np.isnan(x)  # NaN payloads: numpy and ml_dtypes keep the top payload bits, qlearn does not
    np.testing.assert_array_equal(codes[~nan_in], want[~nan_in])
    sign = np.signbit(x[nan_in]).astype(np.int64) << (fmt.bits - 1) if fmt.signed else 0
    if fmt.has_nan:
        np.testing.assert_array_equal(codes[nan_in], fmt.nan_code | sign)
    ours = cast(x, fmt, overflow="nonfinite")
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref.astype(np.float32)))
    ok = ~np.isnan(ours)
    np.testing.assert_array_equal(ours[ok].view(np.uint32), ref.astype(np.float32)[ok].view(np.uint32))


def _slow_cast(v, fmt, saturate=True):
    """Nearest value by brute force over the table (ties: the even code, E8M0: the larger)."""
    if np.isnan(v):
        return np.nan
    table = fmt.values().astype(np.float64)
    finite = np.isfinite(table)
    codes = np.nonzero(finite)[0]
    vals = table[finite]
    d = np.abs(vals - v)
    best = np.nonzero(d == d.min())[0]
    if len(best) > 1:  # a tie between two neighbours
        pick = [i for i in best if codes[i] % 2 == 0] if fmt.mantissa_bits else [best[np.argmax(vals[best])]]
        best = pick
    return vals[best[0]]


@given(st.floats(min_value=-600, max_value=600, width=32))
def test_e4m3_matches_the_brute_force_nearest(v):
    assert cast([v], E4M3)[0] == _slow_cast(v, E4M3)


@given(st.floats(min_value=-7, max_value=7, width=32))
def test_e2m1_matches_the_brute_force_nearest(v):
    assert cast([v], E2M1)[0] == _slow_cast(v, E2M1)


@given(st.floats(min_value=2.0**-130, max_value=2.0**120, width=32))
def test_e8m0_matches_the_brute_force_nearest(v):
    assert cast([v], E8M0)[0] == _slow_cast(v, E8M0)


def test_saturate_versus_nonfinite():
    x = [500.0, -1e9, np.inf, -np.inf]
    assert cast(x, E4M3).tolist() == [448.0, -448.0, 448.0, -448.0]
    assert np.isnan(cast(x, E4M3, overflow="nonfinite")).all()
    assert cast(x, E5M2, overflow="nonfinite").tolist() == [512.0, -np.inf, np.inf, -np.inf]
    assert cast([1e6, np.inf], E5M2).tolist() == [57344.0, 57344.0]
    assert cast([100.0, -np.inf], E2M1, overflow="nonfinite").tolist() == [6.0, -6.0]  # no specials: saturates


def test_torch_float8_casts_saturate_where_ml_dtypes_gives_nan():
    """Documented in book/format_conventions.md: torch 2.13's e4m3fn cast saturates; ml_dtypes does not."""
    torch = require("torch")
    x = np.array([470.0, 1e9, -1e9, np.inf, 300.0, 17.0, 2.0**-10 * 1.5], dtype=np.float32)
    t = torch.from_numpy(x).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    np.testing.assert_array_equal(t, encode(x, E4M3, overflow="saturate"))
    assert np.isnan(cast(x[:4], E4M3, overflow="nonfinite")).all()


def test_inputs_not_mutated_and_shapes_kept(rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    before = x.copy()
    assert cast(x, E4M3).shape == (3, 5) and encode(x, FP16).dtype == np.uint16
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: cast([1.0], "E4M3"), TypeError, "Minifloat"),
        (lambda: cast([1.0], E4M3, overflow="clip"), ValueError, "saturate"),
        (lambda: cast(["a"], E4M3), TypeError, "real numbers"),
        (lambda: decode([256], E4M3), ValueError, r"\[0, 255\]"),
        (lambda: decode([1.0], E4M3), TypeError, "integer"),
        (lambda: decode([64], E2M1), ValueError, r"\[0, 15\]"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_custom_format_by_hand():
    e3m4 = Minifloat("E3M4", 3, 4, 3, "none")
    assert e3m4.bits == 8 and e3m4.max == 2.0**4 * (1 + 15 / 16)
    assert cast([1.03], e3m4).tolist() == [1.0]
