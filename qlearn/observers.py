"""Streaming range observers: watch batches of data, then choose the clipping range.

Every observer follows the same pattern (settings in the constructor, what is learned
from data in attributes ending in ``_``)::

    o = EntropyObserver(bits=8)
    for batch in batches:
        o.observe(batch)          # returns the observer
    lo, hi = o.compute_range()    # the clipping range
    qp = o.compute_qparams()      # QParams, through qparams_from_range

Min-max observers keep running extremes; the others keep a :class:`Histogram` and
search it. The scale and zero point are always computed by
:func:`qlearn.qparams_from_range`, never here.
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int, check_axis, check_bits, require_finite
from qlearn.primitives import fake_quantize
from qlearn.qparams import FLOAT32_EPS, Granularity, PerAxis, PerTensor, QParams, qparams_from_range

__all__ = [
    "CrossEntropyObserver",
    "EntropyObserver",
    "Histogram",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PercentileObserver",
]

Range = tuple[Any, Any]
_CANDIDATES = PerAxis(0)  # many candidate ranges scored at once: one "channel" each


class Histogram:
    """A histogram that grows with the data by merging whole bins, never by appending.

    Bin ``i`` covers ``[i·w, (i+1)·w)``; the histogram keeps ``bins`` consecutive bins,
    starting at index 0 (``two_sided=False``, for magnitudes) or ``-bins/2`` (for signed
    data). When a batch exceeds the covered range, the width is multiplied by the
    smallest integer ``k`` that covers it and every bin ``i`` moves to ``floor(i/k)``:
    each old bin lies inside exactly one new bin, so no count is split or guessed, and
    the histogram keeps ``bins`` bins over the whole range seen so far. When the range
    grows by ``bins/2`` or more at once (``k`` would exceed the bins on one side, or
    overflow), the old range fits inside the two bins next to 0, the counts collapse
    there, and the width becomes ``reach / (bins/2)`` (``reach / bins`` one-sided),
    not a multiple of the old one: still no count is split.

    NaN and ±inf have no bin: :meth:`add` refuses them (``ValueError``), as it refuses
    quantiles outside [0, 1] (:meth:`quantile` never extrapolates).

    Parameters
    ----------
    bins : int, default 2048
        Number of bins (even if ``two_sided``).
    two_sided : bool, default False
        Cover ``[-R, R)`` (signed data) instead of ``[0, R)`` (magnitudes).

    Attributes
    ----------
    counts_ : ndarray of float64, shape (bins,)
    width_ : float
        Bin width; 0.0 until a non-zero value is seen.
    total_ : float
        Number of values added.

    Examples
    --------
    >>> h = Histogram(bins=4).add(np.array([0.5, 1.5, 2.5, 4.0]))
    >>> h.counts_, h.width_
    (array([1., 1., 1., 1.]), 1.0)
    >>> h = h.add(np.array([7.5]))     # the range doubles: pairs of bins merge
    >>> h.counts_, h.width_
    (array([2., 2., 0., 1.]), 2.0)
    """

    def __init__(self, bins: int = 2048, two_sided: bool = False) -> None:
        self.bins = as_int(bins, "bins")
        if self.bins < 2 or (two_sided and self.bins % 2):
            raise ValueError(f"bins must be an integer >= 2 (even when two_sided); got {bins}")
        self.two_sided = two_sided
        self.offset = self.bins // 2 if two_sided else 0  # index of the bin starting at 0.0
        self.counts_: NDArray[np.float64] = np.zeros(self.bins)
        self.width_ = 0.0
        self.total_ = 0.0

    @property
    def edges(self) -> NDArray[np.floating[Any]]:
        """Bin edges, shape ``(bins + 1,)``."""
        return (np.arange(self.bins + 1) - self.offset) * self.width_

    @property
    def centers(self) -> NDArray[np.floating[Any]]:
        """Bin centres, shape ``(bins,)``."""
        return (np.arange(self.bins) - self.offset + 0.5) * self.width_

    def add(self, values: ArrayLike) -> Self:
        """Count ``values`` (magnitudes when one-sided); returns ``self``.

        Raises ``ValueError`` for NaN or infinite values (they have no bin), for negative
        values in a one-sided histogram, and for an empty array.
        """
        v = as_float_array(values, "values")
        return self._add(v)

    def _add(self, values: NDArray[np.floating[Any]], extremes: tuple[float, float] | None = None) -> Self:
        """:meth:`add` for values already checked to be finite; ``extremes`` (a lower bound and
        the maximum of ``values``), when the caller knows them, save two passes."""
        v = np.asarray(values).ravel()
        lo, hi = _extremes(v) if extremes is None else extremes
        if not self.two_sided and lo < 0:
            raise ValueError(f"a one-sided histogram counts magnitudes; got a negative value {lo:.6g}")
        reach = max(-lo, hi)  # largest magnitude in the batch
        span = self.bins - self.offset  # bins on the positive side
        if reach > 0 and self.width_ == 0.0:
            self.width_ = max(reach / span, _TINY64)  # first non-zero batch: fit it exactly
        elif reach > span * self.width_:
            ratio = reach / (span * self.width_)  # > 1; inf when the width is subnormal and reach huge
            old = np.arange(self.bins) - self.offset
            if ratio < span:  # merge k consecutive bins: each old bin lies inside one new bin
                k = math.ceil(ratio)
                self.width_ *= k
            else:  # the whole old range fits inside the two bins around 0: k need not be an integer
                k = self.bins
                self.width_ = reach / span
            self.counts_ = np.bincount(old // k + self.offset, weights=self.counts_, minlength=self.bins).astype(
                np.float64
            )
        if self.width_ == 0.0:  # only zeros so far: they belong to the bin starting at 0
            self.counts_[self.offset] += v.size
        else:
            self.counts_ += _bin_counts(v, self.width_, self.offset, self.bins, non_negative=lo >= 0)
        self.total_ += v.size
        return self

    def resample(self, bins: int, top: float) -> NDArray[np.float64]:
        """Counts over ``bins`` equal bins spanning ``[0, top]`` (one-sided histograms only).

        The cumulative count is interpolated linearly inside each bin; new edges that fall
        on old edges (as when ``top`` is the range of the first batch and ``bins`` divides
        ``self.bins``) give exact integer counts.
        """
        cum = np.concatenate([[0.0], np.cumsum(self.counts_)])  # at the old edges, in bin units
        pos = np.arange(bins + 1) * (top / bins) / self.width_  # new edges, in old-bin units
        snapped = np.round(pos)
        pos = np.where(np.abs(pos - snapped) < 1e-6, snapped, pos)
        pos[-1] = max(pos[-1], float(self.bins))  # the top bin keeps everything at or above top
        return np.diff(np.interp(pos, np.arange(self.bins + 1), cum))

    def quantile(self, q: float) -> float:
        """Value below which a fraction ``q`` in [0, 1] of the counts lie (linear inside a bin).

        Raises ``ValueError`` for ``q`` outside [0, 1] (no extrapolation) or an empty histogram.
        """
        if not isinstance(q, (int, float, np.floating, np.integer)) or isinstance(q, bool) or not 0 <= q <= 1:
            raise ValueError(f"q must be a fraction in [0, 1]; got {q!r}")
        if self.total_ == 0:
            raise ValueError("the histogram is empty: add values before asking for a quantile")
        cum = np.cumsum(self.counts_)
        target = float(q) * self.total_
        i = int(np.searchsorted(cum, target, side="left"))
        i = min(i, self.bins - 1)
        before = cum[i - 1] if i > 0 else 0.0
        frac = (target - before) / self.counts_[i] if self.counts_[i] > 0 else 0.0
        return float(self.edges[i] + frac * self.width_)

    def cdf_edge(self, q: float) -> float:
        """ONNX Runtime's percentile rule: the lower edge of the first bin at which the
        cumulative fraction ``cumsum(counts / total)`` reaches ``q`` (``q`` in [0, 1])."""
        if not isinstance(q, (int, float, np.floating, np.integer)) or isinstance(q, bool) or not 0 <= q <= 1:
            raise ValueError(f"q must be a fraction in [0, 1]; got {q!r}")
        if self.total_ == 0:
            raise ValueError("the histogram is empty: add values before asking for a quantile")
        cdf = np.cumsum(self.counts_ / self.total_)
        i = min(int(np.searchsorted(cdf, q)), self.bins)
        return float(self.edges[i])


_TINY64 = float(np.finfo(np.float64).tiny)


def _extremes(v: NDArray[np.floating[Any]]) -> tuple[float, float]:
    """(min, max) of a non-empty array, as floats."""
    return float(v.min()), float(v.max())


def _bin_counts(
    v: NDArray[np.floating[Any]], width: float, offset: int, bins: int, *, non_negative: bool = False
) -> NDArray[np.float64]:
    """Counts of ``floor(v / width) + offset`` over ``[0, bins)``; values past the top edge go to the last bin.

    For non-negative ``v`` the cast to integers truncates, which is the floor: two passes fewer.
    """
    counts = np.zeros(bins, dtype=np.int64)
    n = min(v.size, _HIST_BLOCK)
    quotient, idx = np.empty(n, dtype=np.float64), np.empty(n, dtype=np.intp)  # work buffers, reused
    for a in range(0, v.size, _HIST_BLOCK):  # cache-sized blocks: each pass reads what the last one wrote
        m = min(_HIST_BLOCK, v.size - a)
        q, i = quotient[:m], idx[:m]
        np.divide(v[a : a + m], width, out=q, dtype=np.float64)  # in float64, as always
        if non_negative:  # q >= 0: the cast's truncation is the floor
            np.copyto(i, q, casting="unsafe")
            np.minimum(i, bins - 1 - offset, out=i)  # the largest value sits on the top edge
            if offset:
                i += offset
        else:
            np.floor(q, out=q)
            np.copyto(i, q, casting="unsafe")
            i += offset
            np.clip(i, 0, bins - 1, out=i)
        counts += np.bincount(i, minlength=bins)
    return counts.astype(np.float64)


_HIST_BLOCK = 1 << 16  # 65,536 values: the float64 and index buffers (1 MiB) stay in L2


class _Observer:
    """Shared machinery: settings, input checks, and the QParams of a range."""

    min_val_: Any  # float, or an array per channel
    _batch: tuple[float, float]  # (min, max) of the batch being observed
    max_val_: Any

    def __init__(
        self,
        bits: int = 8,
        symmetric: bool = False,
        *,
        signed: bool | None = None,
        narrow: bool = False,
        half_range: bool = False,
        eps: float = FLOAT32_EPS,
    ) -> None:
        self.bits = check_bits(bits)
        self.symmetric = symmetric
        self.signed = signed
        self.narrow = narrow
        self.half_range = half_range
        self.eps = eps
        self.n_batches_ = 0

    def observe(self, x: ArrayLike) -> Self:
        """Update the statistics with a batch (NaN/inf raise ``ValueError``); returns ``self``."""
        arr = as_float_array(x, "x", check_finite=False)
        # one min and one max per batch, shared by every observer; NaN propagates through both
        # and inf shows in them, so finite extremes prove finite data (no separate isfinite pass)
        lo, hi = _extremes(arr)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            require_finite(arr, "x")
        self._batch = (lo, hi)
        self._update(arr)
        self.n_batches_ += 1
        return self

    def compute_range(self) -> Range:
        """The chosen clipping range ``(lo, hi)`` (floats, or arrays per channel)."""
        self._require_data("compute_range")
        return self._range()

    def _require_data(self, method: str) -> None:
        if self.n_batches_ == 0:
            raise RuntimeError(f"{type(self).__name__}: call observe() with at least one batch before {method}()")

    def compute_qparams(self) -> QParams:
        """QParams for the chosen range, from :func:`qlearn.qparams_from_range`."""
        lo, hi = self.compute_range()
        axis = getattr(self, "axis", None)
        return self._qparams_for(lo, hi, PerTensor() if axis is None else PerAxis(axis))

    def _qparams_for(self, lo: Any, hi: Any, granularity: Granularity = _CANDIDATES) -> QParams:
        """QParams of a range with this observer's settings; by default many candidate ranges
        at once, one 'channel' per candidate."""
        return qparams_from_range(
            lo, hi, self.bits, self.symmetric, signed=self.signed, narrow=self.narrow,
            half_range=self.half_range, eps=self.eps, granularity=granularity,
        )  # fmt: skip

    def _shrinking_ranges(self, n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``n`` candidate ranges shrinking from the observed extremes towards 0:
        ``[a·min, a·max]`` (symmetric: ``±a·max|x|``) for ``a = 1/n, 2/n, ..., 1``."""
        a = np.arange(1, n + 1) / n
        if self.symmetric:
            m = max(-self.min_val_, self.max_val_)
            return -a * m, a * m
        return a * min(self.min_val_, 0.0), a * max(self.max_val_, 0.0)

    def _update(self, x: NDArray[np.floating[Any]]) -> None:
        raise NotImplementedError

    def _range(self) -> Range:
        raise NotImplementedError


