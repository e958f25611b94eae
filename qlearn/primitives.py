"""quantize, dequantize and fake_quantize: the affine map applied to arrays.

Large per-tensor arrays are processed in cache-sized blocks with a preallocated work
buffer per thread, so each pass (divide, round, shift, range check, cast) runs over data
already in cache, and the blocks are shared among the cores. That brings numpy close to
PyTorch's C++ kernels; see ``benchmarks/quantize_speed.py``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from qlearn._checks import as_float_array, check_axis, require_finite
from qlearn.qparams import PerAxis, PerGroup, QParams

_BLOCK = 1 << 18  # 262,144 values (1 MiB of float32): large enough to amortise the
# per-call overhead of the six numpy calls per block, small enough to stay in L2/L3 (measured: 2^16-2^20)
_METHODS = ("divide", "fma", "mul", "mul_add")
_EXACT_F32 = 2**24  # integers up to 2^24 are exact in float32; wider ranges clamp in float64


def _check_qp(qp: Any) -> QParams:
    if not isinstance(qp, QParams):
        raise TypeError(f"qp must be a QParams (see choose_qparams); got {type(qp).__name__}")
    return qp


def _layout(a: NDArray[Any], qp: QParams) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """View ``a`` so that the scale and zero point broadcast against it.

    Returns ``(view, scale, zero_point)``; per-group views have shape
    ``(..., n_groups, group_size)``, which the caller reshapes back.
    """
    g = qp.granularity
    if isinstance(g, PerAxis):
        if a.ndim == 0:
            raise ValueError("per-axis QParams need an array with at least one dimension; got a scalar")
        axis = check_axis(g.axis, a.ndim)
        if a.shape[axis] != qp.scale.shape[0]:
            raise ValueError(
                f"per-axis QParams have {qp.scale.shape[0]} channels but the array has length "
                f"{a.shape[axis]} along axis {axis} (shape {a.shape})"
            )
        shape = [1] * a.ndim
        shape[axis] = -1  # scale (C,) -> (1, ..., C, ..., 1)
        return a, qp.scale.reshape(shape), qp.zero_point.reshape(shape)
    if isinstance(g, PerGroup):
        n_groups, gs = qp.scale.shape[-1], g.group_size
        if a.ndim == 0 or a.shape[:-1] != qp.scale.shape[:-1] or a.shape[-1] != n_groups * gs:
            raise ValueError(
                f"per-group QParams with scale shape {qp.scale.shape} and group_size {gs} fit arrays of "
                f"shape {(*qp.scale.shape[:-1], n_groups * gs)}; got shape {a.shape}"
            )
        view = a.reshape(*a.shape[:-1], n_groups, gs)  # (..., n_groups, group_size)
        return view, qp.scale[..., None], qp.zero_point[..., None]  # (..., n_groups, 1)
    return a, qp.scale, qp.zero_point


class _NonFinite(Exception):
    """Raised by a block kernel that met NaN or inf; the caller reports the whole array."""


_THREADS = min(os.cpu_count() or 1, 8)
_POOL: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    """In a forked child the parent's worker threads do not exist: start a new pool on demand."""
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


def _fma32(x: NDArray[np.float32], inv: Any, zp: Any) -> NDArray[np.float32]:
    """``float32(x * inv + zp)`` rounded once, as a float32 fused multiply-add.

    ``x * inv`` of two float32 numbers is exact in float64. The float64 sum ``s`` and its
    exact error ``e`` (Knuth's TwoSum) give the sum rounded *to odd* (where ``e != 0`` and
    ``s`` has an even last bit, step one float64 ulp towards ``e``); rounding that to
    float32 is then the correctly rounded result, since float64 carries more than
    24 + 2 bits (Boldo and Melquiond's round-to-odd theorem).
    """
    a = np.multiply(x, inv, dtype=np.float64)  # exact: 24-bit x 24-bit significands
    b = np.asarray(zp, dtype=np.float64)[()]
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)  # a + b - s, exactly
    fix = (e != 0) & ((s.view(np.int64) & 1) == 0)
    if fix.any():
        s[fix] = np.nextafter(s[fix], np.where(e[fix] > 0, np.inf, -np.inf))
    with np.errstate(over="ignore"):  # beyond float32's range: inf, clamped by the caller
        out: NDArray[np.float32] = s.astype(np.float32)
    return out


