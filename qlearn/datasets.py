"""The real data of the book: scikit-learn's bundled 8×8 handwritten digits, split
deterministically into train / calibration / test sets.

The 1,797 images ship inside the scikit-learn package, so nothing is downloaded. Each
image is 8×8 pixels with integer intensities 0–16, flattened to 64 features.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qlearn._checks import as_int

__all__ = ["DigitsSplits", "load_digits_splits"]

N_CLASSES = 10
_MAX_PIXEL = 16.0  # pixel intensities of load_digits are the integers 0..16


@dataclass(frozen=True, eq=False, repr=False)
class DigitsSplits:
    """The digits split into train, calibration and test sets (read-only arrays).

    Parameters
    ----------
    X_train, X_calibration, X_test : ndarray of float32, shape (n, 64)
        Pixel intensities scaled to [0, 1]; row ``i`` is an 8×8 image, ``X[i].reshape(8, 8)``.
    y_train, y_calibration, y_test : ndarray of int64, shape (n,)
        Class labels, the digits 0–9.
    index_train, index_calibration, index_test : ndarray of int64, shape (n,)
        Row of each example in ``sklearn.datasets.load_digits()``, ascending; together
        the three cover every row exactly once.
    seed : int
        The seed that produced the split.

    Examples
    --------
    >>> d = load_digits_splits(seed=0)
    >>> d
    DigitsSplits(train=1238, calibration=200, test=359, seed=0)
    >>> d.X_train.shape, d.X_train.dtype, d.y_train.dtype
    ((1238, 64), dtype('float32'), dtype('int64'))
    """

    X_train: NDArray[np.float32]
    y_train: NDArray[np.int64]
    X_calibration: NDArray[np.float32]
    y_calibration: NDArray[np.int64]
    X_test: NDArray[np.float32]
    y_test: NDArray[np.int64]
    index_train: NDArray[np.int64]
    index_calibration: NDArray[np.int64]
    index_test: NDArray[np.int64]
    seed: int

    @property
    def n_classes(self) -> int:
        """Number of classes (10 digits)."""
        return N_CLASSES

    def __repr__(self) -> str:
        return (
            f"DigitsSplits(train={len(self.y_train)}, calibration={len(self.y_calibration)}, "
            f"test={len(self.y_test)}, seed={self.seed})"
        )


@functools.cache
def _digits() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """All 1,797 digits as read-only ``(X, y)``: X float32 in [0, 1], y int64."""
    try:  # lazy: needed only here
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    except ImportError as err:
        raise ImportError("qlearn.datasets needs scikit-learn for the digits data: pip install 'qlearn[data]'") from err

    data = load_digits()
    X = (np.asarray(data.data, dtype=np.float64) / _MAX_PIXEL).astype(np.float32)  # (1797, 64), exact k/16
    y = np.asarray(data.target, dtype=np.int64)  # (1797,)
    for arr in (X, y):
        arr.setflags(write=False)
    return X, y


def _stratified_order(y: NDArray[np.int64], rng: np.random.Generator) -> NDArray[np.int64]:
    """A random order of ``range(len(y))`` whose every prefix holds each class in proportion (±1)."""
    perm = rng.permutation(len(y))
    grouped = perm[np.argsort(y[perm], kind="stable")]  # grouped by class, random within a class
    counts = np.bincount(y)
    rank = np.arange(len(y)) - np.repeat(np.cumsum(counts) - counts, counts)  # position within its class
    progress = (rank + 0.5) / counts[y[grouped]]  # how far through its class, in (0, 1)
    order: NDArray[np.int64] = grouped[np.argsort(progress, kind="stable")].astype(np.int64)
    return order


def _frozen(arr: NDArray[Any]) -> NDArray[Any]:
    arr.setflags(write=False)
    return arr


def load_digits_splits(seed: int = 0, n_calibration: int = 200, test_fraction: float = 0.2) -> DigitsSplits:
    """Load the 8×8 digits as float32 in [0, 1] and split them into train / calibration / test.

    Parameters
    ----------
    seed : int, default 0
        Seed of the shuffle (a non-negative integer); the same seed gives the same
        split on every machine.
    n_calibration : int, default 200
        Number of calibration examples (the data a quantizer's observers see), at least 1.
    test_fraction : float, default 0.2
        Fraction of the 1,797 examples held out for testing, in (0, 1); the test set has
        ``round(test_fraction * 1797)`` examples. The rest is the training set.

    Returns
    -------
    DigitsSplits
        Read-only arrays; within each set the rows keep the order of ``load_digits()``.

    Raises
    ------
    TypeError
        If ``seed`` or ``n_calibration`` is not an integer, or ``test_fraction`` not a real number.
    ValueError
        If a value is out of range or leaves fewer than 10 training examples.

    Notes
    -----
    Features are :math:`x = p / 16` for pixel intensities :math:`p \\in \\{0, \\dots, 16\\}`
    (exact in float32). The split is stratified: the examples are shuffled with
    ``np.random.default_rng(seed)``, each one gets the key :math:`(r + \\tfrac12) / n_c`, where
    :math:`r` is its rank among the :math:`n_c` examples of its class, and the examples
    sorted by that key are cut into test, calibration and train. Any prefix of that order
    holds every class in proportion to within one example, so every set keeps the class
    balance of the whole dataset.

    Examples
    --------
    >>> d = load_digits_splits(seed=0, n_calibration=100, test_fraction=0.25)
    >>> len(d.y_train), len(d.y_calibration), len(d.y_test)
    (1248, 100, 449)
    >>> float(d.X_train.min()), float(d.X_train.max())
    (0.0, 1.0)
    >>> import numpy as np
    >>> np.bincount(d.y_test)  # stratified: about 45 of each digit
    array([45, 46, 44, 46, 45, 45, 45, 45, 43, 45])
    """
    s = as_int(seed, "seed")
    if s < 0:
        raise ValueError(f"seed must be a non-negative integer; got {s}")
    n_cal = as_int(n_calibration, "n_calibration")
    if n_cal < 1:
        raise ValueError(f"n_calibration must be a positive integer; got {n_cal}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(
            f"test_fraction must be a real number in (0, 1); "
            f"got {test_fraction!r} of type {type(test_fraction).__name__}"
        )
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), exclusive; got {test_fraction}")
    X, y = _digits()
    n_test = max(1, round(float(test_fraction) * len(y)))
    n_train = len(y) - n_test - n_cal
    if n_train < N_CLASSES:
        raise ValueError(
            f"test_fraction={test_fraction} ({n_test} test examples) and n_calibration={n_cal} leave {n_train} of "
            f"the {len(y)} examples for training; at least {N_CLASSES} are needed"
        )
    order = _stratified_order(y, np.random.default_rng(s))
    parts = np.split(order, [n_test, n_test + n_cal])  # test, calibration, train
    test, cal, train = (_frozen(np.sort(p)) for p in parts)
    return DigitsSplits(
        X_train=_frozen(X[train]),
        y_train=_frozen(y[train]),
        X_calibration=_frozen(X[cal]),
        y_calibration=_frozen(y[cal]),
        X_test=_frozen(X[test]),
        y_test=_frozen(y[test]),
        index_train=train,
        index_calibration=cal,
        index_test=test,
        seed=s,
    )
