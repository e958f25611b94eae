"""qlearn.stats.mcnemar: McNemar's exact test on paired correct/incorrect outcomes."""

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import require

from qlearn.stats import McNemarResult, mcnemar


def pair(n01: int, n10: int, n11: int = 0, n00: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two "correct" arrays with the given counts of (A, B) outcomes."""
    a = np.array([False] * n01 + [True] * n10 + [True] * n11 + [False] * n00)
    b = np.array([True] * n01 + [False] * n10 + [True] * n11 + [False] * n00)
    return a, b


def slow_p(n01: int, n10: int) -> Fraction:
    """The definition, in exact rationals: 2 P(X <= min) for X ~ Bin(n, 1/2), capped at 1."""
    n = n01 + n10
    if n == 0:
        return Fraction(1)
    tail = sum(Fraction(math.comb(n, k), 2**n) for k in range(min(n01, n10) + 1))
    return min(Fraction(1), 2 * tail)


def test_hand_computed_golden_values():
    # n = 5 discordant, min = 1: P(X <= 1) = (1 + 5) / 32, two-sided 12 / 32
    r = mcnemar(*pair(1, 4, n11=50, n00=7))
    assert (r.n01, r.n10) == (1, 4)
    assert r.p_value == 12 / 32
    # n = 10, min = 0: 2 / 1024
    assert mcnemar(*pair(0, 10, n11=3)).p_value == 2 / 1024
    # n = 7, min = 2: P(X <= 2) = (1 + 7 + 21) / 128, doubled
    assert mcnemar(*pair(5, 2)).p_value == 58 / 128


def test_n01_is_a_wrong_b_right():
    a = [False, False, True, True]
    b = [True, True, False, True]
    r = mcnemar(a, b)
    assert (r.n01, r.n10) == (2, 1)


def test_no_or_balanced_disagreement_gives_one():
    assert mcnemar(*pair(0, 0, n11=5, n00=2)).p_value == 1.0
    assert mcnemar(*pair(6, 6, n11=5)).p_value == 1.0


def test_result_is_frozen_and_typed():
    r = mcnemar(*pair(3, 1))
    assert isinstance(r, McNemarResult)
    assert type(r.n01) is int and type(r.n10) is int and type(r.p_value) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.n01 = 5  # type: ignore[misc]


def test_does_not_mutate_inputs():
    a, b = pair(3, 2, n11=4)
    a0, b0 = a.copy(), b.copy()
    mcnemar(a, b)
    assert np.array_equal(a, a0) and np.array_equal(b, b0)


def test_large_n_is_exact_and_finite():
    # 2 * P(X <= 400) for n = 1000: tiny but representable, and it must not be 0 or NaN
    r = mcnemar(*pair(400, 600))
    assert r.p_value == float(slow_p(400, 600))
    assert 0.0 < r.p_value < 1e-9


@pytest.mark.parametrize(
    ("a", "b", "error"),
    [
        ([1, 0, 1], [1, 1, 0], TypeError),
        ([0.0, 1.0], [True, False], TypeError),
        (["yes"], [True], TypeError),
        ([True, False], [0, 1], TypeError),
        ([True, False], [True, False, True], ValueError),
        ([], [], ValueError),
        (np.ones((2, 3), bool), np.ones((3, 2), bool), ValueError),
    ],
)
def test_bad_input_is_refused(a, b, error):
    with pytest.raises(error, match="correct_"):
        mcnemar(a, b)


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=200))
def test_matches_the_exact_definition(outcomes):
    a = np.array([x for x, _ in outcomes])
    b = np.array([y for _, y in outcomes])
    r = mcnemar(a, b)
    assert r.n01 == sum((not x) and y for x, y in outcomes)
    assert r.n10 == sum(x and (not y) for x, y in outcomes)
    assert r.p_value == float(slow_p(r.n01, r.n10))
    # symmetric in the two models
    swapped = mcnemar(b, a)
    assert (swapped.n01, swapped.n10, swapped.p_value) == (r.n10, r.n01, r.p_value)


@pytest.mark.parametrize(("n01", "n10"), [(1, 4), (0, 10), (5, 2), (6, 6), (13, 29), (140, 180), (0, 1)])
def test_against_scipy_binomtest(n01, n10):
    stats = require("scipy.stats", "scipy's exact binomial test is the oracle")
    expected = stats.binomtest(n01, n01 + n10, 0.5, alternative="two-sided").pvalue
    assert mcnemar(*pair(n01, n10)).p_value == pytest.approx(expected, rel=1e-12)
