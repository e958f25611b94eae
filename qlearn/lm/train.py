"""Train the language model with AdamW, deterministically from a seed; ``python -m qlearn.lm.train``.

Every step draws ``batch`` random windows of ``context + 1`` characters from the training split
(inputs and targets shifted by one), computes the loss and gradient with
``qlearn.lm.loss_and_gradients``, clips the gradient's global norm to 1 and takes one AdamW step
with a linear warm-up and a cosine decay of the learning rate. Every ``eval_every`` steps the loss on a fixed
set of validation windows is recorded. The script writes the weights, the config and the training curve to
one ``.npz`` (``qlearn/lm/data/model.npz`` by default) and a small ``.json`` of the same name beside it.

The default run (``make model``) takes about a quarter of an hour on two shared cores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qlearn.lm.corpus import load_corpus
from qlearn.lm.model import LMConfig, Transformer, _forward, init_params, loss_and_gradients

__all__ = ["TrainSettings", "adamw_step", "train"]

Array = NDArray[np.floating[Any]]

DEFAULT_CONFIG = LMConfig(vocab_size=96, context=128, d_model=128, n_layers=4, n_heads=4, d_ff=512)


@dataclass(frozen=True)
class TrainSettings:
    """Settings of a training run (all have defaults: the committed model's).

    Parameters
    ----------
    steps : int
        Optimizer steps.
    batch : int
        Windows per step.
    lr : float
        Peak learning rate.
    warmup : int
        Steps of linear warm-up.
    weight_decay : float
        Decoupled weight decay, applied to weight matrices only (not to biases, gains or embeddings).
    clip : float
        Largest global gradient norm.
    eval_every : int
        Steps between validation measurements.
    seed : int
        Seeds the initialisation and the batches.

    Examples
    --------
    >>> TrainSettings(steps=10).batch
    16
    """

    steps: int = 1200
    batch: int = 16
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.01
    clip: float = 1.0
    eval_every: int = 50
    seed: int = 0


def adamw_step(
    params: Mapping[str, Array],
    grads: Mapping[str, Array],
    state: dict[str, Any],
    *,
    lr: float,
    weight_decay: float = 0.0,
    decay: frozenset[str] = frozenset(),
    beta1: float = 0.9,
    beta2: float = 0.95,
    eps: float = 1e-8,
) -> dict[str, Array]:
    """One AdamW update; returns new parameters and updates ``state`` (the moments) in place.

    Parameters
    ----------
    params, grads : mapping of str to ndarray
        Current parameters and their gradients (not modified).
    state : dict
        Optimizer state: ``{}`` before the first step; this function keeps ``"t"``, ``"m"`` and ``"v"`` in it.
    lr : float
        Learning rate.
    weight_decay : float
        Decoupled decay rate.
    decay : frozenset of str
        Names of the parameters that decay.
    beta1, beta2, eps : float
        Adam's constants.

    Returns
    -------
    dict of str to ndarray
        The updated parameters.

    Notes
    -----
    :math:`m \\leftarrow \\beta_1 m + (1-\\beta_1) g`, :math:`v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2`,
    :math:`\\theta \\leftarrow \\theta - \\eta\\,(\\hat m / (\\sqrt{\\hat v} + \\epsilon) + \\lambda\\theta)`
    with :math:`\\hat m = m/(1-\\beta_1^t)`, :math:`\\hat v = v/(1-\\beta_2^t)` (Loshchilov and Hutter, 2019).

    Examples
    --------
    >>> st = {}
    >>> new = adamw_step({"w": np.array([1.0])}, {"w": np.array([0.5])}, st, lr=0.1)
    >>> round(float(new["w"][0]), 6), st["t"]
    (0.9, 1)
    """
    t = state.get("t", 0) + 1
    m = state.setdefault("m", {k: np.zeros_like(v) for k, v in params.items()})
    v = state.setdefault("v", {k: np.zeros_like(a) for k, a in params.items()})
    state["t"] = t
    c1, c2 = 1.0 - beta1**t, 1.0 - beta2**t
    out: dict[str, Array] = {}
    for k, p in params.items():
        g = grads[k]
        m[k] = beta1 * m[k] + (1.0 - beta1) * g
        v[k] = beta2 * v[k] + (1.0 - beta2) * (g * g)
        step = (m[k] / c1) / (np.sqrt(v[k] / c2) + eps)
        if k in decay:
            step = step + weight_decay * p
        out[k] = (p - lr * step).astype(p.dtype, copy=False)
    return out


def _lr_at(step: int, s: TrainSettings) -> float:
    # linear warm-up, then cosine from lr down to lr / 10
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    frac = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac)))


def _windows(data: NDArray[np.int32], starts: NDArray[np.int64], context: int) -> tuple[NDArray[Any], NDArray[Any]]:
    idx = starts[:, None] + np.arange(context + 1)[None, :]  # (batch, context + 1)
    w = data[idx]
    return w[:, :-1], w[:, 1:]


def _mean_loss(params: Mapping[str, Array], cfg: LMConfig, x: NDArray[Any], y: NDArray[Any]) -> float:
    logits, _ = _forward(params, cfg, x)
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, y[..., None], -1).mean())


def train(
    settings: TrainSettings = TrainSettings(),
    config: LMConfig = DEFAULT_CONFIG,
    *,
    progress: bool = True,
) -> tuple[Transformer, dict[str, Any]]:
    """Train a model from scratch on the training split.

    Parameters
    ----------
    settings : TrainSettings
        Steps, batch, learning rate, seed and so on.
    config : LMConfig
        The model's sizes.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    model : Transformer
        The trained model.
    history : dict
        ``step``, ``train_loss`` (mean over the steps since the last record), ``valid_loss`` (on 32 fixed
        validation windows), ``tokens``, ``seconds`` and ``tokens_per_second``.

    Notes
    -----
    Deterministic: the same settings on the same numpy and BLAS give the same weights.

    Examples
    --------
    >>> cfg = LMConfig(vocab_size=96, context=8, d_model=8, n_layers=1, n_heads=2, d_ff=16)
    >>> m, h = train(TrainSettings(steps=4, batch=2, eval_every=2, warmup=1), cfg, progress=False)
    >>> h["step"]
    [2, 4]
    """
    corpus = load_corpus()
    rng = np.random.default_rng(settings.seed)
    params: dict[str, Array] = dict(init_params(config, settings.seed))
    decay = frozenset(k for k, a in params.items() if a.ndim == 2 and not k.endswith("_emb"))
    train_ids, valid_ids = corpus.train, corpus.valid
    vstarts = np.linspace(0, len(valid_ids) - config.context - 2, 32).astype(np.int64)
    vx, vy = _windows(valid_ids, vstarts, config.context)
    history: dict[str, Any] = {"step": [], "train_loss": [], "valid_loss": []}
    state: dict[str, Any] = {}
    bar: Any = range(settings.steps)
    if progress:
        from tqdm import tqdm  # type: ignore[import-untyped]

        bar = tqdm(bar, desc="training", file=sys.stderr, dynamic_ncols=True)
    recent: list[float] = []
    t0 = time.perf_counter()
    for step in bar:
        starts = rng.integers(0, len(train_ids) - config.context - 1, size=settings.batch)
        x, y = _windows(train_ids, starts, config.context)
        loss, grads = loss_and_gradients(params, config, x, y)
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        if norm > settings.clip:
            grads = {k: g * (settings.clip / norm) for k, g in grads.items()}
        params = adamw_step(
            params, grads, state, lr=_lr_at(step, settings), weight_decay=settings.weight_decay, decay=decay
        )
        recent.append(loss)
        if (step + 1) % settings.eval_every == 0 or step + 1 == settings.steps:
            history["step"].append(step + 1)
            history["train_loss"].append(float(np.mean(recent)))
            history["valid_loss"].append(_mean_loss(params, config, vx, vy))
            recent = []
            if progress:
                bar.set_postfix(train=f"{history['train_loss'][-1]:.3f}", valid=f"{history['valid_loss'][-1]:.3f}")
    seconds = time.perf_counter() - t0
    tokens = settings.steps * settings.batch * config.context
    history.update(tokens=tokens, seconds=round(seconds, 1), tokens_per_second=round(tokens / seconds, 1))
    return Transformer(config, params), history


def save(model: Transformer, history: Mapping[str, Any], settings: TrainSettings, path: Path) -> None:
    """Write weights (float32), config and curve to ``path`` (.npz) and ``path.with_suffix('.json')``."""
    meta = {"config": asdict(model.config), "settings": asdict(settings), "history": dict(history)}
    arrays: dict[str, Any] = {f"param/{k}": v for k, v in model.params.items()}
    arrays["history/step"] = np.array(history["step"], dtype=np.int32)
    arrays["history/train_loss"] = np.array(history["train_loss"], dtype=np.float32)
    arrays["history/valid_loss"] = np.array(history["valid_loss"], dtype=np.float32)
    arrays["config"] = np.array(json.dumps(asdict(model.config)))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m qlearn.lm.train [--steps N] [--seed S] [--out PATH]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    d = TrainSettings()
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "model.npz")
    a = ap.parse_args(argv)
    settings = TrainSettings(steps=a.steps, batch=a.batch, lr=a.lr, seed=a.seed)
    model, history = train(settings)
    save(model, history, settings, a.out)
    print(
        f"{model!r}\nfinal train loss {history['train_loss'][-1]:.4f}, valid loss {history['valid_loss'][-1]:.4f} "
        f"(nats/char); {history['tokens']} tokens in {history['seconds']:.0f} s = "
        f"{history['tokens_per_second']:.0f} tokens/s; wrote {a.out}"
    )


if __name__ == "__main__":
    main()
