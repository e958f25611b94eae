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

from qlearn._checks import as_float_array, as_int
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


def _as_int_array(q: ArrayLike, name: str) -> NDArray[np.int64]:
    arr = np.asarray(q)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers; got dtype {arr.dtype}")
    return arr.astype(np.int64)


@dataclass(frozen=True)
class FixedPoint:
    """A positive real multiplier stored as ``m0 · 2^-shift`` with an integer ``m0``.

    Attributes
    ----------
    m0 : ndarray of int64
        Integer mantissa in ``[2^(bits-1), 2^bits)``.
    shift : ndarray of int64
        Right shift, at least 1.
    """

    m0: NDArray[np.int64]
    shift: NDArray[np.int64]

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
        multiplier so large (``≥ 2^(bits-1)``) or so small that ``shift`` leaves ``[1, 62]``.

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
    shift = (b - e - carry).astype(np.int64)
    if np.any(shift < 1) or np.any(shift > 62):
        raise ValueError(
            f"multiplier must lie in [2^-{62 - b}, 2^{b - 1}) to fit m0 · 2^-shift with shift in [1, 62]; "
            f"got {multiplier!r}"
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

    Raises
    ------
    TypeError, ValueError
        On non-integer input or a shift outside [1, 62].

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
    if np.any(n < 1) or np.any(n > 62):
        raise ValueError(f"shift must be in [1, 62]; got {shift!r}")
    floor = np.right_shift(xi, n)
    rem = xi - np.left_shift(floor, n)  # in [0, 2^n)
    half = np.left_shift(np.int64(1), n - 1)
    up = (rem > half) | ((rem == half) & (floor % 2 == 1))
    result: NDArray[np.int64] = floor + up
    return result


def requantize(
    acc: ArrayLike, multiplier: FixedPoint, zero_point: ArrayLike, qmin: int, qmax: int
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
        Output zero point(s).
    qmin, qmax : int
        Output integer range.

    Returns
    -------
    ndarray of int
        The smallest integer dtype holding ``[qmin, qmax]``.

    Raises
    ------
    TypeError, ValueError
        On non-integer accumulators, accumulators outside int32, or a bad range.

    Notes
    -----
    .. math:: q_y = \\operatorname{clamp}\\left(\\left\\lfloor \\frac{\\mathrm{acc} \\cdot m_0}{2^{n}}
              \\right\\rceil + z_y,\\; q_{min},\\; q_{max}\\right)

    :math:`|\\mathrm{acc}| < 2^{31}` and :math:`m_0 < 2^{31}`, so the product fits in int64.

    Examples
    --------
    >>> fp = fixed_point(0.25)
    >>> requantize([-1000, -6, 2, 6, 1000], fp, zero_point=10, qmin=0, qmax=255)
    array([  0,   8,  10,  12, 255], dtype=uint8)
    """
    a = _as_int_array(acc, "acc")
    if a.size and (a.min() < _I32.min or a.max() > _I32.max):
        raise ValueError(f"acc must hold int32 accumulators; got values in [{a.min()}, {a.max()}]")
    if not isinstance(multiplier, FixedPoint):
        raise TypeError(f"multiplier must be a FixedPoint (see fixed_point); got {type(multiplier).__name__}")
    lo, hi = as_int(qmin, "qmin"), as_int(qmax, "qmax")
    if not lo < hi:
        raise ValueError(f"qmin < qmax is required; got qmin={lo}, qmax={hi}")
    z = _as_int_array(zero_point, "zero_point")
    y = rounding_right_shift(a * multiplier.m0, multiplier.shift) + z
    codes: NDArray[np.integer[Any]] = np.clip(y, lo, hi).astype(_smallest_int_dtype(lo, hi))
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
        On shapes that do not chain (``(M, K) @ (K, N)``).
    OverflowError
        If an accumulator does not fit in int32.

    Notes
    -----
    Expanding the product gives four sums:

    .. math:: \\sum_k q_a q_b \\;-\\; z_b \\sum_k q_a \\;-\\; z_a \\sum_k q_b \\;+\\; K z_a z_b

    The first is the integer matmul proper; the second needs one sum per row of ``qa``
    (zero when the weights are symmetric); the last two depend only on the weights and
    are precomputed once. The intermediate sums are computed in int64 here; in int32
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
    za_i = np.int64(as_int(za, "za"))
    zb_i = _as_int_array(zb, "zb")  # () or (N,)
    k = a.shape[1]
    acc = a @ b  # (M, N)  sum_k qa * qb
    acc -= zb_i * a.sum(axis=1, keepdims=True)  # (M, 1) * zb: one row sum per activation row
    acc -= za_i * b.sum(axis=0)  # (N,): precomputable from the weights
    acc += k * za_i * zb_i  # (N,) or (): precomputable
    if acc.size and (acc.min() < _I32.min or acc.max() > _I32.max):
        raise OverflowError(f"an accumulator leaves int32: values in [{acc.min()}, {acc.max()}]")
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
        On non-finite input, non-positive scales, or a bias too large for int32 at that scale.

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
    if np.any(sx <= 0) or np.any(sw <= 0):
        raise ValueError(f"scales must be positive; got scale_x={scale_x!r}, scale_w={scale_w!r}")
    q = np.rint(b / (sx * sw))
    if np.any(np.abs(q) > _I32.max):
        raise ValueError(
            f"the bias does not fit in int32 at scale s_x·s_w; largest |bias / scale| is {np.abs(q).max():.3g}"
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
    """

    q_w: NDArray[np.integer[Any]]
    q_b: NDArray[np.int32]
    z_x: int
    multiplier: FixedPoint
    z_y: int
    qmin_y: int
    qmax_y: int
    relu: bool = False

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
        if acc.size and (acc.min() < _I32.min or acc.max() > _I32.max):
            raise OverflowError(f"an accumulator plus bias leaves int32: values in [{acc.min()}, {acc.max()}]")
        q_y = requantize(acc, self.multiplier, self.z_y, self.qmin_y, self.qmax_y)
        return np.maximum(q_y, np.asarray(self.z_y, q_y.dtype)) if self.relu else q_y
