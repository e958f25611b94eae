"""Minifloats: a generic ``ExMy`` description and exact casts to it (FP8, FP6, FP4, E8M0, FP16, BF16).

A minifloat with ``E`` exponent bits, ``M`` mantissa bits and bias ``b`` stores
``(-1)^s * 2^(e - b) * (1 + f / 2^M)`` for an exponent field ``e >= 1`` and the subnormals
``(-1)^s * 2^(1 - b) * f / 2^M`` for ``e = 0``. Formats differ in what the top codes mean:
IEEE-like formats (E5M2, FP16, BF16) reserve the all-ones exponent for inf and NaN; the "fn"
formats (E4M3) keep only the all-ones code as NaN; the FP6/FP4 formats of OCP MX have no special
values at all; E8M0 is unsigned, has no mantissa and no zero, and 0xFF is NaN.

Casts round to nearest with ties to even (E8M0: ties away from zero, as ``ml_dtypes`` does) and are
computed exactly on the bits of the input (float32, or float64 without a detour through float32).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

_OVERFLOW = ("saturate", "nonfinite")
_CHUNK = 1 << 16  # elements per chunk of the fast cast (keeps the temporaries in cache)


@dataclass(frozen=True)
class Minifloat:
    """A binary floating-point format with ``exponent_bits`` and ``mantissa_bits``.

    Parameters
    ----------
    name : str
        A label such as ``"E4M3"``.
    exponent_bits, mantissa_bits : int
        Field widths; the sign takes one more bit when ``signed``.
    bias : int
        Exponent bias.
    special : {"ieee", "fn", "none"}
        ``"ieee"``: all-ones exponent means inf (mantissa 0) or NaN; ``"fn"``: finite except the
        all-ones code, which is NaN; ``"none"``: every code is a finite number.
    signed : bool
        False only for E8M0 (which then also has no zero and no subnormals).

    Examples
    --------
    >>> E4M3.max, E5M2.max, E2M1.max
    (448.0, 57344.0, 6.0)
    >>> E2M1.values()[:8].tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    bias: int
    special: str = "ieee"
    signed: bool = True

    @property
    def bits(self) -> int:
        """Total width in bits."""
        return self.exponent_bits + self.mantissa_bits + int(self.signed)

    @property
    def has_inf(self) -> bool:
        """Whether ±inf exist."""
        return self.special == "ieee"

    @property
    def has_nan(self) -> bool:
        """Whether a NaN code exists."""
        return self.special != "none"

    @property
    def has_subnormals(self) -> bool:
        """Whether exponent field 0 holds subnormals (all signed formats here)."""
        return self.signed

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return 1 - self.bias if self.has_subnormals else -self.bias

    @property
    def nan_code(self) -> int:
        """The code ``encode`` gives a positive NaN (ml_dtypes' choice)."""
        if not self.has_nan:
            raise ValueError(f"{self.name} has no NaN")
        top = (1 << (self.exponent_bits + self.mantissa_bits)) - 1
        if self.special == "ieee":
            return (top >> self.mantissa_bits) << self.mantissa_bits | (1 << max(self.mantissa_bits - 1, 0))
        return top

    @property
    def max(self) -> float:
        """Largest finite value."""
        v = self.values()
        return float(np.nanmax(v[np.isfinite(v)]))

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value."""
        return 2.0**self.emin

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value."""
        return 2.0 ** (self.emin - self.mantissa_bits) if self.has_subnormals else self.min_normal

    def values(self) -> NDArray[np.float32]:
        """The value of every code, indexed by code (NaN where the code is NaN)."""
        return _table(self).copy()

    def __repr__(self) -> str:
        return f"Minifloat({self.name}: E{self.exponent_bits}M{self.mantissa_bits}, bias {self.bias}, {self.special})"


