"""The book's own Sphinx extension (loaded from _config.yml, sphinx.local_extensions).

- The Colab launch button opens the generated Colab edition (`make colab`), published on
  the branch `colab-<ref>` with the chapters at their usual paths, instead of the MyST
  source on `<ref>`. `<ref>` is `repository.branch` of _config.yml, the one setting the
  notebooks' install cell also comes from.
- The bibliography's labels are author-year ("Jacob et al., 2018"), like the citations.
"""

from __future__ import annotations

from typing import Any

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as Plain
from pybtex.style.labels import BaseLabelStyle

COLAB = "https://colab.research.google.com/github/"


def colab_edition(url: str, ref: str) -> str:
    """The Colab URL of a chapter's source -> the URL of its Colab edition."""
    if url.startswith(COLAB) and f"/blob/{ref}/" in url:
        return url.replace(f"/blob/{ref}/", f"/blob/colab-{ref}/", 1)
    return url


def _rewrite(node: Any, ref: str) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("url"), str):
            node["url"] = colab_edition(node["url"], ref)
        for value in node.values():
            _rewrite(value, ref)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, ref)


def launch_colab_edition(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    ref = app.config.html_theme_options.get("repository_branch") or "main"
    _rewrite(context.get("header_buttons", []), ref)


class AuthorYearLabels(BaseLabelStyle):
    """Labels "Last, year": "A", "A and B", "A et al." for 3+ authors; "2018a", "2018b" if equal."""

    def format_labels(self, sorted_entries: Any) -> Any:
        labels = list(self._labels(sorted_entries))
        for i, label in enumerate(labels):
            same = [j for j, other in enumerate(labels) if other == label]
            yield label + ("abcdefghijklmnopqrstuvwxyz"[same.index(i)] if len(same) > 1 else "")

    def _labels(self, sorted_entries: Any) -> Any:
        for entry in sorted_entries:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            names = [" ".join(p.prelast_names + p.last_names) for p in people]
            if not names:
                f = entry.fields
                names = [f.get("organization") or f.get("institution") or f.get("publisher") or entry.key]
            names = [n.replace("{", "").replace("}", "") for n in names]
            who = names[0] if len(names) == 1 else " and ".join(names) if len(names) == 2 else f"{names[0]} et al."
            yield f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(Plain):
    default_label_style = "authoryear"
    default_sorting_style = "author_year_title"


def setup(app: Any) -> dict[str, Any]:
    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    app.connect("html-page-context", launch_colab_edition, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
