"""SmoothQuant: migrate activation range into the weights, folded into the preceding LayerNorm."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn.lm import Transformer

__all__ = ["smooth_model", "smoothing_factors"]

_PAIRS = (("ln1", "attn.qkv"), ("ln2", "mlp.fc1"))


def smoothing_factors(
    act_max: ArrayLike, weight: ArrayLike, alpha: float = 0.5, eps: float = 1e-5
) -> NDArray[np.float64]:
    """Per-input-channel factors ``s_j = max|X_j|**alpha / max|W_j|**(1 - alpha)``.

    Parameters
    ----------
    act_max : array_like of float, shape (K,)
        ``max_t |X[t, j]|`` from calibration.
    weight : array_like of float, shape (N, K)
        The layer's weight (or several stacked along axis 0 when one LayerNorm feeds them).
    alpha : float, default 0.5
        Migration strength in [0, 1]: 0 leaves activations alone, 1 moves all range into the weights.
    eps : float, default 1e-5
        Floor on both maxima, so dead channels give finite factors.

    Returns
    -------
    ndarray of float64, shape (K,)
        Positive factors; the layer computes ``(X / s) @ (W * s).T``.

    Raises
    ------
    ValueError
        On alpha outside [0, 1], shapes that do not match, or negative / non-finite maxima.

    Notes
    -----
    After smoothing, :math:`\\max|X_j/s_j| = \\max|X_j|^{1-\\alpha}\\max|W_j|^{1-\\alpha}` and
    :math:`\\max|W_j s_j| = \\max|X_j|^{\\alpha}\\max|W_j|^{\\alpha}` (Xiao et al. 2023):
    at :math:`\\alpha = 1/2` both equal :math:`\\sqrt{\\max|X_j|\\max|W_j|}`.

    Examples
    --------
    >>> smoothing_factors([4.0, 1.0], [[1.0, 1.0]], alpha=0.5)
    array([2., 1.])
    """
    a = np.asarray(act_max, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}")
    if a.ndim != 1 or w.ndim != 2 or w.shape[1] != a.shape[0]:
        raise ValueError(f"need act_max (K,) and weight (N, K); got shapes {a.shape} and {w.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or not np.all(np.isfinite(w)):
        raise ValueError("act_max must be finite and >= 0 and weight finite")
    wmax = np.maximum(np.abs(w).max(axis=0), eps)
    s: NDArray[np.float64] = np.maximum(a, eps) ** alpha / wmax ** (1.0 - alpha)
    return s


def smooth_model(model: Transformer, act_max: Mapping[str, ArrayLike], alpha: float = 0.5) -> Transformer:
    """Fold SmoothQuant factors into each block's LayerNorms and the linear layers they feed.

    Parameters
    ----------
    model : Transformer
        The float model (not modified).
    act_max : mapping of str to array_like, shape (d_model,)
        Input ranges of ``blocks.{i}.attn.qkv`` and ``blocks.{i}.mlp.fc1``, e.g. from
        :func:`qlearn.activations.channel_ranges`.
    alpha : float, default 0.5
        As in :func:`smoothing_factors`.

    Returns
    -------
    Transformer
        Same float function: LayerNorm ``gamma, beta`` divided by ``s``, weight input columns times ``s``.

    Raises
    ------
    ValueError
        If a needed range is missing or as in :func:`smoothing_factors`.

    Notes
    -----
    :math:`(\\gamma \\hat x + \\beta)/s \\cdot (W\\operatorname{diag}(s))^T = (\\gamma\\hat x + \\beta) W^T`.
    Only ``qkv`` and ``fc1`` follow a LayerNorm; ``attn.proj`` and ``mlp.fc2`` (after attention and GELU)
    and ``head`` (after ``ln_f``, shared with nothing) could be smoothed too, the last by folding into
    ``ln_f``; we keep to the two pairs of the paper.

    Examples
    --------
    >>> import numpy as np, qlearn as ql
    >>> from qlearn.activations import channel_ranges
    >>> m = ql.lm.Transformer.initialize(ql.lm.LMConfig(vocab_size=5, d_model=8, n_layers=1, n_heads=2,
    ...                                                  d_ff=16, context=4))
    >>> sm = smooth_model(m, channel_ranges(m, [[0, 1, 2]]))
    >>> bool(np.allclose(m.forward([[0, 1, 2]]), sm.forward([[0, 1, 2]]), atol=1e-5))
    True
    """
    p = model.params
    new: dict[str, NDArray[np.float64]] = {}
    for i in range(model.config.n_layers):
        for ln, lin in _PAIRS:
            b = f"blocks.{i}."
            if b + lin not in act_max:
                raise ValueError(f"act_max has no entry for {b + lin!r}")
            w = p[b + lin + ".weight"].astype(np.float64)
            s = smoothing_factors(act_max[b + lin], w, alpha)
            new[b + ln + ".weight"] = p[b + ln + ".weight"] / s
            new[b + ln + ".bias"] = p[b + ln + ".bias"] / s
            new[b + lin + ".weight"] = w * s[None, :]
    return model.with_params(new)
