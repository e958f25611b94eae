"""KV-cache quantization: int8/int4 keys and values, per token or per channel, in groups along the head."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn.primitives import fake_quantize
from qlearn.qparams import choose_qparams

__all__ = ["kv_cache_bytes", "kv_quant_hook", "quantize_kv"]

_AXES = ("token", "channel")


def kv_cache_bytes(
    n_layers: int, n_heads: int, d_head: int, tokens: int, bytes_per_value: float, batch: int = 1
) -> float:
    """Bytes of a KV cache: ``2 * L * H * d * T * bytes`` (times the batch).

    Parameters
    ----------
    n_layers, n_heads, d_head, tokens : int
        Layers, heads per layer, head dimension, cached positions; all positive.
    bytes_per_value : float
        4 for float32, 2 for float16, 1 for int8, 0.5 for int4 (scales not counted).
    batch : int, default 1
        Sequences cached side by side.

    Returns
    -------
    float
        The size in bytes.

    Raises
    ------
    ValueError
        On a non-positive argument.

    Notes
    -----
    :math:`M = 2 \\cdot B \\cdot L \\cdot H \\cdot d \\cdot T \\cdot b`, the 2 for keys and values.

    Examples
    --------
    >>> kv_cache_bytes(32, 32, 128, 4096, 2)
    2147483648.0
    """
    vals = dict(n_layers=n_layers, n_heads=n_heads, d_head=d_head, tokens=tokens, batch=batch)
    for name, v in vals.items():
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be a positive integer; got {v!r}")
    if not bytes_per_value > 0:
        raise ValueError(f"bytes_per_value must be positive; got {bytes_per_value}")
    return float(2 * batch * n_layers * n_heads * d_head * tokens * bytes_per_value)


def quantize_kv(x: ArrayLike, bits: int, axis: str = "token", group_size: int | None = None) -> NDArray[np.float64]:
    """Fake-quantize keys or values (B, H, T, d) with asymmetric min-max scales.

    Parameters
    ----------
    x : array_like of float, shape (B, H, T, d)
        Keys or values.
    bits : int
        2 to 8.
    axis : {"token", "channel"}, default "token"
        ``token``: one scale per (b, h, t), over the head dimension (in groups of ``group_size``);
        ``channel``: one scale per (b, h, channel), over the tokens (KIVI's choice for keys).
    group_size : int, optional
        With ``token``: groups along the head dimension, which it must divide.

    Returns
    -------
    ndarray of float64, same shape
        The dequantized cache.

    Raises
    ------
    ValueError
        On a shape that is not 4-D, an unknown axis, or a group size that does not divide ``d``.

    Notes
    -----
    Keys have outlier *channels* (a few head dimensions large for every token), values do not; so
    per-channel scales suit keys and per-token scales suit values (Liu et al. 2024, KIVI).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(8.0).reshape(1, 1, 2, 4)
    >>> step = 7 / 15  # second token: range [0, 7] (0 is always on the grid), 16 codes
    >>> bool(np.abs(quantize_kv(x, 4) - x).max() <= step / 2 + 1e-6)
    True
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 4:
        raise ValueError(f"x must be (B, H, T, d); got shape {a.shape}")
    if axis not in _AXES:
        raise ValueError(f"axis must be one of {_AXES}; got {axis!r}")
    bsz, h, t, d = a.shape
    if axis == "channel":
        flat = a.transpose(0, 1, 3, 2).reshape(-1, t)
        qp = choose_qparams(flat, bits, axis=0)
        return fake_quantize(flat, qp).reshape(bsz, h, d, t).transpose(0, 1, 3, 2).astype(np.float64)
    g = d if group_size is None else int(group_size)
    if g < 1 or d % g:
        raise ValueError(f"group_size must divide the head dimension {d}; got {group_size}")
    flat = a.reshape(-1, g)
    return fake_quantize(flat, choose_qparams(flat, bits, axis=0)).reshape(a.shape).astype(np.float64)


def kv_quant_hook(
    bits: int, *, key_axis: str = "token", group_size: int | None = None
) -> Callable[[int, NDArray[Any], NDArray[Any]], tuple[NDArray[Any], NDArray[Any]]]:
    """A ``kv_hook`` for :meth:`qlearn.lm.Transformer.forward` quantizing keys and values.

    Parameters
    ----------
    bits : int
        2 to 8.
    key_axis : {"token", "channel"}, default "token"
        Scale layout of the keys (see :func:`quantize_kv`); values are always per token.
    group_size : int, optional
        Groups along the head dimension for the per-token tensors.

    Returns
    -------
    callable
        ``kv_hook(layer, k, v) -> (k, v)`` in the dtype it received.

    Raises
    ------
    ValueError
        On an unknown ``key_axis``.

    Notes
    -----
    Per-channel keys need a block of tokens to compute scales over; in generation the hook sees only
    the new positions, so per-channel keys are meant for the perplexity (prefill) path, as KIVI keeps a
    small float residual block for the most recent tokens.

    Examples
    --------
    >>> import numpy as np
    >>> k = np.ones((1, 1, 2, 4), np.float32)
    >>> kq, vq = kv_quant_hook(8)(0, k, k)
    >>> kq.dtype
    dtype('float32')
    """
    if key_axis not in _AXES:
        raise ValueError(f"key_axis must be one of {_AXES}; got {key_axis!r}")

    def hook(layer: int, k: NDArray[Any], v: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
        kq = quantize_kv(k, bits, key_axis, group_size if key_axis == "token" else None)
        return kq.astype(k.dtype), quantize_kv(v, bits, "token", group_size).astype(v.dtype)

    return hook
