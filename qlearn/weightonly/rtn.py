"""Round-to-nearest (RTN) weight quantization per output channel or per group of input columns.

A weight matrix ``w`` of shape ``(out, in)`` is cut along its input axis into groups of
``group_size`` consecutive columns (one group per row when ``group_size`` is ``None``). Each
(row, group) gets a scale ``s`` and a zero point ``z`` (in code units), and

    w ≈ (q - z) * s.

Three conventions are in use:

* ``"symmetric"``: signed codes in ``[-2^(b-1), 2^(b-1) - 1]``, ``z = 0``, ``s = max|w| / (2^(b-1) - 1)``;
* ``"int"`` (asymmetric, integer zero point; GPTQ and AWQ checkpoints): unsigned codes, the range
  widened to contain 0, ``z`` an integer code (:func:`qlearn.qparams_from_range` does the math);
* ``"float"`` (asymmetric, float zero point; torchao's int4 ``ZeroPointDomain.FLOAT``): unsigned
  codes, ``s = (max - min) / (2^b - 1)`` from the group's own range, not widened to 0, and
  ``w ≈ q * s + min``. torchao stores ``zero = min + s * 2^(b-1)`` and dequantizes
  ``(q - 2^(b-1)) * s + zero``, the same numbers; here ``z = -min / s`` is kept in code units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int, check_bits
from qlearn.qparams import FLOAT32_EPS, PerGroup, qparams_from_range, qrange

ZERO_KINDS = ("symmetric", "int", "float")


def _check_weight(w: ArrayLike, name: str = "w") -> NDArray[np.floating[Any]]:
    """Return ``w`` as a finite 2-D float array of shape (out, in)."""
    arr = as_float_array(w, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D weight matrix of shape (out, in); got shape {arr.shape}")
    return arr


def _check_group_size(group_size: Any, n_in: int) -> int:
    """Return the group size (``n_in`` for ``None``), which must divide ``n_in``."""
    if group_size is None:
        return n_in
    gs = as_int(group_size, "group_size")
    if gs < 1 or n_in % gs:
        raise ValueError(f"group_size must be a positive divisor of the input width {n_in} (or None); got {gs}")
    return gs


def _check_zero(zero: Any) -> str:
    """Return ``zero`` if it names a convention of :data:`ZERO_KINDS`."""
    if zero not in ZERO_KINDS:
        raise ValueError(f"zero must be one of {', '.join(map(repr, ZERO_KINDS))}; got {zero!r}")
    return str(zero)


@dataclass(frozen=True)
class GroupQuant:
    """Integer codes of a weight matrix with one scale and zero point per (row, group).

    Parameters
    ----------
    codes : ndarray of int, shape (out, in)
        Codes in ``[qmin, qmax]``.
    scale : ndarray of float32, shape (out, in // group_size)
        Step of each group's grid.
    zero : ndarray of float32, shape (out, in // group_size)
        Zero point of each group in code units (integer-valued unless ``zero == "float"``).
    bits : int
        Code width.
    group_size : int
        Columns per group (``in`` for per-channel).
    zero_kind : {"symmetric", "int", "float"}
        The convention (see the module docstring).

    Notes
    -----
    Column :math:`j` belongs to group :math:`g = \\lfloor j / G \\rfloor` and

    .. math:: \\hat w_{ij} = (q_{ij} - z_{ig})\\, s_{ig}.

    Examples
    --------
    >>> import numpy as np
    >>> gq = rtn(np.array([[-1.0, 0.0, 0.5, 2.0]]), bits=2, group_size=None)
    >>> gq.codes, gq.dequantize()
    (array([[0, 1, 2, 3]], dtype=uint8), array([[-1.,  0.,  1.,  2.]], dtype=float32))
    """

    codes: NDArray[np.integer[Any]]
    scale: NDArray[np.float32]
    zero: NDArray[np.float32]
    bits: int
    group_size: int
    zero_kind: str

    @property
    def qmin(self) -> int:
        """Smallest code."""
        return qrange(self.bits, self.zero_kind == "symmetric")[0]

    @property
    def qmax(self) -> int:
        """Largest code."""
        return qrange(self.bits, self.zero_kind == "symmetric")[1]

    def dequantize(self, dtype: Any = np.float32) -> NDArray[np.floating[Any]]:
        """Return :math:`(q - z)\\, s` of shape (out, in) in ``dtype``."""
        s = np.repeat(self.scale.astype(dtype), self.group_size, axis=1)  # (out, in)
        z = np.repeat(self.zero.astype(dtype), self.group_size, axis=1)  # (out, in)
        out: NDArray[np.floating[Any]] = ((self.codes.astype(dtype) - z) * s).astype(dtype, copy=False)
        return out


def group_params(
    w: ArrayLike,
    bits: int = 4,
    group_size: int | None = 128,
    *,
    zero: str = "int",
    clip: ArrayLike = 1.0,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Scale and zero point of every (row, group) of ``w`` from its min and max.

    Parameters
    ----------
    w : array_like of float, shape (out, in)
        Weights.
    bits : int, default 4
        Code width, in [2, 16].
    group_size : int or None, default 128
        Columns per group; ``None`` for one group per row (per-channel).
    zero : {"symmetric", "int", "float"}, default "int"
        Zero-point convention (see the module docstring).
    clip : float or array_like, default 1.0
        Factor in (0, 1] applied to each group's min and max before the grid is fitted (a
        scalar or an array of shape (out, n_groups)); values outside the shrunk range clip.

    Returns
    -------
    scale, zero : ndarray of float32, shape (out, n_groups)

    Raises
    ------
    TypeError, ValueError
        On a non-2-D or non-finite ``w``, a group size that does not divide ``in``, an unknown
        ``zero``, or a ``clip`` outside (0, 1].

    Notes
    -----
    With :math:`\\alpha, \\beta` the shrunk min and max of a group, :math:`r = 2^b - 1`:
    ``"float"`` gives :math:`s = (\\beta - \\alpha)/r,\\ z = -\\alpha / s`; ``"int"`` and
    ``"symmetric"`` are :func:`qlearn.qparams_from_range` with and without ``symmetric``.

    Examples
    --------
    >>> s, z = group_params([[-1.0, 2.0], [0.5, 3.5]], bits=4, group_size=None, zero="float")
    >>> s.ravel().round(3), z.ravel().round(3)
    (array([0.2, 0.2], dtype=float32), array([ 5. , -2.5], dtype=float32))
    """
    arr = _check_weight(w)
    bits = check_bits(bits)
    gs = _check_group_size(group_size, arr.shape[1])
    kind = _check_zero(zero)
    ratio = as_float_array(clip, "clip")
    if np.any(ratio <= 0) or np.any(ratio > 1):
        raise ValueError(f"clip must lie in (0, 1]; got values in [{ratio.min()}, {ratio.max()}]")
    groups = arr.reshape(arr.shape[0], -1, gs)  # (out, n_groups, group_size)
    try:
        lo = np.broadcast_to(groups.min(axis=-1) * ratio, groups.shape[:2])  # (out, n_groups)
        hi = np.broadcast_to(groups.max(axis=-1) * ratio, groups.shape[:2])  # (out, n_groups)
    except ValueError:
        raise ValueError(f"clip must be a scalar or of shape {groups.shape[:2]}; got shape {ratio.shape}") from None
    if kind == "float":
        lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)
        scale = np.maximum((hi32 - lo32) / np.float32((1 << bits) - 1), np.float32(FLOAT32_EPS))
        return scale, (-lo32 / scale).astype(np.float32)
    qp = qparams_from_range(lo, hi, bits, symmetric=kind == "symmetric", granularity=PerGroup(gs))
    return qp.scale.astype(np.float32), qp.zero_point.astype(np.float32)


def _round_to_grid(
    w: NDArray[np.floating[Any]], scale: NDArray[Any], zero: NDArray[Any], qmin: int, qmax: int
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
    """Codes (as floats) and dequantized values of ``w`` on the grids ``scale``, ``zero``.

    The arrays broadcast against each other; arithmetic is in ``w``'s dtype. Used by RTN, GPTQ
    (one column at a time) and AWQ, so the three round in exactly the same way.
    """
    s = scale.astype(w.dtype)
    z = zero.astype(w.dtype)
    q = np.clip(np.rint(w / s + z), qmin, qmax)
    return q, (q - z) * s


def rtn(
    w: ArrayLike,
    bits: int = 4,
    group_size: int | None = 128,
    *,
    zero: str = "int",
    clip: ArrayLike = 1.0,
) -> GroupQuant:
    """Round-to-nearest quantization of a weight matrix, per channel or per group.

    Parameters
    ----------
    w : array_like of float, shape (out, in)
        Weights, not modified.
    bits : int, default 4
        Code width, in [2, 16].
    group_size : int or None, default 128
        Columns per group; ``None`` for per-channel.
    zero : {"symmetric", "int", "float"}, default "int"
        Zero-point convention (see the module docstring).
    clip : float or array_like, default 1.0
        Range shrink factor per group, as in :func:`group_params`.

    Returns
    -------
    GroupQuant

    Raises
    ------
    TypeError, ValueError
        As :func:`group_params`.

    Notes
    -----
    .. math:: q_{ij} = \\operatorname{clip}\\big(\\operatorname{round}(w_{ij}/s_{ig} + z_{ig}),
              q_{min}, q_{max}\\big)

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([[0.3, -0.6, 0.9, 0.0]])
    >>> rtn(w, bits=3, group_size=2, zero="symmetric").codes
    array([[ 1, -3,  3,  0]], dtype=int8)
    """
    arr = _check_weight(w)
    bits = check_bits(bits)
    gs = _check_group_size(group_size, arr.shape[1])
    scale, zp = group_params(arr, bits, gs, zero=zero, clip=clip)
    kind = _check_zero(zero)
    qmin, qmax = qrange(bits, kind == "symmetric")
    q, _ = _round_to_grid(arr, np.repeat(scale, gs, axis=1), np.repeat(zp, gs, axis=1), qmin, qmax)
    dtype = np.int8 if kind == "symmetric" and bits <= 8 else np.uint8 if bits <= 8 else np.int32
    return GroupQuant(q.astype(dtype), scale, zp, bits, gs, kind)


__all__ = ["ZERO_KINDS", "GroupQuant", "group_params", "rtn"]
