"""Quantization parameters: the integer range, the granularity, and the one place
where a scale and a zero point are computed from a float range.

The affine map between a real value ``r`` and its integer code ``q`` is
``r = scale * (q - zero_point)`` with ``q`` in ``[qmin, qmax]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_array, as_float32, as_float_array, as_int, check_axis, check_bits, check_flag

#: Smallest scale ``choose_qparams`` returns by default: float32 machine epsilon, as in
#: PyTorch's observers. It keeps an all-zero tensor from getting a scale of 0.
FLOAT32_EPS = float(np.finfo(np.float32).eps)
_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32: 1/scale stays finite
_F32_MAX = float(np.finfo(np.float32).max)
_INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class PerTensor:
    """One scale and zero point for the whole tensor."""


@dataclass(frozen=True)
class PerAxis:
    """One scale and zero point per index along ``axis`` (per-channel quantization)."""

    axis: int


@dataclass(frozen=True)
class PerGroup:
    """One scale and zero point per ``group_size`` consecutive values along the last axis."""

    group_size: int


Granularity = PerTensor | PerAxis | PerGroup


def qrange(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """Integer range ``(qmin, qmax)`` of a ``bits``-bit code.

    Parameters
    ----------
    bits : int
        Bit width, an integer in [2, 16].
    signed : bool
        Two's-complement signed codes if True, unsigned codes if False.
    narrow : bool, default False
        Drop the lowest code, giving a range symmetric about its midpoint: signed
        ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (the int8 range ``[-127, 127]`` of TFLite,
        ONNX Runtime and TensorRT), unsigned ``[1, 2^b - 1]``.

    Returns
    -------
    tuple of int
        ``(qmin, qmax)``.

    Raises
    ------
    TypeError
        If ``bits`` is not an integer or ``signed``/``narrow`` are not bools.
    ValueError
        If ``bits`` is outside [2, 16].

    Notes
    -----
    .. math:: [q_{min}, q_{max}] = [-2^{b-1}, 2^{b-1} - 1] \\text{ (signed)}, \\quad
              [0, 2^b - 1] \\text{ (unsigned)}

    Examples
    --------
    >>> qrange(8, signed=True)
    (-128, 127)
    >>> qrange(8, signed=True, narrow=True)
    (-127, 127)
    >>> qrange(4, signed=False)
    (0, 15)
    """
    bits = check_bits(bits)
    signed, narrow = check_flag(signed, "signed"), check_flag(narrow, "narrow")
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return (qmin + 1 if narrow else qmin), qmax


def _smallest_int_dtype(qmin: int, qmax: int) -> np.dtype[Any]:
    for dt in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= qmin and qmax <= info.max:
            return np.dtype(dt)
    raise ValueError(f"[qmin, qmax] must lie inside the int32 range; got [{qmin}, {qmax}]")


@dataclass(frozen=True, eq=False)
class QParams:
    """Parameters of the affine map ``r = scale * (q - zero_point)``, ``q`` in ``[qmin, qmax]``.

    Parameters
    ----------
    scale : array_like of float
        Positive, finite step between neighbouring codes; a scalar for
        :class:`PerTensor`, shape ``(C,)`` for :class:`PerAxis`, shape
        ``(..., n_groups)`` for :class:`PerGroup`. Stored as read-only float32, the
        dtype every framework stores scales in.
    zero_point : array_like of int
        Integer code of the real value 0.0, in ``[qmin, qmax]``; same shape as
        ``scale`` (a scalar is broadcast). Stored as read-only int32.
    qmin, qmax : int
        Integer range, ``qmin < qmax``, inside int32.
    granularity : PerTensor, PerAxis or PerGroup, default PerTensor()
        What each scale applies to.

    Raises
    ------
    TypeError, ValueError
        If a field has the wrong type, a non-positive or non-finite scale, a zero
        point outside ``[qmin, qmax]``, or a shape that does not fit the granularity.

    Examples
    --------
    >>> qp = QParams(scale=0.5, zero_point=3, qmin=0, qmax=15)
    >>> qp
    QParams(scale=0.5, zero_point=3, qmin=0, qmax=15, granularity=PerTensor())
    >>> qp.dtype, qp.bits, qp.signed
    (dtype('uint8'), 4, False)
    """

    scale: NDArray[np.float32]
    zero_point: NDArray[np.int32]
    qmin: int
    qmax: int
    granularity: Granularity = PerTensor()

    def __post_init__(self) -> None:
        qmin, qmax = as_int(self.qmin, "qmin"), as_int(self.qmax, "qmax")
        if not (_INT32.min <= qmin < qmax <= _INT32.max):
            raise ValueError(f"qmin < qmax inside the int32 range is required; got qmin={qmin}, qmax={qmax}")
        scale_in = as_array(self.scale, "scale")
        if scale_in.dtype.kind not in "iuf":
            raise TypeError(f"scale must hold real numbers (a float or integer dtype); got dtype {scale_in.dtype}")
        with np.errstate(over="ignore"):
            scale32 = scale_in.astype(np.float32)  # a copy: the caller's array is never aliased
        if scale32.size == 0 or not np.all(np.isfinite(scale32)) or not np.all(scale32 >= _TINY):
            raise ValueError(
                f"scale must be finite and at least {_TINY:.3g} (a normal float32) after rounding to float32, "
                f"at most {float(np.finfo(np.float32).max):.4g}; got {self.scale!r}"
            )
        scale = scale32.astype(np.float64)
        zp_in = as_array(self.zero_point, "zero_point")
        if zp_in.dtype.kind not in "iuf" or not np.all(np.isfinite(zp_in)) or not np.all(zp_in == np.round(zp_in)):
            raise TypeError(f"zero_point must hold integers; got {self.zero_point!r}")
        if np.any(zp_in < qmin) or np.any(zp_in > qmax):
            raise ValueError(f"zero_point must lie in [qmin, qmax] = [{qmin}, {qmax}]; got {self.zero_point!r}")
        try:
            zero_point = np.broadcast_to(zp_in, scale.shape).astype(np.int32)
        except ValueError:
            raise ValueError(
                f"zero_point must have the shape of scale {scale.shape} or be a scalar; got shape {zp_in.shape}"
            ) from None
        g = self.granularity
        if isinstance(g, PerTensor):
            ok, want = scale.ndim == 0, "a scalar"
        elif isinstance(g, PerAxis):
            as_int(g.axis, "PerAxis.axis")
            ok, want = scale.ndim == 1, "a 1-d array (one scale per channel)"
        elif isinstance(g, PerGroup):
            if as_int(g.group_size, "PerGroup.group_size") < 1:
                raise ValueError(f"PerGroup.group_size must be a positive integer; got {g.group_size}")
            ok, want = scale.ndim >= 1, "an array of shape (..., n_groups)"
        else:
            raise TypeError(f"granularity must be PerTensor(), PerAxis(axis) or PerGroup(group_size); got {g!r}")
        if not ok:
            raise ValueError(f"{type(g).__name__} needs scale to be {want}; got shape {scale.shape}")
        for arr in (scale32, zero_point):
            arr.setflags(write=False)
        object.__setattr__(self, "scale", scale32)
        object.__setattr__(self, "zero_point", zero_point)
        object.__setattr__(self, "qmin", qmin)
        object.__setattr__(self, "qmax", qmax)

    @property
    def dtype(self) -> np.dtype[Any]:
        """Smallest integer dtype holding ``[qmin, qmax]`` (the dtype :func:`quantize` returns)."""
        return _smallest_int_dtype(self.qmin, self.qmax)

    @property
    def bits(self) -> int:
        """Number of bits needed for ``qmax - qmin + 1`` codes."""
        return int(self.qmax - self.qmin).bit_length()

    @property
    def signed(self) -> bool:
        """True if the integer range holds negative codes."""
        return self.qmin < 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QParams):
            return NotImplemented
        return (
            (self.qmin, self.qmax, self.granularity) == (other.qmin, other.qmax, other.granularity)
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: compared by value, not hashable

    def __repr__(self) -> str:
        def show(a: NDArray[Any]) -> str:
            if a.ndim == 0:
                return f"{a.item():.6g}"
            return f"array(shape={a.shape}, dtype={a.dtype})"

        return (
            f"QParams(scale={show(self.scale)}, zero_point={show(self.zero_point)}, "
            f"qmin={self.qmin}, qmax={self.qmax}, granularity={self.granularity!r})"
        )


def qparams_from_range(
    lo: ArrayLike,
    hi: ArrayLike,
    bits: int = 8,
    symmetric: bool = False,
    *,
    signed: bool | None = None,
    narrow: bool = False,
    half_range: bool = False,
    eps: float = FLOAT32_EPS,
    granularity: Granularity = PerTensor(),
) -> QParams:
    """Scale and zero point that map the float range ``[lo, hi]`` onto the integer range.

    This is the only place in qlearn where the scale and zero-point formulas live:
    :func:`choose_qparams` and the observers find a range and call it.

    Parameters
    ----------
    lo, hi : array_like of float
        Lower and upper ends of the range, ``lo <= hi``; scalars, or arrays of the
        shape of the scales (one range per channel or group).
    bits : int, default 8
        Bit width, in [2, 16].
    symmetric : bool, default False
        Symmetric (zero point at the middle of the integer range, range ``±max(|lo|, |hi|)``)
        or asymmetric (affine).
    signed : bool, optional
        Signed codes; defaults to ``symmetric`` (asymmetric → unsigned, symmetric → signed).
    narrow : bool, default False
        Drop the lowest code (see :func:`qrange`), e.g. int8 ``[-127, 127]``.
    half_range : bool, default False
        Symmetric only: divide ``max|x|`` by ``(qmax - qmin) / 2`` (127.5 for 8 bits)
        as PyTorch's observers do, instead of by the codes above the zero point (127).
    eps : float, default float32 epsilon
        Smallest scale returned; keeps an all-zero range from getting a zero scale.
    granularity : PerTensor, PerAxis or PerGroup, default PerTensor()
        Recorded in the result; must fit the shape of ``lo`` and ``hi``.

    Returns
    -------
    QParams

    Raises
    ------
    TypeError, ValueError
        On a bad bit width, non-finite or empty bounds, ``lo > hi``, mismatched shapes,
        ``half_range`` without ``symmetric``, or ``eps`` not a positive float.

    Notes
    -----
    Asymmetric: the range is first widened to contain 0 (so 0.0 is exactly
    representable and the zero point lies in ``[qmin, qmax]``), then

    .. math:: s = \\frac{\\beta - \\alpha}{q_{max} - q_{min}}, \\qquad
              z = q_{min} - \\operatorname{round}(\\alpha / s)

    Symmetric, with :math:`z` the midpoint code (0 when signed, :math:`2^{b-1}` when unsigned):

    .. math:: s = \\frac{\\max(|\\alpha|, |\\beta|)}{q_{max} - z}
              \\quad\\text{or, with half\\_range,}\\quad
              s = \\frac{\\max(|\\alpha|, |\\beta|)}{(q_{max} - q_{min}) / 2}

    Then :math:`s \\leftarrow \\max(s, \\varepsilon)`. Arithmetic is float32, as in the
    frameworks, so scales match theirs bit for bit. A constant range
    :math:`\\alpha = \\beta = c \\neq 0` instead gets :math:`s = |c| / 2^k`, the largest
    power of two :math:`2^k` of codes that fits beside the zero point: dividing by a power
    of two is exact, so :math:`c` round-trips exactly (for :math:`|c| \\geq 2^k \\varepsilon`).

    Examples
    --------
    >>> qp = qparams_from_range(-1.0, 3.0, bits=8)
    >>> round(float(qp.scale), 6), int(qp.zero_point)
    (0.015686, 64)
    >>> qp = qparams_from_range(-1.0, 3.0, bits=8, symmetric=True)
    >>> round(float(qp.scale), 6), int(qp.zero_point), (qp.qmin, qp.qmax)
    (0.023622, 0, (-128, 127))
    """
    bits = check_bits(bits)
    symmetric = check_flag(symmetric, "symmetric")
    signed = symmetric if signed is None else check_flag(signed, "signed")
    qmin, qmax = qrange(bits, signed, narrow)
    if check_flag(half_range, "half_range") and not symmetric:
        raise ValueError("half_range applies to symmetric quantization only; got symmetric=False, half_range=True")
    if isinstance(eps, bool) or not isinstance(eps, (float, int, np.floating, np.integer)):
        raise TypeError(f"eps must be a float; got {eps!r} of type {type(eps).__name__}")
    eps_value = int(eps) if isinstance(eps, (int, np.integer)) else float(eps)  # a huge int stays exact
    if not _TINY <= eps_value <= _F32_MAX:  # False for NaN
        raise ValueError(f"eps must be a float in [{_TINY:.3g}, {_F32_MAX:.4g}] (a normal float32); got {eps!r}")
    lo32 = as_float32(as_float_array(lo, "lo"), "lo")
    hi32 = as_float32(as_float_array(hi, "hi"), "hi")
    if lo32.shape != hi32.shape:
        raise ValueError(f"lo and hi must have the same shape; got {lo32.shape} and {hi32.shape}")
    if np.any(lo32 > hi32):
        raise ValueError(f"lo must not exceed hi; got lo={lo!r}, hi={hi!r}")

    one = np.float32
    lo_w, hi_w = np.minimum(lo32, one(0)), np.maximum(hi32, one(0))  # widened to contain 0
    if symmetric:
        zp = (qmin + qmax + 1) // 2  # midpoint code: 0 (signed) or 2^(b-1) (unsigned)
        amax = np.maximum(-lo_w, hi_w)
        denom = one((qmax - qmin) / 2) if half_range else one(qmax - zp)
        scale = np.maximum(amax / denom, one(eps))
        zero_point = np.full(scale.shape, zp, dtype=np.int32)
        codes_beside_zero = qmax - zp
    else:
        with np.errstate(over="ignore"):
            width = hi_w - lo_w
        if not np.all(np.isfinite(width)):
            raise ValueError(f"the range is too wide for float32: hi - lo overflows; got lo={lo!r}, hi={hi!r}")
        scale = np.maximum(width / one(qmax - qmin), one(eps))
        zero_point = np.clip(qmin - np.rint(lo_w / scale), qmin, qmax).astype(np.int32)
        codes_beside_zero = qmax - qmin

    constant = (lo32 == hi32) & (lo32 != 0)
    if np.any(constant):
        step = one(2 ** (codes_beside_zero.bit_length() - 1))  # largest power of two that fits
        exact = np.maximum(np.abs(lo32) / step, one(eps))
        scale = np.where(constant, exact, scale)
        if not symmetric:
            exact_zp = np.where(lo32 < 0, qmin + step, qmin).astype(np.int32)
            zero_point = np.where(constant, exact_zp, zero_point).astype(np.int32)
    return QParams(scale=scale, zero_point=zero_point, qmin=qmin, qmax=qmax, granularity=granularity)


def choose_qparams(
    x: ArrayLike,
    bits: int = 8,
    symmetric: bool = False,
    *,
    signed: bool | None = None,
    narrow: bool = False,
    axis: int | None = None,
    group_size: int | None = None,
    half_range: bool = False,
    eps: float = FLOAT32_EPS,
) -> QParams:
    """Quantization parameters from the min and max of ``x`` (min-max calibration).

    Parameters
    ----------
    x : array_like of float
        Data to be quantized; finite, not empty, not modified.
    bits : int, default 8
        Bit width, in [2, 16].
    symmetric : bool, default False
        Symmetric (weights, usually) or asymmetric/affine (activations, usually).
    signed, narrow, half_range, eps
        As in :func:`qparams_from_range`.
    axis : int, optional
        Per-channel: one scale and zero point per index along ``axis``.
    group_size : int, optional
        Per-group: one scale and zero point per ``group_size`` consecutive values
        along the last axis, which ``group_size`` must divide.

    Returns
    -------
    QParams
        Per-tensor when neither ``axis`` nor ``group_size`` is given.

    Raises
    ------
    TypeError, ValueError
        On non-numeric, empty or non-finite ``x``, a bad bit width, an axis out of
        range, a group size that does not divide the last axis, or both ``axis`` and
        ``group_size``.

    Notes
    -----
    The range is :math:`[\\alpha, \\beta] = [\\min x, \\max x]` over the tensor, each
    channel or each group; the formulas are those of :func:`qparams_from_range`.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([-1.0, 0.5, 3.0])
    >>> choose_qparams(x)
    QParams(scale=0.0156863, zero_point=64, qmin=0, qmax=255, granularity=PerTensor())
    >>> w = np.array([[0.1, -0.2], [4.0, 2.0]])
    >>> qp = choose_qparams(w, symmetric=True, axis=0)
    >>> np.round(qp.scale, 5)
    array([0.00157, 0.0315 ], dtype=float32)
    """
    arr = as_float_array(x, "x")
    kw: dict[str, Any] = dict(signed=signed, narrow=narrow, half_range=half_range, eps=eps)
    if axis is not None and group_size is not None:
        raise ValueError(
            f"give axis (per-channel) or group_size (per-group), not both; got axis={axis}, group_size={group_size}"
        )
    if axis is not None:
        if arr.ndim == 0:
            raise ValueError("axis needs an array with at least one dimension; got a scalar")
        ax = check_axis(axis, arr.ndim)
        others = tuple(i for i in range(arr.ndim) if i != ax)
        lo, hi = arr.min(axis=others), arr.max(axis=others)  # (C,)
        return qparams_from_range(lo, hi, bits, symmetric, granularity=PerAxis(ax), **kw)
    if group_size is not None:
        gs = as_int(group_size, "group_size")
        n = arr.shape[-1] if arr.ndim else 0
        if gs < 1 or n % gs:
            raise ValueError(f"group_size must be a positive divisor of the last axis (length {n}); got {group_size}")
        groups = arr.reshape(*arr.shape[:-1], n // gs, gs)  # (..., n_groups, group_size)
        lo, hi = groups.min(axis=-1), groups.max(axis=-1)  # (..., n_groups)
        return qparams_from_range(lo, hi, bits, symmetric, granularity=PerGroup(gs), **kw)
    return qparams_from_range(arr.min(), arr.max(), bits, symmetric, **kw)


__all__ = [
    "FLOAT32_EPS",
    "Granularity",
    "PerAxis",
    "PerGroup",
    "PerTensor",
    "QParams",
    "choose_qparams",
    "qparams_from_range",
    "qrange",
]
