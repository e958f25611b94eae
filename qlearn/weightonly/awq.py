"""AWQ: activation-aware scaling of input channels before round-to-nearest, and a clipping search.

A linear layer is unchanged if input channel :math:`j` of the weight is multiplied by
:math:`s_j` and the input divided by it: :math:`x W^\\top = (x / s) (W \\operatorname{diag} s)^\\top`.
Rounding error, though, is not: a channel scaled up gets a relatively finer grid, and a channel
whose inputs are large is where that precision pays (Lin et al., 2024). AWQ ties the scales to
the input magnitudes, :math:`s_j = \\overline{|x_j|}^{\\,\\alpha}`, searches
:math:`\\alpha \\in [0, 1)` on a grid for the smallest output error, then searches, group by
group, for the range shrink factor that minimises that group's output error. :math:`1/s` is
folded into whatever produces :math:`x` (a LayerNorm's gain, a previous linear layer) or applied
to :math:`x` on the fly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int, check_bits
from qlearn.weightonly.rtn import GroupQuant, _check_group_size, _check_weight, _check_zero, rtn


@dataclass(frozen=True)
class AWQQuant:
    """A weight quantized after input-channel scaling: :math:`\\hat W = Q(W \\operatorname{diag} s) / s`.

    Parameters
    ----------
    quant : GroupQuant
        Codes and group parameters of the scaled weight :math:`W \\operatorname{diag} s`.
    input_scale : ndarray of float, shape (in,)
        The scales :math:`s` (the layer's input is divided by them).
    alpha : float
        The exponent chosen by the grid search.
    clip : ndarray of float, shape (out, n_groups)
        The range shrink factor chosen for each group (all 1 without the clipping search).

    Notes
    -----
    .. math:: x \\hat W^\\top = (x / s)\\, Q(W \\operatorname{diag} s)^\\top

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> w, x = rng.standard_normal((8, 64)), rng.standard_normal((128, 64))
    >>> aq = awq(w, x, bits=4, group_size=32)
    >>> aq.dequantize().shape, aq.input_scale.shape
    ((8, 64), (64,))
    """

    quant: GroupQuant
    input_scale: NDArray[np.floating[Any]]
    alpha: float
    clip: NDArray[np.floating[Any]]

    def dequantize(self, dtype: Any = np.float32) -> NDArray[np.floating[Any]]:
        """The effective weight :math:`Q(W \\operatorname{diag} s) / s` of shape (out, in)."""
        return (self.quant.dequantize(np.float64) / self.input_scale).astype(dtype)


def activation_scales(x: ArrayLike, alpha: float) -> NDArray[np.float64]:
    """AWQ's input-channel scales :math:`s_j = \\overline{|x_j|}^{\\,\\alpha}`, normalised.

    Parameters
    ----------
    x : array_like of float, shape (..., in)
        Calibration inputs of the layer.
    alpha : float
        Exponent in [0, 1]; 0 gives all ones.

    Returns
    -------
    ndarray of float64, shape (in,)

    Raises
    ------
    TypeError, ValueError
        On non-finite or empty ``x``, or ``alpha`` outside [0, 1].

    Notes
    -----
    .. math:: s_j = \\frac{m_j^\\alpha}{\\sqrt{\\max_k m_k^\\alpha \\, \\min_k m_k^\\alpha}},
              \\qquad m_j = \\max\\big(\\tfrac1N \\textstyle\\sum_t |x_{tj}|,\\ 10^{-4}\\big)

    The normalisation centres the scales around 1 in the geometric sense; it changes nothing
    but the size of the numbers.

    Examples
    --------
    >>> activation_scales([[1.0, 4.0], [-1.0, -4.0]], alpha=0.5)
    array([0.70710678, 1.41421356])
    """
    arr = as_float_array(x, "x")
    if arr.ndim == 0:
        raise ValueError("x must have at least one dimension (rows, in); got a scalar")
    a = float(alpha)
    if not 0 <= a <= 1:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha!r}")
    m = np.maximum(np.abs(arr.reshape(-1, arr.shape[-1])).mean(axis=0, dtype=np.float64), 1e-4)  # (in,)
    s = m**a
    result: NDArray[np.float64] = s / np.sqrt(s.max() * s.min())
    return result


def scale_layer(
    w: ArrayLike, x: ArrayLike, s: ArrayLike
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
    """The equivalent layer :math:`(W \\operatorname{diag} s,\\ x / s)` with the same output.

    Parameters
    ----------
    w : array_like of float, shape (out, in)
    x : array_like of float, shape (..., in)
    s : array_like of float, shape (in,)
        Positive scales.

    Returns
    -------
    w_scaled, x_scaled : ndarray

    Raises
    ------
    TypeError, ValueError
        On mismatched shapes or non-positive scales.

    Notes
    -----
    .. math:: (x / s)(W \\operatorname{diag} s)^\\top = x W^\\top

    Examples
    --------
    >>> import numpy as np
    >>> w, x = np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]])
    >>> ws, xs = scale_layer(w, x, [2.0, 0.5])
    >>> ws, xs, xs @ ws.T
    (array([[2., 1.]]), array([[1.5, 8. ]]), array([[11.]]))
    """
    wa = _check_weight(w)
    xa = as_float_array(x, "x")
    sa = as_float_array(s, "s")
    if sa.shape != (wa.shape[1],) or xa.ndim == 0 or xa.shape[-1] != wa.shape[1]:
        raise ValueError(
            f"s must have shape ({wa.shape[1]},) and x a last axis of {wa.shape[1]} for w of shape {wa.shape}; "
            f"got s {sa.shape}, x {xa.shape}"
        )
    if np.any(sa <= 0):
        raise ValueError(f"s must be positive; got minimum {sa.min()}")
    return wa * sa, xa / sa


def _output_error(gram: NDArray[np.float64], delta: NDArray[np.float64]) -> NDArray[np.float64]:
    # row i: delta_i^T G delta_i = |X delta_i|^2 / N for G = X^T X / N
    out: NDArray[np.float64] = np.einsum("ij,ij->i", delta @ gram, delta)
    return out


def awq(
    w: ArrayLike,
    x: ArrayLike,
    bits: int = 4,
    group_size: int | None = 128,
    *,
    zero: str = "int",
    n_grid: int = 20,
    clip_search: bool = True,
    max_shrink: float = 0.5,
    alpha: float | None = None,
) -> AWQQuant:
    """Activation-aware weight quantization of one linear layer.

    Parameters
    ----------
    w : array_like of float, shape (out, in)
        Weights, not modified.
    x : array_like of float, shape (N, in)
        Calibration inputs of the layer.
    bits, group_size, zero
        As in :func:`rtn`.
    n_grid : int, default 20
        Grid of exponents :math:`\\alpha = k / n_{grid}`, :math:`k = 0, \\dots, n_{grid} - 1`, and
        of shrink factors :math:`1 - k / n_{grid}`.
    clip_search : bool, default True
        Search a range shrink factor per (row, group) after scaling.
    max_shrink : float, default 0.5
        Largest fraction of the range the clipping search may cut off, in [0, 1).
    alpha : float, optional
        Use this exponent instead of searching (``alpha=0`` is RTN, with the clipping search if on).

    Returns
    -------
    AWQQuant

    Raises
    ------
    TypeError, ValueError
        On mismatched shapes, non-finite input, or a bad ``n_grid``, ``max_shrink`` or ``alpha``.

    Notes
    -----
    .. math:: \\alpha^\\star = \\arg\\min_\\alpha \\big\\lVert x W^\\top - (x/s_\\alpha)\\,
              Q(W \\operatorname{diag} s_\\alpha)^\\top \\big\\rVert^2

    then, for every row :math:`i` and group :math:`g`, the factor :math:`r` that minimises
    :math:`\\lVert x'_g (w'_{ig} - Q_r(w'_{ig}))^\\top \\rVert^2` with :math:`x' = x/s`, :math:`w' = W
    \\operatorname{diag} s` and :math:`Q_r` fitted to the range shrunk by :math:`r`.

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn.weightonly import rtn
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((16, 64))
    >>> x = rng.standard_normal((256, 64)) * rng.lognormal(0, 1, 64)
    >>> def err(wh): return float(np.mean((x @ (w - wh).T) ** 2))
    >>> aq = awq(w, x, bits=3, group_size=32)
    >>> bool(err(aq.dequantize(np.float64)) < err(rtn(w, 3, 32).dequantize(np.float64)))
    True
    """
    wa = _check_weight(w).astype(np.float64)
    xa = as_float_array(x, "x").astype(np.float64)
    if xa.ndim != 2 or xa.shape[1] != wa.shape[1]:
        raise ValueError(f"x must have shape (N, {wa.shape[1]}) for w of shape {wa.shape}; got {xa.shape}")
    bits = check_bits(bits)
    gs = _check_group_size(group_size, wa.shape[1])
    kind = _check_zero(zero)
    grid = as_int(n_grid, "n_grid")
    if grid < 1:
        raise ValueError(f"n_grid must be a positive integer; got {grid}")
    if not 0 <= float(max_shrink) < 1:
        raise ValueError(f"max_shrink must lie in [0, 1); got {max_shrink!r}")

    def quantized(s: NDArray[np.float64], clip: ArrayLike = 1.0) -> tuple[GroupQuant, NDArray[np.float64]]:
        gq = rtn(wa * s, bits, gs, zero=kind, clip=clip)
        return gq, gq.dequantize(np.float64) / s

    gram = xa.T @ xa / xa.shape[0]  # (in, in): every output error below is a quadratic form in it
    alphas = [float(alpha)] if alpha is not None else [k / grid for k in range(grid)]
    errors = [_output_error(gram, wa - quantized(activation_scales(xa, a))[1]).sum() for a in alphas]
    best = alphas[int(np.argmin(errors))]
    s = activation_scales(xa, best)
    n_out, n_groups = wa.shape[0], wa.shape[1] // gs
    ratio = np.ones((n_out, n_groups))
    if clip_search:
        ws = wa * s  # (out, in), the scaled weight; its inputs are x / s, with Gram matrix G / (s s^T)
        gram_s = gram / np.outer(s, s)
        best_err = np.full((n_out, n_groups), np.inf)
        for k in range(int(max_shrink * grid) + 1):
            r = 1 - k / grid
            delta = ws - rtn(ws, bits, gs, zero=kind, clip=r).dequantize(np.float64)  # (out, in)
            cols = [slice(g * gs, (g + 1) * gs) for g in range(n_groups)]
            err = np.stack([_output_error(gram_s[c, c], delta[:, c]) for c in cols], axis=1)  # (out, n_groups)
            better = err < best_err
            ratio[better], best_err[better] = r, err[better]
    gq, _ = quantized(s, ratio)
    return AWQQuant(gq, s, best, ratio)


__all__ = ["AWQQuant", "activation_scales", "awq", "scale_layer"]
