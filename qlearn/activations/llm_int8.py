"""LLM.int8(): outlier input columns in float, the rest in int8 with per-token x per-channel scales."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn.activations.w8a8 import w8a8_matmul
from qlearn.integer import quantized_matmul

__all__ = ["LLM_INT8_CONVENTIONS", "llm_int8_hook", "llm_int8_matmul"]

LLM_INT8_CONVENTIONS = ("paper", "bitsandbytes")
"""``paper``: the decomposition of Dettmers et al. (2022); ``bitsandbytes``: what its ``Linear8bitLt`` computes."""

# bitsandbytes' default-backend constants (backends/default/ops.py and _ops.py, version 0.50): the int8 matmul
# is rescaled by 6.200124e-05, which is 1.8e-5 (relative) above 1 / 127**2 = 6.2000124e-05, and int8 weights
# are dequantized with the float32 nearest to 1 / 127.
_BNB_MM_DEQUANT = np.float32(6.200124e-05)
_BNB_DEQUANT = np.float32(7.874015718698502e-3)


def _check(x: ArrayLike, w: ArrayLike, threshold: float, convention: str) -> tuple[NDArray[Any], NDArray[Any]]:
    xa, wa = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    if xa.ndim != 2 or wa.ndim != 2 or xa.shape[1] != wa.shape[1]:
        raise ValueError(f"need x (M, K) and w (N, K); got shapes {xa.shape} and {wa.shape}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating | np.integer):
        raise TypeError(f"threshold must be a real number; got {type(threshold).__name__}")
    if np.isnan(threshold):
        raise ValueError("threshold must be a number; got NaN")
    if convention not in LLM_INT8_CONVENTIONS:
        raise ValueError(f"convention must be one of {LLM_INT8_CONVENTIONS}; got {convention!r}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(wa))):
        raise ValueError("x and w must be finite (no NaN or inf)")
    return xa, wa


def _bnb_rowwise(a16: NDArray[np.float16]) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
    # bitsandbytes' int8_vectorwise_quant: row absmax in float32, codes round(a * (127.0 / absmax)), where
    # torch evaluates the scalar-over-tensor 127.0 / absmax as reciprocal(absmax) * 127 (two roundings)
    stats = np.abs(a16).max(axis=1).astype(np.float32)  # (rows,)
    safe = np.where(stats > 0, stats, np.float32(1))  # an all-zero row gets codes 0 (bitsandbytes: NaN)
    mult = (np.float32(1) / safe) * np.float32(127)  # (rows,)
    q = np.rint(a16.astype(np.float32) * mult[:, None])
    return q.astype(np.int8), stats


def _bitsandbytes(xa: NDArray[Any], wa: NDArray[Any], threshold: float) -> tuple[NDArray[np.float64], NDArray[Any]]:
    x32 = xa.astype(np.float32)  # (M, K), the layer's input dtype
    x16 = x32.astype(np.float16)  # bitsandbytes quantizes activations from float16
    big = np.abs(x16) >= threshold if threshold > 0 else np.zeros(x16.shape, bool)  # outlier *elements*
    cols: NDArray[np.bool_] = np.asarray(big.any(axis=0))  # (K,) columns holding one
    qx, sx = _bnb_rowwise(np.where(big, np.float16(0), x16))  # outlier elements excluded from the absmax
    qx[:, cols] = 0
    qw, sw = _bnb_rowwise(wa.astype(np.float16))  # (N, K), weights stored as int8 (from float16)
    acc = quantized_matmul(qx, 0, qw.T, 0)  # (M, N) int32
    y = acc.astype(np.float32) * (sx[:, None] * sw[None, :]) * _BNB_MM_DEQUANT
    if cols.any():
        sub_w = qw[:, cols].astype(np.float32) * sw[:, None] * _BNB_DEQUANT  # int8 columns, dequantized
        y = y + x32[:, cols] @ sub_w.T  # the outlier inputs stay in the input dtype
    return y.astype(np.float64), cols


def llm_int8_matmul(
    x: ArrayLike, w: ArrayLike, threshold: float = 6.0, *, convention: str = "paper"
) -> tuple[NDArray[np.float64], dict[str, int]]:
    """``x @ w.T`` decomposed: input columns with outliers in float, the others in int8.

    Parameters
    ----------
    x : array_like of float, shape (M, K)
        Activations.
    w : array_like of float, shape (N, K)
        Weights.
    threshold : float, default 6.0
        Magnitude that makes an input column an outlier column (Dettmers et al. 2022).
    convention : {"paper", "bitsandbytes"}, default "paper"
        ``paper``: a column is an outlier if some :math:`|x| > \\tau`; its inputs *and weights* stay in
        float; the other columns get per-token and per-output-channel int8 scales over those columns only
        (``inf`` quantizes everything, a negative threshold keeps everything in float).
        ``bitsandbytes``: bit-for-bit what ``bitsandbytes.nn.Linear8bitLt(threshold=...)`` computes on CPU
        from float32 inputs (see Notes); ``threshold <= 0`` turns the decomposition off.

    Returns
    -------
    y : ndarray of float64, shape (M, N)
        Float part plus the rescaled int8 part.
    cost : dict of str to int
        ``outliers`` (columns in float), ``float_macs`` and ``int8_macs`` (multiply-adds) and
        ``weight_bytes`` (int8 codes, float32 scales, and under ``paper`` the outlier weight columns in
        float16, as the paper keeps them).

    Raises
    ------
    ValueError
        On shapes that do not chain, non-finite input, a NaN threshold or an unknown convention.
    TypeError
        If the threshold is not a real number.

    Notes
    -----
    Paper: :math:`O = \\{k : \\max_t |X_{tk}| > \\tau\\}` and
    :math:`Y = X_{:,O} W_{:,O}^T + \\operatorname{diag}(s^x)\\, (Q^x_{:,\\bar O} Q^{wT}_{\\bar O,:})\\,
    \\operatorname{diag}(s^w)`.

    bitsandbytes (0.50, default backend) differs in four places: inputs and weights are rounded to float16
    before quantization; a column is an outlier if some :math:`|x| \\ge \\tau`, and only the outlier
    *elements* are left out of each token's absmax (the other entries of an outlier column still count);
    the weights are stored in int8 only, so the outlier columns multiply float inputs by dequantized int8
    weights; and the int32 products are rescaled by the constant 6.200124e-05, not
    :math:`1/127^2 = 6.2000124\\cdot 10^{-5}`, a relative excess of :math:`1.8\\cdot 10^{-5}`. All of the
    int8 matmul runs over the full K (outlier columns zeroed), which ``int8_macs`` counts.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.5, 10.0], [-0.25, 1.0]])
    >>> y, cost = llm_int8_matmul(x, np.eye(2))
    >>> cost["outliers"], bool(np.allclose(y, x, atol=0.01))
    (1, True)
    """
    xa, wa = _check(x, w, threshold, convention)
    (m, k), n = xa.shape, wa.shape[0]
    if convention == "bitsandbytes":
        y, out = _bitsandbytes(xa, wa, float(threshold))
        n_out = int(out.sum())
        return y, {
            "outliers": n_out,
            "float_macs": m * n * n_out,
            "int8_macs": m * n * k,
            "weight_bytes": n * k + 4 * n,
        }
    out = np.abs(xa).max(axis=0) > threshold
    y = xa[:, out] @ wa[:, out].T
    rest = ~out
    if rest.any():
        y = y + w8a8_matmul(xa[:, rest], wa[:, rest])[0]
    n_out = int(out.sum())
    cost = {
        "outliers": n_out,
        "float_macs": m * n * n_out,
        "int8_macs": m * n * (k - n_out),
        "weight_bytes": n * (k - n_out) + 4 * n + 2 * n * n_out,
    }
    return y, cost


def llm_int8_hook(
    threshold: float = 6.0, stats: dict[str, int] | None = None, *, convention: str = "paper"
) -> Callable[..., NDArray[Any]]:
    """A ``linear`` hook running every layer through :func:`llm_int8_matmul`.

    Parameters
    ----------
    threshold : float, default 6.0
        As in :func:`llm_int8_matmul`.
    stats : dict, optional
        If given, the cost counters of every call are added into it.
    convention : {"paper", "bitsandbytes"}, default "paper"
        As in :func:`llm_int8_matmul`.

    Returns
    -------
    callable
        ``linear(name, x, weight, bias) -> y`` in float32.

    Raises
    ------
    ValueError
        On a NaN threshold or an unknown convention.

    Notes
    -----
    Outlier columns are found per call, from the current activations (dynamically, as bitsandbytes does).

    Examples
    --------
    >>> import numpy as np
    >>> hook = llm_int8_hook()
    >>> hook("l", np.ones((1, 2, 3), np.float32), np.eye(3, dtype=np.float32), np.zeros(3, np.float32)).dtype
    dtype('float32')
    """
    _check(np.zeros((1, 1)), np.zeros((1, 1)), threshold, convention)

    def linear(name: str, x: NDArray[Any], weight: NDArray[Any], bias: NDArray[Any]) -> NDArray[Any]:
        y, cost = llm_int8_matmul(x.reshape(-1, x.shape[-1]), weight, threshold, convention=convention)
        if stats is not None:
            for key, val in cost.items():
                stats[key] = stats.get(key, 0) + val
        out: NDArray[Any] = (y.astype(np.float32) + bias).reshape(*x.shape[:-1], -1)
        return out

    return linear
