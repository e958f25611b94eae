"""Quantization-aware training: fake quantization in the forward pass, STE or LSQ in the backward.

The QAT model wraps a plain (batch-norm-folded) :class:`qlearn.nn.MLP` and quantizes
exactly where :func:`qlearn.ptq.convert` will: the input, every weight matrix (per output
channel, zero point 0), every bias (int32 on the grid :math:`s_x s_w`) and the
post-ReLU output of every Linear. So after training, :meth:`QATMLP.convert` hands the
learned scales to ``ptq.convert`` and the integer model computes what training saw.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int
from qlearn.nn import BatchNorm1d, Linear, _as_labels, softmax_cross_entropy
from qlearn.ptq import PreparedModel, QuantizedMLP, convert
from qlearn.qparams import PerAxis, PerTensor, QParams, qparams_from_range
from qlearn.rescue.export import prepared_from_qparams

__all__ = ["QATMLP", "fake_quantize_lsq", "fake_quantize_ste", "lsq_grad_scale", "qat_fit"]

F64 = NDArray[np.float64]


def _codes(x: NDArray[Any], scale: Any, zero_point: Any, qmin: int, qmax: int) -> tuple[F64, F64]:
    """Unclamped ``round(x / s) + z`` and clamped codes, with the division in ``x``'s precision (as ptq)."""
    s = np.asarray(scale, np.float32).astype(x.dtype) if x.dtype == np.float32 else np.asarray(scale, np.float64)
    raw = (np.rint(x / s) + zero_point).astype(np.float64)
    return raw, np.clip(raw, qmin, qmax)


def fake_quantize_ste(
    x: ArrayLike, scale: ArrayLike, zero_point: ArrayLike, qmin: int, qmax: int, *, clipped: bool = True
) -> tuple[F64, F64]:
    """Fake quantization and the straight-through estimator's gradient mask.

    Parameters
    ----------
    x : array_like of float
    scale, zero_point : array_like
        Broadcast against ``x`` (a scalar, or one per last-axis channel).
    qmin, qmax : int
        Integer range.
    clipped : bool, default True
        The clipped STE (gradient 0 where ``x`` was clamped) rather than the identity.

    Returns
    -------
    y : ndarray of float64
        :math:`s(\\operatorname{clamp}(\\lfloor x/s \\rceil + z, q_{min}, q_{max}) - z)`.
    mask : ndarray of float64
        :math:`\\partial y / \\partial x` as the STE defines it: 1 everywhere, or (clipped)
        1 where :math:`q_{min} \\le \\lfloor x/s \\rceil + z \\le q_{max}` and 0 elsewhere.

    Raises
    ------
    TypeError, ValueError
        On non-numeric or non-finite input.

    Notes
    -----
    Rounding has derivative 0 almost everywhere; the STE (Bengio et al. 2013) pretends
    it is the identity, :math:`\\partial \\lfloor u \\rceil / \\partial u := 1`.

    Examples
    --------
    >>> y, mask = fake_quantize_ste([-3.0, 0.4, 0.6, 5.0], 1.0, 0, -2, 1)
    >>> y.tolist(), mask.tolist()
    ([-2.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0])
    """
    xa = as_float_array(x, "x")
    s, z = np.asarray(scale, np.float64), np.asarray(zero_point, np.float64)
    raw, q = _codes(xa, s, z, qmin, qmax)
    mask = ((raw >= qmin) & (raw <= qmax)).astype(np.float64) if clipped else np.ones_like(raw)
    return s * (q - z), mask


