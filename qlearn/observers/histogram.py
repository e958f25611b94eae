"""The histogram that the searching observers keep: fixed-width bins that grow by merging."""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, as_int

__all__ = ["Histogram"]


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
