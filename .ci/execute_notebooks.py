"""Re-execute notebooks in place in a fresh kernel, so their stored outputs are current.

Usage: python .ci/execute_notebooks.py [NOTEBOOK ...]   (default: every notebook in _toc.yml)

Each notebook runs with its own folder as working directory (as nbval and jupyter-book
run it); timing metadata is not recorded, so a re-run changes only what really changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from toc import toc_notebooks  # noqa: E402  (one reader of _toc.yml for tests and tools)


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":  # one stream output per name, however the kernel chunked it
            merged: list = []
            for out in cell.outputs:
                if merged and out.output_type == "stream" and merged[-1].output_type == "stream" \
                        and merged[-1].name == out.name:  # fmt: skip
                    merged[-1].text += out.text
                else:
                    merged.append(out)
            cell.outputs = merged
    nbformat.write(nb, path)
    print(f"executed {path.relative_to(ROOT)}")


if __name__ == "__main__":
    targets = [Path(p).resolve() for p in sys.argv[1:]] or toc_notebooks()
    for nb_path in targets:
        execute(nb_path)
