"""Quantize every linear layer of a :class:`qlearn.lm.Transformer` with RTN, GPTQ or AWQ.

GPTQ and AWQ need each layer's inputs. They are taken from the *partly quantized* model: layer
``k`` is calibrated on what it sees once layers ``0 .. k-1`` are already quantized, so it can
correct for the errors they introduce (the sequential order of the GPTQ and AWQ reference code).
The forward pass is cut short as soon as the wanted layer's input has been recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn.lm import Transformer
from qlearn.weightonly.awq import AWQQuant, awq
from qlearn.weightonly.gptq import gptq, hessian
from qlearn.weightonly.packed import PackedWeight
from qlearn.weightonly.rtn import GroupQuant, rtn

METHODS = ("rtn", "gptq", "awq")


class _Captured(Exception):
    """Raised inside the forward pass once the wanted input has been recorded."""


def layer_inputs(model: Transformer, tokens: ArrayLike, name: str) -> NDArray[np.float32]:
    """The input rows that linear layer ``name`` sees on ``tokens``, computing no further.

    Parameters
    ----------
    model : Transformer
        The (possibly partly quantized) model.
    tokens : array_like of int, shape (batch, T)
        Calibration token ids.
    name : str
        One of ``model.linear_names()``.

    Returns
    -------
    ndarray of float32, shape (batch · T, in)

    Raises
    ------
    ValueError
        If ``name`` is not a linear layer of the model.

    Notes
    -----
    Same rows as ``model.capture_inputs(tokens, [name])[name]``; the forward pass stops at the layer.

    Examples
    --------
    >>> from qlearn.lm import LMConfig
    >>> cfg = LMConfig(vocab_size=5, context=4, d_model=4, n_layers=1, n_heads=2, d_ff=8)
    >>> layer_inputs(Transformer.initialize(cfg), [[1, 2, 3]], "blocks.0.mlp.fc2").shape
    (3, 8)
    """
    if name not in model.linear_names():
        raise ValueError(f"name must be a linear layer of the model {model.linear_names()}; got {name!r}")
    return _capture(model, tokens, name, None)


def _capture(model: Transformer, tokens: ArrayLike, name: str, reuse: dict[str, Any] | None) -> NDArray[np.float32]:
    """:func:`layer_inputs`; ``reuse`` keeps the outputs of the layers before ``name`` for the next call.

    In a sequential pass, the layers before the one being calibrated are final, and so are their
    inputs and outputs on the same tokens: later calls return them instead of multiplying again.
    """
    seen: list[NDArray[np.float32]] = []

    def record(layer: str, x: Any, w: Any, b: Any) -> Any:
        if layer == name:
            seen.append(np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32))
            raise _Captured
        if reuse is None:
            return x @ w.T + b
        if layer not in reuse:
            reuse[layer] = x @ w.T + b
        return reuse[layer]

    try:
        model.forward(tokens, linear=record)
    except _Captured:
        pass
    return seen[0]


@dataclass(frozen=True)
class QuantizedModel:
    """A transformer whose linear weights were replaced by their quantized values.

    Parameters
    ----------
    model : Transformer
        The model with :math:`\\hat W` (float32) in place of every quantized weight; use it with
        ``forward``, ``generate`` and :func:`qlearn.lm.perplexity` as the float model.
    quants : dict of str to GroupQuant or AWQQuant
        The codes and parameters of each quantized layer, by linear name.
    method : str
        ``"rtn"``, ``"gptq"`` or ``"awq"``.

    Notes
    -----
    ``nbytes`` counts the packed codes, float16 scales and zero points of every quantized layer
    (:class:`PackedWeight`), AWQ's float16 input scales, and every other parameter at 4 bytes.

    Examples
    --------
    >>> from qlearn.lm import LMConfig
    >>> cfg = LMConfig(vocab_size=5, context=4, d_model=8, n_layers=1, n_heads=2, d_ff=16)
    >>> qm = quantize_model(Transformer.initialize(cfg), "rtn", bits=4, group_size=4)
    >>> sorted(qm.quants)[0], qm.nbytes < 4 * qm.model.n_params
    ('blocks.0.attn.proj', True)
    """

    model: Transformer
    quants: dict[str, GroupQuant | AWQQuant] = field(repr=False)
    method: str

    @property
    def nbytes(self) -> int:
        """Bytes of the stored model (see Notes)."""
        total = 0
        params = self.model.params
        for name, arr in params.items():
            layer = name.removesuffix(".weight")
            if name.endswith(".weight") and layer in self.quants:
                q = self.quants[layer]
                if isinstance(q, AWQQuant):
                    total += PackedWeight.from_quant(q.quant).nbytes + 2 * q.input_scale.size
                else:
                    total += PackedWeight.from_quant(q).nbytes
            else:
                total += 4 * arr.size
        return total


def quantize_model(
    model: Transformer,
    method: str,
    bits: int = 4,
    group_size: int | None = 64,
    *,
    tokens: ArrayLike | None = None,
    names: Sequence[str] | None = None,
    zero: str = "int",
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> QuantizedModel:
    """Quantize the linear layers of ``model`` one after the other.

    Parameters
    ----------
    model : Transformer
        The float model (not modified).
    method : {"rtn", "gptq", "awq"}
        The weight quantizer.
    bits, group_size, zero
        As in :func:`qlearn.weightonly.rtn`.
    tokens : array_like of int, shape (batch, T), optional
        Calibration sequences; required by GPTQ and AWQ.
    names : sequence of str, optional
        Linear layers to quantize (default all, in forward order); the others stay float.
    progress : callable, optional
        Called with each layer's name before it is quantized.
    **options
        Passed to :func:`gptq` (``percdamp``, ``act_order``, ``block_size``) or :func:`awq`
        (``n_grid``, ``clip_search``, ``max_shrink``, ``alpha``, ``scaling``, ``clip_ends``).

    Returns
    -------
    QuantizedModel

    Raises
    ------
    ValueError
        On an unknown method or layer name, or a calibrating method without ``tokens``.

    Notes
    -----
    Layer :math:`k` is calibrated on :math:`X_k`, its inputs in the model whose layers
    :math:`0..k-1` are already quantized; its weight becomes :math:`\\hat W_k` before layer
    :math:`k+1` is calibrated.

    Examples
    --------
    >>> from qlearn.lm import LMConfig
    >>> cfg = LMConfig(vocab_size=5, context=4, d_model=8, n_layers=1, n_heads=2, d_ff=16)
    >>> m = Transformer.initialize(cfg)
    >>> qm = quantize_model(m, "gptq", bits=3, group_size=8, tokens=[[1, 2, 3, 4], [4, 3, 2, 1]])
    >>> len(qm.quants) == len(m.linear_names())
    True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    order = model.linear_names()
    wanted = order if names is None else list(names)
    unknown = sorted(set(wanted) - set(order))
    if unknown:
        raise ValueError(f"names must be linear layers of the model {order}; got unknown {unknown}")
    if method != "rtn" and tokens is None:
        raise ValueError(f"method {method!r} calibrates on activations: give tokens (batch, T) of calibration text")
    current = model
    quants: dict[str, GroupQuant | AWQQuant] = {}
    reuse: dict[str, Any] = {}  # outputs of the layers already final, on the calibration tokens
    for name in (n for n in order if n in wanted):
        if progress is not None:
            progress(name)
        w = current.params[name + ".weight"]  # (out, in)
        q: GroupQuant | AWQQuant
        if method == "rtn":
            q = rtn(w, bits, group_size, zero=zero)
        else:
            x = _capture(current, np.asarray(tokens), name, reuse)  # (N, in)
            if method == "gptq":
                q = gptq(w, hessian(x), bits, group_size, zero=zero, **options)
            else:
                q = awq(w, x, bits, group_size, zero=zero, **options)
        quants[name] = q
        current = current.with_params({name + ".weight": q.dequantize(np.float32)})
        reuse.pop(name, None)
    return QuantizedModel(current, quants, method)


__all__ = ["METHODS", "QuantizedModel", "layer_inputs", "quantize_model"]
