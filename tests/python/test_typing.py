"""pykmr is typed (PEP 561): py.typed ships, and the stubs of the native module name exactly what it
defines, with the same parameters."""

from __future__ import annotations

import ast
import inspect
import os

import pykmr
from pykmr import _kmr

PKG = os.path.dirname(pykmr.__file__)


def _stub_tree():
    with open(os.path.join(PKG, "_kmr.pyi")) as f:
        return ast.parse(f.read())


def _public(names):
    return {n for n in names if not n.startswith("_") or n == "__version__"}


def test_py_typed_ships():
    assert os.path.exists(os.path.join(PKG, "py.typed"))


def test_stub_names_match_the_module():
    tree = _stub_tree()
    stub = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            stub.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stub.add(node.target.id)
    module = _public(n for n in dir(_kmr) if not inspect.ismodule(getattr(_kmr, n)))
    module -= {"__doc__", "__file__", "__loader__", "__name__", "__package__", "__spec__"}
    assert stub == module, f"only in the stub: {stub - module}; only in _kmr: {module - stub}"


def test_stub_classes_match_the_module():
    for node in _stub_tree().body:
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(_kmr, node.name)
        stub = {n.name for n in node.body if isinstance(n, ast.FunctionDef)} - {"__init__"}
        module = {n for n in vars(cls) if not n.startswith("_")}
        assert stub == module, f"{node.name}: only in stub: {stub - module}; only in _kmr: {module - stub}"


def test_stub_parameters_match_the_bindings():
    """pybind11 writes each function's signature as the first line of its docstring."""
    for node in _stub_tree().body:
        if isinstance(node, ast.FunctionDef):
            params = [a.arg for a in node.args.args]
            sig = getattr(_kmr, node.name).__doc__.splitlines()[0]
            for p in params:
                assert f"{p}:" in sig, f"{node.name}: stub parameter {p!r} not in {sig!r}"
