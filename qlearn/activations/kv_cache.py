"""KV-cache quantization: bytes of the cache, keys and values quantized per token or per channel.

Every layout here is *causal*: the quantized key or value of a position depends only on that position
(per-token scales, over the head dimension or groups of it) or on ranges fixed before the sequence is
seen (per-channel keys with static ranges calibrated by :func:`kv_ranges`, as KVQuant does). A
per-channel scale computed over the tokens of one ``kv_hook`` call would let a position's key depend on
later positions when a whole sequence is scored, and would be lossless when :meth:`Transformer.generate
<qlearn.lm.Transformer.generate>` feeds one token at a time; :func:`kv_quant_hook` refuses it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import check_bits
from qlearn.primitives import fake_quantize
from qlearn.qparams import PerAxis, choose_qparams, qparams_from_range

__all__ = ["kv_cache_bytes", "kv_quant_hook", "kv_ranges", "quantize_kv"]

_AXES = ("token", "channel")
_MAX_BITS = 8  # codes of the cache: 2 to 8 bits

KVHook = Callable[[int, NDArray[Any], NDArray[Any]], tuple[NDArray[Any], NDArray[Any]]]
Ranges = tuple[NDArray[np.float64], NDArray[np.float64]]


def _positive_int(value: Any, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer of at least {low}; got {value!r}")
    return int(value)


def _group(group_size: Any) -> int | None:
    # a group of one value is its own range: quantizing it is lossless, so it is refused
    return None if group_size is None else _positive_int(group_size, "group_size", low=2)


def _ranges(ranges: Any, ndim: int, name: str) -> Ranges:
    if not isinstance(ranges, tuple | list) or len(ranges) != 2:
        raise ValueError(f"{name} must be a pair (lo, hi) of arrays, as kv_ranges returns; got {type(ranges).__name__}")
    lo, hi = (np.asarray(r, dtype=np.float64) for r in ranges)
    if lo.ndim != ndim or lo.shape != hi.shape:
        want = "(n_heads, d_head)" if ndim == 2 else "(n_layers, n_heads, d_head)"
        raise ValueError(f"{name} must be two arrays of shape {want}; got shapes {lo.shape} and {hi.shape}")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or np.any(lo > hi):
        raise ValueError(f"{name} must be finite with lo <= hi everywhere")
    return lo, hi


def kv_cache_bytes(
    n_layers: int,
    n_heads: int,
    d_head: int,
    tokens: int,
    bytes_per_value: float,
    batch: int = 1,
    *,
    group_size: int | None = None,
    group_bytes: float = 4,
) -> float:
    """Bytes of a KV cache: ``2 * B * L * H * d * T * bytes``, plus the groups' scales if asked.

    Parameters
    ----------
    n_layers, n_heads, d_head, tokens : int
        Layers, heads per layer, head dimension, cached positions; all positive.
    bytes_per_value : float
        4 for float32, 2 for float16, 1 for int8, 0.5 for int4.
    batch : int, default 1
        Sequences cached side by side.
    group_size : int, optional
        Values that share one scale and zero point (``d_head`` for one per token); default: scales not
        counted.
    group_bytes : float, default 4
        Bytes of one group's scale and zero point (4: a float16 scale and a float16 zero point).

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
    :math:`M = 2 \\cdot B \\cdot L \\cdot H \\cdot d \\cdot T \\cdot (b + b_g / g)`, the 2 for keys and
    values, :math:`b_g / g` the share of a group's scale and zero point in each value.

    Examples
    --------
    >>> kv_cache_bytes(32, 32, 128, 4096, 2)
    2147483648.0
    >>> kv_cache_bytes(1, 1, 32, 1, 0.5, group_size=32)  # 2 x (16 bytes of codes + 4 of scales)
    40.0
    """
    vals = dict(n_layers=n_layers, n_heads=n_heads, d_head=d_head, tokens=tokens, batch=batch)
    for name, v in vals.items():
        _positive_int(v, name)
    if not bytes_per_value > 0:
        raise ValueError(f"bytes_per_value must be positive; got {bytes_per_value}")
    per_value = float(bytes_per_value)
    if group_size is not None:
        per_value += float(group_bytes) / _positive_int(group_size, "group_size")
        if not group_bytes > 0:
            raise ValueError(f"group_bytes must be positive; got {group_bytes}")
    return float(2 * batch * n_layers * n_heads * d_head * tokens * per_value)


def quantize_kv(
    x: ArrayLike,
    bits: int,
    axis: str = "token",
    group_size: int | None = None,
    *,
    ranges: tuple[ArrayLike, ArrayLike] | None = None,
) -> NDArray[np.float64]:
    """Fake-quantize keys or values (B, H, T, d) with asymmetric min-max scales.

    Parameters
    ----------
    x : array_like of float, shape (B, H, T, d)
        Keys or values of one layer.
    bits : int
        2 to 8.
    axis : {"token", "channel"}, default "token"
        ``token``: one scale per (b, h, t), from that token's own values over the head dimension
        (or per group of ``group_size`` channels); ``channel``: one scale per (head, channel), from the
        static ``ranges`` (values outside them are clipped).
    group_size : int, optional
        With ``token``: groups of at least 2 consecutive channels, dividing ``d``.
    ranges : pair of array_like, shape (H, d) each, optional
        ``(lo, hi)`` of every (head, channel), required with ``channel`` (one layer of :func:`kv_ranges`).

    Returns
    -------
    ndarray of float64, same shape
        The dequantized cache.

    Raises
    ------
    TypeError
        If ``bits`` is not an integer.
    ValueError
        On a shape that is not 4-D, bits outside [2, 8], an unknown axis, a group size that is 1 or does
        not divide ``d``, ``channel`` without ``ranges`` (or with a group size), ``ranges`` with
        ``token``, or ranges of the wrong shape.

    Notes
    -----
    Per token (group :math:`G` of channels of token :math:`t`):
    :math:`s = (\\max_G x - \\min_G x) / (2^b - 1)` after widening the range to contain 0, and
    :math:`\\hat x = s(\\operatorname{clamp}(\\lfloor x/s \\rceil + z, 0, 2^b - 1) - z)`. Per channel the
    range is :math:`[\\alpha_{hj}, \\beta_{hj}]` from calibration, the same for every token, so a key never
    depends on the tokens after it. Keys of large models have outlier *channels* (a few head dimensions
    large for every token), values do not; hence per-channel keys and per-token values (Liu et al. 2024,
    KIVI; Hooper et al. 2024, KVQuant, with static ranges).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(8.0).reshape(1, 1, 2, 4)
    >>> step = 7 / 15  # second token: range [0, 7] (0 is always on the grid), 16 codes
    >>> bool(np.abs(quantize_kv(x, 4) - x).max() <= step / 2 + 1e-6)
    True
    >>> lo, hi = np.zeros((1, 4)), np.full((1, 4), 3.0)  # static range [0, 3] for every channel
    >>> quantize_kv(x, 2, "channel", ranges=(lo, hi))[0, 0, 1]  # clipped at 3
    array([3., 3., 3., 3.])
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 4:
        raise ValueError(f"x must be (B, H, T, d); got shape {a.shape}")
    b = check_bits(bits, high=_MAX_BITS)
    if axis not in _AXES:
        raise ValueError(f"axis must be one of {_AXES}; got {axis!r}")
    bsz, h, t, d = a.shape
    g = _group(group_size)
    if axis == "channel":
        if ranges is None:
            raise ValueError(
                "axis='channel' needs static ranges (lo, hi) of shape (n_heads, d_head), e.g. one layer of "
                "kv_ranges(model, calibration_tokens): a per-channel range taken from the tokens at hand "
                "would make each key depend on later tokens, and be lossless for a single token"
            )
        if g is not None:
            raise ValueError(f"group_size applies to axis='token' only; got group_size={group_size} with 'channel'")
        lo, hi = _ranges(ranges, 2, "ranges")
        if lo.shape != (h, d):
            raise ValueError(f"ranges must have shape (n_heads, d_head) = {(h, d)}; got {lo.shape}")
        qp = qparams_from_range(lo.reshape(-1), hi.reshape(-1), b, granularity=PerAxis(1))  # (H*d,)
        flat = a.transpose(0, 2, 1, 3).reshape(bsz * t, h * d)  # (B*T, H*d), channel j of head i at i*d + j
        out = fake_quantize(flat, qp).reshape(bsz, t, h, d).transpose(0, 2, 1, 3)
        return np.ascontiguousarray(out, dtype=np.float64)
    if ranges is not None:
        raise ValueError("ranges apply to axis='channel' only; per-token scales come from each token")
    g = d if g is None else g
    if d % g:
        raise ValueError(f"group_size must divide the head dimension {d}; got {group_size}")
    flat = a.reshape(-1, g)  # (B*H*T*d/g, g): one row per group of one token
    return fake_quantize(flat, choose_qparams(flat, b, axis=0)).reshape(a.shape).astype(np.float64)


