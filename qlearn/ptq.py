"""Post-training quantization of a :class:`qlearn.nn.MLP`: prepare, calibrate, convert.

The workflow mirrors PyTorch's eager mode::

    prepared = prepare(model, weight_observer=..., activation_observer=...)
    calibrate(prepared, batches)          # float forward passes feed the observers
    qmodel = convert(prepared)            # a QuantizedMLP that runs on integers only

Weights are quantized symmetrically (zero point 0; per tensor, or per output channel
with an observer built with ``axis=1`` since ``W`` is ``(in, out)``); activations are
observed at the network's input and at the output of every Linear layer (after its
ReLU, which the integer layer applies as a clamp at the zero point).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array
from qlearn.integer import QuantizedLinear, fixed_point, quantize_bias
from qlearn.nn import MLP, Linear, ReLU
from qlearn.observers import MinMaxObserver, _Observer
from qlearn.primitives import dequantize, fake_quantize, quantize
from qlearn.qparams import QParams

__all__ = ["PreparedModel", "QuantizedMLP", "calibrate", "convert", "float_size_bytes", "prepare"]

ObserverFactory = Callable[[], _Observer]
_MAX_BITS = 8  # codes travel in 8-bit containers; the accumulator bound is checked by convert()


@dataclass
class PreparedModel:
    """A float model with observers attached (the result of :func:`prepare`).

    Attributes
    ----------
    model : MLP
        The float model (not modified).
    weight_observers : list of observers
        One per Linear layer, already fed with that layer's ``W``.
    activation_observers : list of observers
        ``[input, output of Linear 1, ..., output of Linear L]``.
    """

    model: MLP
    weight_observers: list[_Observer]
    activation_observers: list[_Observer]

    def linears(self) -> list[tuple[Linear, bool]]:
        """Each Linear layer with whether a ReLU follows it."""
        layers = self.model.layers
        return [
            (layer, i + 1 < len(layers) and isinstance(layers[i + 1], ReLU))
            for i, layer in enumerate(layers)
            if isinstance(layer, Linear)
        ]


def _make(factory: ObserverFactory, role: str) -> _Observer:
    obs = factory()
    if not isinstance(obs, _Observer):
        raise TypeError(f"{role} must be a callable returning a qlearn observer; it returned {type(obs).__name__}")
    if obs.bits > _MAX_BITS:
        raise ValueError(f"{role} bits must be at most {_MAX_BITS} for integer-only inference; got {obs.bits}")
    return obs


def prepare(
    model: MLP,
    weight_observer: ObserverFactory | None = None,
    activation_observer: ObserverFactory | None = None,
) -> PreparedModel:
    """Attach observers to a float MLP.

    Parameters
    ----------
    model : MLP
        Layers ``Linear``, optionally each followed by ``ReLU``.
    weight_observer : callable returning an observer, optional
        Default ``MinMaxObserver(bits=8, symmetric=True)`` (per tensor). Must be
        symmetric; for per-channel weights build it with ``axis=1``, e.g.
        ``functools.partial(MinMaxObserver, bits=4, symmetric=True, axis=1)``.
    activation_observer : callable returning an observer, optional
        Default ``MinMaxObserver(bits=8)`` (asymmetric, per tensor). Per tensor only.

    Returns
    -------
    PreparedModel

    Raises
    ------
    TypeError, ValueError
        If the model has layers other than Linear and ReLU, an observer factory does
        not return an observer, weights are not symmetric, an observer is per-channel
        along the wrong axis, or an observer has more than 8 bits.

    Notes
    -----
    With weights symmetric (:math:`z_w = 0`), a layer's accumulator needs no run-time
    correction for the weights' zero point: :math:`\\sum_k (q_x - z_x) q_w`.

    Examples
    --------
    >>> from qlearn.nn import MLP
    >>> p = prepare(MLP([4, 3, 2]))
    >>> len(p.weight_observers), len(p.activation_observers)
    (2, 3)
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a qlearn.nn.MLP; got {type(model).__name__}")
    for layer in model.layers:
        if not isinstance(layer, Linear | ReLU):
            raise TypeError(f"prepare supports Linear and ReLU layers; got {type(layer).__name__}")
    w_factory = weight_observer or partial(MinMaxObserver, bits=8, symmetric=True)
    a_factory = activation_observer or partial(MinMaxObserver, bits=8)
    linears = [layer for layer in model.layers if isinstance(layer, Linear)]
    weight_obs = []
    for layer in linears:
        obs = _make(w_factory, "weight_observer")
        if not obs.symmetric:
            raise ValueError("weight_observer must be symmetric (zero point 0): build it with symmetric=True")
        if getattr(obs, "axis", None) not in (None, 1, -1):
            raise ValueError(f"per-channel weights need axis=1 (W is (in, out)); got axis={obs.axis}")  # type: ignore[attr-defined]
        weight_obs.append(obs.observe(layer.W))
    act_obs = [_make(a_factory, "activation_observer") for _ in range(len(linears) + 1)]
    if any(getattr(o, "axis", None) is not None for o in act_obs):
        raise ValueError("activation observers must be per tensor (axis=None)")
    return PreparedModel(model, weight_obs, act_obs)


