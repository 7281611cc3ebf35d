"""The structure holds by contract: the layers (pyproject.toml's import-linter contract, which
`make lint` checks), no import cycle between modules, no private name taken across modules,
every error under one root."""
from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import pkgutil
import shutil
import subprocess
import sys

import pytest

import adapter
from adapter.errors import AdapterError
from conftest import ROOT

LINT_IMPORTS = str(pathlib.Path(sys.executable).parent / "lint-imports")


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in (ROOT / "adapter").rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(modules: dict[str, pathlib.Path]) -> dict[str, set[tuple[str, str]]]:
    """module -> {(imported module, name taken from it)}, at any depth of the file (imports
    inside functions too: they are edges all the same)."""
    edges: dict[str, set[tuple[str, str]]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adapter"):
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    if target in modules:
                        edges[module].add((target, ""))
                    elif node.module in modules:
                        edges[module].add((node.module, alias.name))
            elif isinstance(node, ast.Import):
                edges[module].update((a.name, "") for a in node.names if a.name in modules)
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules():
    modules = _modules()
    edges = _imports(modules)
    graph = {m: {t for t, _ in targets if t != m} for m, targets in edges.items()}
    assert _cycles(graph) == []


def test_no_private_name_is_taken_across_modules():
    taken = sorted(f"{module} takes {name} from {target}" for module, targets in _imports(_modules()).items()
                   for target, name in targets if name.startswith("_") and not name.startswith("__"))
    assert taken == []


def test_the_layers_hold_and_a_breaking_import_fails_the_contract(tmp_path):
    kept = subprocess.run([LINT_IMPORTS], cwd=ROOT, capture_output=True, text=True)
    assert kept.returncode == 0, kept.stdout[-3000:]
    # The same tree with one import against the layers: the FHIR core reaching up into the gateway.
    shutil.copytree(ROOT / "adapter", tmp_path / "adapter", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    ids = tmp_path / "adapter" / "fhir" / "ids.py"
    ids.write_text(ids.read_text() + "\nimport adapter.gateway.app  # noqa: E402,F401\n")
    broken = subprocess.run([LINT_IMPORTS], cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": str(pathlib.Path(sys.executable).parent), "PYTHONPATH": str(tmp_path),
                                 "PYTHONSAFEPATH": "", "HOME": str(tmp_path)})
    assert broken.returncode == 1 and "adapter.fhir.ids -> adapter.gateway.app" in broken.stdout, broken.stdout[-3000:]


def _adapter_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(adapter.__path__, "adapter.")
                  if ".migrations" not in m.name and not m.name.endswith(("gunicorn_conf", "__main__")))


@pytest.mark.parametrize("module", _adapter_modules())
def test_every_exception_of_the_adapter_is_under_one_root(module):
    loaded = importlib.import_module(module)
    own = [c for _, c in inspect.getmembers(loaded, inspect.isclass)
           if c.__module__ == module and issubclass(c, BaseException)]
    assert [c.__name__ for c in own if not issubclass(c, AdapterError)] == []


def test_files_and_functions_stay_small():
    """No module over 400 lines, no function over 80: past them, a module holds several things
    and a function several steps, each better named on its own."""
    long_files, long_functions = [], []
    for module, path in _modules().items():
        text = path.read_text()
        if text.count("\n") > 400:
            long_files.append(f"{module}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None \
                    and node.end_lineno - node.lineno + 1 > 80:
                long_functions.append(f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert (long_files, long_functions) == ([], [])


@pytest.mark.parametrize("narrowing", ["adapter.auth.guard:GuardedRepository", "adapter.exchange.view:PolicyView"])
def test_a_narrowing_handle_decides_every_read_and_write(narrowing):
    """The guard and the policy view forward what they leave alone (adapter/store/forwarding.py);
    every method that reads or writes resources is theirs to check. A method added to those
    interfaces fails here until each of them says what it does with it."""
    from adapter.store.forwarding import Forwarding
    from adapter.store.repository import BulkLoading, Resources
    module, name = narrowing.split(":")
    handle = getattr(importlib.import_module(module), name)
    data_methods = {n for base in (Resources, BulkLoading) for n, v in vars(base).items()
                    if callable(v) and not n.startswith("_")} - {"current", "analyze"}  # read; no resource
    assert issubclass(handle, Forwarding)
    assert sorted(n for n in data_methods if n not in vars(handle)) == []
