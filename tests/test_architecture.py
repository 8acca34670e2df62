"""The shape of the code, checked: small source folders, no import cycle, tests that import only support.

`lint-imports` (pyproject's contracts) checks the layers; this adds what its contracts cannot say.
Imports inside functions and under TYPE_CHECKING count everywhere: grimp and the AST walk see them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SOURCE = (
    "models",
    "pages",
    "playbooks",
    "connectors",
    "investigation",
    "workflows",
    "activities",
    "selfheal",
    "devstack",
    "demo",
    "bench",
)
MAX_MODULES_PER_FOLDER = 15
#: Cycles that exist today and are being removed (issue 10); each goes when its import does, and
#: a listed cycle that no longer exists fails the test so that the list only shrinks.


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*SOURCE, include_external_packages=True, cache_dir=None)


def cycles(g: grimp.ImportGraph) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(root: str) -> None:
        # Tarjan's algorithm, iterative: the graph is deep enough to matter for recursion.
        work: list[tuple[str, Iterator[str]]] = []

        def enter(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            on_stack.add(v)
            work.append((v, iter(sorted(g.find_modules_directly_imported_by(v)))))

        enter(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    enter(child)
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                component: set[str] = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.add(w)
                    if w == v:
                        break
                if len(component) > 1 or v in g.find_modules_directly_imported_by(v):
                    found.append(frozenset(component))

    for module in sorted(g.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_between_source_modules() -> None:
    found = [sorted(c) for c in cycles(graph())]
    assert not found, f"import cycles (imports inside functions count): {found}"


def test_source_does_not_import_tests() -> None:
    g = graph()
    importers = sorted(g.find_modules_that_directly_import("tests")) if "tests" in g.modules else []
    assert not importers, f"source modules importing tests: {importers}"


def test_no_source_folder_has_more_than_15_modules() -> None:
    crowded = {}
    for package in SOURCE:
        for folder in [ROOT / package, *(p for p in (ROOT / package).rglob("*") if p.is_dir())]:
            modules = [p.name for p in folder.glob("*.py")]
            if len(modules) > MAX_MODULES_PER_FOLDER:
                crowded[str(folder.relative_to(ROOT))] = len(modules)
    assert not crowded, f"split these folders (at most {MAX_MODULES_PER_FOLDER} modules): {crowded}"


def _imported(path: Path) -> Iterator[str]:
    """Every module `path` imports, anywhere in the file; `from a import b` yields `a` and `a.b`."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def test_test_modules_import_support_not_each_other() -> None:
    """Helpers and fakes live in tests/support; no file under tests imports a test module or conftest."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for name in _imported(path):
            last = name.rsplit(".", 1)[-1]
            if name.startswith("tests.") and (last.startswith("test_") or last == "conftest"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_tests_mirror_the_source_tree() -> None:
    """Test modules sit in a folder named after what they test, each folder a package."""
    allowed = {*SOURCE, "deploy", "docs", "e2e"}
    misplaced = []
    for path in sorted(TESTS.rglob("test_*.py")):
        rel = path.relative_to(TESTS)
        if rel.parts[0] not in allowed and rel != Path("test_architecture.py"):
            misplaced.append(str(rel))
        if not (path.parent / "__init__.py").exists():
            misplaced.append(f"{rel} (no __init__.py beside it)")
    assert not misplaced, misplaced
