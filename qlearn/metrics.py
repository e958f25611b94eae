"""Error metrics between a tensor and its quantized approximation."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array
from qlearn.qparams import QParams


def _pair(x: ArrayLike, x_hat: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    a = as_float_array(x, "x").astype(np.float64, copy=False)
    b = as_float_array(x_hat, "x_hat").astype(np.float64, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"x and x_hat must have the same shape; got {a.shape} and {b.shape}")
    return a, b


def _difference(a: NDArray[np.float64], b: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
    """``(d, c)`` with ``a - b = c · d`` and ``d`` finite: ``c = 1`` unless ``a - b`` overflows float64, then 2."""
    with np.errstate(over="ignore"):
        d = a - b
    if np.all(np.isfinite(d)):
        return d, 1.0
    return a * 0.5 - b * 0.5, 2.0  # halving is exact for normal numbers, and the difference now fits


def _log10_sum_squares(v: NDArray[np.float64]) -> float:
    """``log10(sum(v^2))`` without under- or overflow: scaled by ``m = max|v|`` before squaring."""
    m = float(np.max(np.abs(v)))
    if m == 0.0:
        return float("-inf")
    return float(np.log10(np.sum(np.square(v / m)))) + 2.0 * float(np.log10(m))


def mse(x: ArrayLike, x_hat: ArrayLike) -> float:
    """Mean squared error between ``x`` and its approximation ``x_hat``.

    Parameters
    ----------
    x, x_hat : array_like of float
        Same shape, finite, not empty. Computed in float64.

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        On non-numeric, empty or non-finite input, or mismatched shapes.

    Notes
    -----
    .. math:: \\mathrm{MSE} = \\frac{1}{n} \\sum_i (x_i - \\hat{x}_i)^2

    Examples
    --------
    >>> mse([1.0, 2.0, 3.0], [1.0, 2.5, 2.0])
    0.4166666666666667
    """
    a, b = _pair(x, x_hat)
    d, c = _difference(a, b)
    m = float(np.max(np.abs(d)))
    if m == 0.0:
        return 0.0
    with np.errstate(over="ignore"):  # only a mean square beyond float64's range gives inf
        return float(np.mean(np.square(d / m)) * m * m * (c * c))


def max_abs_error(x: ArrayLike, x_hat: ArrayLike) -> float:
    """Largest absolute difference between ``x`` and ``x_hat``.

    Parameters
    ----------
    x, x_hat : array_like of float
        Same shape, finite, not empty.

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        On non-numeric, empty or non-finite input, or mismatched shapes.

    Notes
    -----
    .. math:: \\max_i |x_i - \\hat{x}_i|

    Examples
    --------
    >>> max_abs_error([1.0, 2.0, 3.0], [1.0, 2.5, 2.0])
    1.0
    """
    a, b = _pair(x, x_hat)
    d, c = _difference(a, b)
    with np.errstate(over="ignore"):  # inf only if the true difference exceeds float64's range
        return float(np.max(np.abs(d)) * c)


def sqnr_db(x: ArrayLike, x_hat: ArrayLike) -> float:
    """Signal-to-quantization-noise ratio in decibels.

    Parameters
    ----------
    x : array_like of float
        The original signal.
    x_hat : array_like of float
        Its approximation; same shape.

    Returns
    -------
    float
        ``inf`` when ``x_hat`` equals ``x`` exactly; ``-inf`` when ``x`` is all zeros
        but ``x_hat`` is not.

    Raises
    ------
    TypeError, ValueError
        On non-numeric, empty or non-finite input, or mismatched shapes.

    Notes
    -----
    .. math:: \\mathrm{SQNR} = 10 \\log_{10} \\frac{\\sum_i x_i^2}{\\sum_i (x_i - \\hat{x}_i)^2}

    Each sum is computed as :math:`m^2 \\sum_i (v_i / m)^2` with :math:`m = \\max_i |v_i|`, and
    the logarithms are added, so neither under- nor overflows (e.g. for magnitudes of
    :math:`10^{-200}` or :math:`10^{200}`, whose squares leave float64).

    For a uniform quantizer over a full-scale uniform signal this grows by
    :math:`20 \\log_{10} 2 \\approx 6.02` dB per bit.

    Examples
    --------
    >>> round(sqnr_db([1.0, -1.0], [0.9, -1.1]), 2)
    20.0
    """
    a, b = _pair(x, x_hat)
    d, c = _difference(a, b)
    log_noise = _log10_sum_squares(d) + 2.0 * float(np.log10(c))
    if log_noise == float("-inf"):
        return float("inf")
    log_signal = _log10_sum_squares(a)
    if log_signal == float("-inf"):
        return float("-inf")
    return 10.0 * (log_signal - log_noise)


def error_split(x: ArrayLike, qp: QParams) -> tuple[float, float]:
    """The MSE of fake-quantizing ``x`` with ``qp``, split into its rounding and clipping parts.

    Parameters
    ----------
    x : array_like of float
        The data; finite, not empty.
    qp : QParams
        Per-tensor parameters.

    Returns
    -------
    tuple of float
        ``(rounding, clipping)``: the squared errors of the values inside the
        representable range ``[s(q_min − z), s(q_max − z)]`` and of those outside it, each
        summed and divided by the total number of values, so that they add up to
        ``mse(x, fake_quantize(x, qp))``.

    Raises
    ------
    TypeError, ValueError
        On bad data, or ``qp`` that is not per-tensor.

    Notes
    -----
    .. math:: \\mathrm{MSE} = \\underbrace{\\frac{1}{n}\\sum_{x_i \\in [\\alpha, \\beta]} e_i^2}_{\\text{rounding}}
              + \\underbrace{\\frac{1}{n}\\sum_{x_i \\notin [\\alpha, \\beta]} e_i^2}_{\\text{clipping}}

    Shrinking the range lowers the rounding part (about :math:`s^2/12` per value inside)
    and raises the clipping part: the trade-off every range strategy negotiates.

    Examples
    --------
    >>> from qlearn import qparams_from_range
    >>> qp = qparams_from_range(-1.0, 1.0, bits=8, symmetric=True)
    >>> rounding, clipping = error_split([0.5, 0.25, 3.0], qp)
    >>> round(clipping, 4)   # (3 - 1)^2 / 3
    1.3333
    """
    from qlearn.primitives import fake_quantize

    if not isinstance(qp, QParams) or qp.scale.ndim != 0:
        raise ValueError(f"error_split needs per-tensor QParams; got {qp!r}")
    a = as_float_array(x, "x").astype(np.float64)
    s, z = float(qp.scale), int(qp.zero_point)
    lo, hi = s * (qp.qmin - z), s * (qp.qmax - z)
    err2 = np.square(a - fake_quantize(a, qp))
    inside = (a >= lo) & (a <= hi)
    return float(err2[inside].sum() / a.size), float(err2[~inside].sum() / a.size)


__all__ = [
    "error_split",
    "max_abs_error",
    "mse",
    "sqnr_db",
]
