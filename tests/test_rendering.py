"""The built site, as a browser sees it: every page of the table of contents renders in
headless Chromium, shows the figures its notebook stores, and has no broken internal links.

Runs after `make book` (CI runs it after the strict build with QLEARN_REQUIRE_RENDER=1,
which turns a missing build or browser into a failure instead of a skip).
"""

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from toc import ROOT, toc_files

SITE = ROOT / "_build" / "html"
REQUIRED = os.environ.get("QLEARN_REQUIRE_RENDER") == "1"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []
        self.h1 = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        if tag == "img" and a.get("src"):
            self.images.append(a["src"] or "")
        if tag == "h1":
            self.h1 += 1


def render(path: Path) -> Page:
    """The DOM after Chromium has loaded the page and run its scripts."""
    exe = browser()
    assert exe is not None
    out = subprocess.run(
        [exe, *FLAGS, "--virtual-time-budget=5000", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    page = Page()
    page.feed(out.stdout)
    return page


def stored_figures(notebook: Path) -> int:
    cells = json.loads(notebook.read_text())["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells if c["cell_type"] == "code" for o in c["outputs"])


def setup_module() -> None:
    problem = None if (SITE / "index.html").exists() else "no built site (run `make book` first)"
    problem = problem or (None if browser() else "no Chromium (apt-get install chromium)")
    if problem:
        if REQUIRED:
            pytest.fail(problem)
        pytest.skip(problem, allow_module_level=True)


@pytest.mark.parametrize("doc", toc_files())
def test_page_renders_with_figures_and_working_links(doc):
    html = SITE / f"{doc}.html"
    assert html.exists(), f"{doc} is in _toc.yml but was not built"
    page = render(html)
    assert page.h1 >= 1, f"{doc}: no title rendered"
    notebook = ROOT / f"{doc}.ipynb"
    if notebook.exists():
        colab = [h for h in page.links if h.startswith("https://colab.research.google.com/")]
        assert colab and colab[0].endswith(f"/{doc}.ipynb"), f"{doc}: no Colab launch button for the notebook"
        figures = [src for src in page.images if "_images/" in src or src.startswith("data:image")]
        assert len(figures) >= stored_figures(notebook), f"{doc}: {len(figures)} figures shown, notebook stores more"
        for src in figures:
            if not src.startswith("data:"):
                assert (html.parent / unquote(urlsplit(src).path)).exists(), f"{doc}: missing image {src}"
    broken = []
    for href in page.links:
        parts = urlsplit(href)
        if parts.scheme or href.startswith(("#", "mailto:")) or not parts.path:
            continue
        target = (html.parent / unquote(parts.path)).resolve()
        if not target.exists():
            broken.append(href)
        elif parts.fragment and target.suffix == ".html":
            anchors = Page()
            anchors.feed(target.read_text(errors="replace"))
            if parts.fragment not in anchors.ids:
                broken.append(href)
    assert not broken, f"{doc}: broken internal links {broken[:10]}"
