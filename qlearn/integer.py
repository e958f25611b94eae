"""Integer-only arithmetic: matrix multiply with zero points, fixed-point multipliers,
requantization, and int32 biases.

A quantized layer computes ``Y = X W + b`` from integer codes. With
``x = s_x (q_x - z_x)`` and ``w = s_w (q_w - z_w)``,

    y_ij = s_x s_w * sum_k (q_x[i,k] - z_x)(q_w[k,j] - z_w[j])  +  b_j,

so the whole sum runs on integers (accumulated in int32) and one real factor
``M = s_x s_w / s_y`` rescales it to the output's codes. Integer hardware applies ``M`` as
an integer multiplication and a rounding right shift: ``M ≈ m0 · 2^-shift``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_array, as_float_array, as_int
from qlearn.qparams import _smallest_int_dtype

__all__ = [
    "FixedPoint",
    "QuantizedLinear",
    "fixed_point",
    "quantize_bias",
    "quantized_matmul",
    "requantize",
    "rounding_right_shift",
]

_I32 = np.iinfo(np.int32)
_I64 = np.iinfo(np.int64)
_F64_TINY = float(np.finfo(np.float64).tiny)
ROUNDINGS = ("half_even", "gemmlowp")


class _Int32Overflow(ValueError, OverflowError):
    """A value that must fit in int32 does not (a ValueError, and an OverflowError for older callers)."""


def _as_int_array(q: ArrayLike, name: str) -> NDArray[np.int64]:
    """``q`` as int64, refusing non-integers and uint64 values that int64 cannot hold (no silent wrap)."""
    arr = as_array(q, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers; got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > _I64.max:
        raise ValueError(f"{name} must hold integers that fit in int64; got a uint64 value {int(arr.max())}")
    return arr.astype(np.int64)


def _require_int32(arr: NDArray[np.int64], name: str, what: str = "int32 values") -> None:
    if arr.size and (int(arr.min()) < _I32.min or int(arr.max()) > _I32.max):
        raise ValueError(
            f"{name} must hold {what}, in [{_I32.min}, {_I32.max}]; got values in [{arr.min()}, {arr.max()}]"
        )


def _int32_scalar(value: Any, name: str) -> int:
    v = as_int(value, name)
    if not _I32.min <= v <= _I32.max:
        raise ValueError(f"{name} must be an int32 integer, in [{_I32.min}, {_I32.max}]; got {v}")
    return v


def _broadcast_to_first(name: str, first: NDArray[Any], **others: NDArray[Any]) -> None:
    """Raise ValueError unless every array in ``others`` broadcasts against ``first`` without enlarging it."""
    try:
        shape = np.broadcast_shapes(first.shape, *(a.shape for a in others.values()))
    except ValueError:
        shape = None
    if shape != first.shape:
        got = ", ".join(f"{k} shape {v.shape}" for k, v in others.items())
        raise ValueError(
            f"{got} must broadcast against {name} of shape {first.shape} (a scalar, or one value per "
            f"channel along the last axis)"
        )


@dataclass(frozen=True)
class FixedPoint:
    """A positive real multiplier stored as ``m0 · 2^-shift`` with an integer ``m0``.

    Parameters
    ----------
    m0 : int or array_like of int
        Integer mantissa, in ``[1, 2^31 - 1]`` (a non-negative int32, as in gemmlowp and
        TFLite); :func:`fixed_point` gives ``[2^(bits-1), 2^bits)``.
    shift : int or array_like of int
        Right shift, in ``[1, 62]``; the shape of ``m0`` (or a scalar, broadcast).

    Attributes
    ----------
    m0 : ndarray of int64
        Read-only.
    shift : ndarray of int64
        Read-only, the shape of ``m0``.

    Raises
    ------
    TypeError, ValueError
        If ``m0`` or ``shift`` are not integers, are out of range, or have shapes that differ.
    """

    m0: NDArray[np.int64]
    shift: NDArray[np.int64]

    def __post_init__(self) -> None:
        m0, shift = _as_int_array(self.m0, "FixedPoint m0"), _as_int_array(self.shift, "FixedPoint shift")
        if m0.size == 0:
            raise ValueError("FixedPoint m0 must hold at least one mantissa; got an empty array")
        if np.any(m0 < 1) or np.any(m0 > _I32.max):
            raise ValueError(f"FixedPoint m0 must lie in [1, 2^31 - 1]; got values in [{m0.min()}, {m0.max()}]")
        if np.any(shift < 1) or np.any(shift > 62):
            raise ValueError(f"FixedPoint shift must lie in [1, 62]; got values in [{shift.min()}, {shift.max()}]")
        if shift.shape != m0.shape:
            if shift.ndim:
                raise ValueError(
                    f"FixedPoint shift must have the shape of m0 {m0.shape} or be a scalar; got shape {shift.shape}"
                )
            shift = np.full(m0.shape, shift, dtype=np.int64)
        for arr in (m0, shift):
            arr.setflags(write=False)
        object.__setattr__(self, "m0", m0)
        object.__setattr__(self, "shift", shift)

    def __repr__(self) -> str:
        if self.m0.ndim == 0:
            return f"FixedPoint(m0={int(self.m0)}, shift={int(self.shift)})"
        return f"FixedPoint(m0={self.m0.tolist()}, shift={self.shift.tolist()})"

    @property
    def value(self) -> NDArray[np.float64]:
        """The real number represented, ``m0 · 2^-shift``."""
        return np.ldexp(self.m0.astype(np.float64), -self.shift)


def fixed_point(multiplier: ArrayLike, bits: int = 31) -> FixedPoint:
    """Represent a positive real multiplier as ``m0 · 2^-shift`` with a ``bits``-bit integer ``m0``.

    Parameters
    ----------
    multiplier : array_like of float
        Positive, finite multipliers (e.g. ``s_x * s_w / s_y``, usually below 1).
    bits : int, default 31
        Bits of ``m0`` (31: the mantissa fills a non-negative int32, as in gemmlowp and TFLite).

    Returns
    -------
    FixedPoint
        With ``|m0 · 2^-shift − multiplier| ≤ 2^-bits · multiplier``.

    Raises
    ------
    TypeError, ValueError
        On a non-positive, non-finite or empty multiplier, ``bits`` outside [2, 31], or a
        multiplier so large (``≥ 2^(bits-1)`` once rounded to ``bits`` bits, e.g. 1.75 at 2 bits
        rounds to 2) or so small (``< 2^(bits-63)``) that ``shift`` leaves ``[1, 62]``.

    Notes
    -----
    Write :math:`M = f \\cdot 2^e` with :math:`f \\in [\\tfrac12, 1)` (``np.frexp``); then

    .. math:: m_0 = \\operatorname{round}(f \\cdot 2^{b}), \\qquad \\text{shift} = b - e,

    and if rounding gives :math:`m_0 = 2^b`, halve it and reduce the shift by one.

    Examples
    --------
    >>> fp = fixed_point(0.3)
    >>> fp
    FixedPoint(m0=1288490189, shift=32)
    >>> float(fp.value)
    0.30000000004656613
    """
    m = as_float_array(multiplier, "multiplier").astype(np.float64)
    if not np.all(m > 0):
        raise ValueError(f"multiplier must be positive; got {multiplier!r}")
    b = as_int(bits, "bits")
    if not 2 <= b <= 31:
        raise ValueError(f"bits must be an integer in [2, 31]; got {b}")
    f, e = np.frexp(m)  # m = f * 2^e, f in [0.5, 1)
    m0 = np.rint(np.ldexp(f, b)).astype(np.int64)  # in [2^(b-1), 2^b]
    carry = m0 == 2**b
    m0 = np.where(carry, 2 ** (b - 1), m0)
    shift = b - e.astype(np.int64) - carry
    if np.any(shift < 1) or np.any(shift > 62):
        raise ValueError(
            f"multiplier must lie in [2^-{63 - b}, 2^{b - 1}) once its mantissa is rounded to {b} bits, to fit "
            f"m0 · 2^-shift with shift in [1, 62]; got {multiplier!r}, giving shift(s) in "
            f"[{int(shift.min())}, {int(shift.max())}]"
        )
    return FixedPoint(m0=np.asarray(m0, dtype=np.int64), shift=np.asarray(shift, dtype=np.int64))


def rounding_right_shift(x: ArrayLike, shift: ArrayLike) -> NDArray[np.int64]:
    """``round(x / 2^shift)``, rounding half to even, in integer arithmetic only.

    Parameters
    ----------
    x : array_like of int
        Integers (int64 range).
    shift : array_like of int
        Shifts in [1, 62], broadcastable against ``x``.

    Returns
    -------
    ndarray of int64
        The shape of ``x`` broadcast against ``shift``.

    Raises
    ------
    TypeError, ValueError
        On non-integer input, values outside int64, a shift outside [1, 62], or shapes
        that do not broadcast.

    Notes
    -----
    ``x >> shift`` is :math:`\\lfloor x / 2^n \\rfloor` (an arithmetic shift); the remainder
    :math:`r = x - 2^n \\lfloor x / 2^n \\rfloor \\in [0, 2^n)` decides the rounding: up when
    :math:`r > 2^{n-1}`, and on a tie :math:`r = 2^{n-1}` up only if that makes the result even —
    the same round-half-to-even as ``np.rint``.

    Examples
    --------
    >>> rounding_right_shift([5, 6, 7, -5, -6, -7, 10], 2)  # 1.25 1.5 1.75 -1.25 -1.5 -1.75 2.5
    array([ 1,  2,  2, -1, -2, -2,  2])
    """
    xi = _as_int_array(x, "x")
    n = _as_int_array(shift, "shift")
    if n.size == 0 or np.any(n < 1) or np.any(n > 62):
        raise ValueError(f"shift must be in [1, 62]; got {shift!r}")
    try:
        np.broadcast_shapes(xi.shape, n.shape)
    except ValueError:
        raise ValueError(f"shift of shape {n.shape} must broadcast against x of shape {xi.shape}") from None
    floor = np.right_shift(xi, n)
    rem = xi - np.left_shift(floor, n)  # in [0, 2^n); floor · 2^n >= -2^63, so no wrap
    half = np.left_shift(np.int64(1), n - 1)
    up = (rem > half) | ((rem == half) & (floor % 2 == 1))
    result: NDArray[np.int64] = floor + up
    return result


def _doubling_high_mul(a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.int64]:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32 values held in int64.

    The high 32 bits of ``2ab``, i.e. ``ab / 2^31`` rounded to nearest: the nudge ``2^30``
    (``1 - 2^30`` for a negative product) and a division that truncates toward zero, as C's
    ``/``, which sends a tie toward +inf for either sign; the one product that overflows,
    ``INT32_MIN · INT32_MIN``, saturates to ``INT32_MAX``.
    """
    ab = a * b  # |ab| <= 2^62: exact in int64
    nudged = ab + np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))  # truncate toward zero
    out: NDArray[np.int64] = np.where((a == _I32.min) & (b == _I32.min), np.int64(_I32.max), high)
    return out