@functools.cache
def _table(fmt: Minifloat) -> NDArray[np.float32]:
    codes = np.arange(1 << fmt.bits, dtype=np.int64)
    m, ebits = fmt.mantissa_bits, fmt.exponent_bits
    mant = codes & ((1 << m) - 1)
    expo = (codes >> m) & ((1 << ebits) - 1)
    sign = np.where((codes >> (ebits + m)) & 1 if fmt.signed else 0, -1.0, 1.0)
    if fmt.has_subnormals:
        mag = np.where(
            expo == 0, np.ldexp(mant.astype(np.float64), fmt.emin - m), np.ldexp(1.0 + mant / (1 << m), expo - fmt.bias)
        )
    else:
        mag = np.ldexp(1.0, expo - fmt.bias) * (1.0 + mant / (1 << m))
    vals = sign * mag
    all_ones = expo == (1 << ebits) - 1
    if fmt.special == "ieee":
        vals = np.where(all_ones & (mant == 0), sign * np.inf, vals)
        vals = np.where(all_ones & (mant != 0), np.nan, vals)
    elif fmt.special == "fn":
        vals = np.where(all_ones & (mant == (1 << m) - 1), np.nan, vals)
    out: NDArray[np.float32] = vals.astype(np.float32)
    out.flags.writeable = False
    return out


#: OCP FP8 E4M3 ("fn"): bias 7, max 448, no inf, NaN = 0x7F / 0xFF (``ml_dtypes.float8_e4m3fn``).
E4M3 = Minifloat("E4M3", 4, 3, 7, "fn")
#: OCP FP8 E5M2: bias 15, max 57344, IEEE inf and NaN (``ml_dtypes.float8_e5m2``).
E5M2 = Minifloat("E5M2", 5, 2, 15, "ieee")
#: OCP MX FP6 E3M2: bias 3, max 28, no special values (``ml_dtypes.float6_e3m2fn``).
E3M2 = Minifloat("E3M2", 3, 2, 3, "none")
#: OCP MX FP6 E2M3: bias 1, max 7.5, no special values (``ml_dtypes.float6_e2m3fn``).
E2M3 = Minifloat("E2M3", 2, 3, 1, "none")
#: OCP MX FP4 E2M1: bias 1, values 0, 0.5, 1, 1.5, 2, 3, 4, 6 (``ml_dtypes.float4_e2m1fn``).
E2M1 = Minifloat("E2M1", 2, 1, 1, "none")
#: OCP E8M0 scale: unsigned powers of two 2^-127 .. 2^127, 0xFF = NaN (``ml_dtypes.float8_e8m0fnu``).
E8M0 = Minifloat("E8M0", 8, 0, 127, "fn", signed=False)
#: IEEE binary16.
FP16 = Minifloat("FP16", 5, 10, 15, "ieee")
#: bfloat16 (the top half of a float32).
BF16 = Minifloat("BF16", 8, 7, 127, "ieee")


def _check_format(fmt: Any) -> Minifloat:
    if not isinstance(fmt, Minifloat):
        raise TypeError(f"fmt must be a Minifloat such as E4M3; got {fmt!r} of type {type(fmt).__name__}")
    return fmt


def _check_overflow(overflow: Any) -> str:
    if overflow not in _OVERFLOW:
        raise ValueError(f"overflow must be 'saturate' or 'nonfinite'; got {overflow!r}")
    return str(overflow)


def _as_input(x: ArrayLike, fmt: Minifloat) -> NDArray[np.floating]:
    arr = np.asarray(x)
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.float64)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must hold real numbers (float16/32/64 or integers); got dtype {arr.dtype}")
    if not fmt.has_nan and np.isnan(arr).any():
        raise ValueError(
            f"{fmt.name} has no NaN, so NaN cannot be encoded; got {int(np.isnan(arr).sum())} NaN value(s)"
        )
    return arr


