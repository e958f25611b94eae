"""Plotting helpers that several chapters share: one house style and the recurring figures.

This is the only qlearn module that imports matplotlib and seaborn; ``import qlearn``
alone does not load them (``qlearn.plot`` is imported on first use).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

try:
    import matplotlib as mpl
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.axes import Axes
except ImportError as err:  # the numpy core works without them
    raise ImportError("qlearn.plot needs matplotlib and seaborn: pip install 'qlearn[plot]'") from err
from numpy.typing import ArrayLike

from qlearn._checks import as_float_array
from qlearn.primitives import dequantize
from qlearn.qparams import QParams

__all__ = ["COLORS", "distributions", "grid_over_hist", "heatmap", "use_style"]

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


def heatmap(
    values: ArrayLike,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    ax: Axes | None = None,
    *,
    fmt: str = ".1f",
    cbar_label: str | None = None,
    title: str | None = None,
    cmap: str = "viridis",
) -> Axes:
    """Annotated heatmap of a table of numbers over two settings (seaborn ``heatmap``).

    Parameters
    ----------
    values : array_like of float, shape (rows, columns)
        The table, finite; cell ``[i, j]`` belongs to ``row_labels[i]`` and ``col_labels[j]``.
    row_labels, col_labels : sequence of str
        One label per row and per column.
    ax : matplotlib Axes, optional
        Where to draw; a new figure's axes by default.
    fmt : str, default ".1f"
        Format of the number written in every cell.
    cbar_label : str, optional
        Label of the colour bar.
    title : str, optional
        Axes title.
    cmap : str, default "viridis"
        Colour map (perceptually uniform by default, readable in greyscale).

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    ValueError
        If ``values`` is not 2-D or the labels do not match its shape.

    Notes
    -----
    The colour of cell ``[i, j]`` is ``cmap((v_ij - min v) / (max v - min v))``; its number
    is ``format(v_ij, fmt)``, so the figure can be read without the colour scale.

    Examples
    --------
    >>> ax = heatmap([[1.0, 2.0], [3.0, 4.0]], ["a", "b"], ["x", "y"])
    >>> [t.get_text() for t in ax.texts]
    ['1.0', '2.0', '3.0', '4.0']
    >>> plt.close("all")
    """
    table = as_float_array(values, "values")
    if table.ndim != 2:
        raise ValueError(f"values must be a 2-D table (rows, columns); got shape {table.shape}")
    rows, cols = list(row_labels), list(col_labels)
    if (len(rows), len(cols)) != table.shape:
        raise ValueError(
            f"row_labels and col_labels must match the table's shape {table.shape}; "
            f"got {len(rows)} row and {len(cols)} column labels"
        )
    if ax is None:
        _, ax = plt.subplots()
    sns.heatmap(
        table,
        ax=ax,
        annot=True,
        fmt=fmt,
        cmap=cmap,
        xticklabels=cols,
        yticklabels=rows,
        linewidths=0.5,
        cbar_kws={"label": cbar_label} if cbar_label else None,
    )
    ax.tick_params(axis="y", rotation=0)
    ax.tick_params(axis="x", rotation=0)
    if title:
        ax.set_title(title)
    return ax


def distributions(
    samples: Mapping[str, ArrayLike],
    ax: Axes | None = None,
    *,
    bins: int = 60,
    xlabel: str = "value",
    title: str | None = None,
    log: bool = False,
) -> Axes:
    """Overlaid density histograms of several named samples (seaborn ``histplot``).

    Parameters
    ----------
    samples : mapping of str to array_like of float
        Name (the legend entry) to data; each sample is flattened, finite, not empty.
    ax : matplotlib Axes, optional
        Where to draw; a new figure's axes by default.
    bins : int, default 60
        Number of bins, shared by all samples (same edges for all).
    xlabel : str, default "value"
        Label of the x axis.
    title : str, optional
        Axes title.
    log : bool, default False
        Logarithmic density axis, for distributions with long tails.

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    ValueError
        If ``samples`` is empty or ``bins`` is not a positive integer.

    Notes
    -----
    Each sample is normalised on its own (``common_norm=False``): the area under each
    outline is 1, so samples of different sizes can be compared by shape.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ax = distributions({"a": rng.normal(size=100), "b": rng.laplace(size=50)})
    >>> sorted(t.get_text() for t in ax.get_legend().get_texts())
    ['a', 'b']
    >>> plt.close("all")
    """
    if not samples:
        raise ValueError("samples must name at least one sample; got an empty mapping")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    names = list(samples)
    data = {name: as_float_array(samples[name], f"samples[{name!r}]").ravel() for name in names}
    values = np.concatenate(list(data.values()))
    labels = np.concatenate([np.full(v.size, name, dtype=object) for name, v in data.items()])
    if ax is None:
        _, ax = plt.subplots()
    edges = np.histogram_bin_edges(values, bins=int(bins))
    sns.histplot(
        x=values,
        hue=labels,
        hue_order=names,
        bins=edges,
        stat="density",
        common_norm=False,
        element="step",
        fill=True,
        alpha=0.25,
        ax=ax,
        log_scale=(False, log),
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density (log scale)" if log else "density")
    if title:
        ax.set_title(title)
    return ax
