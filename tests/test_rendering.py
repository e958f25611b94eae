"""The built site, as a browser sees it: every page of the table of contents renders in
headless Chromium, shows the figures its notebook stores, and has no broken internal links;
its Colab button opens the Colab edition at the ref of _config.yml; every formula typesets
with a local MathJax of the major version the site loads (no error, no `\\(` or `$$` left);
no code box or table scrolls sideways at 1280 px and no page is wider than a 400 px
viewport; every image has meaningful alt text; the bibliography has no literal TeX.

The local MathJax is installed by .ci/run (npm, into _build/mathjax; or set QLEARN_MATHJAX
to its tex-mml-chtml.js). Each page is copied with its MathJax URL pointed at it and a
small measuring script added; the published site still loads MathJax from the CDN.

Runs after `make book` (CI runs it after the strict build with QLEARN_REQUIRE_RENDER=1,
which turns a missing build or browser into a failure instead of a skip).
"""

import json
import os
import re
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from toc import ROOT, toc_files

SITE = Path(os.environ.get("QLEARN_SITE", ROOT / "_build" / "html"))
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
        self.alts: list[tuple[str, str]] = []
        self.h1 = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        if tag == "img" and a.get("src"):
            self.images.append(a["src"] or "")
            self.alts.append((a["src"] or "", (a.get("alt") or "").strip()))
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
        assert f"/blob/colab-{REF}/" in colab[0], f"{doc}: the Colab button opens {colab[0]}, not the Colab edition"
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


# ---------------------------------------------------------------- math, widths, alt text

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REF = CONFIG["repository"]["branch"]
CDN = re.compile(r"https://cdn\.jsdelivr\.net/npm/mathjax@(\d+)/es5/tex-mml-chtml\.js")
NPM_MATHJAX = ROOT / "_build" / "mathjax" / "node_modules" / "mathjax" / "es5" / "tex-mml-chtml.js"
LOCAL_MATHJAX = Path(os.environ.get("QLEARN_MATHJAX", NPM_MATHJAX))
MEASURE = r"""<script>
document.addEventListener("DOMContentLoaded", function () {
  function report() {
    var r = {formulas: 0, errors: [], untypeset: [], wide_code: [], wide_tables: []};
    if (window.MathJax && MathJax.startup && MathJax.startup.document) {
      var items = Array.from(MathJax.startup.document.math);
      r.formulas = items.length;
      items.forEach(function (item) {
        var bad = false;
        item.root.walkTree(function (node) {
          if (node.isKind("merror")) bad = true;
          if (node.isKind("mtext") && node.attributes.get("mathcolor") === "red") bad = true;
        });
        if (bad) r.errors.push(item.math.slice(0, 120));
      });
    }
    var main = document.querySelector("article") || document.body;
    var walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
    var n;
    while ((n = walker.nextNode())) {
      if (n.parentElement.closest("pre, code, script, style, mjx-container, mjx-assistive-mml, .MathJax")) continue;
      if (/\\\(|\\\[|\$\$/.test(n.textContent)) r.untypeset.push(n.textContent.trim().slice(0, 120));
    }
    main.querySelectorAll("pre").forEach(function (p) {
      if (p.scrollWidth > p.clientWidth + 1) {
        var longest = p.textContent.split("\n").reduce(function (a, b) { return a.length >= b.length ? a : b; }, "");
        var kind = p.closest(".cell_output, .output") ? "output: " : "code: ";
        r.wide_code.push(kind + longest.slice(0, 100));
      }
    });
    main.querySelectorAll("table").forEach(function (t) {
      var box = t.parentElement;
      if (t.offsetWidth > main.clientWidth + 1 || box.scrollWidth > box.clientWidth + 1)
        r.wide_tables.push(t.offsetWidth + " px: " + t.textContent.trim().slice(0, 60));
    });
    r.scroll_width = document.documentElement.scrollWidth;
    r.viewport = document.documentElement.clientWidth;
    var out = document.createElement("pre");
    out.id = "qlearn-measure";
    out.textContent = JSON.stringify(r);
    document.body.appendChild(out);
  }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) MathJax.startup.promise.then(report, report);
  else report();
});
</script>"""
MEASURED: dict[tuple[str, int], dict] = {}


@pytest.fixture(scope="module")
def checked_site(tmp_path_factory):
    """A copy of the built pages that load the local MathJax and carry the measuring script."""
    if not LOCAL_MATHJAX.exists():
        problem = f"no local MathJax at {LOCAL_MATHJAX} (bash .ci/run installs it with npm)"
        if REQUIRED:
            pytest.fail(problem)
        pytest.skip(problem)
    copy = tmp_path_factory.mktemp("site") / "html"
    shutil.copytree(SITE, copy, ignore=shutil.ignore_patterns("_images", "*.ipynb", "_sources"))
    (copy / "_images").symlink_to(SITE / "_images", target_is_directory=True)
    return copy


