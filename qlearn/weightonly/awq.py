"""AWQ: activation-aware scaling of input channels before round-to-nearest, and a clipping search.

A linear layer is unchanged if input channel :math:`j` of the weight is multiplied by
:math:`s_j` and the input divided by it: :math:`x W^\\top = (x / s) (W \\operatorname{diag} s)^\\top`.
Rounding error, though, is not: a channel scaled up gets a relatively finer grid, and a channel
whose inputs are large is where that precision pays (Lin et al., 2024). AWQ ties the scales to
the input magnitudes, :math:`s_j = \\overline{|x_j|}^{\\,\\alpha}` (or, in the "duo" form of later
AWQ code, also to the weight magnitudes), and searches :math:`\\alpha \\in [0, 1)` on a grid for the
smallest output error. Every candidate :math:`\\alpha` is judged after its own clipping search, which
picks, group by group, how far to pull in each end of the range; so the exponent is chosen for the
quantizer that is returned. :math:`1/s` is folded into whatever produces :math:`x` (a LayerNorm's
gain, a previous linear layer) or applied to :math:`x` on the fly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int, check_bits
from qlearn.weightonly.rtn import GroupQuant, _check_group_size, _check_weight, _check_zero, rtn

SCALINGS = ("activation", "duo")
CLIP_ENDS = ("shared", "separate")


@dataclass(frozen=True)
class AWQQuant:
    """A weight quantized after input-channel scaling: :math:`\\hat W = Q(W \\operatorname{diag} s) / s`.

    Parameters
    ----------
    quant : GroupQuant
        Codes and group parameters of the scaled (and clipped) weight :math:`W \\operatorname{diag} s`.
    input_scale : ndarray of float, shape (in,)
        The scales :math:`s` (the layer's input is divided by them).
    alpha : float
        The exponent chosen by the grid search.
    clip : ndarray of float, shape (out, n_groups, 2)
        The factors by which the clipping search pulled in the lower and the upper end of each
        group's range (all 1 without the clipping search).

    Notes
    -----
    .. math:: x \\hat W^\\top = (x / s)\\, Q(W \\operatorname{diag} s)^\\top

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> w, x = rng.standard_normal((8, 64)), rng.standard_normal((128, 64))
    >>> aq = awq(w, x, bits=4, group_size=32)
    >>> aq.dequantize().shape, aq.input_scale.shape, aq.clip.shape
    ((8, 64), (64,), (8, 2, 2))
    """

    quant: GroupQuant
    input_scale: NDArray[np.floating[Any]]
    alpha: float
    clip: NDArray[np.floating[Any]]

    def dequantize(self, dtype: Any = np.float32) -> NDArray[np.floating[Any]]:
        """The effective weight :math:`Q(W \\operatorname{diag} s) / s` of shape (out, in)."""
        return (self.quant.dequantize(np.float64) / self.input_scale).astype(dtype)


def _relative_weight_magnitude(w: NDArray[np.float64], gs: int) -> NDArray[np.float64]:
    """Mean over rows of :math:`|w_{ij}|` divided by the largest :math:`|w|` of its (row, group); (in,)."""
    groups = np.abs(w).reshape(w.shape[0], -1, gs)  # (out, n_groups, group_size)
    peak = np.maximum(groups.max(axis=-1, keepdims=True), np.finfo(np.float64).tiny)  # (out, n_groups, 1)
    rel: NDArray[np.float64] = (groups / peak).reshape(w.shape).mean(axis=0)  # (in,)
    return rel


def activation_scales(
    x: ArrayLike, alpha: float, *, w: ArrayLike | None = None, group_size: int | None = None
) -> NDArray[np.float64]:
    """AWQ's input-channel scales :math:`s_j = \\overline{|x_j|}^{\\,\\alpha}` (or the "duo" form), normalised.

    Parameters
    ----------
    x : array_like of float, shape (..., in)
        Calibration inputs of the layer.
    alpha : float
        Exponent in [0, 1]; 0 gives all ones when ``w`` is not given.
    w : array_like of float, shape (out, in), optional
        The layer's weight: if given, the scales also divide by the weights' relative size
        (the "duo" form, see Notes).
    group_size : int or None, optional
        Columns per quantization group of ``w`` (``None``: one group per row); only with ``w``.

    Returns
    -------
    ndarray of float64, shape (in,)

    Raises
    ------
    TypeError, ValueError
        On non-finite or empty ``x``, ``alpha`` outside [0, 1], a ``w`` whose input width is not
        ``x``'s, or a ``group_size`` that does not divide it.

    Notes
    -----
    With :math:`m_j = \\max\\big(\\tfrac1N \\textstyle\\sum_t |x_{tj}|,\\ 10^{-4}\\big)`,

    .. math:: u_j = m_j^\\alpha \\quad\\text{or, with } w, \\quad
              u_j = \\max\\Big(\\frac{m_j^\\alpha}{\\max(v_j, 10^{-4})^{1-\\alpha}},\\ 10^{-4}\\Big),
              \\qquad s_j = \\frac{u_j}{\\sqrt{\\max_k u_k \\, \\min_k u_k}},

    where :math:`v_j` is the mean over rows :math:`i` of :math:`|w_{ij}|` divided by the largest
    :math:`|w|` in the group of row :math:`i` that holds column :math:`j`. Dividing by :math:`v_j`
    shrinks the columns whose weights are large within their groups (they set the groups' ranges),
    which frees range for the others. The normalisation centres the scales around 1 in the geometric
    sense; it changes nothing but the size of the numbers.

    Examples
    --------
    >>> activation_scales([[1.0, 4.0], [-1.0, -4.0]], alpha=0.5)
    array([0.70710678, 1.41421356])
    >>> activation_scales([[1.0, 1.0]], alpha=0.0, w=[[1.0, 4.0]])  # weights 1/4 and 1 of the peak
    array([2. , 0.5])
    """
    arr = as_float_array(x, "x")
    if arr.ndim == 0:
        raise ValueError("x must have at least one dimension (rows, in); got a scalar")
    a = float(alpha)
    if not 0 <= a <= 1:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha!r}")
    m = np.maximum(np.abs(arr.reshape(-1, arr.shape[-1])).mean(axis=0, dtype=np.float64), 1e-4)  # (in,)
    if w is None:
        if group_size is not None:
            raise ValueError(f"group_size is used only with w (the duo form); got group_size={group_size!r}, w=None")
        u = m**a
    else:
        wa = _check_weight(w).astype(np.float64)
        if wa.shape[1] != m.shape[0]:
            raise ValueError(f"w must have {m.shape[0]} input columns, as x has; got w of shape {wa.shape}")
        v = _relative_weight_magnitude(wa, _check_group_size(group_size, wa.shape[1]))
        u = np.maximum(m**a / np.maximum(v, 1e-4) ** (1 - a), 1e-4)
    result: NDArray[np.float64] = u / np.sqrt(u.max() * u.min())
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


def _clipped_rtn(ws: NDArray[np.float64], ends: NDArray[np.float64], bits: int, gs: int, kind: str) -> GroupQuant:
    """RTN of ``ws`` after clamping each (row, group) to its range with the ends pulled in by ``ends``."""
    groups = ws.reshape(ws.shape[0], -1, gs)  # (out, n_groups, group_size)
    lo = groups.min(axis=-1) * ends[..., 0]  # (out, n_groups)
    hi = groups.max(axis=-1) * ends[..., 1]  # (out, n_groups)
    clamped = np.clip(groups, lo[..., None], hi[..., None]).reshape(ws.shape)  # (out, in)
    return rtn(clamped, bits, gs, zero=kind)


def _clip_search(
    ws: NDArray[np.float64],
    gram_s: NDArray[np.float64],
    bits: int,
    gs: int,
    kind: str,
    factors: list[float],
    separate: bool,
) -> NDArray[np.float64]:
    """Ends factors (out, n_groups, 2) that minimise each (row, group)'s own output error."""
    n_out, n_groups = ws.shape[0], ws.shape[1] // gs
    idx = np.arange(n_groups)
    blocks = gram_s.reshape(n_groups, gs, n_groups, gs)[idx, :, idx, :]  # (n_groups, gs, gs) diagonal blocks
    pairs = [(lo, hi) for lo in factors for hi in factors] if separate else [(r, r) for r in factors]
    best = np.ones((n_out, n_groups, 2))
    best_err = np.full((n_out, n_groups), np.inf)
    for lo, hi in pairs:
        ends = np.broadcast_to(np.array([lo, hi]), (n_out, n_groups, 2))
        delta = (ws - _clipped_rtn(ws, ends, bits, gs, kind).dequantize(np.float64)).reshape(n_out, n_groups, gs)
        err = np.einsum("igj,gjk,igk->ig", delta, blocks, delta)  # (out, n_groups)
        better = err < best_err
        best[better], best_err[better] = (lo, hi), err[better]
    return best


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
    scaling: str = "duo",
    clip_ends: str = "separate",
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
        Search how far to pull in the ends of each (row, group)'s range after scaling; every
        candidate exponent is judged with its own clipping search.
    max_shrink : float, default 0.5
        Largest fraction of an end the clipping search may cut off, in [0, 1).
    alpha : float, optional
        Use this exponent instead of searching (with ``scaling="activation"``, ``alpha=0`` is RTN,
        with the clipping search if on).
    scaling : {"duo", "activation"}, default "duo"
        ``"activation"``: :math:`s_j = \\overline{|x_j|}^{\\alpha}` (the AWQ paper);
        ``"duo"``: also divided by the weights' relative size to the power :math:`1 - \\alpha`
        (see :func:`activation_scales`).
    clip_ends : {"separate", "shared"}, default "separate"
        ``"shared"``: one factor pulls in both ends of a group's range (the AWQ reference);
        ``"separate"``: the lower and the upper end get a factor each, searched on the grid of pairs
        (an extension of ours, not in the AWQ paper or its code; OmniQuant learns two such bounds).

    Returns
    -------
    AWQQuant

    Raises
    ------
    TypeError, ValueError
        On mismatched shapes, non-finite input, or a bad ``n_grid``, ``max_shrink``, ``alpha``,
        ``scaling`` or ``clip_ends``.

    Notes
    -----
    For each :math:`\\alpha` on the grid, with :math:`s = s_\\alpha`, :math:`w' = W \\operatorname{diag} s`
    and :math:`x' = x / s`, the clipping search picks for every row :math:`i` and group :math:`g` the
    factors :math:`(r_{lo}, r_{hi})` that minimise :math:`\\lVert x'_g (w'_{ig} - Q_r(w'_{ig}))^\\top
    \\rVert^2`, where :math:`Q_r` rounds :math:`w'_{ig}` clamped to :math:`[r_{lo} \\min w'_{ig},\\
    r_{hi} \\max w'_{ig}]`. Then

    .. math:: \\alpha^\\star = \\arg\\min_\\alpha \\big\\lVert x W^\\top - (x/s_\\alpha)\\,
              Q_{r(\\alpha)}(W \\operatorname{diag} s_\\alpha)^\\top \\big\\rVert^2 .

    Choosing :math:`\\alpha` without the clipping and clipping afterwards (as the AWQ reference does)
    can return a worse pair than no scaling at all with clipping.

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
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {', '.join(map(repr, SCALINGS))}; got {scaling!r}")
    if clip_ends not in CLIP_ENDS:
        raise ValueError(f"clip_ends must be one of {', '.join(map(repr, CLIP_ENDS))}; got {clip_ends!r}")
    alphas = [float(alpha)] if alpha is not None else [k / grid for k in range(grid)]
    duo = scaling == "duo"
    scales = [activation_scales(xa, a, w=wa, group_size=gs) if duo else activation_scales(xa, a) for a in alphas]
    factors = [1 - k / grid for k in range(int(float(max_shrink) * grid) + 1)] if clip_search else [1.0]
    n_out, n_groups = wa.shape[0], wa.shape[1] // gs

    gram = xa.T @ xa / xa.shape[0]  # (in, in): every output error below is a quadratic form in it
    candidates = []  # (layer error, ends, quant) for each exponent
    for s in scales:
        ws = wa * s  # (out, in), the scaled weight; its inputs are x / s, with Gram matrix G / (s s^T)
        if clip_search:
            ends = _clip_search(ws, gram / np.outer(s, s), bits, gs, kind, factors, clip_ends == "separate")
        else:
            ends = np.ones((n_out, n_groups, 2))
        gq = _clipped_rtn(ws, ends, bits, gs, kind)
        candidates.append((float(_output_error(gram, wa - gq.dequantize(np.float64) / s).sum()), ends, gq))
    k = int(np.argmin([c[0] for c in candidates]))  # ties go to the smaller exponent
    return AWQQuant(candidates[k][2], scales[k], alphas[k], candidates[k][1])


__all__ = ["AWQQuant", "activation_scales", "awq", "scale_layer"]
