"""Paired comparison of two classifiers on the same examples (McNemar's exact test).

Two models scored on the same images are not two independent samples: most images
are right (or wrong) for both, and only the images on which they *disagree* say
anything about which model is better. McNemar's test looks at those alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["McNemarResult", "mcnemar"]


@dataclass(frozen=True)
class McNemarResult:
    """Outcome of :func:`mcnemar`: the discordant counts and the exact two-sided p-value.

    Parameters
    ----------
    n01 : int
        Examples model A got wrong and model B got right.
    n10 : int
        Examples model A got right and model B got wrong.
    p_value : float
        Exact two-sided p-value of "both models are equally accurate", in (0, 1].

    Examples
    --------
    >>> McNemarResult(n01=1, n10=4, p_value=0.375).n01
    1
    """

    n01: int
    n10: int
    p_value: float


def _as_bool(x: ArrayLike, name: str) -> NDArray[np.bool_]:
    arr = np.asarray(x)
    if arr.size == 0:
        raise ValueError(f"{name} must contain at least one example; got an empty array of shape {arr.shape}")
    if arr.dtype != np.bool_:
        raise TypeError(
            f"{name} must be a boolean array saying which examples were classified correctly "
            f"(for example predictions == labels); got dtype {arr.dtype}"
        )
    return arr


def _binomial_tail_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exact in integers, rounded once to float."""
    total, term = 0, 1
    for i in range(k + 1):
        total += term
        term = term * (n - i) // (i + 1)
    return total / (1 << n)


def mcnemar(correct_a: ArrayLike, correct_b: ArrayLike) -> McNemarResult:
    """McNemar's exact test: are two classifiers, scored on the same examples, equally accurate?

    Parameters
    ----------
    correct_a, correct_b : array_like of bool
        Same shape, not empty: ``True`` where model A (B) classified the example correctly.
        Element ``i`` of both arrays must refer to the same example.

    Returns
    -------
    McNemarResult
        ``n01`` (A wrong, B right), ``n10`` (A right, B wrong) and the exact two-sided
        ``p_value``.

    Raises
    ------
    TypeError
        If either array is not of boolean dtype.
    ValueError
        If an array is empty or the shapes differ.

    Notes
    -----
    Examples both models get right (or both wrong) carry no information about which is
    better; only the :math:`n = n_{01} + n_{10}` discordant ones do. If the models are
    equally accurate, each discordant example is A's win or B's with probability 1/2, so
    :math:`n_{01} \\sim \\mathrm{Binomial}(n, 1/2)` and the exact two-sided p-value is

    .. math:: p = \\min\\Bigl(1,\\; 2 \\sum_{k=0}^{\\min(n_{01}, n_{10})} \\binom{n}{k} 2^{-n}\\Bigr),

    with :math:`p = 1` when :math:`n = 0`. The sum is computed in exact integers and
    rounded once. For ``p = 1/2`` this equals ``scipy.stats.binomtest(n01, n).pvalue``.

    Examples
    --------
    >>> a = [True, True, False, True, True, True]
    >>> b = [True, False, True, False, False, False]
    >>> r = mcnemar(a, b)
    >>> r.n01, r.n10, r.p_value
    (1, 4, 0.375)
    """
    a = _as_bool(correct_a, "correct_a")
    b = _as_bool(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(
            f"correct_a and correct_b must have the same shape (one entry per example); got {a.shape} and {b.shape}"
        )
    n01 = int(np.count_nonzero(~a & b))
    n10 = int(np.count_nonzero(a & ~b))
    n = n01 + n10
    p = 1.0 if n == 0 else min(1.0, 2.0 * _binomial_tail_half(min(n01, n10), n))
    return McNemarResult(n01=n01, n10=n10, p_value=p)
