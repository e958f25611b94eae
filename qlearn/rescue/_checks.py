"""The input checks that the post-training rescue algorithms share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qlearn.nn import MLP, BatchNorm1d, Linear


def check_folded_mlp(model: Any, algorithm: str, weight_qparams: Sequence[Any] | None = None) -> MLP:
    """Return ``model`` if it is a batch-norm-free :class:`qlearn.nn.MLP` (with one weight
    QParams per Linear layer when ``weight_qparams`` is given); raise otherwise."""
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a qlearn.nn.MLP; got {type(model).__name__}")
    if any(isinstance(layer, BatchNorm1d) for layer in model.layers):
        raise ValueError(f"{algorithm} needs a model without batch norm: apply fold_batch_norm first")
    if weight_qparams is not None:
        n_linear = sum(isinstance(layer, Linear) for layer in model.layers)
        if len(weight_qparams) != n_linear:
            raise ValueError(
                f"weight_qparams needs one QParams per Linear layer ({n_linear}); got {len(weight_qparams)}"
            )
    return model
