"""One way for a test to get an optional oracle library (torch, onnxruntime, ml_dtypes, ...).

``require("torch")`` imports and returns the module. On a developer's machine a missing
oracle skips the test (with the reason); in CI (the environment variable ``CI`` is set, as
``.ci/run`` runs) a missing oracle is a failure, so a conformance test can never pass by
not running. A module that exists but was removed from the library (for example
``torch.ao.quantization`` once PyTorch drops it) fails in CI the same way.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require(name: str, reason: str = "") -> ModuleType:
    """Import the oracle ``name``; skip without it, except in CI where that fails the test."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        why = f"oracle {name!r} is not importable ({exc}){': ' + reason if reason else ''}"
        if in_ci():
            pytest.fail(f"{why}; CI installs requirements-oracles.txt, so this is a failure", pytrace=False)
        pytest.skip(why, allow_module_level=True)
