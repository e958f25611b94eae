"""llama.cpp's GGUF block formats Q8_0, Q4_0 and Q4_1, byte for byte.

Each block covers 32 consecutive weights of a row and starts with its scale as an IEEE fp16
(little-endian):

* ``Q8_0`` (34 bytes): ``d = amax / 127``, then 32 int8 codes ``roundf(x / d)`` (round half *away* from zero);
* ``Q4_0`` (18 bytes): ``d = m / -8`` where ``m`` is the value of largest magnitude (sign kept), then
  16 bytes of codes ``min(15, trunc(x / d + 8.5))``: element ``j`` in the low nibble of byte ``j``,
  element ``j + 16`` in its high nibble; dequantized as ``d * (q - 8)``;
* ``Q4_1`` (20 bytes): ``d = (max - min) / 15`` and ``m = min`` (both fp16), codes
  ``min(15, trunc((x - min) / d + 0.5))`` in the same nibble order; dequantized as ``d * q + m``.

As in ``ggml-quants.c`` (and the ``gguf`` package's numpy port) the codes are computed with the float32
scale before it is rounded to fp16, and ``1 / d`` is multiplied rather than ``d`` divided.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array

#: Block size (weights) and type size (bytes) of each supported GGUF block format.
GGUF_BLOCKS: dict[str, tuple[int, int]] = {"Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20)}
_CHUNK = 2048  # blocks per chunk


def _kind(kind: Any) -> tuple[int, int]:
    if kind not in GGUF_BLOCKS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, GGUF_BLOCKS))}; got {kind!r}")
    return GGUF_BLOCKS[kind]


def _blocks(x: ArrayLike, block: int) -> tuple[NDArray[np.float32], tuple[int, ...]]:
    arr = as_float_array(x, "x", check_finite=False).astype(np.float32, copy=False)
    if arr.ndim == 0 or arr.shape[-1] % block:
        raise ValueError(f"the last axis of x must be a multiple of the block size {block}; got shape {arr.shape}")
    return arr.reshape(-1, block), arr.shape  # (n_blocks, 32)


def _signed_amax(blocks: NDArray[np.float32], hi: NDArray[np.float32], lo: NDArray[np.float32]) -> NDArray[np.float32]:
    """The value of largest magnitude in each block (n,), the first one on ties (as ggml's loop finds it)."""
    out = np.where(-lo > hi, lo, hi)
    tie = -lo == hi
    if tie.any():  # |min| == |max|: whichever comes first in the block
        sub = blocks[tie]
        out[tie] = np.take_along_axis(sub, np.abs(sub).argmax(axis=1, keepdims=True), axis=1)[:, 0]
    return out


def _inverse(d: NDArray[np.float32]) -> NDArray[np.float32]:
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def _fp16_bytes(v: NDArray[np.float32]) -> NDArray[np.uint8]:
    return v.astype("<f2").view(np.uint8)  # (n_blocks, 2), little-endian


def gguf_quantize(x: ArrayLike, kind: str) -> NDArray[np.uint8]:
    """Quantize rows of ``x`` into GGUF blocks, byte-identical to llama.cpp's reference quantizers.

    Parameters
    ----------
    x : array_like of float
        Finite values; the last axis a multiple of 32. Computed in float32.
    kind : {"Q8_0", "Q4_0", "Q4_1"}
        The block format.

    Returns
    -------
    ndarray of uint8
        Shape ``(..., n // 32 * type_size)``: the blocks of each row, concatenated, as stored in a .gguf file.

    Raises
    ------
    TypeError
        If ``x`` is not numeric.
    ValueError
        On NaN or inf (GGUF has no code for them), a last axis that is not a multiple of 32, or an unknown kind.

    Notes
    -----
    Q4_0: :math:`d = m/(-8)` with :math:`m` the block's value of largest magnitude,
    :math:`q = \\min(15, \\lfloor x \\cdot d^{-1} + 8.5 \\rfloor)`; Q4_1: :math:`d = (\\max - \\min)/15`,
    :math:`q = \\min(15, \\lfloor (x - \\min) d^{-1} + 0.5 \\rfloor)`; Q8_0: :math:`d = \\max|x|/127`,
    :math:`q = \\mathrm{roundf}(x d^{-1})`. Scales are stored as fp16.

    Examples
    --------
    >>> x = np.linspace(-1.0, 1.0, 32, dtype=np.float32)
    >>> b = gguf_quantize(x, "Q4_0")
    >>> b.shape, b[:4].tolist()
    ((18,), [0, 48, 128, 145])
    """
    block, size = _kind(kind)
    blocks, shape = _blocks(x, block)
    out = np.empty((blocks.shape[0], size), dtype=np.uint8)  # (n_blocks, type_size)
    for start in range(0, blocks.shape[0], _CHUNK):  # chunks of blocks keep the temporaries in cache
        _quantize_blocks(blocks[start : start + _CHUNK], kind, out[start : start + _CHUNK])
    return out.reshape(*shape[:-1], shape[-1] // block * size)


def _check_finite(*parts: NDArray[np.float32]) -> None:
    # the block max/min propagate NaN and inf, so checking them checks every value of the chunk
    if not all(np.isfinite(p).all() for p in parts):
        raise ValueError("x must contain only finite numbers (GGUF blocks have no NaN or inf); got NaN or inf")


def _quantize_blocks(blocks: NDArray[np.float32], kind: str, out: NDArray[np.uint8]) -> None:
    """Write the blocks of ``blocks`` (n, 32) into ``out`` (n, type_size)."""
    # work on the transpose (32, n): numpy reduces and broadcasts fast along a long contiguous axis
    t = np.array(blocks.T, order="C")  # (32, n), a copy: never written back into x
    if kind == "Q8_0":
        d = np.abs(t).max(axis=0) / np.float32(127)  # (n,)
        _check_finite(d)
        t *= _inverse(d)
        sign = np.sign(t)
        np.abs(t, out=t)
        t += np.float32(0.5)
        np.floor(t, out=t)
        t *= sign  # roundf: half away from zero
        out[:, 2:] = t.astype(np.int8).view(np.uint8).T
        out[:, :2] = _fp16_bytes(d[:, None])
        return
    hi = t.max(axis=0)  # (n,); NaN and inf propagate
    lo = t.min(axis=0)
    _check_finite(hi, lo)
    if kind == "Q4_0":
        d = _signed_amax(blocks, hi, lo) / np.float32(-8)
        t *= _inverse(d)
        t += np.float32(8.5)
    else:
        d = (hi - lo) / np.float32(15)
        t -= lo
        t *= _inverse(d)
        t += np.float32(0.5)
        out[:, 2:4] = _fp16_bytes(lo[:, None])
    q = t.astype(np.uint8)  # (32, n), all >= 0: truncation, as C's (int8_t) cast
    np.minimum(q, np.uint8(15), out=q)
    q[16:] <<= np.uint8(4)
    q[16:] |= q[:16]  # byte j: element j in the low nibble, element j + 16 in the high nibble
    out[:, -16:] = q[16:].T
    out[:, :2] = _fp16_bytes(d[:, None])


def gguf_dequantize(data: ArrayLike, kind: str) -> NDArray[np.float32]:
    """Decode GGUF blocks (as made by :func:`gguf_quantize` or read from a .gguf file) to float32.

    Parameters
    ----------
    data : array_like of uint8
        The last axis a multiple of the block's byte size.
    kind : {"Q8_0", "Q4_0", "Q4_1"}
        The block format.

    Returns
    -------
    ndarray of float32
        Shape ``(..., bytes // type_size * 32)``.

    Raises
    ------
    TypeError
        If ``data`` is not uint8.
    ValueError
        If the last axis is not a whole number of blocks, or on an unknown kind.

    Notes
    -----
    .. math:: \\hat x = d\\,q \\ (\\mathrm{Q8\\_0}), \\quad d\\,(q - 8) \\ (\\mathrm{Q4\\_0}),
              \\quad d\\,q + m \\ (\\mathrm{Q4\\_1})

    Examples
    --------
    >>> x = np.linspace(-1.0, 1.0, 32, dtype=np.float32)
    >>> float(np.abs(gguf_dequantize(gguf_quantize(x, "Q8_0"), "Q8_0") - x).max()) < 0.004
    True
    """
    block, size = _kind(kind)
    arr = np.asarray(data)
    if arr.dtype != np.uint8:
        raise TypeError(f"data must be an array of uint8 (GGUF blocks); got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[-1] % size:
        raise ValueError(f"the last axis of data must be a multiple of {size} bytes for {kind}; got shape {arr.shape}")
    shape = arr.shape
    b = arr.reshape(-1, size)  # (n_blocks, type_size)
    d = b[:, 0:2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    if kind == "Q8_0":
        out = b[:, 2:].view(np.int8).astype(np.float32) * d
    else:
        qs = b[:, -16:]
        q = np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=1)  # (n_blocks, 32)
        if kind == "Q4_0":
            out = d * (q.astype(np.float32) - np.float32(8))
        else:
            m = b[:, 2:4].copy().view("<f2").astype(np.float32)
            out = d * q.astype(np.float32) + m
    return out.astype(np.float32, copy=False).reshape(*shape[:-1], shape[-1] // size * block)


def gguf_bits_per_weight(kind: str) -> float:
    """Bits per weight of a GGUF block format, from its real byte size (scales included).

    Parameters
    ----------
    kind : {"Q8_0", "Q4_0", "Q4_1"}
        The block format.

    Returns
    -------
    float
        ``8 * type_size / block_size``.

    Raises
    ------
    ValueError
        On an unknown kind.

    Notes
    -----
    .. math:: \\text{bpw} = 8 \\cdot \\text{bytes per block} / 32

    Examples
    --------
    >>> [gguf_bits_per_weight(k) for k in ("Q8_0", "Q4_0", "Q4_1")]
    [8.5, 4.5, 5.0]
    """
    block, size = _kind(kind)
    return 8 * size / block


__all__ = ["GGUF_BLOCKS", "gguf_bits_per_weight", "gguf_dequantize", "gguf_quantize"]