def calibrate(prepared: PreparedModel, batches: Iterable[ArrayLike]) -> PreparedModel:
    """Run float forward passes over ``batches`` and feed every activation observer.

    The observers of ``prepared`` are updated (that is their job); the model and the
    batches are not modified. Returns ``prepared``.

    Parameters
    ----------
    prepared : PreparedModel
    batches : iterable of array_like, each (batch, in_features)

    Returns
    -------
    PreparedModel

    Raises
    ------
    ValueError
        If no batch is given, or a batch has the wrong shape or non-finite values.

    Notes
    -----
    The observation points are the input and each Linear's output after its ReLU,
    i.e. exactly the tensors the integer model stores as codes.

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn.nn import MLP
    >>> p = calibrate(prepare(MLP([4, 3, 2])), [np.ones((5, 4), np.float32)])
    >>> p.activation_observers[0].compute_range()
    (1.0, 1.0)
    """
    if not isinstance(prepared, PreparedModel):
        raise TypeError(f"prepared must be a PreparedModel (see prepare); got {type(prepared).__name__}")
    points = _observation_points(prepared)
    n = 0
    for batch in batches:
        acts = prepared.model.activations(batch)  # [x, out of layer 0, out of layer 1, ...]
        for obs, i in zip(prepared.activation_observers, points, strict=True):
            obs.observe(acts[i])
        n += 1
    if n == 0:
        raise ValueError("calibrate needs at least one batch; got none")
    return prepared


def _observation_points(prepared: PreparedModel) -> list[int]:
    """Indices into ``model.activations(x)`` of the input and of each Linear's (post-ReLU) output."""
    points, layers = [0], prepared.model.layers
    for i, layer in enumerate(layers):
        if isinstance(layer, Linear):
            relu_next = i + 1 < len(layers) and isinstance(layers[i + 1], ReLU)
            points.append(i + 2 if relu_next else i + 1)
    return points


@dataclass(frozen=True)
class QuantizedMLP:
    """An MLP converted to integers (the result of :func:`convert`).

    Attributes
    ----------
    layers : tuple of QuantizedLinear
    activation_qparams : tuple of QParams
        Input, then each layer's output.
    weight_qparams : tuple of QParams
    """

    layers: tuple[QuantizedLinear, ...]
    activation_qparams: tuple[QParams, ...]
    weight_qparams: tuple[QParams, ...]

    def forward_codes(self, x: ArrayLike) -> NDArray[np.integer[Any]]:
        """Quantize the input once, then integer-only layers: the logits' codes."""
        q = quantize(as_float_array(x, "x").astype(np.float32), self.activation_qparams[0])
        for layer in self.layers:
            q = layer.forward(q)
        return q

    def forward(self, x: ArrayLike) -> NDArray[np.floating[Any]]:
        """Logits, dequantized from the integer model's output codes."""
        return dequantize(self.forward_codes(x), self.activation_qparams[-1])

    def simulate(self, x: ArrayLike) -> NDArray[np.floating[Any]]:
        """The same model in float arithmetic with fake quantization (the 'simulated' model)."""
        h = fake_quantize(as_float_array(x, "x").astype(np.float64), self.activation_qparams[0])
        for layer, qp_w, qp_in, qp_out in zip(
            self.layers, self.weight_qparams, self.activation_qparams[:-1], self.activation_qparams[1:], strict=True
        ):
            w_hat = dequantize(layer.q_w, qp_w, dtype=np.float64)  # (in, out)
            b_hat = layer.q_b * (np.float64(qp_in.scale) * qp_w.scale.astype(np.float64))  # (out,)
            h = fake_quantize(h @ w_hat + b_hat, qp_out)
            if layer.relu:
                h = np.maximum(h, 0.0)
        return h

    def predict(self, x: ArrayLike) -> NDArray[np.intp]:
        """Predicted classes: argmax of the output codes (dequantization is increasing)."""
        classes: NDArray[np.intp] = np.argmax(self.forward_codes(x), axis=1)
        return classes

    def accuracy(self, x: ArrayLike, y: ArrayLike) -> float:
        """Fraction of rows predicted correctly."""
        return float(np.mean(self.predict(x) == np.asarray(y)))

    def accumulator_bounds(self) -> list[int]:
        """Worst-case absolute value of accumulator plus bias, per layer, over all possible input codes."""
        bounds = []
        for layer, qp_in in zip(self.layers, self.activation_qparams, strict=False):
            dx = max(layer.z_x - qp_in.qmin, qp_in.qmax - layer.z_x)  # largest |q_x - z_x|
            per_out = dx * np.abs(layer.q_w.astype(np.int64)).sum(axis=0) + np.abs(layer.q_b.astype(np.int64))
            bounds.append(int(per_out.max()))
        return bounds

    def size_bytes(self) -> int:
        """Storage: weight codes packed at their bit width, int32 biases, float32 scales and int32 zero points."""
        total = 0
        for layer, qp_w in zip(self.layers, self.weight_qparams, strict=True):
            total += math.ceil(layer.q_w.size * qp_w.bits / 8) + 4 * layer.q_b.size + 4 * qp_w.scale.size
        return total + 8 * len(self.activation_qparams)  # one scale and one zero point per activation


