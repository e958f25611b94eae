"""Packing of small integer codes into bytes and 32-bit words.

Two families of layout are in use:

* bytes (``uint8``) holding ``8 // bits`` codes each, with either the first code in the
  low bits (``"low_first"``: ONNX ``INT4``/``UINT4``, PyTorch's ``float4_e2m1fn_x2``, torchao's MX
  FP4) or in the high bits (``"high_first"``: bitsandbytes' NF4/FP4). With ``"low_first"`` this is
  the little-endian bit stream in which code ``i`` occupies bits ``[bits*i, bits*(i+1))``, and widths
  that do not divide 8 (3, 5, 6, 7) use that same stream, codes straddling bytes (eight 3-bit codes
  in three bytes);
* 32-bit words holding ``32 // bits`` codes each, as GPTQ and AWQ checkpoints store them.
  GPTQ (AutoGPTQ's ``QuantLinear.pack``) puts code ``i`` of a word at bits ``[bits*i, bits*(i+1))``,
  and for 3 bits continues the same little-endian bit stream across words (32 codes in 3 words);
  AutoAWQ puts codes in the interleaved order ``[0, 2, 4, 6, 1, 3, 5, 7]``: nibble ``i`` of the word
  (bits ``4i..4i+3``) holds code ``AWQ_ORDER[i]`` of its group of eight.

Every function packs along one axis (the last by default). A length that does not fill the last
byte or word is padded with zero codes; ``unpack`` and ``unpack_int32`` take the original length
``n`` and drop the padding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_int, check_axis

#: The AutoAWQ order: nibble ``i`` of a 32-bit word holds element ``AWQ_ORDER[i]`` of its eight.
AWQ_ORDER: tuple[int, ...] = (0, 2, 4, 6, 1, 3, 5, 7)

_BYTE_ORDERS = ("low_first", "high_first")
_WORD_ORDERS = ("gptq", "awq")


def _check_choice(value: Any, name: str, allowed: tuple[Any, ...]) -> Any:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def _codes(q: ArrayLike, bits: int, name: str = "q") -> NDArray[np.int64]:
    arr = np.asarray(q)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer codes (an integer dtype); got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension; got a scalar")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= 1 << bits):
        raise ValueError(
            f"{name} must hold codes in [0, {(1 << bits) - 1}] for bits={bits}; "
            f"got values in [{int(arr.min())}, {int(arr.max())}]"
        )
    return arr.astype(np.int64, copy=False)


def _groups(arr: NDArray[Any], per: int, axis: int) -> tuple[NDArray[Any], int]:
    """Move ``axis`` last, pad it to a multiple of ``per`` and reshape to (..., m, per)."""
    moved = np.moveaxis(arr, axis, -1)
    n = moved.shape[-1]
    pad = (-n) % per
    if pad:
        moved = np.concatenate([moved, np.zeros((*moved.shape[:-1], pad), dtype=moved.dtype)], axis=-1)
    return moved.reshape(*moved.shape[:-1], -1, per), n  # (..., m, per)


def _byte_bits(bits: Any, order: str = "low_first") -> int:
    value = as_int(bits, "bits")
    if order == "high_first" and value not in (1, 2, 4):
        raise ValueError(f"bits must be 1, 2 or 4 to pack codes high bits first; got {value}")
    if not 1 <= value <= 8:
        raise ValueError(f"bits must be an integer in [1, 8] to pack codes into bytes; got {value}")
    return value


def _to_stream(arr: NDArray[Any], bits: int) -> NDArray[np.uint8]:
    """Codes along the last axis -> the little-endian bit stream, as bytes (zero-padded)."""
    bit = (arr[..., None] >> np.arange(bits, dtype=arr.dtype)) & 1  # (..., n, bits): bit j of each code
    return np.packbits(bit.astype(np.uint8).reshape(*arr.shape[:-1], -1), axis=-1, bitorder="little")


def _from_stream(packed: NDArray[np.uint8], bits: int, n: int) -> NDArray[np.uint8]:
    """The first ``n`` codes of the little-endian bit stream in ``packed`` (along its last axis)."""
    bit = np.unpackbits(packed, axis=-1, count=n * bits, bitorder="little")  # (..., n * bits)
    weights = (1 << np.arange(bits)).astype(np.uint8)  # 2^j for bit j
    codes: NDArray[np.uint8] = (bit.reshape(*packed.shape[:-1], n, bits) * weights).sum(axis=-1, dtype=np.uint8)
    return codes


def _byte_shifts(bits: int, order: str) -> NDArray[np.uint8]:
    per = 8 // bits
    shifts = np.arange(per, dtype=np.uint8) * np.uint8(bits)
    return shifts if order == "low_first" else shifts[::-1].copy()


def pack(q: ArrayLike, bits: int, order: str = "low_first", axis: int = -1) -> NDArray[np.uint8]:
    """Pack integer codes of ``bits`` bits into bytes along ``axis``.

    Parameters
    ----------
    q : array_like of int
        Codes in ``[0, 2**bits - 1]`` (signed codes must be offset first, e.g. ``q + 8``).
    bits : int in [1, 8]
        Width of one code; ``"high_first"`` only for 1, 2 and 4.
    order : {"low_first", "high_first"}
        Whether the first code of each byte sits in its lowest or highest bits.
    axis : int
        The axis along which consecutive codes share a byte.

    Returns
    -------
    ndarray of uint8
        Same shape as ``q`` except along ``axis``: ``ceil(n * bits / 8)``.

    Raises
    ------
    TypeError
        If ``q`` is not an integer array.
    ValueError
        On codes out of range, an unknown ``bits`` or ``order``, or a bad ``axis``.

    Notes
    -----
    With :math:`k = 8/b` codes per byte and shift :math:`s_j = b\\,j` (low first) or
    :math:`s_j = b\\,(k-1-j)` (high first):

    .. math:: \\text{byte}_m = \\sum_{j=0}^{k-1} q_{mk+j} \\, 2^{s_j}

    For other widths (low first), the bytes are the little-endian bit stream
    :math:`\\sum_i q_i\\, 2^{b i}`: byte :math:`m` holds its bits :math:`8m, \\dots, 8m+7`.

    Examples
    --------
    >>> pack([1, 2, 3, 4], bits=4)
    array([33, 67], dtype=uint8)
    >>> [hex(b) for b in pack([1, 2, 3, 4], bits=4, order="high_first")]
    ['0x12', '0x34']
    >>> [bin(b) for b in pack([7, 0, 5], bits=3)]  # 111 000 101, lowest bits first
    ['0b1000111', '0b1']
    """
    _check_choice(order, "order", _BYTE_ORDERS)
    b = _byte_bits(bits, order)
    arr = _codes(q, b)
    ax = check_axis(axis, arr.ndim)
    if 8 % b:  # codes straddle bytes: the bit stream
        return np.moveaxis(_to_stream(np.moveaxis(arr, ax, -1), b), -1, ax)
    groups, _ = _groups(arr.astype(np.uint8), 8 // b, ax)  # (..., m, 8 // bits)
    packed = np.bitwise_or.reduce(groups << _byte_shifts(b, order), axis=-1).astype(np.uint8)  # (..., m)
    return np.moveaxis(packed, -1, ax)


def unpack(packed: ArrayLike, bits: int, n: int, order: str = "low_first", axis: int = -1) -> NDArray[np.uint8]:
    """Unpack bytes made by :func:`pack` back into ``n`` codes along ``axis``.

    Parameters
    ----------
    packed : array_like of uint8
        Packed bytes.
    bits : int in [1, 8]
        Width of one code; ``"high_first"`` only for 1, 2 and 4.
    n : int
        Number of codes to return along ``axis`` (drops the zero padding of the last byte).
    order : {"low_first", "high_first"}
        The order used when packing.
    axis : int
        The packed axis.

    Returns
    -------
    ndarray of uint8
        Codes in ``[0, 2**bits - 1]``, ``n`` of them along ``axis``.

    Raises
    ------
    TypeError
        If ``packed`` is not an array of uint8.
    ValueError
        If ``n`` does not fit the number of bytes, or on an unknown ``bits`` or ``order``.

    Notes
    -----
    .. math:: q_{mk+j} = \\lfloor \\text{byte}_m / 2^{s_j} \\rfloor \\bmod 2^b

    Examples
    --------
    >>> unpack(pack([1, 2, 3], bits=4), bits=4, n=3)
    array([1, 2, 3], dtype=uint8)
    >>> unpack(pack([7, 0, 5], bits=3), bits=3, n=3)
    array([7, 0, 5], dtype=uint8)
    """
    _check_choice(order, "order", _BYTE_ORDERS)
    b = _byte_bits(bits, order)
    arr = np.asarray(packed)
    if arr.dtype != np.uint8:
        raise TypeError(f"packed must be an array of uint8; got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError("packed must have at least one dimension; got a scalar")
    ax = check_axis(axis, arr.ndim)
    count = as_int(n, "n")
    nbytes = arr.shape[ax]
    if 8 % b:  # the bit stream: exactly ceil(n * b / 8) bytes
        if count < 0 or -(-count * b // 8) != nbytes:
            raise ValueError(
                f"n must fill {nbytes} byte(s) of {b}-bit codes, i.e. ceil(n * {b} / 8) = {nbytes}; got {count}"
            )
        return np.moveaxis(_from_stream(np.moveaxis(arr, ax, -1), b, count), -1, ax)
    per = 8 // b
    if not (nbytes - 1) * per < count <= nbytes * per and not (count == 0 and nbytes == 0):
        raise ValueError(
            f"n must be in [{max(nbytes - 1, 0) * per + 1}, {nbytes * per}] for {nbytes} byte(s) of {b}-bit codes; "
            f"got {count}"
        )
    moved = np.moveaxis(arr, ax, -1)[..., None]  # (..., m, 1)
    mask = np.uint8((1 << b) - 1)
    codes = (moved >> _byte_shifts(b, order)) & mask  # (..., m, per)
    codes = codes.reshape(*codes.shape[:-2], -1)[..., :count]  # (..., n)
    return np.moveaxis(codes, -1, ax)


def _word_bits(bits: Any, order: str) -> int:
    value = as_int(bits, "bits")
    _check_choice(order, "order", _WORD_ORDERS)
    if order == "awq" and value != 4:
        raise ValueError(f"the AWQ order is defined for 4-bit codes only; got bits={value}")
    if value not in (2, 3, 4, 8):
        raise ValueError(f"bits must be 2, 3, 4 or 8 to pack codes into 32-bit words; got {value}")
    return value


def _stream_words(moved: NDArray[Any]) -> NDArray[np.uint32]:
    """3-bit codes along the last axis -> GPTQ's words: the bit stream, 32 codes per 3 words."""
    groups, _ = _groups(moved, 32, moved.ndim - 1)  # (..., m, 32): whole triples of words
    stream = _to_stream(groups.reshape(*groups.shape[:-2], -1), 3)  # (..., 12 m) bytes
    return np.ascontiguousarray(stream).view("<u4").astype(np.uint32)  # (..., 3 m): four bytes per word