def _map_blocks(
    kernel: Callable[[slice, NDArray[Any] | None], None], n: int, per_tensor: bool, work_dtype: DTypeLike
) -> None:
    """Call ``kernel(slice, work)`` over the flat index range ``[0, n)``.

    Small arrays and per-axis/per-group layouts (where the scale broadcasts) take one
    call with no work buffer. A large per-tensor array is cut into blocks of ``_BLOCK``
    values, each thread taking a contiguous run of blocks with its own work buffer:
    numpy releases the GIL inside ufunc loops, so the threads really run in parallel.
    """
    global _POOL
    if not per_tensor or n <= _BLOCK:
        kernel(slice(0, n), None)
        return
    blocks = [slice(i, min(i + _BLOCK, n)) for i in range(0, n, _BLOCK)]
    n_parts = min(_THREADS, len(blocks) // 4)  # a thread needs a few blocks to pay for itself

    def run(part: list[slice]) -> None:
        work = np.empty(_BLOCK, dtype=work_dtype)
        for sl in part:
            kernel(sl, work)

    if n_parts <= 1:
        run(blocks)
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="qlearn")
    bounds = [len(blocks) * k // n_parts for k in range(n_parts + 1)]
    for _ in _POOL.map(run, [blocks[a:b] for a, b in itertools.pairwise(bounds)]):
        pass  # re-raises the first exception of any part


def quantize(x: ArrayLike, qp: QParams, *, method: str = "divide") -> NDArray[np.integer[Any]]:
    """Map floats to integer codes: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    Parameters
    ----------
    x : array_like of float
        Values to quantize; finite, not empty, not modified.
    qp : QParams
        Scale, zero point, integer range and granularity (see :func:`choose_qparams`).
    method : {"divide", "fma", "mul", "mul_add"}, default "divide"
        The floating-point arithmetic before rounding. ``"divide"``: ``x / scale`` rounded
        once, then ``+ zero_point`` (the textbook map). The other three reproduce PyTorch's
        x86 CPU kernels bit for bit, in float32, with ``inv = float32(1 / scale)``:
        ``"fma"`` computes ``x * inv + zero_point`` rounded once (a fused multiply-add, as
        ``torch.quantize_per_tensor`` does through FBGEMM; emulated exactly, see Notes);
        ``"mul"`` rounds ``x * inv`` to float32, rounds that to an integer and adds
        ``zero_point`` (``torch.fake_quantize_per_tensor_affine``); ``"mul_add"`` rounds after
        the multiplication and again after the addition (``torch.quantize_per_channel``).
        They differ from ``"divide"`` by one code for roughly one value in 10^5, where
        ``x / scale`` lies within a rounding error of a half-integer.

    Returns
    -------
    ndarray of int
        Same shape as ``x``, dtype ``qp.dtype`` (the smallest integer dtype holding
        ``[qmin, qmax]``: uint8, int8, uint16, int16 or int32).

    Raises
    ------
    TypeError
        If ``x`` is not numeric or ``qp`` is not a QParams.
    ValueError
        If ``x`` is empty or holds NaN/inf, or its shape does not fit ``qp``'s granularity.

    Notes
    -----
    .. math:: q = \\operatorname{clamp}\\left(\\left\\lfloor \\frac{x}{s} \\right\\rceil + z,\\;
              q_{min},\\; q_{max}\\right)

    where :math:`\\lfloor\\cdot\\rceil` rounds half to even (``np.rint``, like C's
    ``nearbyint``). Computed in float32 for float32 input and float64 otherwise; when
    ``qmin`` or ``qmax`` exceeds :math:`2^{24}` in magnitude (32-bit codes, which float32
    cannot hold exactly) the shift by ``zero_point`` and the clamp run in float64.
    ``"fma"`` forms the product exactly in float64 and rounds the sum to float32 once,
    through round-to-odd (Boldo and Melquiond), so it equals a hardware FMA bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> qp = QParams(scale=0.5, zero_point=3, qmin=0, qmax=15)
    >>> quantize(np.array([-1.5, -0.25, 0.0, 0.25, 0.75, 100.0]), qp)
    array([ 0,  3,  3,  3,  5, 15], dtype=uint8)
    """
    arr = as_float_array(x, "x", check_finite=False)
    qp = _check_qp(qp)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, _METHODS))}; got {method!r}")
    view, scale, zero_point = _layout(arr, qp)
    # "divide" works in the input's precision; PyTorch's kernels (fma, mul_add) in float32
    ctype = np.float64 if method == "divide" and arr.dtype != np.float32 else np.float32
    # [()] turns 0-d arrays into numpy scalars, which ufuncs handle faster (n-d arrays pass unchanged)
    scale_c, zp_c, inv = scale.astype(ctype)[()], zero_point.astype(ctype)[()], (np.float32(1) / scale)[()]
    out = np.empty(view.shape, dtype=qp.dtype)
    per_tensor = scale.ndim == 0
    # per-tensor: flat 1-d views, cut into blocks; otherwise the single slice(0, size) takes
    # the whole (broadcastable) view along its first axis
    flat_x = view.reshape(-1) if per_tensor else view
    flat_out = out.reshape(-1) if per_tensor else out

    wide = max(-qp.qmin, qp.qmax) > _EXACT_F32 and ctype == np.float32  # qmin, qmax not exact in float32

    def kernel(sl: slice, work: NDArray[np.floating[Any]] | None) -> None:
        xb, w = flat_x[sl], None if work is None else work[: flat_x[sl].size]
        if method == "divide":
            w = np.divide(xb, scale_c, out=w)  # xb is already ctype; no dtype= (it slows the loop)
            np.rint(w, out=w)
        elif method == "mul":
            w = np.multiply(xb, inv, out=w, dtype=np.float32)
            np.rint(w, out=w)
        elif method == "mul_add":
            w = np.multiply(xb, inv, out=w, dtype=np.float32)
            np.add(w, zp_c, out=w)
            np.rint(w, out=w)
        else:
            w = _fma32(xb, inv, zp_c)
            np.rint(w, out=w)
        if wide:  # the shift and the clamp in float64, where every int32 is exact
            w = w.astype(np.float64)
        if method in ("divide", "mul"):
            np.add(w, zp_c if not wide else np.asarray(zero_point, np.float64)[()], out=w)
        # two reductions over the cached block find values to clamp and also NaN and inf
        # (a comparison with NaN is False); the clip runs only when something is out of range
        if not (w.min() >= qp.qmin and w.max() <= qp.qmax):
            if not np.isfinite(xb).all():
                raise _NonFinite
            np.clip(w, qp.qmin, qp.qmax, out=w)  # inf from a finite x / tiny scale lands on qmin/qmax
        flat_out[sl] = w  # an exact cast: w holds integers in [qmin, qmax]

    try:
        _map_blocks(kernel, view.size, per_tensor, ctype)
    except _NonFinite:
        require_finite(arr, "x")  # raises, reporting the whole array
        raise
    return out.reshape(arr.shape)


