"""Notebook hygiene: what nbval cannot see for itself.

nbval only compares cells that carry stored outputs, so a notebook committed without
outputs would pass untested. These tests fail if any notebook in the table of contents
was not executed top to bottom, stores a warning or error, or has a Colab install cell
that disagrees with _config.yml and the package version.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from toc import ROOT, toc_files, toc_notebooks

import qlearn

NOTEBOOKS = toc_notebooks()
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def code_cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_toc_entries_exist():
    for f in toc_files():
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".ipynb", ".md")), (
            f"_toc.yml names {f}, which does not exist"
        )
    assert NOTEBOOKS, "the table of contents should hold at least one notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_has_stored_outputs_in_order(path):
    counts = [c["execution_count"] for c in code_cells(path)]
    unrun = [i for i, n in enumerate(counts) if n is None]
    assert not unrun, f"{path.name}: code cells {unrun} have no stored outputs; run `make notebooks`"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: not run top to bottom in a fresh kernel: {counts}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_warnings_errors_or_paths_in_outputs(path):
    for cell in code_cells(path):
        for out in cell["outputs"]:
            assert out.get("name") != "stderr", f"{path.name}: a cell stores stderr output (a warning?)"
            assert out["output_type"] != "error", f"{path.name}: a cell stores an error"
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            assert not re.search(r"(/work/|/home/|/tmp/|/root/|site-packages)", text), f"{path.name}: a path in outputs"


sys.path.insert(0, str(ROOT / ".ci"))
from sync_install_cell import install_cell  # noqa: E402  (the canonical cell, from _config.yml)

REF = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["branch"]


def test_the_ref_is_main_or_the_tag_of_this_version():
    assert REF in ("main", f"v{qlearn.__version__}"), (
        f"_config.yml repository.branch is {REF!r}: use 'main', or 'v{qlearn.__version__}' in a release (README)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_installs_qlearn_from_the_launch_ref_only_in_colab(path):
    first = code_cells(path)[0]
    source = "".join(first["source"])
    assert source == install_cell(), (
        f"{path.name}: the first code cell is not the canonical Colab install cell for "
        f"{REPO_URL}@{REF}; run `.venv/bin/python .ci/sync_install_cell.py {path.relative_to(ROOT)}`"
    )
    assert "remove-cell" in first.get("metadata", {}).get("tags", []), (
        f"{path.name}: tag the Colab cell remove-cell (it is for Colab, not the site)"
    )
    # outside Colab the cell does nothing: it runs, prints nothing and installs nothing
    run = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout == "" and run.stderr == ""


MAX_CODE_LINE = 80  # what the code box shows at 1280 px (tests/test_rendering.py measures it)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit_the_code_box(path):
    long = [
        (i, line)
        for i, cell in enumerate(code_cells(path))
        for line in "".join(cell["source"]).splitlines()
        if len(line) > MAX_CODE_LINE
    ]
    assert not long, (
        f"{path.name}: {len(long)} code lines longer than {MAX_CODE_LINE} characters, e.g. "
        f"code cell {long[0][0]}: {long[0][1]!r}"
    )


def test_api_index_lists_every_public_name():
    sys.path.insert(0, str(ROOT / ".ci"))
    import api_index

    text = (ROOT / "book" / "api" / "index.md").read_text()
    missing = [
        f"{module}.{name}"
        for module in api_index.public_modules()
        for name in getattr(__import__("importlib").import_module(module), "__all__", [])
        if name != "__version__" and not re.search(rf"(`|\.|~){re.escape(name)}`", text)
    ]
    assert not missing, f"book/api/index.md misses {missing[:10]}; run `.venv/bin/python .ci/api_index.py`"