def float_size_bytes(model: MLP) -> int:
    """Storage of a float32 model: 4 bytes per parameter.

    Parameters
    ----------
    model : MLP

    Returns
    -------
    int
        Bytes.

    Notes
    -----
    Compare with :meth:`QuantizedMLP.size_bytes`.

    Examples
    --------
    >>> from qlearn.nn import MLP
    >>> float_size_bytes(MLP([64, 32, 10]))  # (64*32 + 32 + 32*10 + 10) * 4
    9640
    """
    return 4 * sum(p.size for p in model.parameters())


def convert(prepared: PreparedModel) -> QuantizedMLP:
    """Turn a calibrated model into an integer-only :class:`QuantizedMLP`.

    Parameters
    ----------
    prepared : PreparedModel
        After :func:`calibrate`.

    Returns
    -------
    QuantizedMLP

    Raises
    ------
    RuntimeError
        If the activation observers have not seen data.
    OverflowError
        If some input could make an accumulator leave int32 (never for the digits
        network at 2–8 bits; see :meth:`QuantizedMLP.accumulator_bounds`).

    Notes
    -----
    For a layer with input scale :math:`s_x`, weight scale(s) :math:`s_w` and output
    scale :math:`s_y`: :math:`q_w = \\operatorname{round}(W / s_w)`,
    :math:`q_b = \\operatorname{round}(b / (s_x s_w))` in int32, and the multiplier
    :math:`M = s_x s_w / s_y \\approx m_0 2^{-n}` (per output channel when :math:`s_w` is).

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn.nn import MLP
    >>> model = MLP([4, 3, 2])
    >>> x = np.random.default_rng(0).random((16, 4), dtype=np.float32)
    >>> q = convert(calibrate(prepare(model), [x]))
    >>> q.forward_codes(x).dtype
    dtype('uint8')
    """
    act_qps = tuple(obs.compute_qparams() for obs in prepared.activation_observers)
    w_qps, layers = [], []
    for (lin, relu), w_obs, qp_x, qp_y in zip(
        prepared.linears(), prepared.weight_observers, act_qps[:-1], act_qps[1:], strict=True
    ):
        qp_w = w_obs.compute_qparams()
        s_x, s_w, s_y = np.float64(qp_x.scale), qp_w.scale.astype(np.float64), np.float64(qp_y.scale)
        layers.append(
            QuantizedLinear(
                q_w=quantize(lin.W, qp_w),  # (in, out)
                q_b=quantize_bias(lin.b, s_x, s_w),  # (out,)
                z_x=int(qp_x.zero_point),
                multiplier=fixed_point(s_x * s_w / s_y),
                z_y=int(qp_y.zero_point),
                qmin_y=qp_y.qmin,
                qmax_y=qp_y.qmax,
                relu=relu,
            )
        )
        w_qps.append(qp_w)
    qmodel = QuantizedMLP(tuple(layers), act_qps, tuple(w_qps))
    worst = max(qmodel.accumulator_bounds())
    if worst > np.iinfo(np.int32).max:
        raise OverflowError(f"some input could overflow the int32 accumulator: worst case {worst:,}")
    return qmodel
