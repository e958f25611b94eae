"""LLM.int8(): outlier input columns in float, the rest in int8 with per-token x per-channel scales."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn.activations.w8a8 import w8a8_matmul

__all__ = ["llm_int8_hook", "llm_int8_matmul"]


def llm_int8_matmul(x: ArrayLike, w: ArrayLike, threshold: float = 6.0) -> tuple[NDArray[np.float64], dict[str, int]]:
    """``x @ w.T`` decomposed: columns with any ``|x| > threshold`` in float, the others in int8.

    Parameters
    ----------
    x : array_like of float, shape (M, K)
        Activations.
    w : array_like of float, shape (N, K)
        Weights.
    threshold : float, default 6.0
        Magnitude above which an input column counts as an outlier (Dettmers et al. 2022);
        ``inf`` quantizes everything, a negative value keeps everything in float.

    Returns
    -------
    y : ndarray of float64, shape (M, N)
        Float part plus the rescaled int8 part.
    cost : dict of str to int
        ``outliers`` (columns kept in float), ``float_macs`` and ``int8_macs`` (multiply-adds),
        ``weight_bytes`` (int8 codes + float32 scales + the outlier columns in float16).

    Raises
    ------
    ValueError
        On shapes that do not chain or a NaN threshold.

    Notes
    -----
    :math:`O = \\{k : \\max_t |X_{tk}| > \\tau\\}`,
    :math:`Y = X_{:,O} W_{:,O}^T + s^x s^{wT} \\odot (Q^x_{:,\\bar O} Q^{wT}_{\\bar O,:})`.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.5, 10.0], [-0.25, 1.0]])
    >>> y, cost = llm_int8_matmul(x, np.eye(2))
    >>> cost["outliers"], bool(np.allclose(y, x, atol=0.01))
    (1, True)
    """
    xa, wa = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    if xa.ndim != 2 or wa.ndim != 2 or xa.shape[1] != wa.shape[1]:
        raise ValueError(f"need x (M, K) and w (N, K); got shapes {xa.shape} and {wa.shape}")
    if np.isnan(threshold):
        raise ValueError("threshold must be a number; got NaN")
    (m, k), n = xa.shape, wa.shape[0]
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


def llm_int8_hook(threshold: float = 6.0, stats: dict[str, int] | None = None) -> Callable[..., NDArray[Any]]:
    """A ``linear`` hook running every layer through :func:`llm_int8_matmul`.

    Parameters
    ----------
    threshold : float, default 6.0
        As in :func:`llm_int8_matmul`.
    stats : dict, optional
        If given, the cost counters of every call are added into it.

    Returns
    -------
    callable
        ``linear(name, x, weight, bias) -> y`` in float32.

    Raises
    ------
    ValueError
        On a NaN threshold.

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
    if np.isnan(threshold):
        raise ValueError("threshold must be a number; got NaN")

    def linear(name: str, x: NDArray[Any], weight: NDArray[Any], bias: NDArray[Any]) -> NDArray[Any]:
        y, cost = llm_int8_matmul(x.reshape(-1, x.shape[-1]), weight, threshold)
        if stats is not None:
            for key, val in cost.items():
                stats[key] = stats.get(key, 0) + val
        out: NDArray[Any] = (y.astype(np.float32) + bias).reshape(*x.shape[:-1], -1)
        return out

    return linear
