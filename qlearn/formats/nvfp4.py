"""NVFP4: E2M1 elements in blocks of 16, an E4M3 scale per block and an fp32 scale per tensor.

The tensor scale ``t = amax / (448 * 6)`` lets the block scales use the whole E4M3 range; each block's
scale ``s = (block_amax / 6) / t`` is rounded to E4M3 and the elements ``x / (t * s)`` to E2M1. Unlike
MX's power-of-two scale, an E4M3 scale has three mantissa bits and so fits each block more closely,
at the price of a real multiply. Numerics follow torchao's ``nvfp4_quantize``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array
from qlearn.formats.minifloat import E2M1, E4M3, cast, decode, encode

NVFP4_BLOCK = 16
_E4M3_TINY = np.float32(2.0**-6)  # smallest normal E4M3: the floor of a block scale (torchao)


def nvfp4_tensor_scale(x: ArrayLike) -> np.float32:
    """The fp32 per-tensor scale of NVFP4, ``amax / (448 * 6)``.

    Parameters
    ----------
    x : array_like of float
        The whole tensor, finite.

    Returns
    -------
    numpy.float32
        Positive; an all-zero tensor gets the scale of amax = 1.

    Raises
    ------
    TypeError, ValueError
        On non-numeric or non-finite input.

    Notes
    -----
    .. math:: t = \\max|x| / (448 \\cdot 6)

    Examples
    --------
    >>> float(nvfp4_tensor_scale([2688.0, -1.0]))
    1.0
    """
    arr = as_float_array(x, "x").astype(np.float32, copy=False)
    amax = np.abs(arr).max()
    return np.float32(amax if amax > 0 else np.float32(1)) / np.float32(448.0 * 6.0)


def nvfp4_quantize(
    x: ArrayLike, tensor_scale: float | None = None, *, two_level: bool = True
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], np.float32 | None]:
    """Quantize to NVFP4 along the last axis (blocks of 16).

    Parameters
    ----------
    x : array_like of float
        Finite; last axis a multiple of 16. Computed in float32.
    tensor_scale : float, optional
        The fp32 tensor scale (e.g. calibrated); default :func:`nvfp4_tensor_scale` of ``x``.
    two_level : bool
        False: no tensor scale, the E4M3 block scale alone (torchao's ``per_tensor_scale=None``).

    Returns
    -------
    scales : ndarray of uint8
        E4M3 codes of the block scales, shape ``(..., n // 16)``.
    codes : ndarray of uint8
        E2M1 codes (unpacked; ``pack(codes, 4)`` gives torchao's byte layout), same shape as ``x``.
    tensor_scale : numpy.float32 or None
        The tensor scale used (None when ``two_level`` is False).

    Raises
    ------
    TypeError
        If ``x`` is not numeric.
    ValueError
        On NaN/inf (E2M1 has no NaN), a last axis not a multiple of 16, or a non-positive ``tensor_scale``.

    Notes
    -----
    .. math:: s_b = \\mathrm{E4M3}\\big(\\mathrm{clip}((a_b / 6) / t, 2^{-6}, 448)\\big), \\qquad
              q_i = \\mathrm{E2M1}\\big(\\mathrm{clip}(x_i \\cdot ((1/t) / s_b), -6, 6)\\big)

    Examples
    --------
    >>> s, q, t = nvfp4_quantize(np.linspace(-6.0, 6.0, 16))
    >>> decode(s, E4M3).tolist(), round(float(t), 8)
    ([448.0], 0.00223214)
    """
    arr = as_float_array(x, "x").astype(np.float32, copy=False)
    if arr.ndim == 0 or arr.shape[-1] % NVFP4_BLOCK:
        raise ValueError(f"the last axis of x must be a multiple of {NVFP4_BLOCK}; got shape {arr.shape}")
    blocks = arr.reshape(*arr.shape[:-1], -1, NVFP4_BLOCK)  # (..., n_blocks, 16)
    block_scale = np.abs(blocks).max(axis=-1) / np.float32(6.0)  # (..., n_blocks)
    one = np.float32(1)
    t: np.float32 | None = None
    if two_level:
        t = nvfp4_tensor_scale(arr) if tensor_scale is None else np.float32(tensor_scale)
        if not (np.isfinite(t) and t > 0):
            raise ValueError(f"tensor_scale must be a positive finite number; got {tensor_scale}")
        s = cast(np.clip(block_scale / t, _E4M3_TINY, np.float32(448)), E4M3)
        recip = (one / t) / s
    else:
        s = cast(np.clip(block_scale, _E4M3_TINY, np.float32(448)), E4M3)
        recip = one / s
    y = np.clip(blocks * recip[..., None], np.float32(-6), np.float32(6))
    return encode(s, E4M3), encode(y, E2M1).reshape(arr.shape), t


def nvfp4_dequantize(scales: ArrayLike, codes: ArrayLike, tensor_scale: float | None = None) -> NDArray[np.float32]:
    """Decode NVFP4: E2M1 value times (tensor scale times E4M3 block scale).

    Parameters
    ----------
    scales : array_like of uint8
        E4M3 codes, shape ``(..., n // 16)``.
    codes : array_like of int
        E2M1 codes, shape ``(..., n)``.
    tensor_scale : float, optional
        The fp32 tensor scale (None for single-level).

    Returns
    -------
    ndarray of float32

    Raises
    ------
    TypeError, ValueError
        On codes out of range or shapes that do not fit.

    Notes
    -----
    .. math:: \\hat x_i = v(q_i) \\cdot (t \\cdot s_b)

    Examples
    --------
    >>> s, q, t = nvfp4_quantize(np.linspace(-6.0, 6.0, 16))
    >>> nvfp4_dequantize(s, q, t)[[0, 1, 15]].tolist()
    [-6.0, -6.0, 6.0]
    """
    q = np.asarray(codes)
    if q.ndim == 0 or q.shape[-1] % NVFP4_BLOCK:
        raise ValueError(f"the last axis of codes must be a multiple of {NVFP4_BLOCK}; got shape {q.shape}")
    sv = decode(scales, E4M3)
    if sv.shape != (*q.shape[:-1], q.shape[-1] // NVFP4_BLOCK):
        raise ValueError(f"scales must have shape {(*q.shape[:-1], q.shape[-1] // NVFP4_BLOCK)}; got {sv.shape}")
    if tensor_scale is not None:
        sv = np.float32(tensor_scale) * sv
    vals = decode(q, E2M1).reshape(*q.shape[:-1], -1, NVFP4_BLOCK)
    return (vals * sv[..., None]).reshape(q.shape).astype(np.float32)


def nvfp4_bits_per_weight(n: int | None = None) -> float:
    """Bits per weight of NVFP4: 4 + 8/16, plus the 32-bit tensor scale over ``n`` weights if given.

    Parameters
    ----------
    n : int, optional
        Number of weights sharing the tensor scale.

    Returns
    -------
    float

    Notes
    -----
    .. math:: \\text{bpw} = 4 + 8/16 + 32/n

    Examples
    --------
    >>> nvfp4_bits_per_weight(), nvfp4_bits_per_weight(1024)
    (4.5, 4.53125)
    """
    return 4 + 8 / NVFP4_BLOCK + (0.0 if n is None else 32 / n)


__all__ = ["NVFP4_BLOCK", "nvfp4_bits_per_weight", "nvfp4_dequantize", "nvfp4_quantize", "nvfp4_tensor_scale"]
