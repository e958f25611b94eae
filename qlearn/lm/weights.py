"""The committed weights of the course's language model and its training curve.

``qlearn/lm/data/model.npz`` holds every parameter as float32 under ``param/<name>``, the config as JSON
under ``config``, and the training curve under ``history/step``, ``history/train_loss`` and
``history/valid_loss``. ``make model`` rewrites it (see :mod:`qlearn.lm.train`).
"""

from __future__ import annotations

import functools
import io
import json
from importlib import resources

import numpy as np
from numpy.typing import NDArray

from qlearn.lm.model import LMConfig, Transformer

__all__ = ["load_history", "load_model"]

_WEIGHTS = "model.npz"


@functools.cache
def _archive() -> dict[str, NDArray[np.generic]]:
    raw = resources.files("qlearn.lm").joinpath("data", _WEIGHTS).read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_model() -> Transformer:
    """Return the trained model whose weights ship with the package.
    Parameters
    ----------
    None
        It takes no arguments.

    Returns
    -------
    Transformer
        The committed float32 model (a fresh object each call; its arrays are read-only).

    Notes
    -----
    Trained by ``make model`` (:mod:`qlearn.lm.train`): AdamW on the training split of :func:`load_corpus`,
    seed 0; the archive is read once and cached.

    Examples
    --------
    >>> m = load_model()
    >>> m.config.d_model, m.config.context
    (128, 128)
    """
    z = _archive()
    cfg = LMConfig(**json.loads(str(z["config"])))
    params = {k.removeprefix("param/"): v for k, v in z.items() if k.startswith("param/")}
    return Transformer(cfg, params)


def load_history() -> dict[str, NDArray[np.generic]]:
    """Return the training curve stored with the committed weights.
    Parameters
    ----------
    None
        It takes no arguments.

    Returns
    -------
    dict of str to numpy.ndarray
        ``step`` (int), ``train_loss`` and ``valid_loss`` (nats per character); the training loss is the mean
        over the steps since the previous record, the validation loss is measured on 32 fixed windows.

    Notes
    -----
    Losses are mean cross-entropies in nats per character; :math:`e^{\text{loss}}` is a perplexity.

    Examples
    --------
    >>> h = load_history()
    >>> len(h["step"]) == len(h["valid_loss"]) > 0
    True
    """
    z = _archive()
    return {k.removeprefix("history/"): v.copy() for k, v in z.items() if k.startswith("history/")}
