"""Per-layer sensitivity to weight quantization and a greedy bit allocation under a byte budget."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int, check_bits
from qlearn.nn import MLP, BatchNorm1d, Linear, _as_labels, softmax_cross_entropy
from qlearn.observers import MinMaxObserver, _Observer
from qlearn.primitives import fake_quantize
from qlearn.ptq import PreparedModel, calibrate, prepare

__all__ = ["allocate_bits", "layer_sensitivity", "prepare_mixed", "weight_bytes"]


def _plain(model: MLP, name: str) -> list[int]:
    if not isinstance(model, MLP):
        raise TypeError(f"{name} must be a qlearn.nn.MLP; got {type(model).__name__}")
    if any(isinstance(layer, BatchNorm1d) for layer in model.layers):
        raise ValueError(f"{name} must not contain batch norm: apply fold_batch_norm first")
    return [i for i, layer in enumerate(model.layers) if isinstance(layer, Linear)]


def layer_sensitivity(model: MLP, X: ArrayLike, y: ArrayLike, bits: Sequence[int]) -> NDArray[np.float64]:
    """Loss increase when one layer's weights alone are quantized, for every layer and bit width.

    Parameters
    ----------
    model : MLP
        Linear and ReLU only. Not modified.
    X : array_like of float, shape (n, sizes[0])
        Held-out data (not the test set), e.g. the calibration split.
    y : array_like of int, shape (n,)
    bits : sequence of int
        Candidate weight bit widths.

    Returns
    -------
    ndarray of float64, shape (n_linear, len(bits))
        :math:`\\Delta L_{\\ell b}`.

    Raises
    ------
    TypeError, ValueError
        On a model with batch norm, bad data or bit widths.

    Notes
    -----
    Layer :math:`\\ell` gets per-channel symmetric min-max weights at :math:`b` bits, all
    other layers and all activations stay in float:

    .. math:: \\Delta L_{\\ell b} = L(\\ldots, Q_b(W_\\ell), \\ldots) - L(W)

    with :math:`L` the mean cross-entropy. Summing these over layers assumes the layers'
    errors do not interact, the usual first-order approximation.

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn.nn import MLP
    >>> X = np.random.default_rng(0).random((20, 4), dtype=np.float32)
    >>> layer_sensitivity(MLP([4, 6, 3]), X, np.zeros(20, int), [2, 8]).shape
    (2, 2)
    """
    linear = _plain(model, "model")
    xs = as_float_array(X, "X").astype(np.float32)
    ys = _as_labels(y, xs.shape[0], model.sizes[-1])
    widths = [check_bits(b) for b in bits]
    base, _ = softmax_cross_entropy(model.forward(xs), ys)
    out = np.zeros((len(linear), len(widths)))
    for i, idx in enumerate(linear):
        for j, b in enumerate(widths):
            trial = copy.deepcopy(model)
            layer = trial.layers[idx]
            if isinstance(layer, Linear):
                obs = MinMaxObserver(bits=b, symmetric=True, axis=1).observe(layer.W)
                layer.W = fake_quantize(layer.W, obs.compute_qparams())
            out[i, j] = softmax_cross_entropy(trial.forward(xs), ys)[0] - base
    return out


def weight_bytes(n_weights: int, n_channels: int, bits: int) -> int:
    """Bytes of one layer's weight codes packed at ``bits``, plus a float32 scale per channel.

    Parameters
    ----------
    n_weights, n_channels : int
    bits : int

    Returns
    -------
    int

    Raises
    ------
    ValueError
        On a bad bit width or negative counts.

    Notes
    -----
    :math:`\\lceil N b / 8 \\rceil + 4 C`, as :meth:`qlearn.ptq.QuantizedMLP.size_bytes` counts them.

    Examples
    --------
    >>> weight_bytes(4096, 64, 2)
    1280
    """
    n, c, b = as_int(n_weights, "n_weights"), as_int(n_channels, "n_channels"), check_bits(bits)
    if n < 0 or c < 0:
        raise ValueError(f"n_weights and n_channels must be non-negative; got {n}, {c}")
    return math.ceil(n * b / 8) + 4 * c


def allocate_bits(
    sensitivity: ArrayLike, bits: Sequence[int], shapes: Sequence[tuple[int, int]], budget_bytes: int
) -> list[int]:
    """Greedy mixed precision: lower the cheapest layer first until the weights fit the budget.

    Parameters
    ----------
    sensitivity : array_like of float, shape (n_layers, len(bits))
        From :func:`layer_sensitivity`.
    bits : sequence of int
        The candidate widths, the columns of ``sensitivity``.
    shapes : sequence of (int, int)
        Each layer's weight shape (in, out).
    budget_bytes : int
        Largest allowed total of :func:`weight_bytes` over the layers.

    Returns
    -------
    list of int
        One width per layer.

    Raises
    ------
    ValueError
        If even the smallest widths do not fit, or the shapes disagree.

    Notes
    -----
    Start with every layer at the widest width. While over budget, among all single
    moves "layer :math:`\\ell` one width down" take the one with the least added
    sensitivity per byte saved,

    .. math:: \\arg\\min_\\ell \\frac{\\Delta L_{\\ell, b'} - \\Delta L_{\\ell, b}}{B_\\ell(b) - B_\\ell(b')}

    (a knapsack heuristic; exact search is cheap for three layers, but the greedy rule
    scales to many).

    Examples
    --------
    >>> sens = [[0.50, 0.01], [0.02, 0.00]]  # layer 0 suffers at 2 bits, layer 1 does not
    >>> allocate_bits(sens, [2, 8], [(64, 64), (64, 64)], budget_bytes=6000)
    [8, 2]
    """
    s = as_float_array(sensitivity, "sensitivity").astype(np.float64)
    widths = [check_bits(b) for b in bits]
    if s.ndim != 2 or s.shape != (len(shapes), len(widths)):
        raise ValueError(
            f"sensitivity must have shape (n_layers, n_bits) = ({len(shapes)}, {len(widths)}); got {s.shape}"
        )
    order = np.argsort(widths)[::-1]  # widest first
    cost = [[weight_bytes(i * o, o, widths[j]) for j in order] for i, o in shapes]
    sens = s[:, order]
    level = [0] * len(shapes)  # index into the widest-first order
    smallest = sum(row[-1] for row in cost)
    if smallest > budget_bytes:
        raise ValueError(f"budget_bytes={budget_bytes} is below the smallest possible size {smallest}")
    while sum(cost[k][level[k]] for k in range(len(shapes))) > budget_bytes:
        moves = [
            ((sens[k, level[k] + 1] - sens[k, level[k]]) / (cost[k][level[k]] - cost[k][level[k] + 1]), k)
            for k in range(len(shapes))
            if level[k] + 1 < len(widths)
        ]
        level[min(moves)[1]] += 1
    return [widths[order[lv]] for lv in level]


def prepare_mixed(
    model: MLP,
    weight_bits: Sequence[int],
    activation_observer: Callable[[], _Observer] | None = None,
    calibration: Sequence[ArrayLike] | None = None,
) -> PreparedModel:
    """``ptq.prepare`` with a different weight width per layer (per-channel symmetric min-max).

    Parameters
    ----------
    model : MLP
        Linear and ReLU only.
    weight_bits : sequence of int
        One width per Linear layer.
    activation_observer : callable returning an observer, optional
        Default 8-bit min-max.
    calibration : sequence of array_like, optional
        Batches for :func:`qlearn.ptq.calibrate`; without them, calibrate yourself.

    Returns
    -------
    PreparedModel

    Raises
    ------
    TypeError, ValueError
        On a model with batch norm or the wrong number of widths.

    Notes
    -----
    Weight codes of layer :math:`\\ell` take :math:`b_\\ell` bits; see :func:`allocate_bits`.

    Examples
    --------
    >>> from qlearn.nn import MLP
    >>> p = prepare_mixed(MLP([4, 6, 3]), [8, 2])
    >>> [o.bits for o in p.weight_observers]
    [8, 2]
    """
    linear = _plain(model, "model")
    if len(weight_bits) != len(linear):
        raise ValueError(f"weight_bits needs one width per Linear layer ({len(linear)}); got {len(weight_bits)}")
    prepared = prepare(model, activation_observer=activation_observer or partial(MinMaxObserver, bits=8))
    prepared.weight_observers = [
        MinMaxObserver(bits=check_bits(b), symmetric=True, axis=1).observe(model.layers[i].parameters()[0])
        for b, i in zip(weight_bits, linear, strict=True)
    ]
    return calibrate(prepared, calibration) if calibration is not None else prepared