def fake_quantize_lsq(
    x: ArrayLike, scale: ArrayLike, zero_point: ArrayLike, qmin: int, qmax: int
) -> tuple[F64, F64, F64]:
    """Fake quantization with the gradients of learned step size quantization (LSQ).

    Parameters
    ----------
    x, scale, zero_point, qmin, qmax
        As in :func:`fake_quantize_ste`.

    Returns
    -------
    y : ndarray of float64
        The fake-quantized values.
    grad_x : ndarray of float64
        :math:`\\partial y/\\partial x`: 1 inside the range, 0 where clamped.
    grad_scale : ndarray of float64
        :math:`\\partial y/\\partial s` element by element (sum over the elements that share
        a scale, then multiply by :func:`lsq_grad_scale`).

    Raises
    ------
    TypeError, ValueError
        On non-numeric or non-finite input.

    Notes
    -----
    Esser et al. (2020), with :math:`v = x/s` and the STE for the rounding:

    .. math:: \\frac{\\partial y}{\\partial s} = \\begin{cases}
              \\lfloor v \\rceil - v & q_{min} \\le \\lfloor v \\rceil + z \\le q_{max} \\\\
              q_{min} - z & \\text{below} \\\\ q_{max} - z & \\text{above} \\end{cases}

    Examples
    --------
    >>> y, gx, gs = fake_quantize_lsq([-3.0, 0.4, 0.6, 5.0], 1.0, 0, -2, 1)
    >>> gx.tolist(), gs.round(6).tolist()
    ([0.0, 1.0, 1.0, 0.0], [-2.0, -0.4, 0.4, 1.0])
    """
    xa = as_float_array(x, "x")
    s, z = np.asarray(scale, np.float64), np.asarray(zero_point, np.float64)
    raw, q = _codes(xa, s, z, qmin, qmax)
    inside = (raw >= qmin) & (raw <= qmax)
    v = xa.astype(np.float64) / s
    grad_scale = np.where(inside, (raw - z) - v, np.where(raw < qmin, qmin - z, qmax - z))
    return s * (q - z), inside.astype(np.float64), grad_scale


def lsq_grad_scale(n: int, q_p: int) -> float:
    """LSQ's factor on the step-size gradient, :math:`1/\\sqrt{N Q_P}`.

    Parameters
    ----------
    n : int
        Elements sharing the step (weights of a channel; features of an activation).
    q_p : int
        Number of positive levels, :math:`q_{max} - z` (at least 1 is used).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``n`` is not positive.

    Notes
    -----
    It keeps the step's update about as large, relative to the step, as the weights'
    updates are relative to the weights.

    Examples
    --------
    >>> lsq_grad_scale(64, 1)
    0.125
    """
    count = as_int(n, "n")
    if count < 1:
        raise ValueError(f"n must be a positive integer; got {n}")
    return float(1.0 / np.sqrt(count * max(as_int(q_p, "q_p"), 1)))


