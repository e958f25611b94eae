"""Observers that search a histogram for the range: percentile, MSE, entropy (KL divergence)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from qlearn._checks import as_int
from qlearn.observers._base import Range, _Observer
from qlearn.observers.histogram import Histogram

__all__ = ["EntropyObserver", "MSEObserver", "PercentileObserver"]


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