def dequantize(q: ArrayLike, qp: QParams, dtype: DTypeLike = np.float32) -> NDArray[np.floating[Any]]:
    """Map integer codes back to floats: ``x = scale * (q - zero_point)``.

    Parameters
    ----------
    q : array_like of int
        Integer codes, all within ``[qp.qmin, qp.qmax]``; not modified.
    qp : QParams
        The parameters ``q`` was quantized with.
    dtype : float dtype, default float32
        dtype of the result.

    Returns
    -------
    ndarray of float
        Same shape as ``q``.

    Raises
    ------
    TypeError
        If ``q`` is not an integer array, ``dtype`` is not a float dtype or ``qp`` is not a QParams.
    ValueError
        If ``q`` is empty, holds codes outside ``[qmin, qmax]`` or does not fit the granularity.

    Notes
    -----
    .. math:: \\hat{x} = s\\,(q - z)

    :math:`q - z` is exact in float32 for codes of up to 24 bits, so each value is
    rounded once, in the multiplication.

    Examples
    --------
    >>> import numpy as np
    >>> qp = QParams(scale=0.5, zero_point=3, qmin=0, qmax=15)
    >>> dequantize(np.array([0, 3, 5, 15], dtype=np.uint8), qp)
    array([-1.5,  0. ,  1. ,  6. ], dtype=float32)
    """
    qp = _check_qp(qp)
    arr = np.asarray(q)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"q must be an array of integer codes; got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"q must contain at least one code; got an empty array of shape {arr.shape}")
    out_dtype = np.dtype(dtype)
    if out_dtype.kind != "f":
        raise TypeError(f"dtype must be a floating-point dtype (float16, float32, float64); got {out_dtype}")
    info = np.iinfo(arr.dtype)
    if info.min < qp.qmin or info.max > qp.qmax:  # skip the scan when the dtype cannot overflow
        lo, hi = int(arr.min()), int(arr.max())
        if lo < qp.qmin or hi > qp.qmax:
            raise ValueError(f"q must hold codes in [qmin, qmax] = [{qp.qmin}, {qp.qmax}]; got values in [{lo}, {hi}]")
    view, scale, zero_point = _layout(arr, qp)
    ctype = np.result_type(out_dtype, np.float32)  # float16 results are computed in float32
    out = np.empty(view.shape, dtype=ctype)
    scale_c, zp_c = scale.astype(ctype), zero_point.astype(ctype)
    per_tensor = scale.ndim == 0
    flat_q = view.reshape(-1) if per_tensor else view
    flat_out = out.reshape(-1) if per_tensor else out

    def kernel(sl: slice, work: NDArray[Any] | None) -> None:
        ob = flat_out[sl]
        np.subtract(flat_q[sl], zp_c, out=ob, dtype=ctype)  # exact for codes of up to 24 bits
        np.multiply(ob, scale_c, out=ob)

    _map_blocks(kernel, view.size, per_tensor, ctype)
    return out.reshape(arr.shape).astype(out_dtype, copy=False)


