"""The public API: every name in qlearn.__all__ exists, is documented with a runnable example."""

import inspect
import pkgutil

import qlearn


def public_modules():
    """qlearn and every public submodule and subpackage (found by walking the package)."""
    found = [qlearn]
    for info in pkgutil.walk_packages(qlearn.__path__, "qlearn."):
        if any(part.startswith("_") for part in info.name.split(".")) or info.name == "qlearn.plot":
            continue
        found.append(__import__(info.name, fromlist=["_"]))
    return found


def test_all_names_exist_and_are_sorted():
    assert qlearn.__all__ == sorted(qlearn.__all__)
    for name in qlearn.__all__:
        assert hasattr(qlearn, name), name


PUBLIC = [(module, n) for module in public_modules() for n in getattr(module, "__all__", [])]


def test_every_public_module_declares_all():
    for module in public_modules():
        assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"


def test_public_callables_have_numpydoc_with_examples():
    for module, name in PUBLIC:
        obj = getattr(module, name)
        if (
            not (inspect.isfunction(obj) or inspect.isclass(obj))
            or name.startswith("Per")
            or name in ("FixedPoint", "QuantizedLinear", "PreparedModel", "QuantizedMLP")
        ):
            continue
        doc = inspect.getdoc(obj) or ""
        for section in ("Parameters", "Examples"):
            assert section in doc, f"qlearn.{name} lacks a {section} section"
        if inspect.isfunction(obj):
            assert "Returns" in doc and "Notes" in doc, f"qlearn.{name} lacks Returns or Notes"


def test_version_is_defined_once():
    from importlib.metadata import version

    assert version("qlearn") == qlearn.__version__