def _round_magnitude(a: NDArray[np.floating], fmt: Minifloat) -> NDArray[np.floating]:
    """Round |x| (float32 or float64, no NaN) to the nearest value of ``fmt``'s unbounded-exponent grid."""
    is32 = a.dtype == np.float32
    uint: Any = np.uint32 if is32 else np.uint64
    p = 23 if is32 else 52
    m = fmt.mantissa_bits
    sh = uint(p - m)
    bits: NDArray[Any] = a.view(uint)
    if m == 0:  # E8M0: ties away from zero (ml_dtypes)
        r = ((bits + (uint(1) << (sh - uint(1)))) >> sh) << sh
    else:  # ties to even: add half an ulp minus one, plus the lsb of the kept part
        r = ((bits + ((uint(1) << (sh - uint(1))) - uint(1)) + ((bits >> sh) & uint(1))) >> sh) << sh
    out = r.view(a.dtype)
    if fmt.has_subnormals:
        # below the smallest normal the quantum is fixed: adding C = 2^(emin - m + p) rounds to it (RNE)
        c = a.dtype.type(2.0 ** (fmt.emin - m + p))
        out = np.where(a < a.dtype.type(fmt.min_normal), (a + c) - c, out)
    else:
        # E8M0 has no zero: underflow goes to 2^-127. Below 2^-126 the bit trick would see float32
        # subnormals, so pick between the two smallest powers directly (the tie 1.5 * 2^-127 rounds up).
        lo, hi = a.dtype.type(2.0**-127), a.dtype.type(2.0**-126)
        out = np.where(a < hi, np.where(a >= a.dtype.type(1.5 * 2.0**-127), hi, lo), out)
    result: NDArray[np.floating] = out
    return result


def _cast_chunk(x: NDArray[np.floating], fmt: Minifloat, overflow: str) -> NDArray[np.float32]:
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.abs(x)
        nan = np.isnan(a)
        r = _round_magnitude(np.where(nan, 0, a), fmt)
        top = a.dtype.type(fmt.max)
        over = r > top
        if overflow == "saturate" or fmt.special == "none":
            r = np.where(over, top, r)
        else:
            r = np.where(over, np.inf if fmt.has_inf else np.nan, r)
        if fmt.has_inf:
            r = np.where(np.isinf(a), np.inf if overflow == "nonfinite" else top, r)
        r = np.where(nan, np.nan, r)
        if fmt.signed:
            signed: NDArray[np.float32] = np.copysign(r, x).astype(np.float32)
            return signed
        unsigned: NDArray[np.float32] = np.where((x > 0) | nan, r, np.nan).astype(np.float32)
        return unsigned  # E8M0: zero and negatives are NaN


def _cast32_chunk(x: NDArray[np.float32], fmt: Minifloat, overflow: str, out: NDArray[np.float32]) -> None:
    """The fast path for float32 input to a signed format: integer operations in place on the bits."""
    u32 = np.uint32
    m = fmt.mantissa_bits
    sh = u32(23 - m)
    bits = x.view(u32)
    sign = bits & u32(0x80000000)
    a = bits & u32(0x7FFFFFFF)  # |x| as bits
    r = a >> sh
    r &= u32(1)
    r += a
    r += (u32(1) << (sh - u32(1))) - u32(1)  # half an ulp minus one, plus the lsb: ties to even
    r &= ~((u32(1) << sh) - u32(1))
    small = a < u32(np.float32(fmt.min_normal).view(u32))
    if small.any():  # subnormals of fmt: adding C = 2^(emin - m + 23) rounds to their fixed quantum
        c = np.float32(2.0 ** (fmt.emin - m + 23))
        sub = a.view(np.float32) + c
        sub -= c
        np.copyto(r, sub.view(u32), where=small)
    top = u32(np.float32(fmt.max).view(u32))
    if a.max() > top:  # overflow, inf or NaN present in this chunk
        nan = a > u32(0x7F800000)
        inf = a == u32(0x7F800000)
        over = (r > top) & ~nan & ~inf
        big = u32(np.float32(np.inf if fmt.has_inf else np.nan).view(u32))
        nonfinite = overflow == "nonfinite" and fmt.special != "none"
        np.copyto(r, big if nonfinite else top, where=over)
        np.copyto(r, (u32(0x7F800000) if fmt.has_inf else u32(0x7FC00000)) if nonfinite else top, where=inf)
        np.copyto(r, u32(0x7FC00000), where=nan)
    r |= sign
    out[:] = r.view(np.float32)