class MinMaxObserver(_Observer):
    """Range = the smallest and largest values seen (per channel along ``axis``, if given).

    Parameters
    ----------
    bits, symmetric, signed, narrow, half_range, eps
        As in :func:`qlearn.choose_qparams`.
    axis : int, optional
        Keep one range per index along ``axis`` (per-channel).

    Attributes
    ----------
    min_val_, max_val_ : float or ndarray
        Running extremes.

    Examples
    --------
    >>> o = MinMaxObserver().observe([-1.0, 2.0]).observe([0.5, 3.0])
    >>> o.compute_range()
    (-1.0, 3.0)
    """

    def __init__(self, bits: int = 8, symmetric: bool = False, *, axis: int | None = None, **kwargs: Any) -> None:
        super().__init__(bits, symmetric, **kwargs)
        self.axis = axis

    def _batch_extremes(self, x: NDArray[np.floating[Any]]) -> tuple[Any, Any]:
        if self.axis is None:
            return self._batch
        if x.ndim == 0:
            raise ValueError("axis needs batches with at least one dimension; got a scalar")
        ax = check_axis(self.axis, x.ndim)
        others = tuple(i for i in range(x.ndim) if i != ax)
        lo, hi = x.min(axis=others).astype(np.float64), x.max(axis=others).astype(np.float64)  # (C,)
        if self.n_batches_ and lo.shape != self.min_val_.shape:
            raise ValueError(
                f"every batch must have {self.min_val_.shape[0]} channels along axis {self.axis}; got {lo.shape[0]}"
            )
        return lo, hi

    def _update(self, x: NDArray[np.floating[Any]]) -> None:
        lo, hi = self._batch_extremes(x)
        if self.n_batches_ == 0:
            self.min_val_, self.max_val_ = lo, hi
        else:
            self.min_val_, self.max_val_ = np.minimum(self.min_val_, lo), np.maximum(self.max_val_, hi)
            if self.axis is None:
                self.min_val_, self.max_val_ = float(self.min_val_), float(self.max_val_)

    def _range(self) -> Range:
        return self.min_val_, self.max_val_


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Range = exponential moving averages of each batch's min and max.

    ``min_val_ ← min_val_ + c·(batch_min − min_val_)`` (the first batch sets it), as
    PyTorch's observer of the same name does, and in its arithmetic: the state, ``c`` and
    every operation are float32 (each of the subtraction, multiplication and addition
    rounded to float32), so the range equals PyTorch's bit for bit on float32 data.
    (float64 batches have their extremes rounded to float32 first; PyTorch would subtract
    in float64 there.) One outlier batch moves the range by only a fraction ``c`` of its
    excess.

    Parameters
    ----------
    averaging_constant : float, default 0.01
        The weight ``c`` of each new batch, in (0, 1].
    bits, symmetric, axis, ...
        As in :class:`MinMaxObserver`.

    Examples
    --------
    >>> o = MovingAverageMinMaxObserver(averaging_constant=0.5)
    >>> o.observe([0.0, 1.0]).observe([0.0, 3.0]).compute_range()
    (0.0, 2.0)
    """

    def __init__(self, averaging_constant: float = 0.01, bits: int = 8, symmetric: bool = False, **kwargs: Any) -> None:
        super().__init__(bits, symmetric, **kwargs)
        if not 0 < averaging_constant <= 1:
            raise ValueError(f"averaging_constant must be in (0, 1]; got {averaging_constant}")
        self.averaging_constant = averaging_constant

    def _update(self, x: NDArray[np.floating[Any]]) -> None:
        lo, hi = self._batch_extremes(x)
        lo32: Any = np.asarray(lo, dtype=np.float32)  # 0-d per tensor, (C,) per channel
        hi32: Any = np.asarray(hi, dtype=np.float32)
        if self.n_batches_:  # PyTorch's arithmetic: float32 throughout, c rounded to float32
            c = np.float32(self.averaging_constant)
            m0, m1 = np.asarray(self.min_val_, np.float32), np.asarray(self.max_val_, np.float32)
            lo32 = m0 + c * (lo32 - m0)
            hi32 = m1 + c * (hi32 - m1)
        if self.axis is None:
            self.min_val_, self.max_val_ = float(lo32), float(hi32)
        else:
            self.min_val_, self.max_val_ = np.asarray(lo32, np.float64), np.asarray(hi32, np.float64)


class _HistogramObserver(_Observer):
    """Keeps a :class:`Histogram` of the data (of ``|x|`` when symmetric) and the true extremes."""

    def __init__(
        self, bits: int = 8, symmetric: bool = False, *, bins: int = 2048, magnitudes: bool | None = None, **kwargs: Any
    ) -> None:
        super().__init__(bits, symmetric, **kwargs)
        self.bins = bins
        self.magnitudes = symmetric if magnitudes is None else magnitudes  # histogram of |x|?
        self.histogram_ = Histogram(bins, two_sided=not self.magnitudes)

    def _update(self, x: NDArray[np.floating[Any]]) -> None:
        lo, hi = self._batch
        if self.magnitudes:
            self.histogram_._add(np.abs(x), (0.0, max(-lo, hi)))  # 0.0: a lower bound of |x| suffices
        else:
            self.histogram_._add(x, (lo, hi))
        first = self.n_batches_ == 0
        self.min_val_ = lo if first else min(self.min_val_, lo)
        self.max_val_ = hi if first else max(self.max_val_, hi)

    def _expected_mse(self, lo: NDArray[np.float64], hi: NDArray[np.float64], sub: int = 8) -> NDArray[np.float64]:
        """Expected squared error of each candidate range on the histogram.

        Each bin's count is spread evenly over ``sub`` points inside it, so the rounding
        error is measured even where a bin is wider than a quantization step.
        """
        h = self.histogram_
        offsets = (np.arange(sub) + 0.5) / sub - 0.5  # (sub,) positions inside a bin, in bin widths
        full = h.counts_ > 0  # empty bins add nothing: score only the P non-empty ones
        points = (h.centers[full, None] + offsets * h.width_).ravel()  # (P * sub,)
        weights = np.repeat(h.counts_[full] / sub, sub)  # (P * sub,)
        qp = self._qparams_for(lo, hi)
        scale, zp = qp.scale.astype(np.float64)[:, None], qp.zero_point.astype(np.float64)[:, None]  # (C, 1)
        out = np.empty(lo.size)
        step = max(1, (1 << 17) // max(points.size, 1))  # candidates per chunk: ~1 MiB of float64 stays in cache
        for a in range(0, lo.size, step):
            s, z = scale[a : a + step], zp[a : a + step]
            # fake_quantize's float64 arithmetic ("divide"), step by step, bit for bit
            w = points / s  # (chunk, P * sub)
            np.rint(w, out=w)
            w += z
            np.clip(w, qp.qmin, qp.qmax, out=w)
            w -= z
            w *= s
            np.subtract(points, w, out=w)  # the error
            np.square(w, out=w)
            out[a : a + step] = w @ weights
        return out / h.total_  # (candidates,)


class PercentileObserver(_HistogramObserver):
    """Range = percentiles of the data: of ``|x|`` when symmetric, of both tails otherwise.

    Parameters
    ----------
    percentile : float, default 99.99
        The share ``p`` of the data kept inside the range, in percent.
    bits, symmetric, ...
        As in :class:`MinMaxObserver`.
    convention : {"onnxruntime", "each_tail"}, default "onnxruntime"
        How an asymmetric range cuts the tails. ``"onnxruntime"`` cuts ``(100 − p)/2``
        percent on *each* side, ``[P_((100−p)/2), P_(100−(100−p)/2)]``, with ONNX Runtime's
        rule for reading a percentile off the histogram (the lower edge of the bin where
        the cumulative fraction reaches it, see ``Histogram.cdf_edge``), as
        ``onnxruntime.quantization.calibrate.HistogramCollector`` does; ``p`` in (0, 100].
        ``"each_tail"`` cuts ``100 − p`` percent on each side, ``[P_(100−p), P_p]``
        (interpolated inside a bin), and needs ``p`` in (50, 100] so that the range is not
        empty or inverted. Symmetric ranges are ``[−t, t]`` with ``t = P_p(|x|)``
        (interpolated) under both conventions.
    bins : int, default 2048
        Histogram bins; the percentile is exact to within one bin width.

    Raises
    ------
    ValueError
        If ``percentile`` or ``convention`` is outside the allowed values.

    Notes
    -----
    Both ends are clamped to the observed ``[min, max]``, so constant data give the
    range ``[c, c]`` (which :func:`qlearn.qparams_from_range` widens to include 0).

    Examples
    --------
    >>> x = np.arange(1, 10001, dtype=np.float64)
    >>> lo, hi = PercentileObserver(percentile=99.0, symmetric=True).observe(x).compute_range()
    >>> round(hi)
    9900
    >>> o = PercentileObserver(percentile=98.0).observe(x)  # ONNX Runtime: 1 % off each side
    >>> [round(v, -2) for v in o.compute_range()]
    [100.0, 9900.0]
    >>> o = PercentileObserver(percentile=98.0, convention="each_tail").observe(x)  # 2 % off each side
    >>> [round(v, -2) for v in o.compute_range()]
    [200.0, 9800.0]
    """

    def __init__(
        self,
        percentile: float = 99.99,
        bits: int = 8,
        symmetric: bool = False,
        *,
        convention: str = "onnxruntime",
        **kwargs: Any,
    ) -> None:
        super().__init__(bits, symmetric, **kwargs)
        if convention not in _CONVENTIONS:
            raise ValueError(f"convention must be one of {', '.join(map(repr, _CONVENTIONS))}; got {convention!r}")
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.integer, np.floating)):
            raise TypeError(f"percentile must be a number; got {percentile!r}")
        low = 50 if convention == "each_tail" and not symmetric else 0
        if not low < percentile <= 100:
            raise ValueError(
                f"percentile must be in ({low}, 100] (convention {convention!r}, symmetric={symmetric}): a smaller "
                f"one would leave an empty or inverted range; got {percentile}"
            )
        self.percentile = float(percentile)
        self.convention = convention

    def _range(self) -> Range:
        h, q = self.histogram_, self.percentile / 100
        if h.width_ == 0.0:  # only zeros
            return 0.0, 0.0
        if self.symmetric:
            t = min(h.quantile(q), max(-self.min_val_, self.max_val_))
            return -t, t
        if self.convention == "onnxruntime":
            cut = (100.0 - self.percentile) / 200.0  # each side, as a fraction
            lo, hi = h.cdf_edge(cut), h.cdf_edge(1.0 - cut)
        else:
            lo, hi = h.quantile(1 - q), h.quantile(q)
        lo = min(max(lo, self.min_val_), self.max_val_)  # inside [min, max]: constant data give [c, c]
        hi = max(min(hi, self.max_val_), lo)
        return lo, hi


_CONVENTIONS = ("onnxruntime", "each_tail")


class MSEObserver(_HistogramObserver):
    """Range minimising the expected quantization MSE (rounding plus clipping) of the data.

    The candidates are ``n_candidates`` ranges shrinking from the observed extremes
    towards zero, ``[a·min, a·max]`` for ``a`` in (0, 1] (symmetric: ``[−a·m, a·m]``,
    ``m = max|x|``); every candidate is scored at once, vectorised, on the histogram.

    Parameters
    ----------
    n_candidates : int, default 200
    bins : int, default 2048

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal(100_000)
    >>> lo, hi = MSEObserver(bits=4, symmetric=True).observe(x).compute_range()
    >>> 2.0 < hi < 3.5    # far inside max|x| ≈ 4.5: clipping the tails pays at 4 bits
    True
    """

    def __init__(self, n_candidates: int = 200, bits: int = 8, symmetric: bool = False, **kwargs: Any) -> None:
        # a signed histogram even when symmetric: the full signed grid reaches one code further
        # on the negative side, so |x| alone would misjudge the error of negative values
        super().__init__(bits, symmetric, magnitudes=False, **kwargs)
        self.n_candidates = as_int(n_candidates, "n_candidates")
        if self.n_candidates < 1:
            raise ValueError(f"n_candidates must be a positive integer; got {n_candidates}")

    def candidates(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The candidate ranges ``(lo, hi)``, each of shape ``(n_candidates,)``."""
        self._require_data("candidates")
        return self._shrinking_ranges(self.n_candidates)

    def _range(self) -> Range:
        lo, hi = self.candidates()
        best = int(np.argmin(self._expected_mse(lo, hi)))
        return float(lo[best]), float(hi[best])


