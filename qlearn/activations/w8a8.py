"""W8A8 linear layers: int8 weights per output channel, int8 activations per tensor or per token."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn.integer import quantized_matmul
from qlearn.lm import Transformer
from qlearn.primitives import fake_quantize, quantize
from qlearn.qparams import QParams, choose_qparams

__all__ = ["W8A8_MODES", "calibrate_activations", "w8a8_hook", "w8a8_matmul"]

W8A8_MODES = ("static", "dynamic")
"""Activation scales: ``static`` one per tensor from calibration, ``dynamic`` one per token at run time."""

Hook = Callable[[str, NDArray[Any], NDArray[Any], NDArray[Any]], NDArray[Any]]


def _per_row(a: NDArray[Any], bits: int = 8) -> QParams:
    # one symmetric narrow-range scale per row: per token for activations, per output channel for weights
    return choose_qparams(a, bits, symmetric=True, narrow=True, axis=0)


def w8a8_matmul(x: ArrayLike, w: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int32]]:
    """``x @ w.T`` on int8 codes: per-token activation scales times per-channel weight scales.

    Parameters
    ----------
    x : array_like of float, shape (M, K)
        Activations; one symmetric int8 scale per row (token), chosen from the row itself.
    w : array_like of float, shape (N, K)
        Weights; one symmetric int8 scale per row (output channel).

    Returns
    -------
    y : ndarray of float64, shape (M, N)
        ``acc * s_x[:, None] * s_w[None, :]``.
    acc : ndarray of int32, shape (M, N)
        The integer accumulators from :func:`qlearn.integer.quantized_matmul`.

    Raises
    ------
    ValueError
        If the shapes do not chain or an operand is not 2-D.

    Notes
    -----
    :math:`y_{ij} = s^x_i s^w_j \\sum_k q^x_{ik} q^w_{jk}`: both scales sit outside the sum, so the
    inner loop is pure int8 x int8 -> int32. A per-*input*-channel activation scale would sit inside the
    sum and cannot be factored out; that is why static per-channel scales are possible only on weights
    (or after folding them into the weights, as SmoothQuant does).

    Examples
    --------
    >>> import numpy as np
    >>> y, acc = w8a8_matmul(np.array([[1.0, -2.0]]), np.array([[0.5, 0.5], [1.0, 0.0]]))
    >>> np.round(y, 3)
    array([[-0.496,  1.008]])
    """
    xa, wa = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    if xa.ndim != 2 or wa.ndim != 2 or xa.shape[1] != wa.shape[1]:
        raise ValueError(f"need x (M, K) and w (N, K); got shapes {xa.shape} and {wa.shape}")
    qpx, qpw = _per_row(xa), _per_row(wa)
    acc = quantized_matmul(quantize(xa, qpx), 0, quantize(wa, qpw).T, 0)
    sx, sw = qpx.scale.astype(np.float64), qpw.scale.astype(np.float64)
    return acc.astype(np.float64) * sx[:, None] * sw[None, :], acc


def calibrate_activations(
    model: Transformer, tokens: ArrayLike, *, bits: int = 8, symmetric: bool = False
) -> dict[str, QParams]:
    """Calibrate one activation scale (and zero point) per linear input: min-max over ``tokens``.

    Parameters
    ----------
    model : Transformer
        The float model whose linear inputs are observed (not modified).
    tokens : array_like of int, shape (batch, T)
        Calibration sequences, e.g. :func:`qlearn.lm.calibration_batches`.
    bits : int, default 8
        Activation bit width.
    symmetric : bool, default False
        Symmetric (zero point 0) instead of affine parameters.

    Returns
    -------
    dict of str to QParams
        ``name -> QParams`` for every name of :meth:`~qlearn.lm.Transformer.linear_names`, ready for
        ``w8a8_hook("static", ...)``.

    Raises
    ------
    ValueError
        On invalid tokens or bit width.

    Notes
    -----
    :math:`s = (\\max X - \\min X)/(2^b - 1)` over every token of every calibration sequence, so one
    outlier channel sets the step for all channels of the tensor.

    Examples
    --------
    >>> import qlearn as ql
    >>> m = ql.lm.Transformer.initialize(ql.lm.LMConfig(vocab_size=5, d_model=8, n_layers=1, n_heads=2,
    ...                                                  d_ff=16, context=4))
    >>> qps = calibrate_activations(m, [[0, 1, 2, 3]])
    >>> sorted(qps) == sorted(m.linear_names()), qps["head"].scale.shape
    (True, ())
    """
    return {name: choose_qparams(x, bits, symmetric) for name, x in model.capture_inputs(tokens).items()}


def _fq_weight(w: NDArray[Any], bits: int = 8) -> NDArray[Any]:
    return fake_quantize(w, _per_row(w, bits)).astype(w.dtype)


def w8a8_hook(
    mode: str,
    static_qparams: Mapping[str, QParams] | None = None,
    *,
    bits: int = 8,
    skip: tuple[str, ...] = (),
    integer: bool = False,
) -> Hook:
    """A ``linear`` hook for :meth:`qlearn.lm.Transformer.forward` that runs every layer in W8A8.

    Parameters
    ----------
    mode : {"static", "dynamic"}
        ``static``: one activation scale and zero point per tensor, from ``static_qparams``;
        ``dynamic``: one symmetric scale per token, from the token's own values.
    static_qparams : mapping of str to QParams, optional
        Per-layer activation parameters (required for ``static``), e.g. from :func:`calibrate_activations`.
    bits : int, default 8
        Activation and weight bit width.
    skip : tuple of str, default ()
        Linear names left in float.
    integer : bool, default False
        Run the products on the integer codes (:func:`qlearn.integer.quantized_matmul`, int32
        accumulators, then one rescale per output) instead of simulating them with fake-quantized
        operands and a float matmul. Both give the same numbers up to float rounding.

    Returns
    -------
    callable
        ``linear(name, x, weight, bias) -> y`` in the dtype of ``x``.

    Raises
    ------
    ValueError
        On an unknown mode, or ``static`` without parameters; when called, on a layer name that
        ``static_qparams`` lacks.
    TypeError
        If ``integer`` is not a bool.

    Notes
    -----
    Weights: symmetric per output channel, :math:`s^w_j = \\max_k |W_{jk}| / (2^{b-1} - 1)`. Activations,
    static: affine min-max over calibration, :math:`x \\approx s(q - z)`; dynamic:
    :math:`s^x_t = \\max_k |X_{tk}| / (2^{b-1} - 1)` per token. The integer path computes
    :math:`y_{tj} = s^x_t s^w_j \\sum_k (q^x_{tk} - z) q^w_{jk} + b_j` (with :math:`z = 0` and a
    per-token :math:`s^x_t` when dynamic).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(1, 2, 3)
    >>> w, b = np.eye(3, dtype=np.float32), np.zeros(3, np.float32)
    >>> y_sim = w8a8_hook("dynamic")("l", x, w, b)
    >>> y_int = w8a8_hook("dynamic", integer=True)("l", x, w, b)
    >>> y_sim.shape, bool(np.allclose(y_sim, y_int, atol=1e-6))
    ((1, 2, 3), True)
    """
    if mode not in W8A8_MODES:
        raise ValueError(f"mode must be one of {W8A8_MODES}; got {mode!r}")
    if mode == "static" and static_qparams is None:
        raise ValueError("mode 'static' needs static_qparams (one QParams per linear name); got None")
    if not isinstance(integer, bool):
        raise TypeError(f"integer must be a bool; got {integer!r}")
    table: Mapping[str, QParams] = static_qparams if static_qparams is not None else {}
    # per weight array: (the array itself, so its id cannot be reused while cached; what the layer needs)
    cache: dict[int, tuple[NDArray[Any], Any]] = {}

    def prepared(weight: NDArray[Any]) -> Any:
        hit = cache.get(id(weight))
        if hit is None or hit[0] is not weight:
            if integer:
                qpw = _per_row(weight, bits)
                hit = (weight, (quantize(weight, qpw).T, qpw.scale.astype(np.float64)))  # (in, out), (out,)
            else:
                hit = (weight, _fq_weight(weight, bits))
            cache[id(weight)] = hit
        return hit[1]

    def act_qparams(name: str, x2: NDArray[Any]) -> QParams:
        if mode == "dynamic":
            return _per_row(x2, bits)
        if name not in table:
            raise ValueError(f"static_qparams has no entry for the linear {name!r}; it has {sorted(table)}")
        return table[name]

    def linear(name: str, x: NDArray[Any], weight: NDArray[Any], bias: NDArray[Any]) -> NDArray[Any]:
        if name in skip:
            plain: NDArray[Any] = x @ weight.T + bias
            return plain
        x2 = x.reshape(-1, x.shape[-1])  # (tokens, in)
        qp = act_qparams(name, x2)
        if integer:
            qw_t, sw = prepared(weight)
            z = int(np.asarray(qp.zero_point).ravel()[0]) if mode == "static" else 0
            acc = quantized_matmul(quantize(x2, qp), z, qw_t, 0)  # (tokens, out) int32
            sx = np.asarray(qp.scale, dtype=np.float64).reshape(-1, 1)  # (tokens, 1) or (1, 1)
            y2 = (acc * sx * sw[None, :]).astype(x.dtype) + bias
        else:
            y2 = fake_quantize(x2, qp).astype(x.dtype) @ prepared(weight).T + bias
        y: NDArray[Any] = y2.reshape(*x.shape[:-1], -1)
        return y

    return linear
