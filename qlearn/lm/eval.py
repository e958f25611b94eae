"""Perplexity of the language model and of a unigram baseline, and calibration data: each in one place.

Evaluation uses a fixed subset: the first ``max_tokens`` (default 16,384) prediction targets of a split, cut
into non-overlapping windows of ``context`` characters; every window starts afresh, so position ``j`` of a
window is predicted from the ``j`` characters before it in that window. The unigram baseline is scored on
exactly the same targets.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qlearn.lm.corpus import SPLITS, load_corpus
from qlearn.lm.model import KVHook, LinearHook, Transformer

__all__ = ["calibration_batches", "perplexity", "unigram_perplexity"]

EVAL_TOKENS = 16384


def _ids(tokens: ArrayLike | str, name: str) -> NDArray[np.intp]:
    if isinstance(tokens, str):
        if tokens not in SPLITS:
            raise ValueError(f"{name} must be a split name {SPLITS} or an array of ids; got {tokens!r}")
        return load_corpus().split(tokens).astype(np.intp)
    arr = np.asarray(tokens)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise TypeError(f"{name} must be a split name or a 1-d integer array; got dtype {arr.dtype}, shape {arr.shape}")
    return arr.astype(np.intp)


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def _eval_windows(ids: NDArray[np.intp], context: int, max_tokens: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    n = min(max_tokens, len(ids) - 1) // context
    if n < 1:
        raise ValueError(f"tokens must hold more than context={context} ids; got {len(ids)}")
    x = ids[: n * context].reshape(n, context)  # (windows, context)
    y = ids[1 : n * context + 1].reshape(n, context)  # next character at each position
    return x, y


def perplexity(
    model: Transformer,
    tokens: ArrayLike | str = "test",
    *,
    context: int | None = None,
    batch: int = 32,
    max_tokens: int = EVAL_TOKENS,
    linear: LinearHook | None = None,
    kv_hook: KVHook | None = None,
) -> float:
    """Perplexity of ``model`` on a split (or on an array of ids), the one place it is computed.

    Parameters
    ----------
    model : Transformer
        The model (float, or with hooks that quantize it).
    tokens : {"train", "valid", "test"} or array_like of int
        A split name or 1-d ids.
    context : int, optional
        Window length, at most the model's context (default: the model's).
    batch : int
        Windows per forward pass (memory, not the result).
    max_tokens : int
        Number of targets scored (the fixed evaluation subset).
    linear, kv_hook : callable, optional
        Passed to :meth:`Transformer.forward`.

    Returns
    -------
    float
        :math:`\\exp(-\\frac1N\\sum_i \\log p(y_i \\mid \\text{window prefix}))`.

    Raises
    ------
    ValueError
        If ``context`` exceeds the model's, a size is not positive, or there are too few tokens.
    TypeError
        If ``tokens`` is neither a split name nor an integer array.

    Notes
    -----
    Perplexity is :math:`e^{\\text{mean cross-entropy in nats}}`; a model that always predicts the uniform
    distribution over :math:`V` characters scores :math:`V`.

    Examples
    --------
    >>> from qlearn.lm import load_model
    >>> ppl = perplexity(load_model(), "valid", max_tokens=1024)
    >>> 1.0 < ppl < 10.0
    True
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"model must be a Transformer; got {type(model).__name__}")
    ctx = model.config.context if context is None else _positive(context, "context")
    if ctx > model.config.context:
        raise ValueError(f"context must be at most the model's {model.config.context}; got {ctx}")
    batch = _positive(batch, "batch")
    x, y = _eval_windows(_ids(tokens, "tokens"), ctx, _positive(max_tokens, "max_tokens"))
    total = 0.0
    for i in range(0, len(x), batch):
        z = model.forward(x[i : i + batch], linear=linear, kv_hook=kv_hook).astype(np.float64)
        z = z - z.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        total -= float(np.take_along_axis(logp, y[i : i + batch, :, None], -1).sum())
    return math.exp(total / y.size)


def unigram_perplexity(
    tokens: ArrayLike | str = "test",
    *,
    train: ArrayLike | str = "train",
    vocab_size: int = 96,
    context: int = 128,
    max_tokens: int = EVAL_TOKENS,
) -> float:
    """Perplexity of the unigram model (character frequencies of ``train``) on the targets :func:`perplexity` scores.

    Parameters
    ----------
    tokens : {"train", "valid", "test"} or array_like of int
        Where to evaluate.
    train : {"train", "valid", "test"} or array_like of int
        Where to count frequencies.
    vocab_size : int
        Number of ids.
    context, max_tokens : int
        Select the same targets as :func:`perplexity` with these arguments.

    Returns
    -------
    float
        :math:`\\exp(-\\frac1N\\sum_i \\log \\hat p(y_i))`.

    Raises
    ------
    ValueError
        If an id is outside ``[0, vocab_size)`` or a size is not positive.

    Notes
    -----
    Add-one (Laplace) smoothing: :math:`\\hat p(c) = (n_c + 1) / (N + V)`, so an unseen character still
    has a finite cost.

    Examples
    --------
    >>> round(unigram_perplexity([0, 1, 0, 1, 0], train=[0, 1], vocab_size=2, context=2), 3)
    2.0
    """
    v = _positive(vocab_size, "vocab_size")
    tr = _ids(train, "train")
    _, y = _eval_windows(_ids(tokens, "tokens"), _positive(context, "context"), _positive(max_tokens, "max_tokens"))
    for name, a in (("train", tr), ("tokens", y)):
        if a.size and (a.min() < 0 or a.max() >= v):
            raise ValueError(f"{name} ids must lie in [0, {v - 1}]; got values in [{a.min()}, {a.max()}]")
    logp = np.log((np.bincount(tr, minlength=v) + 1.0) / (len(tr) + v))
    return math.exp(-float(logp[y].mean()))


def calibration_batches(n_sequences: int = 256, *, seed: int = 0, context: int = 128) -> NDArray[np.int32]:
    """Windows of the training split for calibrating quantizers: the one place calibration data comes from.

    Parameters
    ----------
    n_sequences : int
        Number of windows.
    seed : int
        Seed of the window starts.
    context : int
        Length of each window.

    Returns
    -------
    numpy.ndarray
        int32 ids, shape (n_sequences, context), each row a contiguous stretch of the training split.

    Raises
    ------
    ValueError
        If a size is not positive or ``context`` exceeds the split.

    Notes
    -----
    Starts are drawn uniformly from ``[0, len(train) - context]`` by ``numpy.random.default_rng(seed)``.

    Examples
    --------
    >>> calibration_batches(4, seed=0).shape
    (4, 128)
    """
    n, ctx = _positive(n_sequences, "n_sequences"), _positive(context, "context")
    ids = load_corpus().train
    if ctx > len(ids):
        raise ValueError(f"context must be at most the training split's length {len(ids)}; got {ctx}")
    starts = np.random.default_rng(seed).integers(0, len(ids) - ctx + 1, size=n)
    out: NDArray[np.int32] = ids[starts[:, None] + np.arange(ctx)[None, :]].astype(np.int32)
    return out
