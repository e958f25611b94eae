"""Plotting helpers that several chapters share: one house style and the recurring figures.

This is the only qlearn module that imports matplotlib and seaborn; ``import qlearn``
alone does not load them (``qlearn.plot`` is imported on first use).
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from numpy.typing import ArrayLike

from qlearn._checks import as_float_array
from qlearn.primitives import dequantize
from qlearn.qparams import QParams

__all__ = ["COLORS", "grid_over_hist", "use_style"]

#: Colours with fixed meanings across the book.
COLORS = {"float": "#4C72B0", "grid": "#C44E52", "clip": "#DD8452", "asym": "#55A868", "sym": "#8172B3"}


def use_style() -> None:
    """Apply the book's figure style (call once at the top of a chapter).

    Examples
    --------
    >>> use_style()
    >>> mpl.rcParams["figure.figsize"]
    [7.0, 3.5]
    """
    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    mpl.rcParams.update(
        {
            "figure.figsize": (7.0, 3.5),
            "figure.dpi": 100,
            "axes.titlesize": 12,
            "axes.titleweight": "bold",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "savefig.bbox": "tight",
        }
    )


def grid_over_hist(
    x: ArrayLike,
    qp: QParams,
    ax: Axes | None = None,
    *,
    bins: int = 80,
    title: str | None = None,
    max_lines: int = 64,
) -> Axes:
    """Histogram of ``x`` with the values the integer grid can represent drawn over it.

    Parameters
    ----------
    x : array_like of float
        The data.
    qp : QParams
        Per-tensor quantization parameters; each code ``q`` is drawn at ``scale * (q - zero_point)``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure's axes by default.
    bins : int, default 80
        Histogram bins.
    title : str, optional
        Axes title.
    max_lines : int, default 64
        Draw every k-th grid line so that at most this many are drawn (8-bit grids are
        too dense to see line by line); the caption says how many codes each line stands for.

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    ValueError
        If ``qp`` is not per-tensor.

    Examples
    --------
    >>> import numpy as np
    >>> from qlearn import choose_qparams
    >>> x = np.random.default_rng(0).normal(size=500)
    >>> ax = grid_over_hist(x, choose_qparams(x, bits=3))
    >>> len(ax.lines)  # one line per code of a 3-bit grid
    8
    >>> plt.close("all")
    """
    data = as_float_array(x, "x").ravel()
    if qp.scale.ndim != 0:
        raise ValueError(f"grid_over_hist draws a per-tensor grid; got granularity {qp.granularity!r}")
    if ax is None:
        _, ax = plt.subplots()
    n_codes = qp.qmax - qp.qmin + 1
    step = max(1, int(np.ceil(n_codes / max_lines)))
    codes = np.arange(qp.qmin, qp.qmax + 1, step)
    grid = dequantize(codes, qp, dtype=np.float64)
    ax.hist(data, bins=bins, color=COLORS["float"], alpha=0.75, label="float values")
    for i, g in enumerate(grid):
        ax.axvline(g, color=COLORS["grid"], lw=0.8, alpha=0.7, label="integer grid" if i == 0 else None)
    every = "" if step == 1 else f" (every {step}th code)"
    ax.set_xlabel("value")
    ax.set_ylabel("count")
    ax.set_title(title or f"{qp.bits}-bit grid over the data{every}")
    ax.legend(loc="upper right")
    return ax
