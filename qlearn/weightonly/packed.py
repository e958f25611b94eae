"""Packed low-bit weights and the W4A16 matrix multiplication that reads them.

A :class:`PackedWeight` holds what a checkpoint stores for one linear layer: the codes packed
as a little-endian bit stream of ``bits`` bits each (``layout="byte"``: two 4-bit codes per byte,
eight 3-bit codes in three bytes), or in 32-bit words in the GPTQ order (``"gptq"``: 2, 3, 4 or 8
bits; 3-bit codes 32 to three words) or the AWQ order (``"awq"``, 4 bits), the scales in float16 and
the zero points (packed like the codes when they are integers, float16 when they are floats, absent
when symmetric). ``nbytes`` counts those bytes and nothing else. The packing itself is
:mod:`qlearn.formats.packing`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array
from qlearn.formats.packing import pack, pack_int32, unpack, unpack_int32
from qlearn.weightonly.rtn import GroupQuant

LAYOUTS = ("byte", "gptq", "awq")


_WORD_BITS = {"gptq": (2, 3, 4, 8), "awq": (4,)}


@dataclass(frozen=True)
class PackedWeight:
    """A weight matrix in packed low-bit storage (build it with :meth:`from_quant`).

    Parameters
    ----------
    data : ndarray of uint8 or int32
        Packed codes, shape (out, ceil(in · bits / 8)) bytes or (out, in · bits / 32) words (rounded up
        to whole words; to whole triples of words for 3 bits).
    scale : ndarray of float16, shape (out, n_groups)
        Group scales.
    zero : ndarray of uint8, int32 or float16, or None
        Group zero points: packed like ``data`` (integer), float16 (float), ``None`` (symmetric).
    shape : tuple of int
        (out, in) of the weight.
    bits : int
        Code width.
    group_size : int
        Columns per group.
    zero_kind : {"symmetric", "int", "float"}
        Zero-point convention of :mod:`qlearn.weightonly.rtn`.
    layout : {"byte", "gptq", "awq"}
        How codes share a byte or a word.

    Notes
    -----
    Stored bytes: :math:`\\lceil n_{in} b / 8 \\rceil` per row for :math:`b`-bit codes (byte layout),
    2 per scale, and 2 per float zero point or :math:`b/8` per integer one (rounded up per row).

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn.weightonly import rtn
    >>> w = np.random.default_rng(0).standard_normal((4, 64))
    >>> pw = PackedWeight.from_quant(rtn(w, bits=4, group_size=32))
    >>> pw.data.shape, pw.nbytes  # 4·32 code bytes + 4·2·2 scale bytes + 4·1 zero bytes
    ((4, 32), 148)
    >>> bool(np.array_equal(pw.codes(), rtn(w, bits=4, group_size=32).codes))
    True
    """

    data: NDArray[Any]
    scale: NDArray[np.float16]
    zero: NDArray[Any] | None
    shape: tuple[int, int]
    bits: int
    group_size: int
    zero_kind: str
    layout: str = "byte"

    @classmethod
    def from_quant(cls, gq: GroupQuant, layout: str = "byte") -> PackedWeight:
        """Pack the codes, scales and zero points of ``gq`` (see the class docstring)."""
        if not isinstance(gq, GroupQuant):
            raise TypeError(f"gq must be a GroupQuant (from rtn, gptq or awq); got {type(gq).__name__}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}; got {layout!r}")
        if gq.bits > 8:
            raise ValueError(f"PackedWeight stores codes of at most 8 bits; got bits={gq.bits}")
        if layout != "byte" and gq.bits not in _WORD_BITS[layout]:
            raise ValueError(f"the {layout!r} word layout holds codes of {_WORD_BITS[layout]} bits; got bits={gq.bits}")
        slot = gq.bits
        offset = -gq.qmin  # signed codes are stored shifted to [0, 2^b - 1]
        codes = gq.codes.astype(np.int64) + offset  # (out, in)
        zero: NDArray[Any] | None = None
        if gq.zero_kind == "float":
            zero = gq.zero.astype(np.float16)
        elif gq.zero_kind == "int":
            zero = cls._pack(gq.zero.astype(np.int64), slot, layout)
        return cls(cls._pack(codes, slot, layout), gq.scale.astype(np.float16), zero, gq.codes.shape,
                   gq.bits, gq.group_size, gq.zero_kind, layout)  # fmt: skip

    @staticmethod
    def _pack(q: NDArray[np.int64], bits: int, layout: str) -> NDArray[Any]:
        if layout == "byte":
            return q.astype(np.uint8) if bits == 8 else pack(q, bits, order="low_first")
        return pack_int32(q, bits, order=layout)

    def _unpack(self, data: NDArray[Any], n: int) -> NDArray[np.uint8]:
        if self.layout == "byte":
            return data.astype(np.uint8) if self.bits == 8 else unpack(data, self.bits, n, order="low_first")
        return unpack_int32(data, self.bits, n, order=self.layout)

    @property
    def nbytes(self) -> int:
        """Bytes stored: codes, scales and zero points."""
        return int(self.data.nbytes + self.scale.nbytes + (0 if self.zero is None else self.zero.nbytes))

    def codes(self) -> NDArray[np.int32]:
        """The codes, unpacked, in the convention of the :class:`GroupQuant` they came from."""
        offset = 1 << (self.bits - 1) if self.zero_kind == "symmetric" else 0
        return self._unpack(self.data, self.shape[1]).astype(np.int32) - offset

    def zeros(self) -> NDArray[np.float32]:
        """Zero points in code units, shape (out, n_groups)."""
        n_groups = self.shape[1] // self.group_size
        if self.zero is None:
            return np.zeros((self.shape[0], n_groups), dtype=np.float32)
        if self.zero_kind == "float":
            return self.zero.astype(np.float32)
        return self._unpack(self.zero, n_groups).astype(np.float32)

    def dequantize(self) -> NDArray[np.float32]:
        """The float32 weight :math:`(q - z)\\, s` of shape (out, in), from the stored bytes."""
        s = np.repeat(self.scale.astype(np.float32), self.group_size, axis=1)  # (out, in)
        z = np.repeat(self.zeros(), self.group_size, axis=1)  # (out, in)
        return (self.codes().astype(np.float32) - z) * s


def w4a16_matmul(x: ArrayLike, pw: PackedWeight) -> NDArray[np.float32]:
    """``x @ Ŵᵀ`` for a packed weight, unpacking and dequantizing one group of columns at a time.

    Parameters
    ----------
    x : array_like of float, shape (..., in)
        Activations (kept in floating point: the "A16" of W4A16).
    pw : PackedWeight
        The weight, shape (out, in).

    Returns
    -------
    ndarray of float32, shape (..., out)

    Raises
    ------
    TypeError, ValueError
        If ``pw`` is not a :class:`PackedWeight` or ``x``'s last axis is not ``in``.

    Notes
    -----
    With :math:`\\mathcal G_g` the columns of group :math:`g`:

    .. math:: y_{ti} = \\sum_g s_{ig} \\sum_{j \\in \\mathcal G_g} (q_{ij} - z_{ig})\\, x_{tj}

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn.weightonly import rtn
    >>> rng = np.random.default_rng(0)
    >>> w, x = rng.standard_normal((8, 64)), rng.standard_normal((3, 64))
    >>> pw = PackedWeight.from_quant(rtn(w, bits=4, group_size=32), layout="gptq")
    >>> bool(np.allclose(w4a16_matmul(x, pw), x @ pw.dequantize().T, atol=1e-5))
    True
    """
    if not isinstance(pw, PackedWeight):
        raise TypeError(f"pw must be a PackedWeight; got {type(pw).__name__}")
    xa = as_float_array(x, "x").astype(np.float32)
    n_out, n_in = pw.shape
    if xa.ndim == 0 or xa.shape[-1] != n_in:
        raise ValueError(f"x must have last axis of length {n_in} (the weight's input width); got shape {xa.shape}")
    gs = pw.group_size
    codes = pw.codes().astype(np.float32)  # (out, in)
    zeros = pw.zeros()  # (out, n_groups)
    scale = pw.scale.astype(np.float32)  # (out, n_groups)
    y = np.zeros((*xa.shape[:-1], n_out), dtype=np.float32)
    for g in range(n_in // gs):
        cols = slice(g * gs, (g + 1) * gs)
        w_g = (codes[:, cols] - zeros[:, g : g + 1]) * scale[:, g : g + 1]  # (out, gs): this group, dequantized
        y += xa[..., cols] @ w_g.T
    return y


__all__ = ["LAYOUTS", "PackedWeight", "w4a16_matmul"]
