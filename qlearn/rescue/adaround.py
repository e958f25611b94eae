"""AdaRound: learn whether each weight rounds up or down, layer by layer, from calibration data."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int
from qlearn.nn import MLP, Linear
from qlearn.primitives import fake_quantize
from qlearn.qparams import QParams
from qlearn.rescue._checks import check_folded_mlp

__all__ = ["AdaRoundResult", "adaround", "adaround_layer", "rectified_sigmoid"]

ZETA, GAMMA = 1.1, -0.1  # stretch of the rectified sigmoid (Louizos et al. 2018; Nagel et al. 2020)
F64 = NDArray[np.float64]


def rectified_sigmoid(v: ArrayLike) -> F64:
    """The soft rounding decision :math:`h(V) = \\operatorname{clip}(\\sigma(V)(\\zeta - \\gamma) + \\gamma, 0, 1)`.

    Parameters
    ----------
    v : array_like of float

    Returns
    -------
    ndarray of float64
        Values in [0, 1]; exactly 0 or 1 once :math:`|V|` is large (:math:`\\ln 11 \\approx 2.4`).

    Notes
    -----
    :math:`\\zeta = 1.1`, :math:`\\gamma = -0.1`. Unlike a plain sigmoid it reaches 0 and 1,
    so the regulariser can push every decision to a hard one.

    Examples
    --------
    >>> rectified_sigmoid([-5.0, 0.0, 5.0]).round(6).tolist()
    [0.0, 0.5, 1.0]
    """
    x = as_float_array(v, "v").astype(np.float64)
    return np.clip(1 / (1 + np.exp(-x)) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


@dataclass(frozen=True)
class AdaRoundResult:
    """What :func:`adaround_layer` learned (it builds these; there is no reason to make one by hand).

    Parameters
    ----------
    W : ndarray of float64, shape (in, out)
        Quantized weights, on the grid of ``qp``.
    up : ndarray of bool, shape (in, out)
        The rounding decisions: round :math:`W/s` up (True) or down.
    error, rtn_error : float
        Reconstruction error :math:`\\|\\tilde X \\hat W - Y\\|_F^2 / n` with the learned and
        the round-to-nearest weights.
    used_rtn : bool
        True if round-to-nearest was better and is what ``W`` holds.

    Examples
    --------
    >>> import numpy as np
    >>> r = AdaRoundResult(np.zeros((1, 1)), np.zeros((1, 1), bool), 0.0, 0.0, True)
    >>> r.used_rtn
    True
    """

    W: F64
    up: NDArray[np.bool_]
    error: float
    rtn_error: float
    used_rtn: bool


def adaround_layer(
    W: ArrayLike,
    X: ArrayLike,
    Y: ArrayLike,
    qp: QParams,
    *,
    iterations: int = 1000,
    reg: float = 0.01,
    beta: tuple[float, float] = (20.0, 2.0),
    warmup: float = 0.2,
    lr: float = 0.01,
) -> AdaRoundResult:
    """Choose the rounding of one layer's weights to reproduce its outputs (Nagel et al. 2020).

    Parameters
    ----------
    W : array_like of float, shape (in, out)
        Float weights.
    X : array_like of float, shape (n, in)
        The layer's inputs in the (partly) quantized network.
    Y : array_like of float, shape (n, out)
        Target outputs before the bias, usually the float network's ``x @ W``.
    qp : QParams
        Weight quantization parameters (per tensor, or per axis 1).
    iterations : int, default 1000
        Adam steps on the full batch.
    reg : float, default 0.01
        Weight :math:`\\lambda` of the rounding regulariser.
    beta : (float, float), default (20, 2)
        Start and end of the annealed exponent :math:`\\beta`.
    warmup : float, default 0.2
        Fraction of the iterations without the regulariser.
    lr : float, default 0.01
        Adam step size on :math:`V`.

    Returns
    -------
    AdaRoundResult

    Raises
    ------
    TypeError, ValueError
        On bad shapes, non-finite data or settings out of range.

    Notes
    -----
    With :math:`\\hat W(V) = s\\,\\operatorname{clamp}(\\lfloor W/s \\rfloor + h(V), q_{min}, q_{max})`
    (see :func:`rectified_sigmoid`), minimise

    .. math:: \\frac{1}{n}\\|\\tilde X \\hat W(V) - Y\\|_F^2
              + \\lambda \\sum_{ij} \\left(1 - |2h(V_{ij}) - 1|^\\beta\\right)

    while :math:`\\beta` falls linearly from 20 to 2 after the warm-up: a high
    :math:`\\beta` lets decisions move freely, a low one pushes every :math:`h` to 0 or 1.
    :math:`V` starts where :math:`h(V) = W/s - \\lfloor W/s \\rfloor` (so the soft weights
    start equal to the float ones). The decisions are then made hard (:math:`h \\ge 1/2`);
    if the result reconstructs worse than round-to-nearest, round-to-nearest is kept, so the
    error is never above it.

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn import choose_qparams
    >>> rng = np.random.default_rng(0)
    >>> W, X = rng.standard_normal((8, 4)), rng.standard_normal((64, 8))
    >>> qp = choose_qparams(W, bits=3, symmetric=True)
    >>> r = adaround_layer(W, X, X @ W, qp, iterations=300)
    >>> bool(r.error <= r.rtn_error), r.up.dtype
    (True, dtype('bool'))
    """
    w = as_float_array(W, "W").astype(np.float64)
    x, y = as_float_array(X, "X").astype(np.float64), as_float_array(Y, "Y").astype(np.float64)
    if w.ndim != 2 or x.ndim != 2 or y.ndim != 2 or x.shape[1] != w.shape[0] or y.shape != (x.shape[0], w.shape[1]):
        raise ValueError(f"need W (in, out), X (n, in), Y (n, out); got shapes {w.shape}, {x.shape}, {y.shape}")
    if not isinstance(qp, QParams):
        raise TypeError(f"qp must be a QParams; got {type(qp).__name__}")
    if np.any(qp.zero_point != 0):
        raise ValueError("adaround_layer needs symmetric weight QParams (zero point 0)")
    n_iter = as_int(iterations, "iterations")
    if n_iter < 1 or not reg >= 0 or not 0 <= warmup < 1 or not lr > 0 or not beta[0] >= beta[1] > 0:
        raise ValueError(
            "need iterations >= 1, reg >= 0, 0 <= warmup < 1, lr > 0 and beta = (start, end) with start >= end > 0; "
            f"got {iterations}, {reg}, {warmup}, {lr}, {beta}"
        )
    s: Any = qp.scale.astype(np.float64)  # scalar or (out,): broadcasts over the columns of W
    base = np.floor(w / s)  # (in, out)
    rest = np.clip(w / s - base, 0.0, 1.0)
    p = np.clip((rest - GAMMA) / (ZETA - GAMMA), 1e-4, 1 - 1e-4)
    v = np.log(p / (1 - p))  # h(v) = rest
    m1, m2 = np.zeros_like(v), np.zeros_like(v)
    n, start = x.shape[0], int(warmup * n_iter)
    for t in range(1, n_iter + 1):
        sig = 1 / (1 + np.exp(-v))
        raw = sig * (ZETA - GAMMA) + GAMMA
        h = np.clip(raw, 0.0, 1.0)
        level = base + h
        w_soft = s * np.clip(level, qp.qmin, qp.qmax)
        err = x @ w_soft - y  # (n, out)
        grad_h = 2 / n * (x.T @ err) * s * ((level >= qp.qmin) & (level <= qp.qmax))  # (in, out)
        if t > start:
            b = beta[0] + (beta[1] - beta[0]) * (t - start) / max(n_iter - start, 1)
            u = 2 * h - 1
            grad_h = grad_h - reg * b * np.abs(u) ** (b - 1) * np.sign(u) * 2
        grad_v = grad_h * (ZETA - GAMMA) * sig * (1 - sig) * ((raw > 0) & (raw < 1))
        m1 = 0.9 * m1 + 0.1 * grad_v  # Adam
        m2 = 0.999 * m2 + 0.001 * grad_v**2
        v = v - lr * (m1 / (1 - 0.9**t)) / (np.sqrt(m2 / (1 - 0.999**t)) + 1e-8)
    up = rectified_sigmoid(v) >= 0.5
    w_ada = s * np.clip(base + up, qp.qmin, qp.qmax)
    w_rtn = fake_quantize(w, qp).astype(np.float64)
    error = float(((x @ w_ada - y) ** 2).sum() / n)
    rtn_error = float(((x @ w_rtn - y) ** 2).sum() / n)
    if rtn_error < error:
        return AdaRoundResult(w_rtn, w_rtn / s > base + 0.5 - 1e-9, rtn_error, rtn_error, True)
    return AdaRoundResult(w_ada, up, error, rtn_error, False)


def adaround(
    model: MLP, weight_qparams: Sequence[QParams], X: ArrayLike, *, iterations: int = 1000, reg: float = 0.01
) -> MLP:
    """Apply :func:`adaround_layer` to every Linear of a plain MLP, first layer first.

    Parameters
    ----------
    model : MLP
        Linear and ReLU only. Not modified.
    weight_qparams : sequence of QParams
        One per Linear layer.
    X : array_like of float, shape (n, sizes[0])
        Calibration inputs.
    iterations, reg
        As in :func:`adaround_layer`.

    Returns
    -------
    MLP
        Weights on their quantization grids; biases unchanged.

    Raises
    ------
    TypeError, ValueError
        On a model with batch norm, the wrong number of QParams, or bad data.

    Notes
    -----
    Each layer's inputs :math:`\\tilde X` come from the model with the earlier layers
    already rounded; its target is the float model's :math:`X W` for the same images,
    so later layers learn to compensate the errors of earlier ones.

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn import choose_qparams
    >>> from qlearn.nn import MLP
    >>> model = MLP([4, 5, 3], seed=0)
    >>> X = np.random.default_rng(0).random((40, 4), dtype=np.float32)
    >>> qps = [choose_qparams(l.W, bits=3, symmetric=True) for l in model.layers[::2]]
    >>> rounded = adaround(model, qps, X, iterations=100)
    >>> bool(np.all(rounded.layers[0].W == qps[0].scale * np.rint(rounded.layers[0].W / qps[0].scale)))
    True
    """
    check_folded_mlp(model, "adaround", weight_qparams)
    x = as_float_array(X, "X").astype(np.float32)
    out = copy.deepcopy(model)
    h_float, h_new, k = x, x, 0
    for layer, new in zip(model.layers, out.layers, strict=True):
        if isinstance(layer, Linear) and isinstance(new, Linear):
            r = adaround_layer(layer.W, h_new, h_float @ layer.W, weight_qparams[k], iterations=iterations, reg=reg)
            new.W = r.W.astype(layer.W.dtype)
            k += 1
        h_float, h_new = layer.forward(h_float), new.forward(h_new)
    return out
