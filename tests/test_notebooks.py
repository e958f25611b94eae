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


COLAB_PIN = re.compile(r'"qlearn @ git\+(?P<url>\S+?)@v(?P<version>[^"]+)"')


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_installs_pinned_qlearn_only_in_colab(path):
    source = "".join(code_cells(path)[0]["source"])
    assert 'if "google.colab" in sys.modules:' in source, f"{path.name}: the first code cell must be the Colab cell"
    tags = code_cells(path)[0].get("metadata", {}).get("tags", [])
    assert "remove-cell" in tags, f"{path.name}: tag the Colab cell remove-cell (it is for Colab, not the site)"
    match = COLAB_PIN.search(source)
    assert match, f"{path.name}: the Colab cell must install qlearn from the repository, pinned to a version"
    assert match["url"] == REPO_URL, f"{path.name}: installs from {match['url']}, _config.yml says {REPO_URL}"
    assert match["version"] == qlearn.__version__, (
        f"{path.name}: pins v{match['version']}, qlearn is {qlearn.__version__}"
    )
    # outside Colab the cell does nothing: it runs, prints nothing and installs nothing
    run = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout == "" and run.stderr == ""
