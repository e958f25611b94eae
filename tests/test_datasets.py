"""qlearn.datasets: the 8×8 digits, split into train / calibration / test."""

import functools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qlearn.datasets import DigitsSplits, load_digits_splits

N = 1797  # examples in sklearn's bundled digits


@pytest.fixture(scope="module")
def d() -> DigitsSplits:
    return load_digits_splits(seed=0)


@functools.cache
def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # the oracle: the raw data, pixel values 0..16

    data = load_digits()
    return data.data, data.target


def test_sizes_shapes_dtypes_and_range(d):
    assert repr(d) == "DigitsSplits(train=1238, calibration=200, test=359, seed=0)"
    assert d.n_classes == 10
    for X, y in ((d.X_train, d.y_train), (d.X_calibration, d.y_calibration), (d.X_test, d.y_test)):
        assert X.dtype == np.float32 and X.ndim == 2 and X.shape[1] == 64
        assert y.dtype == np.int64 and y.shape == (X.shape[0],)
        assert X.min() == 0.0 and X.max() == 1.0
        assert set(np.unique(y)) == set(range(10))
        np.testing.assert_array_equal(X * 16, np.rint(X * 16))  # every value is exactly k/16


def test_rows_match_sklearn_oracle(d):
    data, target = sklearn_digits()
    for X, y, index in (
        (d.X_train, d.y_train, d.index_train),
        (d.X_calibration, d.y_calibration, d.index_calibration),
        (d.X_test, d.y_test, d.index_test),
    ):
        np.testing.assert_array_equal(X, (data[index] / 16).astype(np.float32))
        np.testing.assert_array_equal(y, target[index])
        assert np.all(np.diff(index) > 0)  # ascending: the order of load_digits


def test_splits_are_disjoint_and_cover_everything(d):
    parts = (d.index_train, d.index_calibration, d.index_test)
    together = np.concatenate(parts)
    assert len(together) == N
    np.testing.assert_array_equal(np.sort(together), np.arange(N))


@given(seed=st.integers(0, 2**32 - 1), n_cal=st.integers(1, 400), frac=st.floats(0.05, 0.5))
def test_every_split_is_stratified(seed, n_cal, frac):
    d = load_digits_splits(seed=seed, n_calibration=n_cal, test_fraction=frac)
    _, target = sklearn_digits()
    share = np.bincount(target) / N  # class proportions of the whole dataset
    n_test = round(frac * N)
    assert (len(d.y_test), len(d.y_calibration), len(d.y_train)) == (n_test, n_cal, N - n_test - n_cal)
    for y in (d.y_test, d.y_calibration, d.y_train):
        assert np.all(np.abs(np.bincount(y, minlength=10) - share * len(y)) <= 2)


def test_same_seed_same_split_other_seed_other_split(d):
    again = load_digits_splits(seed=0)
    for name in ("X_train", "y_train", "X_calibration", "y_calibration", "X_test", "y_test", "index_test"):
        np.testing.assert_array_equal(getattr(d, name), getattr(again, name))
    other = load_digits_splits(seed=1)
    assert not np.array_equal(d.index_test, other.index_test)
    assert not np.array_equal(d.index_calibration, other.index_calibration)


def test_golden_first_test_rows_of_seed_0(d):
    # pins the split itself: a change in the algorithm (or numpy's generator) shows up here
    assert d.index_test[:8].tolist() == [2, 12, 20, 28, 44, 53, 60, 68]
    assert d.index_calibration[:8].tolist() == [13, 26, 36, 38, 41, 48, 49, 54]


def test_arrays_are_read_only(d):
    with pytest.raises(ValueError, match="read-only"):
        d.X_train[0, 0] = 5.0
    with pytest.raises(ValueError, match="read-only"):
        d.y_test[0] = 3
    with pytest.raises(AttributeError):
        d.seed = 3  # type: ignore[misc]
    # a new split is not affected by an earlier caller's copy being changed
    X = d.X_train.copy()
    X[:] = -1
    assert load_digits_splits(seed=0).X_train.min() == 0.0


def test_sklearn_is_imported_lazily():
    code = "import sys, qlearn.datasets; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"seed": -1}, ValueError, r"seed must be a non-negative integer; got -1"),
        ({"seed": 1.5}, TypeError, r"seed must be an integer; got 1.5 of type float"),
        ({"seed": True}, TypeError, r"seed must be an integer; got True"),
        ({"seed": "0"}, TypeError, r"seed must be an integer; got '0' of type str"),
        ({"n_calibration": 0}, ValueError, r"n_calibration must be a positive integer; got 0"),
        ({"n_calibration": 20.0}, TypeError, r"n_calibration must be an integer; got 20.0"),
        ({"test_fraction": 0.0}, ValueError, r"test_fraction must be in \(0, 1\), exclusive; got 0.0"),
        ({"test_fraction": 1}, ValueError, r"test_fraction must be in \(0, 1\), exclusive; got 1"),
        ({"test_fraction": float("nan")}, ValueError, r"test_fraction must be in \(0, 1\)"),
        ({"test_fraction": "0.2"}, TypeError, r"test_fraction must be a real number in \(0, 1\); got '0.2'"),
        ({"test_fraction": True}, TypeError, r"test_fraction must be a real number"),
        ({"n_calibration": 1500}, ValueError, r"leave -62 of the 1797 examples for training; at least 10"),
        ({"test_fraction": 0.99, "n_calibration": 10}, ValueError, r"leave 8 of the 1797 examples"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        load_digits_splits(**kwargs)


def test_numpy_integer_arguments_are_accepted():
    d = load_digits_splits(seed=np.int64(0), n_calibration=np.int32(200), test_fraction=np.float32(0.2))
    np.testing.assert_array_equal(d.index_test, load_digits_splits(seed=0).index_test)