def _divide_by_pot(x: NDArray[np.int64], exponent: NDArray[np.int64]) -> NDArray[np.int64]:
    """gemmlowp's RoundingDivideByPOT: ``x / 2^exponent`` rounded half away from zero, exponent in [0, 31]."""
    mask = np.left_shift(np.int64(1), exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    out: NDArray[np.int64] = (x >> exponent) + (remainder > threshold)
    return out


def _gemmlowp_multiply(acc: NDArray[np.int64], m0: NDArray[np.int64], shift: NDArray[np.int64]) -> NDArray[np.int64]:
    """TFLite's MultiplyByQuantizedMultiplier with ``m0 · 2^-shift`` = ``m0 · 2^-31 · 2^(31 - shift)``."""
    tfl_shift = 31 - shift  # TFLite's exponent: > 0 shifts left before the high multiply
    left, right = np.maximum(tfl_shift, 0), np.maximum(-tfl_shift, 0)
    shifted = np.left_shift(acc, left)  # |acc| < 2^31 and left <= 30: exact in int64
    if shifted.size and (int(shifted.min()) < _I32.min or int(shifted.max()) > _I32.max):
        raise _Int32Overflow(
            "gemmlowp rounding needs acc · 2^(31 - shift) to fit in int32 when shift < 31 (TFLite's left "
            f"shift); got values in [{shifted.min()}, {shifted.max()}]"
        )
    return _divide_by_pot(_doubling_high_mul(shifted, m0), right)


def requantize(
    acc: ArrayLike,
    multiplier: FixedPoint,
    zero_point: ArrayLike,
    qmin: int,
    qmax: int,
    *,
    rounding: str = "half_even",
) -> NDArray[np.integer[Any]]:
    """Rescale int32 accumulators to output codes: ``clamp(round(acc · m0 / 2^shift) + z, qmin, qmax)``.

    Parameters
    ----------
    acc : array_like of int
        Accumulators, within int32.
    multiplier : FixedPoint
        The real factor ``M = s_x s_w / s_y`` as produced by :func:`fixed_point`; a vector
        applies per output channel (the last axis of ``acc``).
    zero_point : int or array_like of int
        Output zero point(s), within int32.
    qmin, qmax : int
        Output integer range, inside int32.
    rounding : {"half_even", "gemmlowp"}, default "half_even"
        ``"half_even"``: the exact product ``acc · m0`` (int64) divided by ``2^shift`` with
        one rounding, half to even (as ``np.rint``; see :func:`rounding_right_shift`).
        ``"gemmlowp"``: TFLite's default integer kernels (``MultiplyByQuantizedMultiplier``),
        two roundings: gemmlowp's ``SaturatingRoundingDoublingHighMul`` (``acc · m0 / 2^31`` to
        nearest, ties toward +inf) then ``RoundingDivideByPOT`` (by ``2^(shift - 31)``, to
        nearest, ties away from zero).

    Returns
    -------
    ndarray of int
        The smallest integer dtype holding ``[qmin, qmax]``.

    Raises
    ------
    TypeError, ValueError
        On non-integer accumulators, accumulators or zero points outside int32, a bad
        range, an unknown ``rounding``, or shapes that do not broadcast against ``acc``.

    Notes
    -----
    .. math:: q_y = \\operatorname{clamp}\\left(\\left\\lfloor \\frac{\\mathrm{acc} \\cdot m_0}{2^{n}}
              \\right\\rceil + z_y,\\; q_{min},\\; q_{max}\\right)

    :math:`|\\mathrm{acc}| \\le 2^{31}` and :math:`m_0 < 2^{31}`, so the product fits in int64.
    gemmlowp instead rounds twice: TFLite stores :math:`M = m_0 \\cdot 2^{-31} \\cdot 2^{31 - n}`,
    first takes :math:`h = \\operatorname{round}(\\mathrm{acc} \\cdot m_0 / 2^{31})`, then
    :math:`\\operatorname{round}(h / 2^{n - 31})` (for :math:`n < 31` it shifts ``acc`` left by
    :math:`31 - n` first). The two modes differ by one code in two cases: at an exact tie of
    :math:`\\mathrm{acc} \\cdot M` (half to even against away from zero), and, far more often,
    when :math:`\\mathrm{acc} \\cdot M` lies within :math:`2^{-(n - 30)}` of a half-integer on its
    side nearer zero: the first rounding lands :math:`h` on the tie and the second rounds it away
    from zero. For accumulators spread evenly that is about one in :math:`2^{n - 30}` (one in
    1,024 for :math:`n = 40`).

    Examples
    --------
    >>> fp = fixed_point(0.25)
    >>> requantize([-1000, -6, 2, 6, 1000], fp, zero_point=10, qmin=0, qmax=255)
    array([  0,   8,  10,  12, 255], dtype=uint8)
    >>> requantize([-6, 2, 6], fp, zero_point=10, qmin=0, qmax=255, rounding="gemmlowp")  # -1.5, 0.5: ties away from 0
    array([ 8, 11, 12], dtype=uint8)
    """
    a = _as_int_array(acc, "acc")
    _require_int32(a, "acc", "int32 accumulators")
    if not isinstance(multiplier, FixedPoint):
        raise TypeError(f"multiplier must be a FixedPoint (see fixed_point); got {type(multiplier).__name__}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(map(repr, ROUNDINGS))}; got {rounding!r}")
    lo, hi = as_int(qmin, "qmin"), as_int(qmax, "qmax")
    if not _I32.min <= lo < hi <= _I32.max:
        raise ValueError(f"qmin < qmax inside the int32 range is required; got qmin={lo}, qmax={hi}")
    z = _as_int_array(zero_point, "zero_point")
    _require_int32(z, "zero_point")
    _broadcast_to_first("acc", a, multiplier=multiplier.m0, zero_point=z)
    if rounding == "half_even":
        scaled = rounding_right_shift(a * multiplier.m0, multiplier.shift)
    else:
        scaled = _gemmlowp_multiply(a, multiplier.m0, multiplier.shift)
    codes: NDArray[np.integer[Any]] = np.clip(scaled + z, lo, hi).astype(_smallest_int_dtype(lo, hi))
    return codes


def quantized_matmul(qa: ArrayLike, za: int, qb: ArrayLike, zb: ArrayLike = 0) -> NDArray[np.int32]:
    """``sum_k (qa[i,k] − za)(qb[k,j] − zb[j])`` computed as integer hardware does, into int32.

    Parameters
    ----------
    qa : array_like of int, shape (M, K)
        Codes of the left operand (activations), zero point ``za``.
    za : int
        Zero point of ``qa``.
    qb : array_like of int, shape (K, N)
        Codes of the right operand (weights).
    zb : int or array_like of int, shape (N,), default 0
        Zero point(s) of ``qb``: one, or one per output column (0 for symmetric weights).

    Returns
    -------
    ndarray of int32, shape (M, N)
        The accumulators.

    Raises
    ------
    TypeError
        On non-integer operands.
    ValueError
        On empty operands, shapes that do not chain (``(M, K) @ (K, N)``), a ``zb`` that is
        neither a scalar nor one per column, or an accumulator that does not fit in int32
        (that error is also an ``OverflowError``).

    Notes
    -----
    Expanding the product gives four sums:

    .. math:: \\sum_k q_a q_b \\;-\\; z_b \\sum_k q_a \\;-\\; z_a \\sum_k q_b \\;+\\; K z_a z_b

    The first is the integer matmul proper; the second needs one sum per row of ``qa``
    (zero when the weights are symmetric); the last two depend only on the weights and
    are precomputed once. The intermediate sums are computed in int64 here (the first as a float64
    matrix product when every partial sum is below :math:`2^{53}`, so exactly); in int32
    hardware they may wrap around, which is harmless because two's-complement addition
    is exact modulo :math:`2^{32}` and the final sum fits.

    Examples
    --------
    >>> import numpy as np
    >>> qa = np.array([[130, 120]], dtype=np.uint8)      # za = 128: values 2, -8
    >>> qb = np.array([[3], [-1]], dtype=np.int8)       # zb = 0
    >>> quantized_matmul(qa, 128, qb)                   # 2*3 + (-8)(-1)
    array([[14]], dtype=int32)
    """
    a, b = _as_int_array(qa, "qa"), _as_int_array(qb, "qb")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"qa and qb must have shapes (M, K) and (K, N); got {a.shape} and {b.shape}")
    if a.size == 0 or b.size == 0:
        raise ValueError(f"qa and qb must not be empty; got shapes {a.shape} and {b.shape}")
    za_i = np.int64(_int32_scalar(za, "za"))
    zb_i = _as_int_array(zb, "zb")  # () or (N,)
    _require_int32(zb_i, "zb")
    if zb_i.shape not in ((), (b.shape[1],)):
        raise ValueError(f"zb must be a scalar or have shape ({b.shape[1]},), one per column of qb; got {zb_i.shape}")
    k = a.shape[1]
    # every partial sum is bounded by K (max|qa| + |za|)(max|qb| + max|zb|): if that leaves int64,
    # compute with Python integers (exact, slow) rather than let int64 wrap
    bound = k * (int(np.abs(a).max()) + abs(int(za_i))) * (int(np.abs(b).max()) + int(np.abs(zb_i).max()))
    if bound > _I64.max:
        exact = (a.astype(object) - int(za_i)) @ (b.astype(object) - zb_i.astype(object))  # (M, N)
        lo, hi = min(exact.flat), max(exact.flat)
        if lo < _I32.min or hi > _I32.max:
            raise _Int32Overflow(f"an accumulator leaves int32: values in [{lo}, {hi}]")
        result: NDArray[np.int32] = exact.astype(np.int32)
        return result
    if bound < 2**53:
        # every partial sum is an integer below 2**53, which float64 holds exactly whatever the order of
        # the additions: BLAS gives the same integers as an int64 loop, many times faster
        acc = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)  # (M, N)  sum_k qa * qb
    else:
        acc = a @ b  # (M, N)  sum_k qa * qb
    acc -= zb_i * a.sum(axis=1, keepdims=True)  # (M, 1) * zb: one row sum per activation row
    acc -= za_i * b.sum(axis=0)  # (N,): precomputable from the weights
    acc += k * za_i * zb_i  # (N,) or (): precomputable
    if acc.min() < _I32.min or acc.max() > _I32.max:
        raise _Int32Overflow(f"an accumulator leaves int32: values in [{acc.min()}, {acc.max()}]")
    return acc.astype(np.int32)


