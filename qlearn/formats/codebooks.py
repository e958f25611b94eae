"""Codebook (non-uniform) quantization: NF4, bitsandbytes' FP4, IQ4_NL, and k-means codebooks.

A codebook format stores, for each weight, the index of the nearest entry of a small table of
values, and for each block of weights a scale (its absolute maximum, ``absmax``). Dequantization is
a table lookup times the scale. NF4 (QLoRA) places its 16 values at quantiles of the standard
normal, so that normally distributed weights fall into each bin about equally often; k-means (as in
Han et al.'s deep compression) fits the table to the tensor itself.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int

#: QLoRA's offset: the quantile of the largest NF4 value, 1/2 (1/(2*15) + 1/(2*16)).
NF4_OFFSET = 0.9677083


def nf4_codebook(offset: float = NF4_OFFSET) -> NDArray[np.float32]:
    """Build NF4 from quantiles of the standard normal, as QLoRA's ``create_normal_map`` does.

    Parameters
    ----------
    offset : float
        Probability of the largest quantile (QLoRA: 0.9677083).

    Returns
    -------
    ndarray of float32, shape (16,)
        Sorted, from -1 to 1, with an exact 0 at index 7.

    Raises
    ------
    ValueError
        If ``offset`` is not in (0.5, 1).

    Notes
    -----
    Eight positive values :math:`\\Phi^{-1}(p_i)`, :math:`p_i` evenly spaced from ``offset`` down to 1/2
    (9 points, the last dropped), seven negative values from 8 points likewise, and 0; all divided by the
    largest. Asymmetric on purpose: an exact zero and one more positive than negative value.
    The probabilities are taken in float32, as ``torch.linspace`` makes them.

    Examples
    --------
    >>> nf4_codebook()[[0, 7, 8, 15]].tolist()
    [-1.0, 0.0, 0.07958029955625534, 1.0]
    """
    if not 0.5 < float(offset) < 1.0:
        raise ValueError(f"offset must be in (0.5, 1); got {offset}")
    ppf = np.vectorize(NormalDist().inv_cdf)
    pos = ppf(_linspace32(float(offset), 0.5, 9)[:-1].astype(np.float64))
    neg = -ppf(_linspace32(float(offset), 0.5, 8)[:-1].astype(np.float64))
    v = np.sort(np.concatenate([pos, [0.0], neg]).astype(np.float32))
    out: NDArray[np.float32] = (v / v.max()).astype(np.float32)
    return out


def _linspace32(start: float, end: float, steps: int) -> NDArray[np.float32]:
    """float32 linspace computed as torch does: from the start for the first half, from the end after."""
    s, e = np.float32(start), np.float32(end)
    step = (e - s) / np.float32(steps - 1)
    i = np.arange(steps)
    half = steps // 2
    lo = s + step * i.astype(np.float32)
    hi = e - step * (steps - 1 - i).astype(np.float32)
    return np.where(i < half, lo, hi).astype(np.float32)


#: NF4 of QLoRA / bitsandbytes (code-indexed, sorted).
NF4: NDArray[np.float32] = nf4_codebook()
NF4.flags.writeable = False
#: bitsandbytes' FP4 (code-indexed: bit 3 is the sign): {0, 1/192, 2/3, 1, 1/3, 1/2, 1/6, 1/4} and negatives.
FP4_BNB: NDArray[np.float32] = (
    np.array([0, 0.0625, 8, 12, 4, 6, 2, 3, 0.0, -0.0625, -8, -12, -4, -6, -2, -3], dtype=np.float64) / 12
).astype(np.float32)
FP4_BNB.flags.writeable = False
#: llama.cpp's IQ4_NL values (``kvalues_iq4nl``), int8 steps of the block scale.
IQ4_NL: NDArray[np.int8] = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int8)
IQ4_NL.flags.writeable = False


def _codebook(codebook: ArrayLike) -> NDArray[np.float32]:
    cb = as_float_array(codebook, "codebook").astype(np.float32, copy=False)
    if cb.ndim != 1 or not 2 <= cb.size <= 256:
        raise ValueError(f"codebook must be a 1-D array of 2 to 256 values; got shape {cb.shape}")
    return cb


def _blocked(x: ArrayLike, block_size: int | None) -> tuple[NDArray[np.float32], int]:
    arr = as_float_array(x, "x").astype(np.float32, copy=False)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    size = arr.shape[-1] if block_size is None else as_int(block_size, "block_size")
    if size < 1 or arr.shape[-1] % size:
        raise ValueError(f"block_size must be a positive divisor of the last axis ({arr.shape[-1]}); got {block_size}")
    return arr, size


def codebook_quantize(
    x: ArrayLike, codebook: ArrayLike, block_size: int | None = 64
) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """Nearest-codebook quantization with one absmax scale per block of the last axis.

    Parameters
    ----------
    x : array_like of float
        Finite values; the last axis a multiple of ``block_size``. Computed in float32.
    codebook : array_like of float
        Values in [-1, 1] indexed by code (``NF4``, ``FP4_BNB``, ``IQ4_NL / 127``, a k-means table, ...).
    block_size : int or None
        Weights per absmax (bitsandbytes' default 64); None: one scale per row of the last axis.

    Returns
    -------
    codes : ndarray of uint8
        Same shape as ``x``.
    absmax : ndarray of float32
        Shape ``(..., n // block_size)``.

    Raises
    ------
    TypeError
        If ``x`` is not numeric.
    ValueError
        On NaN/inf (no code exists for them), a bad ``block_size`` or a bad codebook.

    Notes
    -----
    As bitsandbytes: :math:`y = \\mathrm{clip}(x \\cdot (1/\\max(a, 10^{-38})), -1, 1)` with
    :math:`a = \\max_{\\text{block}} |x|`; the code is that of the nearest entry, a tie at a midpoint
    (computed in float32) going to the smaller entry.

    Examples
    --------
    >>> codes, absmax = codebook_quantize([0.1, -2.0, 1.0, 0.0], NF4, block_size=4)
    >>> codes.tolist(), absmax.tolist()
    ([8, 0, 12, 7], [2.0])
    """
    cb = _codebook(codebook)
    arr, size = _blocked(x, block_size)
    blocks = arr.reshape(*arr.shape[:-1], -1, size)  # (..., n_blocks, block)
    absmax = np.abs(blocks).max(axis=-1)  # (..., n_blocks)
    inv = np.float32(1) / np.maximum(absmax, np.float32(1e-38))
    y = np.clip(blocks * inv[..., None], np.float32(-1), np.float32(1))
    order = np.argsort(cb, kind="stable")
    mids = (cb[order[:-1]] + cb[order[1:]]) / np.float32(2)
    codes = order[np.searchsorted(mids, y, side="left")].astype(np.uint8)
    return codes.reshape(arr.shape), absmax.astype(np.float32)


def codebook_dequantize(
    codes: ArrayLike, absmax: ArrayLike, codebook: ArrayLike, block_size: int | None = 64
) -> NDArray[np.float32]:
    """Look codes up in the codebook and multiply by their block's absmax.

    Parameters
    ----------
    codes : array_like of int
        Codes into ``codebook``.
    absmax : array_like of float
        One scale per block, shape ``(..., n // block_size)``.
    codebook : array_like of float
        The table used to quantize.
    block_size : int or None
        As in :func:`codebook_quantize`.

    Returns
    -------
    ndarray of float32
        Same shape as ``codes``.

    Raises
    ------
    TypeError
        If ``codes`` is not an integer array.
    ValueError
        If codes are out of range or the shapes do not fit.

    Notes
    -----
    .. math:: \\hat x_i = c[q_i] \\cdot a_{\\lfloor i / B \\rfloor}

    Examples
    --------
    >>> [round(float(v), 4) for v in codebook_dequantize([8, 0, 12, 7], [2.0], NF4, block_size=4)]
    [0.1592, -2.0, 0.8814, 0.0]
    """
    cb = _codebook(codebook)
    q = np.asarray(codes)
    if q.dtype.kind not in "iu":
        raise TypeError(f"codes must be an integer array; got dtype {q.dtype}")
    if q.size and (int(q.min()) < 0 or int(q.max()) >= cb.size):
        raise ValueError(f"codes must be in [0, {cb.size - 1}] for this codebook; got [{int(q.min())}, {int(q.max())}]")
    if q.ndim == 0:
        q = q.reshape(1)
    size = q.shape[-1] if block_size is None else as_int(block_size, "block_size")
    a = as_float_array(absmax, "absmax").astype(np.float32, copy=False)
    if size < 1 or q.shape[-1] % size or a.shape != (*q.shape[:-1], q.shape[-1] // size):
        raise ValueError(
            f"absmax must have shape {(*q.shape[:-1], q.shape[-1] // max(size, 1))} for codes of shape {q.shape} "
            f"and block_size {block_size}; got {a.shape}"
        )
    vals = cb[q].reshape(*q.shape[:-1], -1, size)  # (..., n_blocks, block)
    out: NDArray[np.float32] = (vals * a[..., None]).reshape(q.shape).astype(np.float32)
    return out


def kmeans_codebook(x: ArrayLike, k: int = 16, iters: int = 30) -> NDArray[np.float32]:
    """Fit a ``k``-entry codebook to the values of ``x`` with Lloyd's algorithm (1-D k-means).

    Parameters
    ----------
    x : array_like of float
        The tensor (flattened), finite.
    k : int
        Codebook size, 2 to 256 (16 for 4 bits).
    iters : int
        Lloyd iterations (assign to the nearest centre, move each centre to its cluster's mean).

    Returns
    -------
    ndarray of float32, shape (k,)
        Sorted centres. Use with ``codebook_quantize(x, c, block_size=None)`` on ``x`` scaled by
        its absmax, or directly as absolute values via :func:`codebook_assign`.

    Raises
    ------
    TypeError, ValueError
        On non-numeric or non-finite ``x``, or ``k``/``iters`` out of range.

    Notes
    -----
    Centres start evenly spaced on :math:`[\\min x, \\max x]` (the linear initialisation that deep compression
    found best); each step minimises :math:`\\sum_i (x_i - c_{a(i)})^2` over the assignment, then the centres.
    An empty cluster keeps its centre.

    Examples
    --------
    >>> [round(float(c), 3) for c in kmeans_codebook([0.0, 0.1, 0.9, 1.0, 1.1], k=2)]
    [0.05, 1.0]
    """
    arr = as_float_array(x, "x").astype(np.float64).reshape(-1)
    kk, it = as_int(k, "k"), as_int(iters, "iters")
    if not 2 <= kk <= 256:
        raise ValueError(f"k must be in [2, 256]; got {kk}")
    if it < 0:
        raise ValueError(f"iters must be >= 0; got {it}")
    v = np.sort(arr)
    centres = np.linspace(v[0], v[-1], kk)
    csum = np.concatenate([[0.0], np.cumsum(v)])
    for _ in range(it):
        cuts = np.searchsorted(v, (centres[:-1] + centres[1:]) / 2, side="left")  # cluster boundaries in v
        edges = np.concatenate([[0], cuts, [v.size]])
        counts = np.diff(edges)
        sums = csum[edges[1:]] - csum[edges[:-1]]
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        if np.array_equal(new, centres):
            break
        centres = np.sort(new)
    return centres.astype(np.float32)


def codebook_assign(x: ArrayLike, codebook: ArrayLike) -> NDArray[np.uint8]:
    """Index of the nearest codebook entry for each value (no scaling).

    Parameters
    ----------
    x : array_like of float
        Values, finite.
    codebook : array_like of float
        The table.

    Returns
    -------
    ndarray of uint8
        Same shape as ``x``; dequantize with ``codebook[codes]`` (a lookup table).

    Raises
    ------
    TypeError, ValueError
        On non-numeric or non-finite input, or a bad codebook.

    Notes
    -----
    .. math:: q_i = \\arg\\min_j |x_i - c_j| \\quad \\text{(ties to the smaller entry)}

    Examples
    --------
    >>> codebook_assign([0.2, 0.8], [0.0, 0.5, 1.0]).tolist()
    [0, 2]
    """
    cb = _codebook(codebook)
    arr = as_float_array(x, "x").astype(np.float32, copy=False)
    order = np.argsort(cb, kind="stable")
    mids = (cb[order[:-1]] + cb[order[1:]]) / np.float32(2)
    return order[np.searchsorted(mids, arr, side="left")].astype(np.uint8)


def double_quantize(absmax: ArrayLike, block_size: int = 256) -> tuple[NDArray[np.int8], NDArray[np.float32], float]:
    """QLoRA's double quantization of the absmax scales: 8-bit codes per block of 256 scales, mean removed.

    Parameters
    ----------
    absmax : array_like of float
        The first-level scales (any shape; flattened), finite; their count a multiple of ``block_size``.
    block_size : int
        Scales per second-level fp32 scale (QLoRA: 256).

    Returns
    -------
    codes : ndarray of int8
        Shape ``(n,)``.
    scales : ndarray of float32
        Shape ``(n // block_size,)``.
    offset : float
        The mean subtracted first.

    Raises
    ------
    TypeError, ValueError
        On non-numeric or non-finite input, or a count not a multiple of ``block_size``.

    Notes
    -----
    .. math:: c = a - \\bar a, \\quad s_j = \\max_{\\text{block } j} |c| / 127, \\quad
              q = \\mathrm{rint}(c / s_j)

    QLoRA (and bitsandbytes' ``compress_statistics``) code the centred scales with bitsandbytes' 8-bit
    dynamic map; qlearn uses symmetric int8 instead, with the same byte cost: per weight
    :math:`8/64 + 32/(64 \\cdot 256)` bits of scale instead of :math:`32/64`.

    Examples
    --------
    >>> q, s, m = double_quantize(np.linspace(1.0, 2.0, 256))
    >>> q[[0, -1]].tolist(), round(m, 3)
    ([-127, 127], 1.5)
    """
    a = as_float_array(absmax, "absmax").astype(np.float64).reshape(-1)
    size = as_int(block_size, "block_size")
    if size < 1 or a.size % size:
        raise ValueError(f"the number of scales ({a.size}) must be a multiple of block_size; got {block_size}")
    offset = float(a.mean())
    c = (a - offset).reshape(-1, size)  # (n_blocks, block)
    scales = np.maximum(np.abs(c).max(axis=1), 1e-30) / 127
    q = np.clip(np.rint(c / scales[:, None]), -127, 127).astype(np.int8)
    return q.reshape(-1), scales.astype(np.float32), offset


def double_dequantize(codes: ArrayLike, scales: ArrayLike, offset: float) -> NDArray[np.float32]:
    """Recover the absmax scales from :func:`double_quantize`.

    Parameters
    ----------
    codes : array_like of int8
        Codes, shape ``(n,)``.
    scales : array_like of float
        One per block, shape ``(n // block_size,)``.
    offset : float
        The mean that was subtracted.

    Returns
    -------
    ndarray of float32, shape (n,)

    Raises
    ------
    ValueError
        If the number of codes is not a multiple of the number of scales.

    Notes
    -----
    .. math:: \\hat a = q \\, s_j + \\bar a

    Examples
    --------
    >>> q, s, m = double_quantize(np.linspace(1.0, 2.0, 256))
    >>> float(np.abs(double_dequantize(q, s, m) - np.linspace(1.0, 2.0, 256)).max()) < 0.002
    True
    """
    q = np.asarray(codes).reshape(-1).astype(np.float64)
    sc = as_float_array(scales, "scales").astype(np.float64).reshape(-1)
    if q.size % sc.size:
        raise ValueError(f"the number of codes ({q.size}) must be a multiple of the number of scales ({sc.size})")
    return (q.reshape(sc.size, -1) * sc[:, None] + offset).reshape(-1).astype(np.float32)


__all__ = [
    "FP4_BNB",
    "IQ4_NL",
    "NF4",
    "NF4_OFFSET",
    "codebook_assign",
    "codebook_dequantize",
    "codebook_quantize",
    "double_dequantize",
    "double_quantize",
    "kmeans_codebook",
    "nf4_codebook",
]