def cast(x: ArrayLike, fmt: Minifloat, overflow: str = "saturate") -> NDArray[np.float32]:
    """Round ``x`` to the nearest value representable in ``fmt``, returned as float32.

    Parameters
    ----------
    x : array_like of float
        float32 or float64 (rounded directly, not via float32); integers and float16 are widened first.
    fmt : Minifloat
        Target format, e.g. ``E4M3``.
    overflow : {"saturate", "nonfinite"}
        What a magnitude beyond ``fmt.max`` (after rounding) becomes: ``"saturate"`` gives ±max (±inf too);
        ``"nonfinite"`` gives what the format defines (inf for E5M2/FP16/BF16, NaN for E4M3), as
        ``ml_dtypes`` does. Formats without special values (E3M2, E2M3, E2M1) always saturate.

    Returns
    -------
    ndarray of float32
        Same shape as ``x``.

    Raises
    ------
    TypeError
        If ``x`` is not numeric or ``fmt`` is not a Minifloat.
    ValueError
        If ``x`` holds NaN and ``fmt`` has no NaN, or ``overflow`` is unknown.

    Notes
    -----
    With :math:`e = \\max(\\lfloor \\log_2 |x| \\rfloor, e_{min})` the spacing is :math:`q = 2^{e - M}` and

    .. math:: \\mathrm{cast}(x) = \\mathrm{sign}(x)\\, q \\cdot \\mathrm{rint}(|x| / q)

    (round half to even); NaN stays NaN where the format has one. E8M0 is unsigned and has no zero:
    zero and negatives give NaN, positive underflow gives :math:`2^{-127}`, ties round up.

    Examples
    --------
    >>> cast([0.3, 500.0, 1e-4], E4M3).tolist()
    [0.3125, 448.0, 0.0]
    >>> cast([500.0], E4M3, overflow="nonfinite").tolist()
    [nan]
    >>> cast([2.5, 0.25, -7.0], E2M1).tolist()
    [2.0, 0.0, -6.0]
    """
    f = _check_format(fmt)
    mode = _check_overflow(overflow)
    arr = _as_input(x, f)
    flat = arr.reshape(-1)
    out = np.empty(flat.shape, dtype=np.float32)
    fast = flat.dtype == np.float32 and f.signed
    for start in range(0, flat.size, _CHUNK):
        if fast:
            _cast32_chunk(flat[start : start + _CHUNK], f, mode, out[start : start + _CHUNK])
        else:
            out[start : start + _CHUNK] = _cast_chunk(flat[start : start + _CHUNK], f, mode)
    return out.reshape(arr.shape)


def _code_dtype(fmt: Minifloat) -> type[np.unsignedinteger[Any]]:
    return np.uint8 if fmt.bits <= 8 else np.uint16


