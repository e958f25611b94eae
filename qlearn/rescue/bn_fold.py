"""Batch-norm folding: merge each evaluation-mode BatchNorm1d into the Linear before it."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from qlearn.nn import MLP, BatchNorm1d, Linear

__all__ = ["fold_batch_norm"]


def fold_batch_norm(model: MLP) -> MLP:
    """A plain MLP (Linear and ReLU only) computing what ``model`` computes in evaluation mode.

    Parameters
    ----------
    model : MLP
        Usually built with ``batch_norm=True`` and trained; not modified. A model without
        batch norm comes back as an equal copy.

    Returns
    -------
    MLP
        ``batch_norm=False``, in the dtype of ``model``'s parameters.

    Raises
    ------
    TypeError
        If ``model`` is not an MLP.
    ValueError
        If a BatchNorm1d does not follow a Linear.

    Notes
    -----
    In evaluation mode a batch norm is the affine map :math:`\\gamma (y - \\mu)/\\sigma + \\beta`
    of the Linear output :math:`y = xW + b`, with :math:`\\sigma = \\sqrt{v + \\epsilon}`; so
    per output channel :math:`j`

    .. math:: W'_{:j} = W_{:j} \\frac{\\gamma_j}{\\sigma_j}, \\qquad
              b'_j = (b_j - \\mu_j) \\frac{\\gamma_j}{\\sigma_j} + \\beta_j

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn.nn import MLP
    >>> model = MLP([3, 4, 2], batch_norm=True)
    >>> model.layers[1].running_var[:] = 4.0  # pretend training left these statistics
    >>> folded = fold_batch_norm(model)
    >>> folded.layers
    [Linear(3, 4), ReLU(), Linear(4, 2)]
    >>> x = np.random.default_rng(0).random((5, 3), dtype=np.float32)
    >>> bool(np.allclose(folded.forward(x), model.forward(x), atol=1e-6))
    True
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a qlearn.nn.MLP; got {type(model).__name__}")
    folded = MLP(list(model.sizes), seed=model.seed)
    targets = [layer for layer in folded.layers if isinstance(layer, Linear)]
    k = -1
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Linear):
            k += 1
            targets[k].W, targets[k].b = layer.W.copy(), layer.b.copy()
        elif isinstance(layer, BatchNorm1d):
            if i == 0 or not isinstance(model.layers[i - 1], Linear):
                raise ValueError(f"layer {i} is a BatchNorm1d that does not follow a Linear; cannot fold it")
            W, b = targets[k].W, targets[k].b
            factor: NDArray[Any] = layer.gamma / np.sqrt(layer.running_var.astype(W.dtype) + W.dtype.type(layer.eps))
            targets[k].W = (W * factor).astype(W.dtype)  # (in, out) * (out,)
            targets[k].b = ((b - layer.running_mean) * factor + layer.beta).astype(W.dtype)
    return folded