class EntropyObserver(_HistogramObserver):
    """The TensorRT entropy calibration: the threshold whose quantized histogram of ``|x|``
    is closest (in KL divergence) to the original.

    Symmetric by construction: the range is ``[−t, t]`` (``[0, t]`` with ``signed=False``
    for non-negative data, which then gets ``2^b`` levels instead of ``2^(b−1)``).

    Parameters
    ----------
    bits : int, default 8
    bins : int, default 2048
    signed : bool, default True

    Notes
    -----
    With ``n = 2^(b−1)`` levels (``2^b`` unsigned) and the histogram ``h`` of ``|x|`` over
    ``B`` bins, for every candidate ``i = n, …, B`` (threshold ``t = i·w``):

    - ``P``: ``h[:i]`` with the clipped tail ``Σ h[i:]`` added to its last bin;
    - ``Q``: ``h[:i]`` merged into ``n`` equal groups of bins (group of bin ``j`` is
      ``⌊j·n/i⌋``), each group's count spread evenly over its non-empty bins;
    - ``D_i = KL(P‖Q) = Σ_j P_j log(P_j / Q_j)`` after normalising both.

    The threshold is ``i*·w`` for the ``i*`` with the smallest ``D_i`` (the last one on
    ties). As in NVIDIA's implementation, the first bin's count is replaced by the
    second's before the search, so a spike of exact zeros (ReLU) does not dominate.
    All candidates are evaluated at once with array operations.

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal(200_000)
    >>> o = EntropyObserver().observe(x)
    >>> lo, hi = o.compute_range()
    >>> 3.0 < hi < 4.5 and lo == -hi
    True
    """

    def __init__(self, bits: int = 8, *, bins: int = 2048, signed: bool = True, **kwargs: Any) -> None:
        # signed: symmetric [-t, t]; unsigned: affine [0, t] with zero point 0 (non-negative data)
        # a histogram 8x finer than `bins`, resampled to `bins` over [0, max|x|] for the search,
        # so that several batches give (almost) the histogram of one
        super().__init__(bits, signed, bins=8 * as_int(bins, "bins"), signed=signed, magnitudes=True, **kwargs)
        self.bins = bins
        self.levels = 2 ** (self.bits - (1 if signed else 0))
        if self.levels > bins:
            raise ValueError(f"bins must be at least the number of levels {self.levels}; got {bins}")

    def _update(self, x: NDArray[np.floating[Any]]) -> None:
        if self.signed is False and self._batch[0] < 0:
            raise ValueError(
                f"EntropyObserver(signed=False) is for non-negative data; got a minimum of {self._batch[0]:.6g}"
            )
        super()._update(x)
        self.amax_ = max(-self.min_val_, self.max_val_)

    def divergences(self) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Candidate end bins ``i`` and their KL divergences (``inf`` where Q misses P).

        Works from prefix sums, so each candidate costs O(levels), not O(bins): with
        ``p'``, ``q'`` the unnormalised P and Q of candidate ``i`` (totals ``T`` and
        ``Q_s = Σ_{j<i} h_j``),

        ``KL = (Σ p' log p' − Σ p' log q') / T − log T + log Q_s``,

        where ``Σ p' log p'`` is a prefix sum of ``h log h`` plus the folded last bin, and
        ``Σ p' log q'`` is ``Σ_g S_g log(S_g / N_g)`` over the groups (mass ``S_g`` on
        ``N_g`` non-empty bins), corrected for the last bin, which holds the tail.
        """
        self._require_data("divergences")
        h = self.histogram_.resample(self.bins, self.amax_)  # (B,) over [0, max|x|]
        h[0] = h[1]
        n, nbins = self.levels, h.size
        cand = np.arange(n, nbins + 1)  # (C,) candidate end bins i
        total = h.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            h_log_h = np.where(h > 0, h * np.log(h), 0.0)
        cum_h = np.concatenate([[0.0], np.cumsum(h)])  # (B+1,) sum of h[:j]
        cum_nz = np.concatenate([[0], np.cumsum(h > 0)])  # (B+1,) non-empty bins in h[:j]
        cum_hlh = np.concatenate([[0.0], np.cumsum(h_log_h)])
        # group g holds bins j with floor(j n / i) = g, i.e. j in [ceil(g i / n), ceil((g+1) i / n))
        edges = -((-np.arange(n + 1)[None, :] * cand[:, None]) // n)  # (C, n+1) ceil division
        sums = cum_h[edges[:, 1:]] - cum_h[edges[:, :-1]]  # (C, n) S_g
        sizes = cum_nz[edges[:, 1:]] - cum_nz[edges[:, :-1]]  # (C, n) N_g
        with np.errstate(divide="ignore", invalid="ignore"):
            group_terms = np.where(sizes > 0, sums * np.log(sums / np.maximum(sizes, 1)), 0.0)
            last = h[cand - 1]  # h_{i-1}: the last bin, in the last group
            q_last = np.where(last > 0, sums[:, -1] / np.maximum(sizes[:, -1], 1), 0.0)  # its Q value
            p_last = last + (total - cum_h[cand])  # the last bin of P, with the clipped tail
            p_log_p = cum_hlh[cand - 1] + np.where(p_last > 0, p_last * np.log(p_last), 0.0)
            p_log_q = group_terms.sum(axis=1) - np.where(last > 0, last * np.log(q_last), 0.0)
            p_log_q = p_log_q + np.where(p_last > 0, p_last * np.log(q_last), 0.0)  # -inf when q_last is 0
            kl = (p_log_p - p_log_q) / total - np.log(total) + np.log(cum_h[cand])
        return cand, np.where(np.isnan(kl), np.inf, kl)

    def _range(self) -> Range:
        if self.histogram_.width_ == 0.0:  # all zeros
            return 0.0, 0.0
        cand, kl = self.divergences()
        best = cand.size - 1 - int(np.argmin(kl[::-1]))  # the last minimum
        t = float(self.amax_ / self.bins * cand[best])  # divide first: no overflow near the float64 limit
        return (0.0 if self.signed is False else -t), t


class CrossEntropyObserver(_Observer):
    """For the inputs of a softmax: the range minimising the cross-entropy between the
    softmax of the original logits and the softmax of the quantized logits.

    Rows (along the last axis) are kept up to ``max_rows`` (the first ones seen); the
    candidates shrink from the observed extremes as in :class:`MSEObserver`.

    Parameters
    ----------
    max_rows : int, default 4096
    n_candidates : int, default 100

    Notes
    -----
    .. math:: H(p, \\hat p) = -\\frac{1}{N} \\sum_{n} \\sum_c p_{nc} \\log \\hat p_{nc},
              \\quad p = \\operatorname{softmax}(x), \\;
              \\hat p = \\operatorname{softmax}(\\operatorname{fq}(x))

    Minimising it is minimising :math:`\\mathrm{KL}(p \\| \\hat p)`, since :math:`H(p)` is fixed.

    Examples
    --------
    >>> logits = np.random.default_rng(0).normal(scale=3.0, size=(256, 10))
    >>> lo, hi = CrossEntropyObserver(bits=4).observe(logits).compute_range()
    >>> lo < 0 < hi
    True
    """

    def __init__(
        self, bits: int = 8, symmetric: bool = False, *, max_rows: int = 4096, n_candidates: int = 100, **kwargs: Any
    ) -> None:
        super().__init__(bits, symmetric, **kwargs)
        self.rows_: NDArray[np.float64] = np.zeros((0, 0))
        self.max_rows = as_int(max_rows, "max_rows")
        self.n_candidates = as_int(n_candidates, "n_candidates")
        if self.max_rows < 1 or self.n_candidates < 1:
            raise ValueError(f"max_rows and n_candidates must be positive; got {max_rows}, {n_candidates}")

    def _update(self, x: NDArray[np.floating[Any]]) -> None:
        if x.ndim == 0:
            raise ValueError("CrossEntropyObserver needs logits with a class axis (the last); got a scalar")
        rows = x.reshape(-1, x.shape[-1]).astype(np.float64)  # (rows, classes)
        if self.n_batches_ and rows.shape[1] != self.rows_.shape[1]:
            raise ValueError(f"every batch must have {self.rows_.shape[1]} classes; got {rows.shape[1]}")
        kept = rows if self.n_batches_ == 0 else np.concatenate([self.rows_, rows])
        self.rows_ = kept[: self.max_rows]
        lo, hi = self._batch
        self.min_val_ = lo if self.n_batches_ == 0 else min(self.min_val_, lo)
        self.max_val_ = hi if self.n_batches_ == 0 else max(self.max_val_, hi)

    def cross_entropies(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Candidate ranges ``(lo, hi)`` and the mean cross-entropy of each."""
        self._require_data("cross_entropies")
        lo, hi = self._shrinking_ranges(self.n_candidates)
        p = _softmax(self.rows_)  # (rows, classes)
        qp = self._qparams_for(lo, hi)
        grid = np.broadcast_to(self.rows_, (lo.size, *self.rows_.shape))  # (candidates, rows, classes)
        log_q = _log_softmax(fake_quantize(grid.reshape(lo.size, -1), qp).reshape(grid.shape))
        return lo, hi, -(p[None] * log_q).sum(axis=-1).mean(axis=-1)

    def _range(self) -> Range:
        lo, hi, ce = self.cross_entropies()
        best = int(np.argmin(ce))
        return float(lo[best]), float(hi[best])


def _log_softmax(z: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    shifted = z - z.max(axis=-1, keepdims=True)
    out: NDArray[np.floating[Any]] = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return out


def _softmax(z: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    out: NDArray[np.floating[Any]] = np.exp(_log_softmax(z))
    return out
