"""The package's import graph: every module imports, layers point downward, no cycles."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import seglab

PACKAGE = Path(seglab.__file__).parent


def module_files() -> dict[str, Path]:
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = module_files()


def imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The seglab modules an import statement loads (a name imported from a package may be one of
    its submodules)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return [n for n in names if n in MODULES]


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """Module-level edges (a module's import of its own parent package is not an edge: the parent
    is loaded first anyway) and the function-local imports of seglab modules."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    local = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        in_functions = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
            for node in ast.walk(function)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in imported(node):
                if id(node) in in_functions:
                    local.append(f"{name} imports {target} inside a function")
                elif target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph, local


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_there_is_no_import_cycle_and_no_import_hidden_in_a_function():
    graph, local = import_graph()
    assert cycles(graph) == []
    assert local == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_library_layers_never_import_the_command_line():
    graph, _ = import_graph()
    library = [n for n in graph if not n.startswith(("seglab.cli", "seglab.__main__"))]
    assert [n for n in library if any(t.startswith("seglab.cli") for t in graph[n])] == []


def test_what_a_client_configures_is_importable_from_the_package():
    """The pieces another Lightning project puts together: model, its losses and schedules, data,
    the run-time policies, rare-class sampling, inference settings and the errors to catch."""
    from seglab import (  # noqa: F401
        ConfigError,
        CrossEntropyLoss,
        DataError,
        FreezeEncoder,
        Inference,
        NonFiniteLoss,
        OhemCrossEntropyLoss,
        PolyLR,
        RareClassSampling,
        SegmentationModule,
        ValidateAtEnd,
        WeightedSum,
    )

    assert set(seglab.__all__) <= set(dir(seglab))
