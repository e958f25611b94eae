"""Write the Colab edition: a plain Jupyter notebook for every notebook of _toc.yml.

Usage: python .ci/colab.py [--out _build/colab] [NOTEBOOK ...]

Colab and plain Jupyter do not know MyST, so the chapters' roles and directives are turned
into ordinary Markdown (links to the published site, "Author (year)" citations read from
book/references.bib), exercises into headed cells numbered as the book numbers them, and
every solution is moved to a collapsed "Solutions" section at the end of the notebook.
Outputs are stripped. The result lands at <out>/<same path as the chapter>.ipynb.
"""

from __future__ import annotations

import argparse
import ast
import codecs
import re
import sys
from pathlib import Path

import latexcodec  # noqa: F401  (registers the "ulatex" codec used to read BibTeX names)
import nbformat
import yaml
from pybtex.database import parse_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from toc import toc_files, toc_notebooks  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL: str = CONFIG["repository"]["url"].rstrip("/")
REF: str = CONFIG["repository"]["branch"]
SITE: str = CONFIG["html"]["baseurl"].rstrip("/")
RAW = REPO_URL.replace("https://github.com/", "https://raw.githubusercontent.com/") + f"/{REF}"

ROLE = re.compile(r"\{(?P<name>[a-z][\w:-]*)\}`(?P<body>[^`]*)`")
FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
TARGET = re.compile(r"^\((?P<label>[^)\s]+)\)=\s*$")
EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error", "seealso"}


# ---------------------------------------------------------------- the book's cross-references


def bibliography() -> dict[str, tuple[str, str]]:
    """Citation key -> (authors as cited, year): last names, "A and B", "A et al." for 3+."""
    data = parse_file(str(ROOT / "book" / "references.bib"))
    cited: dict[str, tuple[str, str]] = {}
    for key, entry in data.entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [clean(" ".join(p.prelast_names + p.last_names)) for p in people]
        if not names:
            org = entry.fields.get("organization") or entry.fields.get("institution") or entry.fields.get("publisher")
            names = [clean(org or key)]
        authors = names[0] if len(names) == 1 else " and ".join(names) if len(names) == 2 else f"{names[0]} et al."
        cited[key.lower()] = (authors, clean(entry.fields.get("year", "n.d.")))
    return cited


def clean(tex: str) -> str:
    return codecs.decode(tex, "ulatex").replace("{", "").replace("}", "").strip()


