"""The Colab edition (`make colab`, .ci/colab.py): plain notebooks that read well in Colab.

Each chapter of _toc.yml is converted afresh into a temporary folder; the tests check that
no MyST role or directive is left, that every solution is hidden (gathered under a
collapsed "Solutions" section at the end, its code cells collapsed to a form), that the
outputs are stripped, and that the notebook executes top to bottom in this environment.
"""

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from toc import ROOT, toc_notebooks

sys.path.insert(0, str(ROOT / ".ci"))
import colab  # noqa: E402

NOTEBOOKS = toc_notebooks()
MYST = re.compile(r"\{[\w:-]+\}`|^\s*(`{3,}|:{3,})\{|^\([\w:-]+\)=\s*$", re.M)


@pytest.fixture(scope="module")
def book() -> colab.Book:
    return colab.Book()


def edition(book: colab.Book, path: Path) -> nbformat.NotebookNode:
    nb = colab.Chapter(book, path).build()
    nbformat.validate(nb)
    return nb


def markdown_texts(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_myst_syntax_is_left(book, path):
    left = [m.group(0) for text in markdown_texts(edition(book, path)) for m in MYST.finditer(text)]
    assert not left, f"{path.name}: MyST syntax left in the Colab edition: {left[:5]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_solution_is_hidden_at_the_end(book, path):
    source = nbformat.read(path, as_version=4)
    expected = sum(
        len(re.findall(r"^\s*(?:`{3,}|:{3,})\{solution(?:-start)?\}", c.source, re.M))
        for c in source.cells
        if c.cell_type == "markdown"
    )
    nb = edition(book, path)
    heads = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## Solutions")]
    solutions = [i for i, c in enumerate(nb.cells) if c.source.startswith("### Solution to Exercise")]
    exercises = [i for i, c in enumerate(nb.cells) if c.source.startswith("### Exercise ")]
    assert len(solutions) == expected, f"{path.name}: {expected} solutions in the source, {len(solutions)} hidden"
    if not expected:
        return
    assert len(heads) == 1, f"{path.name}: one '## Solutions' section expected, found {len(heads)}"
    start = heads[0]
    assert all(i < start for i in exercises), f"{path.name}: an exercise after the Solutions heading"
    assert all(i > start for i in solutions), f"{path.name}: a solution before the Solutions heading"
    collapsed = set(nb.metadata["colab"]["collapsed_sections"])
    for i in [start, *solutions]:
        assert nb.cells[i].metadata["id"] in collapsed, f"{path.name}: section {nb.cells[i].source!r} not collapsed"
    for cell in nb.cells[start:]:
        if cell.cell_type == "code":
            assert cell.metadata.get("cellView") == "form" and cell.source.startswith("# @title Solution"), (
                f"{path.name}: a solution's code cell is shown open"
            )
    # nothing of a solution stays under its exercise
    for i in exercises:
        assert "Solution" not in nb.cells[i].source.split("*The solution is in")[0], path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_stripped_and_install_cell_kept(book, path):
    nb = edition(book, path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name}: outputs not stripped"
    first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert code[0].source == first.source, f"{path.name}: the Colab edition must start with the install cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_colab_edition_executes_top_to_bottom(book, path):
    nb = edition(book, path)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )  # fmt: skip
    client.execute()  # raises CellExecutionError, naming the cell, on the first failure
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_citations_and_terms_become_links(book):
    assert book.role("book/x", "term", "zero point") == (
        f"[zero point]({colab.SITE}/book/glossary.html#term-zero-point)"
    )
    assert book.role("book/x", "term", "the scales <scale>").startswith("[the scales](")
    assert book.role("book/x", "math", r"s/2") == "$s/2$"
    cited = book.cite("cite:t", "jacob2018quantization")
    assert cited.startswith("[Jacob et al. (2018)](") and "bibliography.html" in cited
    assert book.cite("cite:p", "krishnamoorthi2018whitepaper").startswith("([Krishnamoorthi, 2018](")
    assert (
        colab.Chapter(book, NOTEBOOKS[0])
        .inline("{math}`x` and {cite:p}`nagel2021whitepaper`")
        .startswith("$x$ and ([Nagel et al., 2021](")
    )
