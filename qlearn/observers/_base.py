"""What every observer shares: settings, input checks, and the QParams of a range."""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn._checks import as_float_array, check_bits, require_finite
from qlearn.observers.histogram import _extremes
from qlearn.qparams import FLOAT32_EPS, Granularity, PerAxis, PerTensor, QParams, qparams_from_range

Range = tuple[Any, Any]
_CANDIDATES = PerAxis(0)  # many candidate ranges scored at once: one "channel" each


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
