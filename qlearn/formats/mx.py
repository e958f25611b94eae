"""OCP Microscaling (MX v1.0): blocks of 32 elements sharing one E8M0 power-of-two scale.

The shared scale of a block is ``X = 2^(floor(log2(amax)) - emax_elem)``, where ``emax_elem`` is the
exponent of the largest normal of the element format (8 for E4M3, 15 for E5M2, 4 for E3M2, 2 for E2M3
and E2M1). Elements are ``x / X`` cast to the element format with saturation (round to nearest even).
Because the scale is a power of two, applying it is an exponent addition in hardware, no multiplier.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int
from qlearn.formats.minifloat import E2M1, E2M3, E3M2, E4M3, E5M2, Minifloat, decode, encode

#: The element formats of MXFP8 (two), MXFP6 (two) and MXFP4.
MX_ELEMENTS: dict[str, Minifloat] = {
    "MXFP8_E4M3": E4M3,
    "MXFP8_E5M2": E5M2,
    "MXFP6_E3M2": E3M2,
    "MXFP6_E2M3": E2M3,
    "MXFP4": E2M1,
}
MX_BLOCK = 32


def _element(elem: object) -> Minifloat:
    if isinstance(elem, str) and elem in MX_ELEMENTS:
        return MX_ELEMENTS[elem]
    if isinstance(elem, Minifloat) and elem in MX_ELEMENTS.values():
        return elem
    raise ValueError(f"elem must be one of {', '.join(MX_ELEMENTS)} (or its Minifloat); got {elem!r}")


def emax(fmt: Minifloat) -> int:
    """Exponent of the largest normal value of an element format, ``floor(log2(fmt.max))``.

    Parameters
    ----------
    fmt : Minifloat
        An element format.

    Returns
    -------
    int

    Notes
    -----
    .. math:: e_{max} = \\lfloor \\log_2 \\max \\rfloor

    Examples
    --------
    >>> [emax(f) for f in (E4M3, E5M2, E3M2, E2M3, E2M1)]
    [8, 15, 4, 2, 2]
    """
    return int(np.floor(np.log2(fmt.max)))


def _blocks(x: ArrayLike, block_size: int) -> tuple[NDArray[np.float32], int]:
    arr = as_float_array(x, "x", check_finite=False).astype(np.float32, copy=False)
    size = as_int(block_size, "block_size")
    if arr.ndim == 0 or size < 1 or arr.shape[-1] % size:
        raise ValueError(f"the last axis of x must be a multiple of block_size={block_size}; got shape {arr.shape}")
    return arr, size


def mx_quantize(
    x: ArrayLike, elem: str | Minifloat = "MXFP4", block_size: int = MX_BLOCK
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Quantize to an MX format: E8M0 scale codes and element codes, per block of the last axis.

    Parameters
    ----------
    x : array_like of float
        Last axis a multiple of ``block_size``; computed in float32.
    elem : {"MXFP8_E4M3", "MXFP8_E5M2", "MXFP6_E3M2", "MXFP6_E2M3", "MXFP4"} or Minifloat
        The element format.
    block_size : int
        32 in OCP MX v1.0.

    Returns
    -------
    scales : ndarray of uint8
        E8M0 codes, shape ``(..., n // block_size)``; 0xFF (NaN) for a block holding NaN or inf.
    codes : ndarray of uint8
        Element codes (unpacked; pack MXFP4 with ``pack(codes, 4)``), same shape as ``x``; 0 in NaN blocks.

    Raises
    ------
    TypeError
        If ``x`` is not numeric.
    ValueError
        On an unknown element format or a last axis that is not a multiple of ``block_size``.

    Notes
    -----
    With :math:`a` the block's amax and :math:`E(a)` the exponent field of its float32 (``floor(log2 a)``
    for normal :math:`a`):

    .. math:: k = \\mathrm{clip}(E(a) - 127 - e_{max}, -127, 128), \\qquad
              q_i = \\mathrm{cast}_{sat}(x_i / 2^{k})

    as torchao's ``to_mx`` (FLOOR mode) computes it, dividing by at least :math:`2^{-126}`.

    Examples
    --------
    >>> s, q = mx_quantize(np.linspace(-6.0, 6.0, 32), "MXFP4")
    >>> s.tolist(), q[:3].tolist()
    ([127], [15, 15, 15])
    """
    fmt = _element(elem)
    arr, size = _blocks(x, block_size)
    blocks = arr.reshape(*arr.shape[:-1], -1, size)  # (..., n_blocks, block)
    with np.errstate(invalid="ignore"):
        amax = np.abs(blocks).max(axis=-1)  # (..., n_blocks); NaN propagates
    bad = ~np.isfinite(amax)
    field = (np.where(bad, 0, amax).astype(np.float32).view(np.uint32) >> np.uint32(23)).astype(np.int64) & 0xFF
    k = np.clip(field - 127 - emax(fmt), -127, 128)
    scales = np.where(bad, 255, k + 127).astype(np.uint8)  # k = 128 gives 255 too: NaN
    scale_f32 = np.maximum((scales.astype(np.uint32) << np.uint32(23)).view(np.float32), np.float32(2.0**-126))
    safe = np.where(bad[..., None], np.float32(0), blocks)
    with np.errstate(over="ignore", invalid="ignore"):
        y = safe / np.where(scales == 255, np.float32(1), scale_f32)[..., None]
    codes = encode(y, fmt, overflow="saturate").astype(np.uint8)
    codes = np.where(bad[..., None], np.uint8(0), codes)
    return scales, codes.reshape(arr.shape)