class QATMLP:
    """A plain MLP trained with fake quantization; converts to integers through :func:`qlearn.ptq.convert`.

    Parameters
    ----------
    prepared : PreparedModel
        A calibrated ``ptq.prepare(...)`` of a batch-norm-free MLP (see
        :func:`qlearn.rescue.fold_batch_norm`): its observers give the initial scales
        (QAT starts from PTQ). Weight observers must be symmetric.
    method : {"lsq", "ste"}, default "lsq"
        ``"lsq"`` learns every step size; ``"ste"`` keeps observers (min-max of the
        weights, a moving average of activation ranges) until :func:`qat_fit` freezes them.
    clipped : bool, default True
        For ``"ste"``: the clipped straight-through estimator. (LSQ always clips.)

    Attributes
    ----------
    model : MLP
        The float weights being trained (a copy).
    w_scale, a_scale : list of ndarray of float64
        Weight steps (one per output channel or a scalar) and activation steps.
    a_zero : list of int
        Activation zero points (fixed).
    frozen : bool
        Whether ``"ste"`` observers have stopped updating.
    loss_history_ : list of float
        Mean training loss per epoch; set on the model that :func:`qat_fit` returns.

    Raises
    ------
    TypeError, ValueError
        On a model with batch norm, asymmetric weight observers or a bad method.

    Notes
    -----
    Forward per Linear :math:`k`, with :math:`Q` the fake quantizer and
    :math:`\\hat b = s_x s_w \\lfloor b/(s_x s_w) \\rceil`:
    :math:`h_{k+1} = Q_{a_{k+1}}(\\operatorname{ReLU}(Q_{a_k}(h_k) Q_{w_k}(W_k) + \\hat b_k))`.

    Examples
    --------
    >>> import numpy as np
    >>> from functools import partial
    >>> from qlearn import ptq
    >>> from qlearn.nn import MLP
    >>> from qlearn.observers import MinMaxObserver
    >>> x = np.random.default_rng(0).random((32, 4), dtype=np.float32)
    >>> w_obs = partial(MinMaxObserver, bits=4, symmetric=True, axis=1)
    >>> p = ptq.calibrate(ptq.prepare(MLP([4, 8, 3]), w_obs, partial(MinMaxObserver, bits=4)), [x])
    >>> qat = QATMLP(p, method="lsq")
    >>> q = qat.convert()
    >>> codes = np.rint(qat.forward(x) / q.activation_qparams[-1].scale) + q.activation_qparams[-1].zero_point
    >>> bool(np.mean(q.forward_codes(x) == codes) > 0.99)
    True
    """

    loss_history_: list[float]

    def __init__(self, prepared: PreparedModel, method: str = "lsq", *, clipped: bool = True) -> None:
        if not isinstance(prepared, PreparedModel):
            raise TypeError(f"prepared must be a ptq.PreparedModel; got {type(prepared).__name__}")
        if method not in ("lsq", "ste"):
            raise ValueError(f"method must be 'lsq' or 'ste'; got {method!r}")
        if any(isinstance(layer, BatchNorm1d) for layer in prepared.model.layers):
            raise ValueError(
                "fold batch norm before QAT (qlearn.rescue.fold_batch_norm): training must see the deployed weights"
            )
        self.method, self.clipped, self.frozen = method, bool(clipped), method == "lsq"
        self.model = copy.deepcopy(prepared.model)
        self.linears = [layer for layer in self.model.layers if isinstance(layer, Linear)]
        self.relu = [r for _, r in prepared.linears()]
        w_qps = [obs.compute_qparams() for obs in prepared.weight_observers]
        a_qps = [obs.compute_qparams() for obs in prepared.activation_observers]
        if any(np.any(qp.zero_point != 0) for qp in w_qps):
            raise ValueError("weight observers must be symmetric (zero point 0)")
        self.w_bits = [qp.bits for qp in w_qps]
        self.a_bits = [qp.bits for qp in a_qps]
        self.w_per_channel = [isinstance(qp.granularity, PerAxis) for qp in w_qps]
        self.w_range = [(qp.qmin, qp.qmax) for qp in w_qps]
        self.a_range = [(qp.qmin, qp.qmax) for qp in a_qps]
        self.w_scale = [qp.scale.astype(np.float64) for qp in w_qps]
        self.a_scale = [np.array(float(qp.scale), np.float64) for qp in a_qps]
        self.a_zero = [int(qp.zero_point) for qp in a_qps]
        self.a_lo = [float(qp.scale) * (qp.qmin - int(qp.zero_point)) for qp in a_qps]  # observer state ("ste")
        self.a_hi = [float(qp.scale) * (qp.qmax - int(qp.zero_point)) for qp in a_qps]

    def __repr__(self) -> str:
        return f"QATMLP({list(self.model.sizes)}, method={self.method!r}, w_bits={self.w_bits}, a_bits={self.a_bits})"

    def parameters(self) -> list[NDArray[Any]]:
        """Weights and biases, then (LSQ) the weight steps and the activation steps; updated in place."""
        params: list[NDArray[Any]] = [p for layer in self.linears for p in layer.parameters()]
        return params + (self.w_scale + self.a_scale if self.method == "lsq" else [])

    def _quant(self, x: NDArray[Any], s: Any, z: Any, rng: tuple[int, int]) -> tuple[F64, F64, F64]:
        if self.method == "lsq":
            return fake_quantize_lsq(x, s, z, *rng)
        y, mask = fake_quantize_ste(x, s, z, *rng, clipped=self.clipped)
        return y, mask, np.zeros_like(y)

    def _bias(self, k: int) -> F64:
        grid = np.float64(np.float32(self.a_scale[k])) * self.w_scale[k].astype(np.float32).astype(np.float64)
        return np.rint(self.linears[k].b / grid) * grid

    def _run(self, x: ArrayLike) -> tuple[F64, list[tuple[Any, ...]]]:
        xb = as_float_array(x, "x").astype(np.float32)
        if xb.ndim != 2 or xb.shape[1] != self.model.sizes[0]:
            raise ValueError(f"x must have shape (batch, {self.model.sizes[0]}); got shape {xb.shape}")
        h, mask, ds = self._quant(xb, self.a_scale[0], self.a_zero[0], self.a_range[0])
        cache: list[tuple[Any, ...]] = [(mask, ds)]
        for k, layer in enumerate(self.linears):
            w_q, w_mask, w_ds = self._quant(layer.W, self.w_scale[k], 0, self.w_range[k])  # (in, out)
            z = h @ w_q + self._bias(k)  # (batch, out)
            u = np.maximum(z, 0.0) if self.relu[k] else z
            h_next, mask, ds = self._quant(u, self.a_scale[k + 1], self.a_zero[k + 1], self.a_range[k + 1])
            cache.append((h, w_q, w_mask, w_ds, z, mask, ds))
            h = h_next
        return h, cache

    def forward(self, x: ArrayLike) -> F64:
        """Fake-quantized logits (float64) for ``x`` of shape (batch, in_features)."""
        return self._run(x)[0]

    def predict(self, x: ArrayLike) -> NDArray[np.intp]:
        """Predicted classes (first largest fake-quantized logit, as the integer model's argmax)."""
        pred: NDArray[np.intp] = np.argmax(self.forward(x), axis=1)
        return pred

    def accuracy(self, x: ArrayLike, y: ArrayLike) -> float:
        """Fraction of rows predicted correctly."""
        pred = self.predict(x)
        return float(np.mean(pred == _as_labels(y, len(pred), self.model.sizes[-1])))

    def loss_and_gradients(self, x: ArrayLike, y: ArrayLike) -> tuple[float, list[NDArray[Any]]]:
        """Cross-entropy of the fake-quantized logits and its gradient, aligned with :meth:`parameters`."""
        logits, cache = self._run(x)
        loss, g = softmax_cross_entropy(logits, y)
        n_lin = len(self.linears)
        g_w: list[Any] = [None] * n_lin
        g_b: list[Any] = [None] * n_lin
        g_sw: list[Any] = [None] * n_lin
        g_sa: list[Any] = [None] * (n_lin + 1)
        for k in reversed(range(n_lin)):
            h, w_q, w_mask, w_ds, z, mask, ds = cache[k + 1]
            g_sa[k + 1] = np.array(
                (g * ds).sum() * lsq_grad_scale(g.shape[1], self.a_range[k + 1][1] - self.a_zero[k + 1])
            )
            gz = g * mask * (z > 0) if self.relu[k] else g * mask  # (batch, out)
            g_wq = h.T @ gz  # (in, out)
            n_w = w_q.shape[0] if self.w_per_channel[k] else w_q.size
            axis = 0 if self.w_per_channel[k] else None
            g_sw[k] = np.asarray((g_wq * w_ds).sum(axis=axis) * lsq_grad_scale(n_w, self.w_range[k][1]))
            g_w[k], g_b[k] = (g_wq * w_mask).astype(np.float32), gz.sum(axis=0).astype(np.float32)
            g = gz @ w_q.T  # (batch, in): gradient at this layer's quantized input
        mask0, ds0 = cache[0]
        g_sa[0] = np.array((g * ds0).sum() * lsq_grad_scale(g.shape[1], self.a_range[0][1] - self.a_zero[0]))
        grads: list[NDArray[Any]] = [a for k in range(n_lin) for a in (g_w[k], g_b[k])]
        return loss, grads + (g_sw + g_sa if self.method == "lsq" else [])

    def observe(self, x: ArrayLike, momentum: float = 0.1) -> QATMLP:
        """``"ste"`` observers: weight steps from min-max of the current weights, activation ranges by a moving average.

        Does nothing once ``frozen`` (always, for LSQ). Returns ``self``.
        """
        if self.frozen:
            return self
        for k, layer in enumerate(self.linears):
            top = np.abs(layer.W).max(axis=0) if self.w_per_channel[k] else np.abs(layer.W).max()
            g = PerAxis(1) if self.w_per_channel[k] else PerTensor()
            qp = qparams_from_range(-top, top, self.w_bits[k], True, granularity=g)
            self.w_scale[k] = qp.scale.astype(np.float64)
        acts = self.model.activations(x)
        points = [0] + [i + 2 if self.relu[k] else i + 1 for k, i in enumerate(self._linear_index())]
        for j, i in enumerate(points):
            self.a_lo[j] = (1 - momentum) * self.a_lo[j] + momentum * float(acts[i].min())
            self.a_hi[j] = (1 - momentum) * self.a_hi[j] + momentum * float(acts[i].max())
            qp = qparams_from_range(self.a_lo[j], self.a_hi[j], self.a_bits[j])
            self.a_scale[j], self.a_zero[j] = np.array(float(qp.scale)), int(qp.zero_point)
        return self

    def _linear_index(self) -> list[int]:
        return [i for i, layer in enumerate(self.model.layers) if isinstance(layer, Linear)]

    def qparams(self) -> tuple[list[QParams], list[QParams]]:
        """The current weight and activation QParams (float32 scales, as stored)."""
        w_qps = [
            QParams(
                scale=np.maximum(s, 1e-12),
                zero_point=np.zeros(s.shape, np.int32),
                qmin=lo,
                qmax=hi,
                granularity=PerAxis(1) if pc else PerTensor(),
            )  # fmt: skip
            for s, (lo, hi), pc in zip(self.w_scale, self.w_range, self.w_per_channel, strict=True)
        ]
        a_qps = [
            QParams(scale=np.maximum(s, 1e-12), zero_point=np.array(z, np.int32), qmin=lo, qmax=hi)
            for s, z, (lo, hi) in zip(self.a_scale, self.a_zero, self.a_range, strict=True)
        ]
        return w_qps, a_qps

    def convert(self) -> QuantizedMLP:
        """The integer-only model, through :func:`qlearn.ptq.convert` with the learned QParams."""
        w_qps, a_qps = self.qparams()
        return convert(prepared_from_qparams(copy.deepcopy(self.model), w_qps, a_qps))