def fake_quantize(x: ArrayLike, qp: QParams, *, method: str = "divide") -> NDArray[np.floating[Any]]:
    """Quantize then dequantize: the float values the integer model actually represents.

    Parameters
    ----------
    x : array_like of float
        Values; finite, not empty, not modified.
    qp : QParams
        Quantization parameters.
    method : {"divide", "fma", "mul", "mul_add"}, default "divide"
        As in :func:`quantize`; ``"mul"`` reproduces ``torch.fake_quantize_per_tensor_affine``
        bit for bit (``rint(float32(x * float32(1/s))) + z``, clamped, then ``(q - z) * s``
        in float32).

    Returns
    -------
    ndarray of float
        Same shape as ``x``; float32 for float32 (and float16) input, float64 otherwise.

    Raises
    ------
    TypeError, ValueError
        As :func:`quantize`.

    Notes
    -----
    .. math:: \\hat{x} = s\\left(\\operatorname{clamp}\\left(\\left\\lfloor \\frac{x}{s}
              \\right\\rceil + z,\\; q_{min},\\; q_{max}\\right) - z\\right)

    Inside the range :math:`|x - \\hat{x}| \\leq s/2`; outside it, :math:`\\hat{x}`
    is the nearest end of the range (clipping).

    Examples
    --------
    >>> import numpy as np
    >>> qp = QParams(scale=0.5, zero_point=3, qmin=0, qmax=15)
    >>> fake_quantize(np.array([-2.0, 0.3, 0.8, 9.0]), qp)
    array([-1.5,  0.5,  1. ,  6. ])
    """
    arr = as_float_array(x, "x", check_finite=False)
    return dequantize(quantize(arr, qp, method=method), qp, dtype=arr.dtype)


__all__ = [
    "dequantize",
    "fake_quantize",
    "quantize",
]