def _word_shifts(bits: int, order: str) -> NDArray[np.uint32]:
    per = 32 // bits
    slot = np.arange(per)
    if order == "awq":
        # element AWQ_ORDER[i] goes to nibble i, so element e goes to nibble argsort(AWQ_ORDER)[e]
        slot = np.argsort(np.array(AWQ_ORDER))
    return (slot * bits).astype(np.uint32)


def pack_int32(q: ArrayLike, bits: int = 4, order: str = "gptq", axis: int = -1) -> NDArray[np.int32]:
    """Pack integer codes into 32-bit words in the GPTQ or the AWQ order.

    Parameters
    ----------
    q : array_like of int
        Codes in ``[0, 2**bits - 1]``.
    bits : {2, 3, 4, 8}
        Width of one code (the AWQ order exists for 4 bits only). 3-bit codes continue one
        little-endian bit stream across words, 32 codes in 3 words, as AutoGPTQ packs them.
    order : {"gptq", "awq"}
        ``"gptq"``: code ``i`` of a word at bits ``bits*i``; ``"awq"``: nibble ``i`` holds code
        ``AWQ_ORDER[i] = (0, 2, 4, 6, 1, 3, 5, 7)[i]``.
    axis : int
        The axis along which consecutive codes share a word (GPTQ's ``qweight`` packs the input
        dimension of a ``(in, out)`` matrix, ``axis=0``; its ``qzeros`` and AWQ's tensors pack the last).

    Returns
    -------
    ndarray of int32
        The words, as the checkpoints store them (bit patterns reinterpreted as signed).

    Raises
    ------
    TypeError
        If ``q`` is not an integer array.
    ValueError
        On codes out of range, an unknown ``bits`` or ``order``, or a bad ``axis``.

    Notes
    -----
    .. math:: w_m = \\sum_{i} q_{m k + \\pi(i)} \\, 2^{b i} \\pmod{2^{32}},

    with :math:`k = 32/b`, :math:`\\pi` the identity (GPTQ) or ``AWQ_ORDER`` (AWQ).

    Examples
    --------
    >>> hex(int(pack_int32(list(range(8)), order="gptq")[0]))
    '0x76543210'
    >>> hex(int(pack_int32(list(range(8)), order="awq")[0]))
    '0x75316420'
    """
    b = _word_bits(bits, order)
    arr = _codes(q, b)
    ax = check_axis(axis, arr.ndim)
    if b == 3:
        words3 = _stream_words(np.moveaxis(arr, ax, -1))  # (..., 3 m)
        return np.moveaxis(words3.view(np.int32), -1, ax)
    groups, _ = _groups(arr.astype(np.uint32), 32 // b, ax)  # (..., m, 32 // bits)
    words = np.bitwise_or.reduce(groups << _word_shifts(b, order), axis=-1).astype(np.uint32)  # (..., m)
    return np.moveaxis(words.view(np.int32), -1, ax)


def unpack_int32(
    packed: ArrayLike, bits: int = 4, n: int | None = None, order: str = "gptq", axis: int = -1
) -> NDArray[np.uint8]:
    """Unpack 32-bit words made by :func:`pack_int32` (or read from a GPTQ/AWQ checkpoint).

    Parameters
    ----------
    packed : array_like of int32 or uint32
        The words.
    bits : {2, 3, 4, 8}
        Width of one code.
    n : int, optional
        Number of codes along ``axis``; default all ``32 // bits`` per word (32 per 3 words for 3 bits).
    order : {"gptq", "awq"}
        The order used when packing.
    axis : int
        The packed axis.

    Returns
    -------
    ndarray of uint8
        The codes.

    Raises
    ------
    TypeError
        If ``packed`` is not an int32 or uint32 array.
    ValueError
        If ``n`` does not fit the number of words, or on an unknown ``bits`` or ``order``.

    Notes
    -----
    .. math:: q_{mk+\\pi(i)} = \\lfloor w_m / 2^{b i} \\rfloor \\bmod 2^b

    Examples
    --------
    >>> unpack_int32(pack_int32([3, 1, 4, 1, 5], order="awq"), n=5, order="awq")
    array([3, 1, 4, 1, 5], dtype=uint8)
    """
    b = _word_bits(bits, order)
    arr = np.asarray(packed)
    if arr.dtype not in (np.int32, np.uint32):
        raise TypeError(f"packed must be an array of int32 or uint32; got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError("packed must have at least one dimension; got a scalar")
    ax = check_axis(axis, arr.ndim)
    nwords = arr.shape[ax]
    if b == 3:  # the bit stream, 32 codes per 3 words
        if nwords % 3:
            raise ValueError(f"3-bit codes come in triples of words (32 codes each); got {nwords} word(s)")
        count = nwords // 3 * 32 if n is None else as_int(n, "n")
        if not (nwords // 3 - 1) * 32 < count <= nwords // 3 * 32 and not (count == 0 and nwords == 0):
            raise ValueError(
                f"n must be in [{max(nwords // 3 - 1, 0) * 32 + 1}, {nwords // 3 * 32}] "
                f"for {nwords} words of 3-bit codes; got {count}"
            )
        moved3 = np.moveaxis(arr.view(np.uint32), ax, -1)  # (..., 3 m)
        stream = np.ascontiguousarray(moved3.astype("<u4")).view(np.uint8)  # (..., 12 m) little-endian bytes
        return np.moveaxis(_from_stream(stream, 3, count), -1, ax)
    per = 32 // b
    count = nwords * per if n is None else as_int(n, "n")
    if not (nwords - 1) * per < count <= nwords * per and not (count == 0 and nwords == 0):
        raise ValueError(
            f"n must be in [{max(nwords - 1, 0) * per + 1}, {nwords * per}] for {nwords} word(s) of {b}-bit codes; "
            f"got {count}"
        )
    moved = np.moveaxis(arr.view(np.uint32), ax, -1)[..., None]  # (..., m, 1)
    codes = (moved >> _word_shifts(b, order)) & np.uint32((1 << b) - 1)  # (..., m, per), in element order
    codes = codes.astype(np.uint8).reshape(*codes.shape[:-2], -1)[..., :count]  # (..., n)
    return np.moveaxis(codes, -1, ax)


__all__ = ["AWQ_ORDER", "pack", "pack_int32", "unpack", "unpack_int32"]
