"""qlearn.plot: the shared style and the grid-over-histogram figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import qlearn as ql  # noqa: E402


def test_use_style_sets_the_house_rcparams():
    ql.plot.use_style()
    assert list(matplotlib.rcParams["figure.figsize"]) == [7.0, 3.5]
    assert matplotlib.rcParams["axes.spines.top"] is False


def test_grid_over_hist_draws_one_line_per_code_or_thins_them(rng):
    x = rng.standard_normal(1000)
    ax = ql.plot.grid_over_hist(x, ql.choose_qparams(x, bits=4))
    lines = sorted(line.get_xdata()[0] for line in ax.lines)
    assert len(lines) == 16
    qp = ql.choose_qparams(x, bits=4)
    np.testing.assert_allclose(lines, ql.dequantize(np.arange(16), qp, dtype=np.float64))
    ax8 = ql.plot.grid_over_hist(x, ql.choose_qparams(x, bits=8), max_lines=64)
    assert len(ax8.lines) == 64 and "every 4th code" in ax8.get_title()
    plt.close("all")


def test_grid_over_hist_rejects_per_channel(rng):
    w = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match="per-tensor"):
        ql.plot.grid_over_hist(w, ql.choose_qparams(w, axis=0))


def test_importing_qlearn_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, qlearn; assert 'matplotlib' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
