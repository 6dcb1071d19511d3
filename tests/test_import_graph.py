"""The import graph of hdrlift's packages: no circles, and who may import whom (docs/ARCHITECTURE.md).

Every ``import`` counts, function-local ones too (a circle hidden in a function is still a
circle); only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
``from package import module`` depends on that module, not on the package's other names.
"""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {"hdrlift.engine": ROOT / "engine", "hdrlift.plugin": ROOT / "plugin", "hdrlift.training": ROOT / "training"}
# what the plugin (the leaf host plug-ins vendor) may import besides the standard library and itself
PLUGIN_THIRD_PARTY = {"grpc", "google", "numpy"}


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
                continue
            mods[".".join([pkg, *parts])] = path
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            t = node.test
            name = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else None
            if name == "TYPE_CHECKING":
                for sub in node.body:
                    skip.update(id(n) for n in ast.walk(sub))
    return skip


def _imports(name: str, path: pathlib.Path, mods: dict[str, pathlib.Path]) -> set[str]:
    """Absolute names of everything module ``name`` imports (modules of ours and third-party tops)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree)
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
            out.update(subs)
            if len(subs) < len(node.names):  # names from the package itself, not only its modules
                out.add(target)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    assert "hdrlift.engine.pipeline" in mods and "hdrlift.plugin.client" in mods
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles(graph):
    assert _cycles(graph) == []


def test_the_plugin_is_a_leaf(graph):
    """hdrlift.plugin imports grpcio, protobuf, numpy, the standard library and itself: never the
    engine, training or torch (hosts vendor it alone)."""
    bad = {}
    for mod, deps in graph.items():
        if not mod.startswith("hdrlift.plugin"):
            continue
        for d in deps:
            top = d.split(".")[0]
            if d.startswith("hdrlift.plugin") or top in sys.stdlib_module_names or top in PLUGIN_THIRD_PARTY \
                    or top == "__future__":
                continue
            bad.setdefault(mod, []).append(d)
    assert bad == {}


def test_engine_never_imports_training(graph):
    bad = {m: sorted(d for d in deps if d.startswith("hdrlift.training"))
           for m, deps in graph.items() if m.startswith("hdrlift.engine")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_the_checker_sees_circles_and_hidden_imports(tmp_path):
    """The walker counts function-local imports and finds a circle through one."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(g) == [["a", "b", "c"]]
    p = tmp_path / "m.py"
    p.write_text("import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import hidden\n"
                 "def f():\n    from hdrlift.engine import pipeline\n")
    got = _imports("hdrlift.engine.m", p, {"hdrlift.engine.pipeline": p})
    assert "hdrlift.engine.pipeline" in got and "hidden" not in got and "os" in got