def quantize_bias(bias: ArrayLike, scale_x: ArrayLike, scale_w: ArrayLike) -> NDArray[np.int32]:
    """Quantize a bias to int32 with scale ``s_x · s_w`` and zero point 0.

    The bias is added to the accumulators of :func:`quantized_matmul`, which count in
    units of ``s_x s_w``, so it must be expressed in the same units.

    Parameters
    ----------
    bias : array_like of float, shape (N,)
        The float bias.
    scale_x : float
        Scale of the layer's input.
    scale_w : float or array_like of float, shape (N,)
        Scale(s) of the weights (one per output channel for per-channel weights).

    Returns
    -------
    ndarray of int32, shape (N,)

    Raises
    ------
    TypeError, ValueError
        On non-finite or empty input, non-positive scales, a product ``s_x·s_w`` that is not a
        finite normal float64, mismatched shapes, or a bias too large for int32 at that scale.

    Notes
    -----
    .. math:: q_b = \\operatorname{round}\\left(\\frac{b}{s_x s_w}\\right)

    Examples
    --------
    >>> quantize_bias([0.5, -0.25], 0.1, [0.01, 0.02])
    array([ 500, -125], dtype=int32)
    """
    b = as_float_array(bias, "bias").astype(np.float64)
    sx = as_float_array(scale_x, "scale_x").astype(np.float64)
    sw = as_float_array(scale_w, "scale_w").astype(np.float64)
    if sx.ndim != 0:
        raise ValueError(f"scale_x must be a scalar (one input scale); got shape {sx.shape}")
    if b.ndim != 1 or sw.shape not in ((), b.shape):
        raise ValueError(
            f"bias must be 1-d and scale_w a scalar or of the shape of bias; got shapes {b.shape} and {sw.shape}"
        )
    with np.errstate(over="ignore", under="ignore"):
        unit = sx * sw  # the accumulator's unit s_x s_w (checked next)
    if np.any(sx <= 0) or np.any(sw <= 0) or not np.all(np.isfinite(unit)) or np.any(unit < _F64_TINY):
        raise ValueError(
            "scales must be positive and their product s_x·s_w a finite normal float64; "
            f"got scale_x={scale_x!r}, scale_w={scale_w!r}"
        )
    with np.errstate(over="ignore"):
        ratio = b / unit
    q = np.rint(ratio)
    if not np.all(np.abs(q) <= _I32.max):
        raise ValueError(
            f"the bias does not fit in int32 at scale s_x·s_w: |bias / (s_x·s_w)| must be at most {_I32.max}; "
            f"largest is {np.abs(ratio).max():.3g}"
        )
    return q.astype(np.int32)