def mx_dequantize(
    scales: ArrayLike, codes: ArrayLike, elem: str | Minifloat = "MXFP4", block_size: int = MX_BLOCK
) -> NDArray[np.float32]:
    """Decode MX blocks: element value times the block's power-of-two scale.

    Parameters
    ----------
    scales : array_like of uint8
        E8M0 codes, shape ``(..., n // block_size)``.
    codes : array_like of int
        Element codes, shape ``(..., n)``.
    elem : str or Minifloat
        The element format.
    block_size : int
        As in :func:`mx_quantize`.

    Returns
    -------
    ndarray of float32
        NaN for the whole block when its scale is 0xFF.

    Raises
    ------
    TypeError, ValueError
        On codes out of range or shapes that do not fit.

    Notes
    -----
    .. math:: \\hat x_i = v(q_i) \\cdot 2^{s - 127}

    Examples
    --------
    >>> s, q = mx_quantize([0.3] * 32, "MXFP8_E4M3")
    >>> float(mx_dequantize(s, q, "MXFP8_E4M3")[0])
    0.3125
    """
    fmt = _element(elem)
    q = np.asarray(codes)
    s = np.asarray(scales)
    size = as_int(block_size, "block_size")
    if s.dtype != np.uint8:
        raise TypeError(f"scales must be uint8 E8M0 codes; got dtype {s.dtype}")
    if q.ndim == 0 or size < 1 or q.shape[-1] % size or s.shape != (*q.shape[:-1], q.shape[-1] // size):
        raise ValueError(f"scales must have shape (..., n // {block_size}) for codes of shape {q.shape}; got {s.shape}")
    vals = decode(q, fmt).reshape(*q.shape[:-1], -1, size)  # (..., n_blocks, block)
    scale = np.where(s == 255, np.float32(np.nan), (s.astype(np.uint32) << np.uint32(23)).view(np.float32))
    scale = np.where(s == 0, np.float32(2.0**-127), scale)
    return (vals * scale[..., None]).reshape(q.shape).astype(np.float32)


def mx_bits_per_weight(elem: str | Minifloat = "MXFP4", block_size: int = MX_BLOCK) -> float:
    """Bits per weight of an MX format, the shared 8-bit scale included.

    Parameters
    ----------
    elem : str or Minifloat
        The element format.
    block_size : int
        Elements per scale.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        On an unknown element format.

    Notes
    -----
    .. math:: \\text{bpw} = b_{elem} + 8 / B

    Examples
    --------
    >>> mx_bits_per_weight("MXFP4"), mx_bits_per_weight("MXFP8_E4M3")
    (4.25, 8.25)
    """
    return _element(elem).bits + 8 / as_int(block_size, "block_size")


__all__ = ["MX_BLOCK", "MX_ELEMENTS", "emax", "mx_bits_per_weight", "mx_dequantize", "mx_quantize"]
