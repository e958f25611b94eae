"""The book's promises about the package: the API reference covers every public name,
and the repository URL is written once (in _config.yml) and agreed on everywhere."""

import inspect
import re
import tomllib
from pathlib import Path

import yaml
from test_api import public_modules

import qlearn

ROOT = Path(__file__).resolve().parent.parent
API = "\n".join(p.read_text() for p in sorted((ROOT / "book" / "api").glob("*.md")))
DOCUMENTED = set(re.findall(r"\.\. auto(?:function|class):: (\w+)", API))
MODULES = {m.__name__: m for m in public_modules()} | {"qlearn.plot": qlearn.plot}


def test_api_reference_covers_every_public_name():
    missing = []
    for modname, module in MODULES.items():
        names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", "").startswith("qlearn") and name not in DOCUMENTED:
                missing.append(f"{modname}.{name}")
    assert not missing, f"no API page documents: {missing}"


def test_repository_url_is_consistent():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["urls"]["Homepage"] == url