def kv_ranges(model: Any, tokens: ArrayLike) -> Ranges:
    """Static per-(layer, head, channel) ranges of the keys, from calibration tokens.

    Parameters
    ----------
    model : qlearn.lm.Transformer
        The float model.
    tokens : array_like of int, shape (batch, T)
        Calibration windows (e.g. :func:`qlearn.lm.calibration_batches`), not the evaluation text.

    Returns
    -------
    lo, hi : ndarray of float64, shape (n_layers, n_heads, d_head)
        Smallest and largest key of every channel over all windows and positions.

    Raises
    ------
    ValueError, TypeError
        As :meth:`qlearn.lm.Transformer.forward` for bad tokens.

    Notes
    -----
    :math:`\\alpha_{lhj} = \\min_{b,t} K^{(l)}_{bhtj}`, :math:`\\beta_{lhj} = \\max_{b,t} K^{(l)}_{bhtj}`,
    captured through ``model.forward(tokens, kv_hook=...)``. Fixed before any text is scored, they are
    causal and serve one token at a time as well as a whole window.

    Examples
    --------
    >>> from qlearn.lm import LMConfig, Transformer
    >>> m = Transformer.initialize(LMConfig(vocab_size=5, context=4, d_model=4, n_layers=1, n_heads=2, d_ff=8))
    >>> lo, hi = kv_ranges(m, [[0, 1, 2, 3]])
    >>> lo.shape, bool((lo <= hi).all())
    ((1, 2, 2), True)
    """
    c = model.config
    lo = np.full((c.n_layers, c.n_heads, c.d_head), np.inf)
    hi = np.full((c.n_layers, c.n_heads, c.d_head), -np.inf)

    def record(layer: int, k: NDArray[Any], v: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
        lo[layer] = np.minimum(lo[layer], k.min(axis=(0, 2)))  # over batch and positions: (H, d)
        hi[layer] = np.maximum(hi[layer], k.max(axis=(0, 2)))
        return k, v

    model.forward(tokens, kv_hook=record)
    return lo, hi


def kv_quant_hook(
    bits: int,
    *,
    key_axis: str = "token",
    group_size: int | None = None,
    key_ranges: tuple[ArrayLike, ArrayLike] | None = None,
) -> KVHook:
    """A ``kv_hook`` for :meth:`qlearn.lm.Transformer.forward` and ``generate`` quantizing keys and values.

    Parameters
    ----------
    bits : int
        2 to 8, for keys and values.
    key_axis : {"token", "channel"}, default "token"
        Scale layout of the keys (see :func:`quantize_kv`); values are always per token.
    group_size : int, optional
        Groups along the head dimension for the per-token tensors (the values, and the keys if per token).
    key_ranges : pair of array_like, shape (n_layers, n_heads, d_head) each, optional
        Static key ranges from :func:`kv_ranges`; required with ``key_axis="channel"``.

    Returns
    -------
    callable
        ``kv_hook(layer, k, v) -> (k, v)`` in the dtype it received.

    Raises
    ------
    TypeError
        If ``bits`` is not an integer.
    ValueError
        On bits outside [2, 8], an unknown ``key_axis``, a group size below 2, per-channel keys without
        ``key_ranges`` (or ``key_ranges`` with per-token keys), or ranges that are not (lo, hi) of
        shape (L, H, d) with lo <= hi. The hook raises on a layer, head count or head dimension that the
        ranges do not cover, or a group size that does not divide ``d``.

    Notes
    -----
    Each position's quantized key and value depend on that position alone and on constants, so the hook
    gives the same result whether it sees a whole window (scoring, prefill) or one new token (decoding),
    and a change to a later token never reaches an earlier position. KIVI instead scales keys per channel
    over blocks of tokens and keeps the latest, incomplete block in float; that needs a query-dependent
    view of the cache, which a hook on the new keys cannot give.

    Examples
    --------
    >>> import numpy as np
    >>> k = np.ones((1, 1, 2, 4), np.float32)
    >>> kq, vq = kv_quant_hook(8)(0, k, k)
    >>> kq.dtype
    dtype('float32')
    >>> kv_quant_hook(4, key_axis="channel")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: key_axis='channel' needs static key_ranges=kv_ranges(model, calibration_tokens): ...
    """
    b = check_bits(bits, high=_MAX_BITS)
    if key_axis not in _AXES:
        raise ValueError(f"key_axis must be one of {_AXES}; got {key_axis!r}")
    g = _group(group_size)
    ranges: Ranges | None = None
    if key_axis == "channel":
        if key_ranges is None:
            raise ValueError(
                "key_axis='channel' needs static key_ranges=kv_ranges(model, calibration_tokens): per-channel "
                "scales over the tokens of one call would make a key depend on later tokens when a window is "
                "scored, and be lossless when generate feeds one token at a time"
            )
        ranges = _ranges(key_ranges, 3, "key_ranges")
    elif key_ranges is not None:
        raise ValueError("key_ranges apply to key_axis='channel' only; per-token keys take no ranges")

    def hook(layer: int, k: NDArray[Any], v: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
        if ranges is None:
            kq = quantize_kv(k, b, "token", g)
        else:
            if not 0 <= layer < len(ranges[0]):
                raise ValueError(f"key_ranges cover layers 0..{len(ranges[0]) - 1}; got layer {layer}")
            kq = quantize_kv(k, b, "channel", ranges=(ranges[0][layer], ranges[1][layer]))
        return kq.astype(k.dtype), quantize_kv(v, b, "token", g).astype(v.dtype)

    return hook
