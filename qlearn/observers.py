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

from qlearn._checks import as_float_array, as_int, check_axis, check_bits
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
    the histogram keeps ``bins`` bins over the whole range seen so far.

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

    def add(self, values: NDArray[np.floating[Any]]) -> Self:
        """Count finite ``values`` (magnitudes when one-sided; negative values then raise)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if not self.two_sided and v.size and v.min() < 0:
            raise ValueError("a one-sided histogram counts magnitudes; got negative values")
        reach = float(np.max(np.abs(v))) if v.size else 0.0  # largest magnitude in the batch
        span = self.bins - self.offset  # bins on the positive side
        if reach > 0 and self.width_ == 0.0:
            self.width_ = reach / span  # first non-zero batch: fit it exactly
        elif reach > span * self.width_:
            k = math.ceil(reach / (span * self.width_))
            old = np.arange(self.bins) - self.offset
            self.counts_ = np.bincount(old // k + self.offset, weights=self.counts_, minlength=self.bins).astype(
                np.float64
            )
            self.width_ *= k
        if self.width_ == 0.0:  # only zeros so far: they belong to the bin starting at 0
            self.counts_[self.offset] += v.size
        else:
            idx = np.floor(v / self.width_).astype(np.int64) + self.offset
            np.clip(idx, 0, self.bins - 1, out=idx)  # the largest value sits on the top edge
            self.counts_ += np.bincount(idx, minlength=self.bins)
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
        """Value below which a fraction ``q`` of the counts lie (linear inside a bin)."""
        cum = np.cumsum(self.counts_)
        target = q * self.total_
        i = int(np.searchsorted(cum, target, side="left"))
        i = min(i, self.bins - 1)
        before = cum[i - 1] if i > 0 else 0.0
        frac = (target - before) / self.counts_[i] if self.counts_[i] > 0 else 0.0
        return float(self.edges[i] + frac * self.width_)


class _Observer:
    """Shared machinery: settings, input checks, and the QParams of a range."""

    min_val_: Any  # float, or an array per channel
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
        arr = as_float_array(x, "x")
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
            return float(x.min()), float(x.max())
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
    PyTorch's observer of the same name does; one outlier batch moves the range by only
    a fraction ``c`` of its excess.

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
        if self.n_batches_ == 0:
            self.min_val_, self.max_val_ = lo, hi
            return
        c = self.averaging_constant
        self.min_val_ = self.min_val_ + c * (lo - self.min_val_)
        self.max_val_ = self.max_val_ + c * (hi - self.max_val_)


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
        self.histogram_.add(np.abs(x) if self.magnitudes else x)
        lo, hi = float(x.min()), float(x.max())
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
        points = (h.centers[:, None] + offsets * h.width_).ravel()  # (bins * sub,)
        weights = np.repeat(h.counts_ / sub, sub)  # (bins * sub,)
        grid = np.broadcast_to(points, (lo.size, points.size))  # (candidates, bins * sub); |x| when symmetric
        err = grid - fake_quantize(grid, self._qparams_for(lo, hi))
        return (err**2 @ weights) / h.total_  # (candidates,)


class PercentileObserver(_HistogramObserver):
    """Range = percentiles of the data: of ``|x|`` when symmetric, of both tails otherwise.

    Parameters
    ----------
    percentile : float, default 99.99
        In (0, 100]. Asymmetric: the range is ``[P_(100−p), P_p]``.
    bins : int, default 2048
        Histogram bins; the percentile is exact to within one bin width.

    Examples
    --------
    >>> x = np.arange(1, 10001, dtype=np.float64)
    >>> lo, hi = PercentileObserver(percentile=99.0, symmetric=True).observe(x).compute_range()
    >>> round(hi)
    9900
    """

    def __init__(self, percentile: float = 99.99, bits: int = 8, symmetric: bool = False, **kwargs: Any) -> None:
        super().__init__(bits, symmetric, **kwargs)
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100]; got {percentile}")
        self.percentile = percentile

    def _range(self) -> Range:
        q = self.percentile / 100
        if self.symmetric:
            t = min(self.histogram_.quantile(q), max(-self.min_val_, self.max_val_))
            return -t, t
        lo = max(self.histogram_.quantile(1 - q), self.min_val_)
        hi = min(self.histogram_.quantile(q), self.max_val_)
        return lo, hi


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
        if self.signed is False and x.min() < 0:
            raise ValueError(f"EntropyObserver(signed=False) is for non-negative data; got a minimum of {x.min():.6g}")
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
        t = float(cand[best] * self.amax_ / self.bins)
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
        lo, hi = float(x.min()), float(x.max())
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
