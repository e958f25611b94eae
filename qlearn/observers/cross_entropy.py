"""The observer for the inputs of a softmax: the range that minimises cross-entropy."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from qlearn._checks import as_int
from qlearn.observers._base import Range, _Observer
from qlearn.primitives import fake_quantize

__all__ = ["CrossEntropyObserver"]


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
