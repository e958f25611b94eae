"""Observers that keep running extremes: min-max and its moving average."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from qlearn._checks import check_axis
from qlearn.observers._base import Range, _Observer

__all__ = ["MinMaxObserver", "MovingAverageMinMaxObserver"]


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
