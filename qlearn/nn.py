"""A micrograd-sized numpy MLP: Linear, BatchNorm1d, ReLU, softmax cross-entropy, and an SGD trainer.

Each layer has a ``forward(x)`` and a ``backward(x, grad_y)`` that returns the gradient
with respect to its input and to its parameters; the math of each derivative sits next
to its forward formula. Parameters and activations are float32. Inputs are cast to the
dtype of the parameters, so a float64 copy of a layer computes in float64 (as the
gradient checks in the tests do).
"""

from __future__ import annotations

import copy
import numbers
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int

__all__ = ["MLP", "BatchNorm1d", "Linear", "ReLU", "fit", "softmax_cross_entropy"]

Array = NDArray[np.floating[Any]]


def _as_batch(x: ArrayLike, n_features: int, dtype: np.dtype[Any], name: str = "x") -> Array:
    arr = as_float_array(x, name)  # TypeError on non-numbers, ValueError on empty/NaN/inf
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise ValueError(f"{name} must have shape (batch, {n_features}); got shape {arr.shape}")
    return arr.astype(dtype, copy=False)


def _as_labels(y: ArrayLike, n: int, n_classes: int) -> NDArray[np.intp]:
    arr = np.asarray(y)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class labels; got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},), one label per row of x; got shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= n_classes:
        raise ValueError(f"y must hold labels in [0, {n_classes - 1}]; got values in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.intp)


def _check_grad(grad_y: ArrayLike, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
    g = as_float_array(grad_y, "grad_y")
    if g.shape != shape:
        raise ValueError(f"grad_y must have the shape of the layer's output {shape}; got shape {g.shape}")
    return g.astype(dtype, copy=False)


class Linear:
    """Fully connected layer ``y = x @ W + b`` with He (Kaiming) initialisation.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the input and output (positive).
    rng : numpy.random.Generator
        Source of the initial weights, :math:`W_{ij} \\sim \\mathcal{N}(0, 2 / \\text{in})`,
        which keeps the variance of activations constant through ReLU layers; ``b = 0``.

    Attributes
    ----------
    W : ndarray of float32, shape (in_features, out_features)
    b : ndarray of float32, shape (out_features,)

    Notes
    -----
    With :math:`g = \\partial L / \\partial y`:

    .. math:: \\frac{\\partial L}{\\partial x} = g W^\\top, \\qquad
              \\frac{\\partial L}{\\partial W} = x^\\top g, \\qquad
              \\frac{\\partial L}{\\partial b} = \\textstyle\\sum_{\\text{batch}} g

    Examples
    --------
    >>> import numpy as np
    >>> layer = Linear(3, 2, np.random.default_rng(0))
    >>> layer, layer.W.shape, layer.W.dtype
    (Linear(3, 2), (3, 2), dtype('float32'))
    >>> x = np.ones((4, 3), dtype=np.float32)
    >>> y = layer.forward(x)
    >>> grad_x, (dW, db) = layer.backward(x, np.ones_like(y))
    >>> grad_x.shape, dW.shape, db.tolist()
    ((4, 3), (3, 2), [4.0, 4.0])
    """

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator) -> None:
        self.in_features = as_int(in_features, "in_features")
        self.out_features = as_int(out_features, "out_features")
        if self.in_features < 1 or self.out_features < 1:
            raise ValueError(f"in_features and out_features must be positive; got {in_features}, {out_features}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); got {rng!r}")
        std = np.sqrt(2.0 / self.in_features)  # He: Var(W) = 2 / fan_in
        self.W = (rng.standard_normal((self.in_features, self.out_features)) * std).astype(np.float32)  # (in, out)
        self.b = np.zeros(self.out_features, dtype=np.float32)  # (out,)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"

    def parameters(self) -> list[Array]:
        """``[W, b]``, the arrays themselves (an optimizer updates them in place)."""
        return [self.W, self.b]

    def forward(self, x: ArrayLike) -> Array:
        """``x @ W + b`` for ``x`` of shape (batch, in_features)."""
        xb = _as_batch(x, self.in_features, self.W.dtype)
        y: Array = xb @ self.W + self.b  # (batch, in) @ (in, out) + (out,) -> (batch, out)
        return y

    def backward(self, x: ArrayLike, grad_y: ArrayLike) -> tuple[Array, list[Array]]:
        """``(dL/dx, [dL/dW, dL/db])`` from the layer's input ``x`` and ``grad_y = dL/dy``."""
        xb = _as_batch(x, self.in_features, self.W.dtype)
        g = _check_grad(grad_y, (xb.shape[0], self.out_features), self.W.dtype)
        grad_x: Array = g @ self.W.T  # (batch, out) @ (out, in) -> (batch, in)
        grad_W: Array = xb.T @ g  # (in, batch) @ (batch, out) -> (in, out)
        return grad_x, [grad_W, g.sum(axis=0)]  # dL/db: (out,)


class ReLU:
    """Rectified linear unit ``y = max(x, 0)``, elementwise; no parameters.

    Parameters
    ----------
    None

    Notes
    -----
    .. math:: y = \\max(x, 0), \\qquad \\frac{\\partial L}{\\partial x} = g \\cdot [x > 0]

    Examples
    --------
    >>> import numpy as np
    >>> relu, x = ReLU(), np.array([[-1.0, 0.0, 2.0]], dtype=np.float32)
    >>> relu.forward(x)
    array([[0., 0., 2.]], dtype=float32)
    >>> relu.backward(x, np.ones_like(x))[0]
    array([[0., 0., 1.]], dtype=float32)
    """

    def __repr__(self) -> str:
        return "ReLU()"

    def parameters(self) -> list[Array]:
        """``[]``: ReLU learns nothing."""
        return []

    def forward(self, x: ArrayLike) -> Array:
        """``max(x, 0)``, keeping the float dtype of ``x``."""
        y: Array = np.maximum(as_float_array(x, "x"), 0)
        return y

    def backward(self, x: ArrayLike, grad_y: ArrayLike) -> tuple[Array, list[Array]]:
        """``(grad_y * [x > 0], [])``; the gradient at exactly 0 is taken as 0."""
        xa = as_float_array(x, "x")
        g = _check_grad(grad_y, xa.shape, xa.dtype)
        grad_x: Array = g * (xa > 0)
        return grad_x, []


class BatchNorm1d:
    """Batch normalisation over the batch axis, ``y = gamma * (x - mu) / sqrt(var + eps) + beta``.

    In training mode (``training = True``) ``mu`` and ``var`` are the batch's mean and
    (biased) variance, and every forward pass moves the running statistics towards them;
    in evaluation mode the running statistics are used, so the layer is an affine map
    per feature (which is what batch-norm folding exploits).

    Parameters
    ----------
    num_features : int
        Number of features (positive).
    momentum : float, default 0.1
        Weight of the new batch in the running statistics, in (0, 1].
    eps : float, default 1e-5
        Added to the variance before the square root (positive).

    Attributes
    ----------
    gamma, beta : ndarray of float32, shape (num_features,)
        Learned scale (initially 1) and shift (initially 0).
    running_mean, running_var : ndarray of float32, shape (num_features,)
        Running statistics (initially 0 and 1); ``running_var`` uses the unbiased batch variance.
    training : bool
        Mode; :meth:`MLP.train` sets it.

    Raises
    ------
    ValueError
        On a non-positive size or eps, or a momentum outside (0, 1].

    Notes
    -----
    With :math:`\\hat x = (x - \\mu)/\\sigma`, :math:`\\sigma = \\sqrt{v + \\epsilon}`, batch size
    :math:`N` and :math:`g = \\partial L / \\partial y`, in training mode

    .. math:: \\frac{\\partial L}{\\partial x} = \\frac{\\gamma}{N \\sigma}\\left(N g - \\textstyle\\sum g
              - \\hat x \\sum g \\hat x\\right), \\quad
              \\frac{\\partial L}{\\partial \\gamma} = \\textstyle\\sum g \\hat x, \\quad
              \\frac{\\partial L}{\\partial \\beta} = \\textstyle\\sum g

    (sums over the batch); in evaluation mode :math:`\\partial L / \\partial x = g \\gamma / \\sigma`.

    Examples
    --------
    >>> import numpy as np
    >>> bn = BatchNorm1d(2)
    >>> bn.training = True
    >>> bn.forward(np.array([[0.0, 1.0], [2.0, 1.0]], dtype=np.float32)).round(3)
    array([[-1.,  0.],
           [ 1.,  0.]], dtype=float32)
    >>> bn.running_mean, bn.running_var  # 0.9 * (0, 1) + 0.1 * ((1, 1), (2, 0))
    (array([0.1, 0.1], dtype=float32), array([1.1, 0.9], dtype=float32))
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        self.num_features = as_int(num_features, "num_features")
        if self.num_features < 1:
            raise ValueError(f"num_features must be positive; got {num_features}")
        self.momentum, self.eps = _real(momentum, "momentum"), _real(eps, "eps")
        if not 0 < self.momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1]; got {momentum!r}")
        if not self.eps > 0:
            raise ValueError(f"eps must be positive; got {eps!r}")
        self.gamma = np.ones(self.num_features, dtype=np.float32)  # (features,)
        self.beta = np.zeros(self.num_features, dtype=np.float32)
        self.running_mean = np.zeros(self.num_features, dtype=np.float32)
        self.running_var = np.ones(self.num_features, dtype=np.float32)
        self.training = False

    def __repr__(self) -> str:
        return f"BatchNorm1d({self.num_features})"

    def parameters(self) -> list[Array]:
        """``[gamma, beta]`` (the running statistics are not learned by gradient)."""
        return [self.gamma, self.beta]

    def _stats(self, xb: Array) -> tuple[Array, Array]:
        """Mean and standard deviation used for ``xb``: the batch's in training, the running ones otherwise."""
        if self.training:
            if xb.shape[0] < 2:
                raise ValueError(f"batch norm in training mode needs at least 2 rows; got {xb.shape[0]}")
            mu, var = xb.mean(axis=0), xb.var(axis=0)
        else:
            mu, var = self.running_mean.astype(xb.dtype), self.running_var.astype(xb.dtype)
        return mu, np.sqrt(var + xb.dtype.type(self.eps))

    def forward(self, x: ArrayLike) -> Array:
        """Normalise ``x`` (batch, num_features); in training mode also update the running statistics."""
        xb = _as_batch(x, self.num_features, self.gamma.dtype)
        mu, sigma = self._stats(xb)
        if self.training:  # running statistics, with the unbiased variance as PyTorch keeps it
            n, m = xb.shape[0], self.momentum
            self.running_mean[...] = (1 - m) * self.running_mean + m * mu
            self.running_var[...] = (1 - m) * self.running_var + m * xb.var(axis=0) * n / (n - 1)
        y: Array = (xb - mu) / sigma * self.gamma + self.beta  # (batch, features)
        return y

    def backward(self, x: ArrayLike, grad_y: ArrayLike) -> tuple[Array, list[Array]]:
        """``(dL/dx, [dL/dgamma, dL/dbeta])``; the statistics are recomputed from ``x``, not updated."""
        xb = _as_batch(x, self.num_features, self.gamma.dtype)
        g = _check_grad(grad_y, xb.shape, xb.dtype)
        mu, sigma = self._stats(xb)
        x_hat = (xb - mu) / sigma  # (batch, features)
        grads = [(g * x_hat).sum(axis=0), g.sum(axis=0)]
        if not self.training:
            return g * self.gamma / sigma, grads
        n = xb.shape[0]
        grad_x: Array = self.gamma / (n * sigma) * (n * g - grads[1] - x_hat * grads[0])
        return grad_x, grads


Layer = Linear | BatchNorm1d | ReLU


def softmax_cross_entropy(logits: ArrayLike, y: ArrayLike) -> tuple[float, Array]:
    """Mean cross-entropy of ``softmax(logits)`` against integer labels, and its gradient.

    Parameters
    ----------
    logits : array_like of float, shape (batch, n_classes)
        Unnormalised scores; the gradient keeps their float dtype.
    y : array_like of int, shape (batch,)
        True classes, in ``[0, n_classes)``.

    Returns
    -------
    loss : float
        :math:`L = -\\frac{1}{N} \\sum_i \\log p_{i, y_i}`.
    grad : ndarray, shape (batch, n_classes)
        :math:`\\partial L / \\partial z`.

    Raises
    ------
    TypeError, ValueError
        On non-numeric, non-2-d or non-finite logits, non-integer labels, or labels of the
        wrong shape or out of range.

    Notes
    -----
    Subtracting the row maximum :math:`m_i` changes nothing mathematically but keeps
    ``exp`` from overflowing (log-sum-exp):

    .. math:: \\log p_{ij} = z_{ij} - m_i - \\log \\textstyle\\sum_k e^{z_{ik} - m_i}, \\qquad
              \\frac{\\partial L}{\\partial z_{ij}} = \\frac{p_{ij} - [j = y_i]}{N}

    Examples
    --------
    >>> loss, grad = softmax_cross_entropy([[2.0, 0.0], [0.0, 1000.0]], [0, 1])
    >>> round(loss, 4)  # (log(1 + e^-2) + log(1 + e^-1000)) / 2
    0.0635
    >>> grad.round(4)
    array([[-0.0596,  0.0596],
           [ 0.    ,  0.    ]])
    """
    z = as_float_array(logits, "logits")
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (batch, n_classes); got shape {z.shape}")
    n = z.shape[0]
    labels = _as_labels(y, n, z.shape[1])
    shifted = z - z.max(axis=1, keepdims=True)  # (batch, classes), each row's max is 0
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # log-softmax
    rows = np.arange(n)
    loss = -float(log_p[rows, labels].mean())
    grad = np.exp(log_p)  # softmax p
    grad[rows, labels] -= 1  # p - one_hot(y)
    return loss, grad / n


class MLP:
    """Multi-layer perceptron: Linear → ReLU → … → Linear, ending in logits.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths from input to output, at least two, e.g. ``[64, 64, 10]`` gives
        ``Linear(64, 64) → ReLU → Linear(64, 10)``.
    seed : int, default 0
        Seed of the weight initialisation.
    batch_norm : bool, default False
        Put a :class:`BatchNorm1d` between every hidden Linear and its ReLU. The model
        starts in evaluation mode; :func:`fit` trains in training mode and returns the
        trained copy in evaluation mode (see :meth:`train`).

    Attributes
    ----------
    layers : list of Linear, BatchNorm1d and ReLU
        In order; ``activations(x)[i]`` enters ``layers[i]`` and ``activations(x)[i + 1]`` leaves it.
    loss_history_ : list of float
        Mean training loss of each epoch; set on the model that :func:`fit` returns.

    Examples
    --------
    >>> import numpy as np
    >>> model = MLP([4, 8, 3], seed=0)
    >>> model.layers
    [Linear(4, 8), ReLU(), Linear(8, 3)]
    >>> x = np.zeros((2, 4), dtype=np.float32)
    >>> [a.shape for a in model.activations(x)]
    [(2, 4), (2, 8), (2, 8), (2, 3)]
    >>> model.forward(x).dtype, model.predict(x).shape
    (dtype('float32'), (2,))
    >>> model.accuracy(x, model.predict(x))
    1.0
    """

    loss_history_: list[float]

    def __init__(self, sizes: Sequence[int], seed: int = 0, *, batch_norm: bool = False) -> None:
        if isinstance(sizes, str) or not isinstance(sizes, Sequence | np.ndarray) or len(sizes) < 2:
            raise TypeError(f"sizes must be a sequence of at least two layer widths, like [64, 64, 10]; got {sizes!r}")
        widths = [as_int(s, "each layer width") for s in sizes]
        if min(widths) < 1:
            raise ValueError(f"layer widths must be positive; got {widths}")
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm must be True or False; got {batch_norm!r}")
        self.sizes, self.seed, self.batch_norm = tuple(widths), as_int(seed, "seed"), batch_norm
        rng = np.random.default_rng(self.seed)
        self.layers: list[Layer] = []
        for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
            if self.layers:
                if batch_norm:
                    self.layers.append(BatchNorm1d(n_in))
                self.layers.append(ReLU())
            self.layers.append(Linear(n_in, n_out, rng))

    def __repr__(self) -> str:
        bn = ", batch_norm=True" if self.batch_norm else ""
        return f"MLP({list(self.sizes)}, seed={self.seed}{bn})"

    def train(self, mode: bool = True) -> MLP:
        """Set training mode (``True``) or evaluation mode (``False``) of every batch-norm layer; returns ``self``."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode must be True or False; got {mode!r}")
        for layer in self.layers:
            if isinstance(layer, BatchNorm1d):
                layer.training = mode
        return self

    def parameters(self) -> list[Array]:
        """All parameters, layer by layer: ``[W1, b1, W2, b2, ...]``."""
        return [p for layer in self.layers for p in layer.parameters()]

    def activations(self, x: ArrayLike) -> list[Array]:
        """``[x, layers[0](x), layers[1](layers[0](x)), ..., logits]`` (float32)."""
        acts = [_as_batch(x, self.sizes[0], np.dtype(np.float32))]
        for layer in self.layers:
            acts.append(layer.forward(acts[-1]))
        return acts

    def forward(self, x: ArrayLike) -> Array:
        """Logits, shape (batch, sizes[-1])."""
        return self.activations(x)[-1]

    def predict(self, x: ArrayLike) -> NDArray[np.intp]:
        """Predicted class of each row: the index of the largest logit."""
        pred: NDArray[np.intp] = np.argmax(self.forward(x), axis=1)
        return pred

    def accuracy(self, x: ArrayLike, y: ArrayLike) -> float:
        """Fraction of rows whose predicted class equals ``y``, in [0, 1]."""
        pred = self.predict(x)
        return float(np.mean(pred == _as_labels(y, len(pred), self.sizes[-1])))

    def loss_and_gradients(self, x: ArrayLike, y: ArrayLike) -> tuple[float, list[Array]]:
        """Softmax cross-entropy on ``(x, y)`` and its gradient, aligned with :meth:`parameters`."""
        acts = self.activations(x)
        loss, g = softmax_cross_entropy(acts[-1], y)
        grads: list[Array] = []
        for layer, a in zip(reversed(self.layers), reversed(acts[:-1]), strict=True):  # chain rule, last layer first
            g, layer_grads = layer.backward(a, g)
            grads = layer_grads + grads
        return loss, grads


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r} of type {type(value).__name__}")
    return float(value)


def fit(
    model: MLP,
    X: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 0.05,
    momentum: float = 0.9,
    seed: int = 0,
    progress: bool = False,
) -> MLP:
    """Train a copy of ``model`` by minibatch SGD with momentum; ``model`` itself is unchanged.

    Parameters
    ----------
    model : MLP
        The starting point (it is deep-copied, not modified).
    X : array_like of float, shape (n, sizes[0])
        Training inputs (cast to float32).
    y : array_like of int, shape (n,)
        Training labels in ``[0, sizes[-1])``.
    epochs : int, default 30
        Passes over the data.
    batch_size : int, default 32
        Examples per step (the last batch of an epoch may be smaller).
    lr : float, default 0.05
        Learning rate :math:`\\eta`.
    momentum : float, default 0.9
        Momentum :math:`\\mu`, in [0, 1).
    seed : int, default 0
        Seed of the shuffles; with the same arguments, training is reproducible.
    progress : bool, default False
        Print a one-line text progress bar to stderr (rewritten with ``\\r``) each epoch.

    Returns
    -------
    MLP
        The trained copy, with ``loss_history_`` (mean training loss of each epoch).

    Raises
    ------
    TypeError, ValueError
        On a non-MLP model, bad data (see :meth:`MLP.forward`) or bad settings.

    Notes
    -----
    Each epoch visits the examples in a fresh random order; for each minibatch with
    gradient :math:`g` of the mean loss, every parameter :math:`\\theta` with velocity
    :math:`v` (initially 0) is updated by

    .. math:: v \\leftarrow \\mu v - \\eta g, \\qquad \\theta \\leftarrow \\theta + v

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    >>> y = np.array([0, 1, 1, 0])  # XOR
    >>> model = fit(MLP([2, 16, 2], seed=0), X, y, epochs=300, batch_size=4, lr=0.1)
    >>> model.accuracy(X, y), model.loss_history_[-1] < model.loss_history_[0]
    (1.0, True)
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be an MLP; got {type(model).__name__}")
    xs = _as_batch(X, model.sizes[0], np.dtype(np.float32), "X")
    ys = _as_labels(y, xs.shape[0], model.sizes[-1])
    n_epochs, batch = as_int(epochs, "epochs"), as_int(batch_size, "batch_size")
    if n_epochs < 1 or batch < 1:
        raise ValueError(f"epochs and batch_size must be positive integers; got {n_epochs} and {batch}")
    eta, mu = _real(lr, "lr"), _real(momentum, "momentum")
    if not 0 < eta < np.inf:
        raise ValueError(f"lr must be a positive finite number; got {lr!r}")
    if not 0 <= mu < 1:
        raise ValueError(f"momentum must be in [0, 1); got {momentum!r}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False; got {progress!r}")
    rng = np.random.default_rng(as_int(seed, "seed"))

    trained = copy.deepcopy(model).train(True)
    params = trained.parameters()
    velocity = [np.zeros_like(p) for p in params]
    history: list[float] = []
    n = xs.shape[0]
    for epoch in range(1, n_epochs + 1):
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            if trained.batch_norm and len(idx) < 2:
                continue  # batch statistics need two rows; drop a last batch of one

            loss, grads = trained.loss_and_gradients(xs[idx], ys[idx])
            for p, g, v in zip(params, grads, velocity, strict=True):
                v *= mu
                v -= eta * g
                p += v  # in place: params are the layers' own arrays
            total += loss * len(idx)
        history.append(total / n)
        if progress:
            done = 30 * epoch // n_epochs
            bar = "#" * done + "." * (30 - done)
            end = "\n" if epoch == n_epochs else ""
            sys.stderr.write(f"\repoch {epoch:>{len(str(n_epochs))}}/{n_epochs} [{bar}] loss {history[-1]:.4f}{end}")
            sys.stderr.flush()
    trained.loss_history_ = history
    return trained.train(False)