@dataclass(frozen=True)
class QuantizedLinear:
    """A fully connected layer that runs on integers only: ``q_y = requant(q_x @ q_w + q_b)``.

    Built by :func:`qlearn.ptq.convert`. Codes in, codes out: the input has zero point
    ``z_x`` (any scale), the weights are symmetric (zero point 0, one scale per output
    channel or one for all), the bias is int32 in units of ``s_x·s_w``, and
    ``multiplier ≈ s_x·s_w / s_y`` rescales the int32 accumulators to output codes.

    Attributes
    ----------
    q_w : ndarray of int, shape (in, out)
    q_b : ndarray of int32, shape (out,)
    z_x : int
    multiplier : FixedPoint
        Scalar, or one per output channel.
    z_y, qmin_y, qmax_y : int
        Output zero point and range.
    relu : bool
        Apply ReLU, which in codes is ``max(q_y, z_y)``.
    rounding : {"half_even", "gemmlowp"}, default "half_even"
        Rounding of the requantization (see :func:`requantize`).

    Raises
    ------
    TypeError, ValueError
        If a field has the wrong type or a value the integer path cannot run: weights not
        ``(in, out)`` integers, a bias or per-channel multiplier not one per output, values
        outside int32, or an output zero point outside ``[qmin_y, qmax_y]``.
    """

    q_w: NDArray[np.integer[Any]]
    q_b: NDArray[np.int32]
    z_x: int
    multiplier: FixedPoint
    z_y: int
    qmin_y: int
    qmax_y: int
    relu: bool = False
    rounding: str = "half_even"

    def __post_init__(self) -> None:
        q_w, q_b = _as_int_array(self.q_w, "q_w"), _as_int_array(self.q_b, "q_b")
        if q_w.ndim != 2 or q_w.size == 0:
            raise ValueError(f"q_w must be a non-empty 2-d array of shape (in, out); got shape {q_w.shape}")
        n_out = q_w.shape[1]
        if q_b.shape != (n_out,):
            raise ValueError(f"q_b must have shape ({n_out},), one bias per output; got shape {q_b.shape}")
        _require_int32(q_w, "q_w")
        _require_int32(q_b, "q_b")
        if not isinstance(self.multiplier, FixedPoint):
            raise TypeError(f"multiplier must be a FixedPoint (see fixed_point); got {type(self.multiplier).__name__}")
        if self.multiplier.m0.shape not in ((), (n_out,)):
            raise ValueError(
                f"multiplier must be a scalar or have shape ({n_out},); got shape {self.multiplier.m0.shape}"
            )
        ints = {name: _int32_scalar(getattr(self, name), name) for name in ("z_x", "z_y", "qmin_y", "qmax_y")}
        if not ints["qmin_y"] <= ints["z_y"] <= ints["qmax_y"] or ints["qmin_y"] == ints["qmax_y"]:
            raise ValueError(
                f"qmin_y < qmax_y and z_y in [qmin_y, qmax_y] are required; got qmin_y={ints['qmin_y']}, "
                f"qmax_y={ints['qmax_y']}, z_y={ints['z_y']}"
            )
        if not isinstance(self.relu, bool | np.bool_):
            raise TypeError(f"relu must be True or False; got {self.relu!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {', '.join(map(repr, ROUNDINGS))}; got {self.rounding!r}")
        for name, value in ints.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "relu", bool(self.relu))

    def forward(self, q_x: ArrayLike) -> NDArray[np.integer[Any]]:
        """Output codes for input codes ``q_x`` of shape (batch, in); no float arithmetic.

        Examples
        --------
        >>> layer = QuantizedLinear(q_w=np.array([[2], [-1]], np.int8), q_b=np.array([4], np.int32),
        ...     z_x=128, multiplier=fixed_point(0.5), z_y=0, qmin_y=-128, qmax_y=127, relu=True)
        >>> layer.forward(np.array([[130, 120], [126, 130]], np.uint8))  # acc = 12 + 4, -6 + 4; halved
        array([[8],
               [0]], dtype=int8)
        """
        acc = quantized_matmul(q_x, self.z_x, self.q_w).astype(np.int64) + self.q_b  # (batch, out)
        if acc.min() < _I32.min or acc.max() > _I32.max:
            raise _Int32Overflow(f"an accumulator plus bias leaves int32: values in [{acc.min()}, {acc.max()}]")
        q_y = requantize(acc, self.multiplier, self.z_y, self.qmin_y, self.qmax_y, rounding=self.rounding)
        return np.maximum(q_y, np.asarray(self.z_y, q_y.dtype)) if self.relu else q_y