def encode(x: ArrayLike, fmt: Minifloat, overflow: str = "saturate") -> NDArray[np.unsignedinteger[Any]]:
    """The bit patterns of ``cast(x, fmt, overflow)``: uint8 (uint16 for FP16 and BF16).

    Parameters
    ----------
    x : array_like of float
        Values to encode.
    fmt : Minifloat
        Target format.
    overflow : {"saturate", "nonfinite"}
        As in :func:`cast`.

    Returns
    -------
    ndarray of uint8 or uint16
        Codes in the low ``fmt.bits`` bits; the sign is the top bit. NaN encodes to ``fmt.nan_code``
        with the sign of the input NaN (``ml_dtypes``' convention).

    Raises
    ------
    TypeError
        If ``x`` is not numeric or ``fmt`` is not a Minifloat.
    ValueError
        If ``x`` holds NaN and ``fmt`` has no NaN, or ``overflow`` is unknown.

    Notes
    -----
    For a normal value :math:`2^{e}(1 + f/2^M)` the code is :math:`s\\,2^{E+M} + (e + b)\\,2^M + f`; a
    subnormal :math:`k\\,2^{e_{min} - M}` has code :math:`s\\,2^{E+M} + k`.

    Examples
    --------
    >>> [hex(c) for c in encode([1.0, -2.0, 448.0, float("nan")], E4M3)]
    ['0x38', '0xc0', '0x7e', '0x7f']
    """
    f = _check_format(fmt)
    r = cast(x, f, overflow)
    flat = r.reshape(-1)
    out = np.empty(flat.shape, dtype=_code_dtype(f))
    for start in range(0, flat.size, _CHUNK):
        _encode_chunk(flat[start : start + _CHUNK], f, out[start : start + _CHUNK])
    return out.reshape(r.shape)


def _encode_chunk(r: NDArray[np.float32], f: Minifloat, out: NDArray[np.unsignedinteger[Any]]) -> None:
    """Codes of values already in ``f`` (float32), from their bits, in place into ``out``."""
    u32 = np.uint32
    m = f.mantissa_bits
    bits = r.view(u32)
    a = bits & u32(0x7FFFFFFF)
    code = a >> u32(23 - m)
    code -= u32((127 - f.bias) << m)  # wraps for values below min_normal: replaced next
    if f.has_subnormals:
        small = a < u32(np.float32(f.min_normal).view(u32))
        if small.any():  # k * 2^(emin - m): the code is k, exact in float32
            code[small] = (a[small].view(np.float32).astype(np.float64) * 2.0 ** (m - f.emin)).astype(u32)
    if f.has_inf:
        np.copyto(code, u32(((1 << f.exponent_bits) - 1) << m), where=a == u32(0x7F800000))
    if f.has_nan:
        np.copyto(code, u32(f.nan_code), where=a > u32(0x7F800000))
    if f.signed:
        code |= (bits >> u32(31)) << u32(f.exponent_bits + m)
    out[:] = code


def decode(codes: ArrayLike, fmt: Minifloat) -> NDArray[np.float32]:
    """The float32 value of each code of ``fmt`` (a table lookup).

    Parameters
    ----------
    codes : array_like of int
        Codes in ``[0, 2**fmt.bits - 1]``.
    fmt : Minifloat
        Their format.

    Returns
    -------
    ndarray of float32
        NaN for NaN codes, ±inf for the infinities.

    Raises
    ------
    TypeError
        If ``codes`` is not an integer array or ``fmt`` is not a Minifloat.
    ValueError
        If a code is out of range.

    Notes
    -----
    .. math:: v = (-1)^s\\, 2^{e - b} (1 + f/2^M) \\ (e \\ge 1), \\qquad v = (-1)^s\\, 2^{1-b} f/2^M \\ (e = 0)

    Examples
    --------
    >>> decode([0x38, 0xC0, 0x7E, 0x01], E4M3).tolist()
    [1.0, -2.0, 448.0, 0.001953125]
    """
    f = _check_format(fmt)
    arr = np.asarray(codes)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"codes must be an integer array; got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= 1 << f.bits):
        raise ValueError(
            f"codes of {f.name} must be in [0, {(1 << f.bits) - 1}]; got values in [{int(arr.min())}, {int(arr.max())}]"
        )
    out: NDArray[np.float32] = _table(f)[arr]
    return out


__all__ = ["BF16", "E2M1", "E2M3", "E3M2", "E4M3", "E5M2", "E8M0", "FP16", "Minifloat", "cast", "decode", "encode"]
