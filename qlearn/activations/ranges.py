"""Per-channel activation ranges at every linear input of the transformer, and an outlier injection."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn.lm import Transformer

__all__ = ["channel_ranges", "inject_outliers", "outlier_ratio"]


def channel_ranges(model: Transformer, tokens: ArrayLike) -> dict[str, NDArray[np.float64]]:
    """Largest magnitude of every input channel of every linear layer, over ``tokens``.

    Parameters
    ----------
    model : Transformer
        The float model.
    tokens : array_like of int, shape (B, T)
        Calibration token ids.

    Returns
    -------
    dict of str to ndarray of float64, shape (in,)
        ``max_t |X[t, j]|`` for each linear name.

    Raises
    ------
    TypeError
        If ``model`` is not a :class:`~qlearn.lm.Transformer`.

    Notes
    -----
    :math:`r_j = \\max_t |X_{tj}|`, the quantity per-tensor scales are set from (its maximum over
    :math:`j`) and SmoothQuant migrates.

    Examples
    --------
    >>> import qlearn as ql
    >>> m = ql.lm.Transformer.initialize(ql.lm.LMConfig(vocab_size=5, d_model=8, n_layers=1, n_heads=2,
    ...                                                  d_ff=16, context=4))
    >>> r = channel_ranges(m, [[0, 1, 2, 3]])
    >>> r["blocks.0.mlp.fc2"].shape
    (16,)
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"model must be a qlearn.lm.Transformer; got {type(model).__name__}")
    xs = model.capture_inputs(tokens)
    return {name: np.abs(x.astype(np.float64)).max(axis=0) for name, x in xs.items()}


def outlier_ratio(ranges: ArrayLike) -> float:
    """Largest channel range divided by the median channel range.

    Parameters
    ----------
    ranges : array_like of float, shape (C,)
        Non-negative per-channel ranges, for instance one entry of :func:`channel_ranges`.

    Returns
    -------
    float
        ``max / median``; 1 when all channels are alike, tens in models with outlier channels.

    Raises
    ------
    ValueError
        If ``ranges`` is not a non-empty 1-D array of finite non-negative values with a positive median.

    Notes
    -----
    :math:`\\rho = \\max_j r_j / \\operatorname{median}_j r_j`. A per-tensor scale wastes about
    :math:`\\log_2 \\rho` bits on the typical channel.

    Examples
    --------
    >>> outlier_ratio([1.0, 2.0, 3.0])
    1.5
    """
    r = np.asarray(ranges, dtype=np.float64)
    if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError(f"ranges must be a non-empty 1-D array of finite values >= 0; got shape {r.shape}")
    med = float(np.median(r))
    if med <= 0:
        raise ValueError(f"the median range must be positive to form a ratio; got {med}")
    return float(r.max() / med)


def inject_outliers(
    model: Transformer,
    channels: Sequence[int],
    factor: float,
    *,
    layers: Sequence[int] | None = None,
    norms: Sequence[str] = ("ln1", "ln2"),
) -> Transformer:
    """The same float function with outlier channels in the LayerNorm outputs (a controlled experiment).

    Parameters
    ----------
    model : Transformer
        The float model (not modified).
    channels : sequence of int
        Model-dimension channels to blow up.
    factor : float
        Positive factor; LayerNorm ``gamma`` and ``beta`` of those channels are multiplied by it and the
        following linear layer's input columns divided by it.
    layers : sequence of int, optional
        Blocks to change; all by default.
    norms : sequence of {"ln1", "ln2"}, default both
        ``ln1`` feeds ``attn.qkv``, ``ln2`` feeds ``mlp.fc1``.

    Returns
    -------
    Transformer
        A new model whose logits equal the original's up to float32 rounding.

    Raises
    ------
    ValueError
        On a non-positive or non-finite factor, a channel or layer out of range, or an unknown norm.

    Notes
    -----
    LayerNorm output :math:`h_j = \\gamma_j \\hat x_j + \\beta_j` feeds :math:`y = h W^T`; with
    :math:`\\gamma_j, \\beta_j \\to c\\gamma_j, c\\beta_j` and :math:`W_{:j} \\to W_{:j}/c`, :math:`y` is
    unchanged while :math:`\\max|h_j|` grows :math:`c`-fold. Trained LLMs develop such channels by
    themselves (Dettmers et al. 2022); this reproduces their effect on quantization, not their cause.

    Examples
    --------
    >>> import numpy as np, qlearn as ql
    >>> m = ql.lm.Transformer.initialize(ql.lm.LMConfig(vocab_size=5, d_model=8, n_layers=1, n_heads=2,
    ...                                                  d_ff=16, context=4))
    >>> m2 = inject_outliers(m, [3], 20.0)
    >>> bool(np.allclose(m.forward([[0, 1, 2]]), m2.forward([[0, 1, 2]]), atol=1e-4))
    True
    """
    cfg = model.config
    c = float(factor)
    if not np.isfinite(c) or c <= 0:
        raise ValueError(f"factor must be positive and finite; got {factor}")
    ch = [int(j) for j in channels]
    if any(j < 0 or j >= cfg.d_model for j in ch):
        raise ValueError(f"channels must lie in [0, {cfg.d_model}); got {ch}")
    lay = list(range(cfg.n_layers)) if layers is None else [int(i) for i in layers]
    if any(i < 0 or i >= cfg.n_layers for i in lay):
        raise ValueError(f"layers must lie in [0, {cfg.n_layers}); got {lay}")
    target = {"ln1": "attn.qkv", "ln2": "mlp.fc1"}
    if any(n not in target for n in norms):
        raise ValueError(f"norms must be among {sorted(target)}; got {list(norms)}")
    p = model.params
    new: dict[str, NDArray[np.float32]] = {}
    for i in lay:
        for n in norms:
            b = f"blocks.{i}."
            g, be = p[b + n + ".weight"].copy(), p[b + n + ".bias"].copy()
            w = p[b + target[n] + ".weight"].copy()
            g[ch] *= c
            be[ch] *= c
            w[:, ch] /= c
            new.update({b + n + ".weight": g, b + n + ".bias": be, b + target[n] + ".weight": w})
    return model.with_params(new)