def qat_fit(
    qat: QATMLP,
    X: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 0.01,
    momentum: float = 0.9,
    freeze_observers_after: int = 2,
    seed: int = 0,
) -> QATMLP:
    """Train a copy of a :class:`QATMLP` by minibatch SGD with momentum; ``qat`` is unchanged.

    Parameters
    ----------
    qat : QATMLP
    X : array_like of float, shape (n, in_features)
    y : array_like of int, shape (n,)
    epochs, batch_size, lr, momentum, seed
        As in :func:`qlearn.nn.fit`.
    freeze_observers_after : int, default 2
        ``"ste"``: epochs during which the observers follow the weights and activations;
        then they freeze, so the last epochs train against the final grid.

    Returns
    -------
    QATMLP
        Trained, with ``loss_history_``; observers frozen.

    Raises
    ------
    TypeError, ValueError
        On a non-QATMLP or bad settings.

    Notes
    -----
    The same update as :func:`qlearn.nn.fit`, :math:`v \\leftarrow \\mu v - \\eta g`,
    :math:`\\theta \\leftarrow \\theta + v`, also for LSQ's steps, which are then kept
    positive.

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn import ptq
    >>> from qlearn.nn import MLP
    >>> X = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> p = ptq.calibrate(ptq.prepare(MLP([4, 8, 2])), [X])
    >>> trained = qat_fit(QATMLP(p), X, y, epochs=3)
    >>> len(trained.loss_history_), trained.frozen
    (3, True)
    """
    if not isinstance(qat, QATMLP):
        raise TypeError(f"qat must be a QATMLP; got {type(qat).__name__}")
    xs = as_float_array(X, "X").astype(np.float32)
    ys = _as_labels(y, xs.shape[0], qat.model.sizes[-1])
    n_epochs, batch, freeze = (
        as_int(epochs, "epochs"),
        as_int(batch_size, "batch_size"),
        as_int(freeze_observers_after, "freeze_observers_after"),
    )
    if n_epochs < 1 or batch < 1 or freeze < 0 or not lr > 0 or not 0 <= momentum < 1:
        raise ValueError(
            "need epochs >= 1, batch_size >= 1, freeze_observers_after >= 0, lr > 0 and momentum in [0, 1); "
            f"got {epochs}, {batch_size}, {freeze_observers_after}, {lr}, {momentum}"
        )
    rng = np.random.default_rng(as_int(seed, "seed"))
    trained = copy.deepcopy(qat)
    history: list[float] = []
    n = xs.shape[0]
    velocity: list[Any] | None = None
    for epoch in range(n_epochs):
        if epoch >= freeze:
            trained.frozen = True
        order, total = rng.permutation(n), 0.0
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            trained.observe(xs[idx])
            params = trained.parameters()
            loss, grads = trained.loss_and_gradients(xs[idx], ys[idx])
            if velocity is None or len(velocity) != len(params):
                velocity = [np.zeros_like(p) for p in params]
            for p, g, v in zip(params, grads, velocity, strict=True):
                v *= momentum
                v -= lr * g
                p += v
            for s in trained.w_scale + trained.a_scale:
                np.maximum(s, 1e-8, out=s)
            total += loss * len(idx)
        history.append(total / n)
    trained.frozen = True
    trained.loss_history_ = history  # set only on models qat_fit returns
    return trained
