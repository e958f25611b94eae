"""Rewrite the Colab install cell (the first code cell) of notebooks to its canonical text.

Usage: python .ci/sync_install_cell.py [NOTEBOOK ...]   (default: every notebook in _toc.yml)

The cell installs qlearn from the repository at the ref of _config.yml (repository.url,
repository.branch): the same ref the Colab launch button opens, so a chapter opened from
a ref installs the package from that ref. tests/test_notebooks.py checks every chapter
against `install_cell()`. Only the cell's source and tags change; its (empty) outputs stay.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from toc import toc_notebooks  # noqa: E402

TEMPLATE = '''\
# Runs only in Google Colab: installs qlearn from the ref this chapter is from.
import sys

if "google.colab" in sys.modules:
    import subprocess

    url = "{url}"
    ref = "{ref}"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q",
         f"qlearn[plot,data] @ git+{{url}}@{{ref}}"],
        check=True,
    )'''


def install_cell() -> str:
    """The canonical source of the install cell, from _config.yml."""
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return TEMPLATE.format(url=repository["url"].rstrip("/"), ref=repository["branch"])


def sync(path: Path) -> bool:
    """Rewrite `path`'s first code cell; True if it changed."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    tags = cell.metadata.get("tags", [])
    if cell.source == install_cell() and "remove-cell" in tags:
        return False
    cell.source = install_cell()
    cell.metadata["tags"] = [*tags, "remove-cell"] if "remove-cell" not in tags else tags
    nbformat.write(nb, path)
    return True


def main() -> None:
    for path in [Path(p).resolve() for p in sys.argv[1:]] or toc_notebooks():
        print(("rewrote " if sync(path) else "unchanged ") + str(path))


if __name__ == "__main__":
    main()