def window(width: int) -> list[str]:
    """Flags for a viewport `width` CSS px wide. Headless Chromium's window is at least ~500 px and
    this build ignores the device scale factor, so below 500 px the viewport measured is ~500 px
    (the measured width is in every message)."""
    if width >= 500:
        return [f"--window-size={width},2000"]
    return ["--window-size=500,2000", f"--force-device-scale-factor={500 / width}"]


def measure(site: Path, doc: str, width: int) -> dict:
    if (doc, width) in MEASURED:
        return MEASURED[(doc, width)]
    original = SITE / f"{doc}.html"
    text = original.read_text()
    loaded = CDN.search(text)
    if loaded:
        text = text.replace(loaded.group(0), LOCAL_MATHJAX.as_uri())
    text = text.replace("</body>", MEASURE + "</body>")
    page = site / f"{doc}.check.html"
    page.write_text(text)
    exe = browser()
    assert exe is not None
    out = subprocess.run(
        [exe, *FLAGS, *window(width), "--hide-scrollbars", "--virtual-time-budget=30000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    found = re.search(r'<pre id="qlearn-measure"[^>]*>(.*?)</pre>', out.stdout, re.S)
    assert found, f"{doc}: the measuring script did not report (page still loading after 30 s of virtual time?)"
    result = json.loads(unescape(found.group(1)))
    result["mathjax_major"] = loaded.group(1) if loaded else None
    MEASURED[(doc, width)] = result
    return result


def test_local_mathjax_is_the_major_version_the_site_loads(checked_site):
    majors = {m.group(1) for doc in toc_files() for m in CDN.finditer((SITE / f"{doc}.html").read_text())}
    package = json.loads((LOCAL_MATHJAX.parents[1] / "package.json").read_text())
    assert majors <= {package["version"].split(".")[0]}, f"site loads MathJax {majors}, local is {package['version']}"


@pytest.mark.parametrize("doc", toc_files())
def test_every_formula_typesets(checked_site, doc):
    r = measure(checked_site, doc, 1280)
    assert not r["errors"], f"{doc}: MathJax errors in {r['errors'][:5]}"
    assert not r["untypeset"], f"{doc}: math left untypeset: {r['untypeset'][:5]}"


@pytest.mark.parametrize("doc", toc_files())
def test_code_and_tables_fit_at_1280_px(checked_site, doc):
    r = measure(checked_site, doc, 1280)
    chapter = (ROOT / f"{doc}.ipynb").exists()  # the API pages show the package's docstrings (120 columns)
    assert not (chapter and r["wide_code"]), (
        f"{doc}: {len(r['wide_code'])} code boxes scroll sideways, e.g. {r['wide_code'][0]!r}"
    )
    assert not r["wide_tables"], f"{doc}: tables wider than the column: {r['wide_tables'][:3]}"


@pytest.mark.parametrize("doc", toc_files())
def test_page_fits_a_400_px_phone(checked_site, doc):
    r = measure(checked_site, doc, 400)
    assert r["scroll_width"] <= r["viewport"], f"{doc}: {r['scroll_width']} px wide in a {r['viewport']} px viewport"


HASHED = re.compile(r"^[0-9a-f]{16,}(\.\w+)?$|\.(png|svg|jpe?g|gif)$", re.I)


@pytest.mark.parametrize("doc", toc_files())
def test_every_image_has_meaningful_alt_text(doc):
    page = Page()
    page.feed((SITE / f"{doc}.html").read_text())
    bad = [(src, alt) for src, alt in page.alts if not alt or HASHED.search(alt)]
    bad = [(s, a) for s, a in bad if "logo" not in s]  # the theme's own logos
    assert not bad, f"{doc}: {len(bad)} images without meaningful alt text, e.g. {bad[0]}"


def test_bibliography_has_no_literal_tex():
    text = (SITE / "book" / "bibliography.html").read_text()
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", text, flags=re.S)
    tex = re.findall(r"\\[a-zA-Z]+\{?", re.sub(r"<[^>]+>", " ", body))
    assert not tex, f"the bibliography prints TeX commands literally: {sorted(set(tex))[:10]}"


def test_zz_report(checked_site, capsys):
    """The figures of the run: formulas typeset, the widest page at 400 px."""
    for doc in toc_files():
        measure(checked_site, doc, 1280)
        measure(checked_site, doc, 400)
    formulas = sum(r["formulas"] for (d, w), r in MEASURED.items() if w == 1280)
    widest = max((r["scroll_width"], d) for (d, w), r in MEASURED.items() if w == 400)
    with capsys.disabled():
        print(
            f"\nrendering: {formulas} formulas typeset on {len(toc_files())} pages; "
            f"widest page at the phone width (viewport {MEASURED[(widest[1], 400)]['viewport']} px): "
            f"{widest[1]} ({widest[0]} px)"
        )
