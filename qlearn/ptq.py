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

from qlearn._checks import as_array, as_float32, as_float_array
from qlearn.integer import ROUNDINGS, QuantizedLinear, _Int32Overflow, fixed_point, quantize_bias
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
        return [(layer, relu) for _, layer, relu in _linear_blocks(self.model)]


def _linear_blocks(model: Any) -> list[tuple[int, Linear, bool]]:
    """``(index, layer, whether a ReLU follows it)`` of each Linear, refusing what the integer path cannot run.

    The integer model is a chain of blocks ``Linear`` or ``Linear → ReLU``; anything else
    (a leading ReLU, two ReLUs in a row, batch norm, another layer type) would be dropped
    or misplaced, so it is refused.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a qlearn.nn.MLP; got {type(model).__name__}")
    layers, i = model.layers, 0
    blocks: list[tuple[int, Linear, bool]] = []
    for layer in layers:
        if not isinstance(layer, Linear | ReLU):
            raise TypeError(
                f"prepare supports Linear and ReLU layers (fold batch norm into the Linear first); "
                f"got {type(layer).__name__}"
            )
    while i < len(layers):
        layer = layers[i]
        if not isinstance(layer, Linear):
            where = "first" if i == 0 else "after another ReLU"
            raise ValueError(
                "the integer path runs blocks Linear or Linear -> ReLU; layer "
                f"{i} ({layer!r}) comes {where}, which it cannot represent; got layers {layers}"
            )
        relu = i + 1 < len(layers) and isinstance(layers[i + 1], ReLU)
        blocks.append((i, layer, relu))
        i += 2 if relu else 1
    return blocks


def _check_weight_qparams(qp: QParams, layer: int) -> None:
    """The integer layers assume symmetric weights with zero point 0 (no run-time zero-point term)."""
    if np.any(qp.zero_point != 0):
        raise ValueError(
            "weight_observer must give weight zero point 0 (symmetric=True with signed codes, the default); "
            f"Linear {layer} got zero point(s) {np.unique(qp.zero_point).tolist()} with codes in "
            f"[{qp.qmin}, {qp.qmax}]"
        )


def _make(factory: ObserverFactory, role: str) -> _Observer:
    if not callable(factory):
        raise TypeError(
            f"{role} must be a callable returning a qlearn observer (e.g. functools.partial(MinMaxObserver, "
            f"bits=8)); got {factory!r}"
        )
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
        If the model has layers other than Linear and ReLU or a sequence the integer
        path cannot represent (it runs blocks ``Linear`` or ``Linear → ReLU``: a leading
        ReLU or two ReLUs in a row are refused), an observer factory does not return an
        observer, the weights' zero point is not 0 (``symmetric=True`` with signed codes;
        ``signed=False`` puts it at 2^(b-1)), an observer is per-channel along the wrong
        axis, or an observer has more than 8 bits.

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
    blocks = _linear_blocks(model)
    w_factory = weight_observer or partial(MinMaxObserver, bits=8, symmetric=True)
    a_factory = activation_observer or partial(MinMaxObserver, bits=8)
    linears = [layer for _, layer, _ in blocks]
    weight_obs = []
    for k, layer in enumerate(linears):
        obs = _make(w_factory, "weight_observer")
        if not obs.symmetric:
            raise ValueError("weight_observer must be symmetric (zero point 0): build it with symmetric=True")
        if getattr(obs, "axis", None) not in (None, 1, -1):
            raise ValueError(f"per-channel weights need axis=1 (W is (in, out)); got axis={obs.axis}")  # type: ignore[attr-defined]
        weight_obs.append(obs.observe(layer.W))
        _check_weight_qparams(obs.compute_qparams(), k)
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
    TypeError
        If ``prepared`` is not a PreparedModel or ``batches`` is not an iterable.
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
    if isinstance(batches, str | bytes) or not isinstance(batches, Iterable):
        raise TypeError(f"batches must be an iterable of arrays (batch, in_features); got {type(batches).__name__}")
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
    return [0] + [i + 2 if relu else i + 1 for i, _, relu in _linear_blocks(prepared.model)]


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

    def quantize_input(self, x: ArrayLike) -> NDArray[np.integer[Any]]:
        """Input codes: ``x`` cast to float32 (the float model's dtype) and quantized, the one
        entry point shared by :meth:`forward_codes` and :meth:`simulate`."""
        arr = as_float_array(x, "x")
        n_in = self.layers[0].q_w.shape[0]
        if arr.ndim != 2 or arr.shape[1] != n_in:
            raise ValueError(f"x must have shape (batch, {n_in}); got shape {arr.shape}")
        return quantize(as_float32(arr, "x"), self.activation_qparams[0])

    def forward_codes(self, x: ArrayLike) -> NDArray[np.integer[Any]]:
        """Quantize the input once, then integer-only layers: the logits' codes."""
        q = self.quantize_input(x)
        for layer in self.layers:
            q = layer.forward(q)
        return q

    def forward(self, x: ArrayLike) -> NDArray[np.floating[Any]]:
        """Logits, dequantized from the integer model's output codes."""
        return dequantize(self.forward_codes(x), self.activation_qparams[-1])

    def simulate(self, x: ArrayLike) -> NDArray[np.floating[Any]]:
        """The same model in float64 arithmetic with fake quantization (the 'simulated' model).

        The input is quantized by ``quantize_input``, as in :meth:`forward_codes`, and
        dequantized in float64; every later step is float64.
        """
        h = dequantize(self.quantize_input(x), self.activation_qparams[0], dtype=np.float64)
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
        """Fraction of rows predicted correctly; ``y`` holds one integer label per row of ``x``."""
        predicted = self.predict(x)
        labels = as_array(y, "y")
        if labels.dtype.kind not in "iu" or labels.shape != predicted.shape:
            raise ValueError(
                f"y must hold integer class labels of shape {predicted.shape}, one per row of x; "
                f"got dtype {labels.dtype}, shape {labels.shape}"
            )
        return float(np.mean(predicted == labels))

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

    Raises
    ------
    TypeError
        If ``model`` is not an MLP.

    Notes
    -----
    Compare with :meth:`QuantizedMLP.size_bytes`.

    Examples
    --------
    >>> from qlearn.nn import MLP
    >>> float_size_bytes(MLP([64, 32, 10]))  # (64*32 + 32 + 32*10 + 10) * 4
    9640
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a qlearn.nn.MLP; got {type(model).__name__}")
    return 4 * sum(p.size for p in model.parameters())


def convert(prepared: PreparedModel, *, rounding: str = "half_even") -> QuantizedMLP:
    """Turn a calibrated model into an integer-only :class:`QuantizedMLP`.

    Parameters
    ----------
    prepared : PreparedModel
        After :func:`calibrate`.
    rounding : {"half_even", "gemmlowp"}, default "half_even"
        Rounding of every layer's requantization (see :func:`qlearn.integer.requantize`).

    Returns
    -------
    QuantizedMLP

    Raises
    ------
    TypeError
        If ``prepared`` is not a PreparedModel.
    RuntimeError
        If the activation observers have not seen data.
    ValueError
        If the model or its observers are not what the integer path can run (see
        :func:`prepare`: blocks Linear or Linear → ReLU, weight zero point 0, one observer
        per Linear and per activation), or if some input could make an accumulator leave
        int32 (never for the digits network at 2–8 bits; see
        :meth:`QuantizedMLP.accumulator_bounds`); that error is also an ``OverflowError``.

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
    if not isinstance(prepared, PreparedModel):
        raise TypeError(f"prepared must be a PreparedModel (see prepare); got {type(prepared).__name__}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(map(repr, ROUNDINGS))}; got {rounding!r}")
    blocks = prepared.linears()
    n_w, n_a = len(prepared.weight_observers), len(prepared.activation_observers)
    if (n_w, n_a) != (len(blocks), len(blocks) + 1):
        raise ValueError(
            f"a model with {len(blocks)} Linear layers needs {len(blocks)} weight observers and "
            f"{len(blocks) + 1} activation observers; got {n_w} and {n_a}"
        )
    act_qps = tuple(obs.compute_qparams() for obs in prepared.activation_observers)
    for qp in act_qps:
        if qp.scale.ndim != 0 or qp.bits > _MAX_BITS:
            raise ValueError(f"activation QParams must be per tensor with at most {_MAX_BITS} bits; got {qp!r}")
    w_qps, layers = [], []
    for k, ((lin, relu), w_obs, qp_x, qp_y) in enumerate(
        zip(blocks, prepared.weight_observers, act_qps[:-1], act_qps[1:], strict=True)
    ):
        qp_w = w_obs.compute_qparams()
        _check_weight_qparams(qp_w, k)
        if qp_w.bits > _MAX_BITS or qp_w.scale.shape not in ((), (lin.W.shape[1],)):
            raise ValueError(
                f"weight QParams of Linear {k} must be per tensor or per output channel (axis=1) with at most "
                f"{_MAX_BITS} bits; got {qp_w!r}"
            )
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
                rounding=rounding,
            )
        )
        w_qps.append(qp_w)
    qmodel = QuantizedMLP(tuple(layers), act_qps, tuple(w_qps))
    worst = max(qmodel.accumulator_bounds())
    if worst > np.iinfo(np.int32).max:
        raise _Int32Overflow(f"some input could overflow the int32 accumulator: worst case {worst:,}")
    return qmodel
