"""Cross-layer equalization: rescale channels between two Linear layers joined by a ReLU."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int
from qlearn.nn import MLP, Linear, ReLU
from qlearn.rescue._checks import check_folded_mlp

__all__ = ["cross_layer_equalize", "equalization_scales"]


def equalization_scales(W1: ArrayLike, W2: ArrayLike) -> NDArray[np.float64]:
    """Per-channel factors that give both layers the same range in every shared channel.

    Parameters
    ----------
    W1 : array_like of float, shape (in, mid)
        Weights of the first layer (channel :math:`i` is column :math:`i`).
    W2 : array_like of float, shape (mid, out)
        Weights of the second layer (channel :math:`i` is row :math:`i`).

    Returns
    -------
    ndarray of float64, shape (mid,)
        :math:`s_i`; a channel that is all zero in either layer gets 1.

    Raises
    ------
    TypeError, ValueError
        On non-numeric or non-finite input or shapes that do not chain.

    Notes
    -----
    With :math:`r^{(1)}_i = \\max_k |W^{(1)}_{ki}|` and :math:`r^{(2)}_i = \\max_j |W^{(2)}_{ij}|`
    (Nagel et al. 2019), dividing channel :math:`i` of layer 1 by :math:`s_i` and multiplying
    it in layer 2 by :math:`s_i` with

    .. math:: s_i = \\sqrt{r^{(1)}_i / r^{(2)}_i}

    leaves both ranges equal to :math:`\\sqrt{r^{(1)}_i r^{(2)}_i}`; because
    :math:`\\operatorname{ReLU}(x/s) = \\operatorname{ReLU}(x)/s` for :math:`s > 0`, the
    network's function is unchanged.

    Examples
    --------
    >>> equalization_scales([[4.0, 1.0]], [[1.0], [4.0]]).tolist()
    [2.0, 0.5]
    """
    w1, w2 = as_float_array(W1, "W1").astype(np.float64), as_float_array(W2, "W2").astype(np.float64)
    if w1.ndim != 2 or w2.ndim != 2 or w1.shape[1] != w2.shape[0]:
        raise ValueError(f"W1 (in, mid) and W2 (mid, out) must chain; got shapes {w1.shape} and {w2.shape}")
    r1, r2 = np.abs(w1).max(axis=0), np.abs(w2).max(axis=1)  # (mid,), (mid,)
    ok = (r1 > 0) & (r2 > 0)
    return np.where(ok, np.sqrt(np.where(ok, r1, 1.0) / np.where(ok, r2, 1.0)), 1.0)


def cross_layer_equalize(model: MLP, iterations: int = 1) -> MLP:
    """Equalize every pair Linear → ReLU → Linear of a plain MLP; returns a new model.

    Parameters
    ----------
    model : MLP
        Linear and ReLU only (fold batch norm first). Not modified.
    iterations : int, default 1
        Sweeps over all pairs; a middle layer belongs to two pairs, so repeating the sweep
        moves the ranges further towards a joint equalization.

    Returns
    -------
    MLP
        Same function (up to rounding in the parameters' dtype), equalized ranges.

    Raises
    ------
    TypeError, ValueError
        On a non-MLP, a model with batch norm, or a bad number of iterations.

    Notes
    -----
    Layer 1's bias scales with its channel, :math:`b^{(1)}_i / s_i`; see
    :func:`equalization_scales` for :math:`s_i`.

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn.nn import MLP
    >>> model = MLP([4, 6, 3], seed=0)
    >>> eq = cross_layer_equalize(model)
    >>> x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    >>> bool(np.allclose(eq.forward(x), model.forward(x), atol=1e-5))
    True
    >>> r1, r2 = np.abs(eq.layers[0].W).max(axis=0), np.abs(eq.layers[2].W).max(axis=1)
    >>> bool(np.allclose(r1, r2))
    True
    """
    check_folded_mlp(model, "cross_layer_equalize")
    n_iter = as_int(iterations, "iterations")
    if n_iter < 1:
        raise ValueError(f"iterations must be a positive integer; got {iterations}")
    out = copy.deepcopy(model)
    layers = out.layers
    pairs = [
        (layers[i], layers[i + 2])
        for i in range(len(layers) - 2)
        if isinstance(layers[i], Linear) and isinstance(layers[i + 1], ReLU) and isinstance(layers[i + 2], Linear)
    ]
    for _ in range(n_iter):
        for first, second in pairs:
            if not (isinstance(first, Linear) and isinstance(second, Linear)):  # narrowing for mypy
                continue
            s: Any = equalization_scales(first.W, second.W)
            dtype = first.W.dtype
            first.W = (first.W / s).astype(dtype)  # (in, mid) / (mid,)
            first.b = (first.b / s).astype(dtype)
            second.W = (second.W * s[:, None]).astype(dtype)  # (mid, out) * (mid, 1)
    return out
