"""qlearn.plot: the shared style, the grid-over-histogram figure, the seaborn heatmap and distributions."""

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


def test_heatmap_annotates_every_cell_in_row_order():
    values = np.array([[1.25, 2.5, 3.75], [4.0, 5.5, 6.0]])
    ax = ql.plot.heatmap(values, ["r0", "r1"], ["c0", "c1", "c2"], fmt=".2f", cbar_label="dB", title="T")
    assert [t.get_text() for t in ax.texts] == [f"{v:.2f}" for v in values.ravel()]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["r0", "r1"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c0", "c1", "c2"]
    assert ax.get_title() == "T"
    plt.close("all")


@pytest.mark.parametrize(
    ("values", "rows", "cols"),
    [([1.0, 2.0], ["a"], ["x", "y"]), ([[1.0, 2.0]], ["a", "b"], ["x", "y"]), ([[1.0, 2.0]], ["a"], ["x"])],
)
def test_heatmap_refuses_mismatched_labels(values, rows, cols):
    with pytest.raises(ValueError, match="values must be|must match"):
        ql.plot.heatmap(values, rows, cols)


def test_heatmap_refuses_non_finite_values():
    with pytest.raises(ValueError, match="finite"):
        ql.plot.heatmap([[1.0, np.nan]], ["a"], ["x", "y"])


def test_distributions_normalises_each_sample_on_its_own(rng):
    small, large = rng.normal(size=200), rng.normal(3.0, 1.0, size=5000)
    ax = ql.plot.distributions({"small": small, "large": large}, bins=30, xlabel="w", title="T")
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["large", "small"]
    # each sample's filled step outline (a closed polygon) has area 1: common_norm=False
    areas = []
    for poly in ax.collections:
        verts = poly.get_paths()[0].vertices
        xs, ys = verts[:, 0], verts[:, 1]
        areas.append(abs(np.trapezoid(ys, xs)))
    assert len(areas) == 2
    np.testing.assert_allclose(areas, [1.0, 1.0], rtol=0.05)
    assert ax.get_xlabel() == "w" and ax.get_title() == "T"
    plt.close("all")


@pytest.mark.parametrize(("samples", "bins"), [({}, 10), ({"a": [1.0, 2.0]}, 0), ({"a": [1.0, 2.0]}, True)])
def test_distributions_refuses_bad_input(samples, bins):
    with pytest.raises(ValueError, match="samples|bins"):
        ql.plot.distributions(samples, bins=bins)
