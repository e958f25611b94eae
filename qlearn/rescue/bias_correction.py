"""Empirical bias correction: remove the mean output shift that weight quantization causes."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from numpy.typing import ArrayLike

from qlearn._checks import as_float_array
from qlearn.nn import MLP, Linear
from qlearn.primitives import fake_quantize
from qlearn.qparams import QParams
from qlearn.rescue._checks import check_folded_mlp

__all__ = ["correct_bias"]


def correct_bias(model: MLP, weight_qparams: Sequence[QParams], X: ArrayLike) -> MLP:
    """Quantize each Linear's weights and shift its bias so its mean output on ``X`` is unchanged.

    Parameters
    ----------
    model : MLP
        Linear and ReLU only. Not modified.
    weight_qparams : sequence of QParams
        One per Linear layer (for :func:`qlearn.fake_quantize` of its ``W``).
    X : array_like of float, shape (n, sizes[0])
        Calibration inputs.

    Returns
    -------
    MLP
        Weights replaced by their fake-quantized values (already on the grid, so
        :func:`qlearn.ptq.convert` with the same weight scales reproduces them exactly),
        biases corrected.

    Raises
    ------
    TypeError, ValueError
        On a model with batch norm, the wrong number of QParams, or bad data.

    Notes
    -----
    Layer by layer, with :math:`\\tilde x` the layer's input in the corrected model so far and
    :math:`x` in the float model (means over the calibration rows),

    .. math:: \\tilde b = b + \\mathbb{E}[x] W - \\mathbb{E}[\\tilde x] \\hat W, \\qquad
              \\text{so} \\quad \\mathbb{E}[\\tilde x \\hat W + \\tilde b] = \\mathbb{E}[x W + b]

    (Nagel et al. 2019 use the same correction with the expectation computed analytically
    from batch-norm statistics; here it is measured on data.)

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn import choose_qparams
    >>> from qlearn.nn import MLP
    >>> model = MLP([4, 5, 3], seed=0)
    >>> X = np.random.default_rng(0).random((50, 4), dtype=np.float32)
    >>> qps = [choose_qparams(l.W, bits=2, symmetric=True) for l in model.layers[::2]]
    >>> fixed = correct_bias(model, qps, X)
    >>> err = fixed.forward(X).mean(axis=0) - model.forward(X).mean(axis=0)
    >>> bool(np.abs(err).max() < 1e-5)
    True
    """
    check_folded_mlp(model, "correct_bias", weight_qparams)
    x = as_float_array(X, "X").astype(model.layers[0].parameters()[0].dtype)
    out = copy.deepcopy(model)
    h_float, h_new, k = x, x, 0
    for layer, new in zip(model.layers, out.layers, strict=True):
        if isinstance(layer, Linear) and isinstance(new, Linear):
            w_hat = fake_quantize(layer.W, weight_qparams[k]).astype(layer.W.dtype)  # (in, out)
            shift = h_float.mean(axis=0) @ layer.W - h_new.mean(axis=0) @ w_hat  # (out,)
            new.W, new.b = w_hat, (layer.b + shift).astype(layer.b.dtype)
            k += 1
        h_float, h_new = layer.forward(h_float), new.forward(h_new)
    return out
