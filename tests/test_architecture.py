"""The shape of console/, read from its source with `ast`: no import cycles between its
packages, the console and intake reach data through the store's ports only, SQL only in the
store (and the benchmarks' own tree).

An import counts wherever it is written: at module level, inside a function, or as a module
name in a string (`importlib.import_module("console.kinds.shell")`, or a table of such names
imported later). Imports under `if TYPE_CHECKING:` are left out: they are never run."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

CONSOLE = ROOT / "console"
ADAPTERS = ("console.store.sqlite", "console.store.memory")
MODULE_NAME = re.compile(r"console(\.[A-Za-z_][A-Za-z0-9_]*)+")
SQL = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|CREATE\s+TABLE)\s")  # SQL keywords as written here


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. console.engine.orchestrator
    target: str  # the imported module, e.g. console.kinds
    where: str  # path:line

    @property
    def edge(self) -> tuple[str, str]:
        return node(self.source), node(self.target)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def node(module: str) -> str:
    """A module's place in the graph: its package under console/, or itself at the top."""
    return ".".join(module.split(".")[:2])  # console.engine, ...; console.settings, ...; console


def _is_module(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:`."""
    skipped: set[int] = set()
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.If) and ast.unparse(stmt.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for inner in stmt.body:
                skipped.update(id(n) for n in ast.walk(inner))
    return skipped


def _where(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def imports_of(path: Path, as_module: str | None = None) -> list[Import]:
    source = as_module or module_name(path)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_only(tree)
    found: list[Import] = []

    def add(target: str, at: ast.AST) -> None:
        if target == "console" or target.startswith("console."):
            found.append(Import(source, target, f"{_where(path)}:{at.lineno}"))

    for n in ast.walk(tree):
        if id(n) in skipped:
            continue
        if isinstance(n, ast.Import):
            for alias in n.names:
                add(alias.name, n)
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = package.split(".")[: len(package.split(".")) - (n.level - 1)]
                module = ".".join(base + ([n.module] if n.module else []))
            else:
                module = n.module or ""
            for alias in n.names:  # `from console import settings` imports a module
                sub = f"{module}.{alias.name}"
                add(sub if _is_module(sub) else module, n)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and MODULE_NAME.fullmatch(n.value):
            if _is_module(n.value):
                add(n.value, n)
    return found


def console_files(*, outside: tuple[str, ...] = ()) -> list[Path]:
    skip = tuple(CONSOLE / d for d in outside)
    return sorted(p for p in CONSOLE.rglob("*.py") if not any(p.is_relative_to(s) for s in skip))


def all_imports() -> list[Import]:
    return [i for path in console_files() for i in imports_of(path)]


def graph() -> dict[tuple[str, str], list[Import]]:
    edges: dict[tuple[str, str], list[Import]] = {}
    for i in all_imports():
        a, b = i.edge
        if a != b:
            edges.setdefault((a, b), []).append(i)
    return edges


def strongly_connected(nodes: set[str], edges: set[tuple[str, str]]) -> list[set[str]]:
    """Tarjan's algorithm; the components with more than one node (the import cycles)."""
    succ: dict[str, list[str]] = {n: sorted(b for a, b in edges if a == n) for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def describe(edges: dict[tuple[str, str], list[Import]], component: set[str]) -> str:
    return "; ".join(f"{a} -> {b} ({', '.join(i.where for i in imports)})"
                     for (a, b), imports in sorted(edges.items()) if a in component and b in component)


# Cycles there were, each as the packages around it: the kinds get the engine's RunContext and
# the call centre through console.kinds.context (the engine and console.voice provide them), and
# `listen` is parsed beside the settings (console.listen), not in the intake.
FORMER_CYCLES = {
    "engine -> kinds -> voice -> engine": ("console.engine", "console.kinds", "console.voice"),
    "kinds -> engine -> kinds": ("console.kinds", "console.engine"),
    "intake -> settings -> intake": ("console.intake", "console.settings"),
}


def closed(edges, path: tuple[str, ...]) -> bool:
    return all((a, b) in edges for a, b in zip(path, path[1:] + path[:1]))


def test_no_import_cycles():
    edges = graph()
    nodes = {n for edge in edges for n in edge}
    cycles = [describe(edges, component) for component in strongly_connected(nodes, set(edges))]
    assert not cycles, "import cycles between packages of console/:\n" + "\n".join(cycles)


@pytest.mark.parametrize("name", FORMER_CYCLES)
def test_former_cycle_is_gone(name):
    edges = graph()
    path = FORMER_CYCLES[name]
    assert not closed(edges, path), describe(edges, set(path))


def test_the_kinds_import_neither_the_engine_nor_the_call_centre():
    """The engine loads the kinds by name; they reach it only through their RunContext."""
    offending = [f"{i.where}: {i.target}" for path in console_files() if path.is_relative_to(CONSOLE / "kinds")
                 for i in imports_of(path) if node(i.target) in ("console.engine", "console.voice")]
    assert not offending, "console/kinds imports the engine or the call centre:\n" + "\n".join(offending)


def test_the_console_and_intake_import_the_store_ports_not_an_adapter():
    offending = [f"{i.where}: {i.target}" for path in console_files()
                 if path.is_relative_to(CONSOLE / "tui") or path.is_relative_to(CONSOLE / "intake")
                 for i in imports_of(path)
                 if any(i.target == a or i.target.startswith(a + ".") for a in ADAPTERS)]
    assert not offending, "console/tui and console/intake may import console.store only:\n" + "\n".join(offending)


def sql_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    where = _where(path)
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import) and any(a.name.split(".")[0] in ("sqlite3", "aiosqlite") for a in n.names):
            found.append(f"{where}:{n.lineno}: import {', '.join(a.name for a in n.names)}")
        elif isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in ("sqlite3", "aiosqlite"):
            found.append(f"{where}:{n.lineno}: from {n.module} import ...")
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and SQL.match(n.value):
            found.append(f"{where}:{n.lineno}: {n.value.strip()[:60]!r}")
    return found


def test_sql_only_in_the_store_and_the_benchmarks():
    # console/compat.py wraps aiosqlite's connection thread (its one private API) and holds no SQL
    found = [line for path in console_files(outside=("store", "bench")) for line in sql_in(path)
             if not (path == CONSOLE / "compat.py" and line.endswith("import aiosqlite"))]
    assert not found, "SQL outside console/store/ and console/bench/:\n" + "\n".join(found)


# -- the checks themselves catch what they are for --------------------------------------------------

def test_the_checks_see_every_kind_of_import_and_sql(tmp_path):
    fake = tmp_path / "widgets.py"
    fake.write_text('''
import importlib
from typing import TYPE_CHECKING
from console.store import sqlite
from ..engine import orchestrator
if TYPE_CHECKING:
    from console.demo import seed
def later():
    import console.intake.server
    return importlib.import_module("console.voice.center")
import aiosqlite
QUERY = """
    SELECT id FROM processes"""
''')
    targets = {i.target for i in imports_of(fake, as_module="console.tui.widgets")}
    assert targets == {"console.store.sqlite", "console.engine.orchestrator", "console.intake.server",
                       "console.voice.center"}
    assert len(sql_in(fake)) == 2  # the aiosqlite import and the SELECT


def test_a_new_cycle_is_found():
    edges = {("console.a", "console.b"), ("console.b", "console.c"), ("console.c", "console.a"),
             ("console.c", "console.d")}
    assert strongly_connected({"console.a", "console.b", "console.c", "console.d"}, edges) == [
        {"console.a", "console.b", "console.c"}]


# -- the console reads its data through its Source --------------------------------------------------

def store_uses(path: Path, as_module: str | None = None) -> list[str]:
    """Where a module reaches the store itself: an import from console.store other than its
    ports (an adapter, `open_store`), or a call of a method on something named `store`
    (`self.store.events(...)`, `store.close()`)."""
    found = [f"{i.where}: imports {i.target}" for i in imports_of(path, as_module)
             if (i.target == "console.store" or i.target.startswith("console.store."))
             and i.target != "console.store.ports"]
    for n in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            owner = n.func.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if name.lstrip("_").endswith("store"):
                found.append(f"{_where(path)}:{n.lineno}: calls {ast.unparse(n.func)}")
    return found


def test_the_console_reads_the_store_only_through_its_source():
    tui = CONSOLE / "tui"
    offending = [use for path in sorted(tui.rglob("*.py")) if path != tui / "source.py" for use in store_uses(path)]
    assert not offending, "console/tui reaches the store through source.py only:\n" + "\n".join(offending)


def test_the_source_check_sees_imports_and_calls(tmp_path):
    fake = tmp_path / "pane.py"
    fake.write_text('''
from console.store.ports import LeaseHolder
async def load(self, store):
    from console.store import open_store
    await self.store.events(limit=5)
    await store.close()
    await self.source.calls(limit=5)
''')
    uses = store_uses(fake, as_module="console.tui.pane")
    assert [u.rpartition(": ")[2] for u in uses] == ["imports console.store", "calls self.store.events", "calls store.close"]