def anchor(text: str) -> str:
    """The id docutils gives a name (sphinx's glossary: term-<id>)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def sources() -> dict[str, list[str]]:
    """Every TOC document -> its Markdown texts (cells of a notebook, or the .md file)."""
    texts: dict[str, list[str]] = {}
    for doc in toc_files():
        nb = ROOT / f"{doc}.ipynb"
        if nb.exists():
            cells = nbformat.read(nb, as_version=4).cells
            texts[doc] = [c.source for c in cells if c.cell_type == "markdown"]
        elif (ROOT / f"{doc}.md").exists():
            texts[doc] = [(ROOT / f"{doc}.md").read_text()]
    return texts


def chapter_numbers() -> dict[str, int]:
    """Document -> chapter number, counted across the numbered parts as the book numbers them."""
    numbers: dict[str, int] = {}
    for part in yaml.safe_load((ROOT / "_toc.yml").read_text()).get("parts", []):
        if part.get("numbered"):
            for chapter in part.get("chapters", []):
                numbers[chapter["file"]] = len(numbers) + 1
    return numbers


class Book:
    """What a chapter's roles refer to: titles, labels, exercise numbers, citations."""

    def __init__(self) -> None:
        self.cited = bibliography()
        self.numbers = chapter_numbers()
        self.titles: dict[str, str] = {}
        self.labels: dict[str, tuple[str, str]] = {}  # label -> (doc, text)
        self.exercises: dict[str, str] = {}  # exercise label -> "Exercise N.k"
        for doc, texts in sources().items():
            k = 0
            pending: str | None = None
            for text in texts:
                for line in text.splitlines():
                    if doc not in self.titles and line.startswith("# "):
                        self.titles[doc] = line[2:].strip()
                    if m := TARGET.match(line):
                        pending = m["label"]
                    elif pending and (h := re.match(r"^#+\s+(.*)", line)):
                        self.labels[pending] = (doc, h[1].strip())
                        pending = None
                    if (m := FENCE.match(line)) and m["name"] == "exercise":
                        k += 1
                    if k and (m := re.match(r"^:label:\s*(\S+)", line)):
                        number = f"Exercise {self.numbers.get(doc, 0)}.{k}" if doc in self.numbers else f"Exercise {k}"
                        self.exercises.setdefault(m[1], number)
                        self.labels.setdefault(m[1], (doc, number))

    def url(self, doc: str, fragment: str = "") -> str:
        return f"{SITE}/{doc}.html" + (f"#{fragment}" if fragment else "")

    def resolve_doc(self, here: str, target: str) -> str:
        target = target.removesuffix(".md").removesuffix(".ipynb")
        if target.startswith("/"):
            return target.lstrip("/")
        base = Path(here).parent
        return str(Path(base, target)).replace("\\", "/")

    def cite(self, kind: str, body: str) -> str:
        keys = [k.strip() for k in body.split(",") if k.strip()]
        parts = []
        for key in keys:
            authors, year = self.cited.get(key.lower(), (key, "n.d."))
            link = self.url("book/bibliography")
            parts.append((authors, year, link))
        if kind in ("cite:t", "cite:ts"):
            return "; ".join(f"[{a} ({y})]({u})" for a, y, u in parts)
        if kind in ("cite:year", "cite:yearpar"):
            return ", ".join(f"[{y}]({u})" for _, y, u in parts)
        return "(" + "; ".join(f"[{a}, {y}]({u})" for a, y, u in parts) + ")"

    def role(self, doc: str, name: str, body: str) -> str:
        m = EXPLICIT.match(body)
        text, target = (m["text"], m["target"]) if m else (None, body)
        if name == "term":
            return f"[{text or target}]({self.url('book/glossary', 'term-' + anchor(target))})"
        if name.startswith("cite"):
            return self.cite(name, body)
        if name == "doc":
            d = self.resolve_doc(doc, target)
            return f"[{text or self.titles.get(d, d)}]({self.url(d)})"
        if name in ("ref", "numref"):
            where, label_text = self.labels.get(target, (doc, target))
            shown = (text or label_text).replace("%s", self.exercises.get(target, "").split(" ")[-1])
            return f"[{shown}]({self.url(where, target)})"
        if name == "math":
            return f"${body}$"
        if name == "eq":
            return f"({target})"
        if name in ("code", "literal", "command", "file", "kbd") or ":" in name:
            return f"`{text or target}`"
        return text or target  # abbr, sub, sup, ...: the text itself


# ---------------------------------------------------------------- one chapter


