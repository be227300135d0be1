"""The house rules, checked on the source (an ``ast`` walk over every module of ``qtapp``).

Imports point down only: ``ui`` and ``cli`` -> ``core``; ``core`` never imports Qt, the UI or the
CLI; only ``core/jobs/engine`` (the child's side) imports ``llama_cpp``, and it imports nothing
of the parent side; no import circles anywhere. Every import counts, lazy ones inside functions
and ``TYPE_CHECKING`` ones too. ARCHITECTURE.md draws the same map.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qtapp"

QT = ("PySide6", "shiboken6", "pyqtgraph")
ENGINE = "qtapp.core.jobs.engine"
#: what the child may use besides itself: plain domain code that never starts or tracks jobs
ENGINE_MAY_IMPORT = (
    "qtapp.core.errors",
    "qtapp.core.light_import",
    "qtapp.core.jobs.events",
    "qtapp.core.gguf",
    "qtapp.core.fit.quants",
    "qtapp.core.quantize.imatrix",
    "qtapp.core.quantize.outputs",
    "qtapp.core.evaluate.base_cache",
    "qtapp.core.evaluate.checks",
    "qtapp.core.evaluate.logprobs",
    "qtapp.core.evaluate.metrics",
    "qtapp.core.evaluate.tasks",
    "qtapp.core.hardware.llama_build",
    "qtapp.core.app.paths",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def imports(module: str) -> frozenset[str]:
    """Every module name ``module`` imports, at any depth of its code."""
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if f"{node.module}.{a.name}" in modules()
            )
    return frozenset(found)


def _within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _offenders(sources: str, forbidden: tuple[str, ...] | str) -> list[str]:
    return [
        f"{m} imports {i}"
        for m in modules()
        if _within(m, sources)
        for i in sorted(imports(m))
        if _within(i, forbidden)
    ]


def test_core_imports_no_qt_no_ui_no_cli() -> None:
    assert _offenders("qtapp.core", (*QT, "qtapp.ui", "qtapp.cli")) == []


def test_only_the_engine_imports_llama_cpp() -> None:
    outside = [o for o in _offenders("qtapp", "llama_cpp") if not o.startswith(ENGINE)]
    assert outside == []


def test_the_window_and_the_cli_never_reach_into_the_engine() -> None:
    assert _offenders("qtapp.ui", ENGINE) == []
    assert _offenders("qtapp.cli", ENGINE) == []


def test_cli_and_ui_are_separate_skins_over_core() -> None:
    assert _offenders("qtapp.cli", "qtapp.ui") == []
    assert _offenders("qtapp.ui", "qtapp.cli") == []


def test_the_engine_imports_nothing_of_the_parent_side() -> None:
    wrong = [
        f"{m} imports {i}"
        for m in modules()
        if _within(m, ENGINE)
        for i in sorted(imports(m))
        if _within(i, "qtapp") and not _within(i, (ENGINE, *ENGINE_MAY_IMPORT))
    ]
    assert wrong == []


def test_test_model_writers_stay_out_of_the_product() -> None:
    assert _offenders("qtapp.core", "qtapp.testing") == []
    assert _offenders("qtapp.ui", "qtapp.testing") == []
    assert _offenders("qtapp.cli", "qtapp.testing") == []


def _resolve(name: str) -> str | None:
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def test_no_import_circles() -> None:
    graph = {
        m: {r for i in imports(m) if (r := _resolve(i)) and r not in (m, "qtapp")}
        for m in modules()
    }
    circles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == []


def test_core_is_split_by_domain() -> None:
    top = [p.name for p in (PACKAGE / "core").glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 3, top
    for package in (PACKAGE / "core").iterdir():
        if package.is_dir() and package.name != "__pycache__":
            assert ast.get_docstring(ast.parse((package / "__init__.py").read_text())), package


@pytest.mark.parametrize("module", sorted(modules()))
def test_every_module_opens_with_a_docstring(module: str) -> None:
    doc = ast.get_docstring(ast.parse(modules()[module].read_text(encoding="utf-8")))
    assert doc and doc.strip().splitlines()[0].strip(), f"{module} has no opening docstring"


#: a core function longer than this needs its reason in a ``# long: why`` comment above it
MAX_FUNCTION_LINES = 60


def test_long_core_functions_say_why() -> None:
    unexplained = []
    for module, path in modules().items():
        if not _within(module, "qtapp.core"):
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            above = lines[first - 2].strip() if first >= 2 else ""
            if length > MAX_FUNCTION_LINES and not above.startswith("# long:"):
                unexplained.append(f"{module}.{node.name}: {length} lines")
    assert unexplained == []