class Chapter:
    """Turns one notebook into its Colab edition."""

    def __init__(self, book: Book, path: Path) -> None:
        self.book = book
        self.path = path
        self.doc = str(path.relative_to(ROOT).with_suffix(""))
        self.exercise = 0
        self.main: list[nbformat.NotebookNode] = []
        self.solutions: list[tuple[str, list[nbformat.NotebookNode]]] = []
        self.target: list[nbformat.NotebookNode] = self.main
        self.text: list[str] = []

    def number(self) -> str:
        n = self.book.numbers.get(self.doc)
        return f"{n}.{self.exercise}" if n else str(self.exercise)

    def flush(self) -> None:
        text = "\n".join(self.text).strip()
        if text:
            self.target.append(nbformat.v4.new_markdown_cell(text))
        self.text = []

    def inline(self, text: str) -> str:
        return ROLE.sub(lambda m: self.book.role(self.doc, m["name"], m["body"]), text)

    def markdown(self, source: str) -> None:
        lines = source.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            m = FENCE.match(line)
            if not m:
                if not TARGET.match(line) and not re.match(r"^%", line):
                    self.text.append(self.inline(re.sub(r"(\$\$)\s*\([\w:-]+\)\s*$", r"\1", line)))
                i += 1
                continue
            end = closing(lines, i, m["fence"])
            options, body = split_options(lines[i + 1 : end])
            self.directive(m["name"], m["arg"].strip(), options, body)
            i = end + 1

    def directive(self, name: str, arg: str, options: dict[str, str], body: list[str]) -> None:
        if name == "solution-start":
            self.flush()
            label = arg.split()[0] if arg else ""
            number = self.book.exercises.get(label, f"Exercise {self.number()}")
            cells: list[nbformat.NotebookNode] = []
            self.solutions.append((number, cells))
            self.target = cells
        elif name == "solution-end":
            self.flush()
            self.target = self.main
        elif name == "solution":
            self.flush()
            label = arg.split()[0] if arg else ""
            number = self.book.exercises.get(label, f"Exercise {self.number()}")
            cells = []
            self.solutions.append((number, cells))
            saved, self.target = self.target, cells
            self.nested(body)
            self.flush()
            self.target = saved
        elif name == "exercise":
            self.exercise += 1
            title = f"### Exercise {self.number()}" + (f": {self.inline(arg)}" if arg else "")
            self.flush()
            self.text += [title, ""]
            self.nested(body)
            self.text += ["", "*The solution is in the collapsed **Solutions** section at the end.*"]
            self.flush()
        elif name in ("figure", "image"):
            alt = options.get("alt") or " ".join(body).strip() or "figure"
            src = arg if re.match(r"^https?://", arg) else f"{RAW}/{self.book.resolve_doc(self.doc, arg)}"
            self.text += [f"![{self.inline(alt)}]({src})", ""]
            if name == "figure" and body:
                self.text.append("*" + self.inline(" ".join(body).strip()) + "*")
        elif name in ("math",):
            self.text += ["$$", *body, "$$"]
        elif name in ADMONITIONS or name in ("admonition", "dropdown", "margin", "sidebar", "epigraph", "topic"):
            head = arg or name.capitalize()
            saved_text, self.text = self.text, []
            self.nested(body)
            inner = self.text
            self.text = saved_text
            self.text += [f"> **{self.inline(head)}.**", ">", *[f"> {x}" if x else ">" for x in inner], ""]
        elif name in ("code-block", "code", "sourcecode"):
            self.text += [f"```{arg}", *body, "```"]
        else:  # tabs, cards, ...: their content, as it reads without the layout
            self.nested(body)

    def nested(self, body: list[str]) -> None:
        self.markdown("\n".join(body))

    def code(self, cell: nbformat.NotebookNode, first: bool) -> None:
        tags = set(cell.metadata.get("tags", []))
        new = nbformat.v4.new_code_cell(cell.source)
        if "remove-cell" in tags and not first:
            if only_checks(cell.source):
                return  # a regression pin of the site's build: not part of the lesson
            new.source = "# Hidden on the site: computes what the next cells use.\n" + cell.source
        self.flush()
        if self.target is not self.main:
            new.metadata["cellView"] = "form"
            new.source = f"# @title Solution to {self.solutions[-1][0]} (double-click to show the code)\n" + new.source
        self.target.append(new)

    def build(self) -> nbformat.NotebookNode:
        nb = nbformat.read(self.path, as_version=4)
        first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), -1)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown":
                if "remove-cell" not in cell.metadata.get("tags", []):
                    self.markdown(cell.source)
                    self.flush()
            elif cell.cell_type == "code":
                self.code(cell, i == first)
        self.flush()
        collapsed = []
        if self.solutions:
            head = nbformat.v4.new_markdown_cell(
                "## Solutions\n\nThe solutions of the exercises above, each in its own collapsed section: "
                "expand one only after trying the exercise."
            )
            self.main.append(head)
            collapsed.append(head)
            for number, cells in self.solutions:
                sub = nbformat.v4.new_markdown_cell(f"### Solution to {number}")
                self.main.append(sub)
                collapsed.append(sub)
                self.main.extend(cells)
        for i, cell in enumerate(self.main):
            cell.id = f"cell-{i}"
            cell.metadata["id"] = cell.id  # Colab's own cell id, used by collapsed_sections
        edition = nbformat.v4.new_notebook(cells=self.main)
        edition.metadata = {
            "kernelspec": nb.metadata.get("kernelspec", {"name": "python3", "display_name": "Python 3"}),
            "language_info": {"name": "python"},
            "colab": {"provenance": [], "collapsed_sections": [c.id for c in collapsed], "toc_visible": True},
        }
        return edition


def closing(lines: list[str], start: int, fence: str) -> int:
    """Index of the line closing the directive opened at `start` (nested fences skipped)."""
    depth = 0
    for j in range(start + 1, len(lines)):
        s = lines[j].strip()
        if FENCE.match(s) and s.startswith(fence[0]):
            depth += 1
        elif s and set(s) == {fence[0]} and len(s) >= len(fence):
            if depth == 0:
                return j
            depth -= 1
    return len(lines)


def split_options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    i = 0
    while i < len(body) and (m := re.match(r"^:([\w-]+):\s*(.*)$", body[i])):
        options[m[1]] = m[2]
        i += 1
    return options, body[i:]


def only_checks(source: str) -> bool:
    """True when a cell only asserts or prints (computes nothing later cells use)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return all(isinstance(s, (ast.Assert, ast.Expr, ast.Import, ast.ImportFrom, ast.Pass)) for s in tree.body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "_build" / "colab"))
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    book = Book()
    for path in [p.resolve() for p in args.notebooks] or toc_notebooks():
        target = Path(args.out) / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(Chapter(book, path).build(), target)
        print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")


if __name__ == "__main__":
    main()
