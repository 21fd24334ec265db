"""What console/compat.py relies on in its dependencies' private parts: an upgrade that
changes any of it fails here, by name, instead of quietly changing the program."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading
from pathlib import Path

import aiosqlite
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from console import compat
from console.bench.engine import shell_dag_workflow
from console.engine import workflow as wfmod

ROOT = Path(__file__).resolve().parent.parent


def typed(value):
    """A form where 1, 1.0 and True differ."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, value)


def pin_line(package: str) -> str:
    return next(line for line in (ROOT / "pyproject.toml").read_text().splitlines()
                if line.strip().startswith(f'"{package}'))


def test_aiosqlite_has_the_private_parts_on_connection_thread_uses():
    assert callable(getattr(aiosqlite.Connection, "_execute", None)), "aiosqlite.Connection._execute is gone"
    params = list(inspect.signature(aiosqlite.Connection._execute).parameters)
    assert params[:2] == ["self", "fn"], f"aiosqlite.Connection._execute is now {params}"
    assert "compat.on_connection_thread" in pin_line("aiosqlite"), "the pin must say why it is pinned"


async def test_on_connection_thread_runs_a_function_on_the_connections_thread_in_turn(tmp_path):
    db = await aiosqlite.connect(tmp_path / "t.db", isolation_level=None)
    try:
        await db.execute("CREATE TABLE t (n INTEGER)")

        def transaction(conn: sqlite3.Connection, rows: list[tuple[int]]) -> tuple[int, int]:
            assert isinstance(conn, sqlite3.Connection)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO t VALUES (?)", rows)
            count = conn.execute("SELECT COUNT(*) FROM t").fetchone()[0]
            conn.execute("COMMIT")
            return threading.get_ident(), count

        # queued behind an insert made through the public API, ahead of the read after it
        first = asyncio.ensure_future(db.execute("INSERT INTO t VALUES (0)"))
        ours = asyncio.ensure_future(compat.on_connection_thread(db, transaction, [(1,), (2,)]))
        after = asyncio.ensure_future(db.execute_fetchall("SELECT COUNT(*) FROM t"))
        await first
        thread, seen = await ours
        assert seen == 3  # the insert before it had run
        assert (await after)[0][0] == 3
        assert thread != threading.get_ident()

        def thread_of(conn: sqlite3.Connection) -> int:
            return threading.get_ident()

        assert await compat.on_connection_thread(db, thread_of) == thread  # aiosqlite's one thread
    finally:
        await db.close()


# -- workflow entries without pydantic: exactly what the pydantic models give, or nothing --------------

process_values = {
    "id": st.one_of(st.sampled_from(["p1", "a b", "", "x" * 201, "ok\n", "é", "a/b:c@d.e-f_g"]), st.integers()),
    "kind": st.one_of(st.just("shell"), st.integers(), st.booleans()),
    "priority": st.one_of(st.sampled_from(["low", "medium", "high", "critical", "HIGH", "urgent"]), st.integers()),
    "resources": st.one_of(
        st.dictionaries(st.sampled_from(["cpu_intensive", "io_intensive"]),
                        st.one_of(st.integers(-1, 3), st.booleans(), st.floats(0, 3), st.just("2"))),
        st.just([1])),
    "max_attempts": st.one_of(st.integers(-1, 1002), st.booleans(), st.floats(0, 5), st.just("3")),
    "hold": st.one_of(st.booleans(), st.integers(0, 2), st.just("true")),
}
dependency_values = {
    "dependent": st.one_of(st.sampled_from(["a", "b"]), st.integers()),
    "dependency": st.one_of(st.sampled_from(["a", "b", "c"]), st.integers()),
    "type": st.one_of(st.sampled_from(["sequential", "data", "parallel", "resource", "Data", "x"]), st.integers()),
    "required_completion_percent": st.one_of(st.integers(-5, 105), st.floats(allow_nan=True), st.booleans(),
                                             st.just("80"), st.integers(10**16, 10**17)),
    "timeout_minutes": st.one_of(st.integers(-2, 5), st.floats(allow_nan=True, allow_infinity=True),
                                 st.booleans(), st.just("1")),
    "surprise": st.just(1),
}


def entries(fields):
    return st.fixed_dictionaries({}, optional=fields)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries(process_values), st.dictionaries(st.sampled_from(["command", "env"]), st.just(["true"]), max_size=1))
def test_plain_process_entries_are_what_the_model_gives(raw, extra):
    raw = {**raw, **extra}
    fast = compat.plain_process_entry(raw, wfmod.ID_PATTERN)
    if fast is None:
        return
    model = wfmod._entry_models()[0].model_validate(raw)
    expected = (model.id, model.kind, model.priority, model.resources, model.max_attempts, model.hold)
    assert typed(list(fast)) == typed(list(expected))
    assert {k: v for k, v in raw.items() if k not in compat.PROCESS_ENTRY_FIELDS} == dict(model.model_extra)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries(dependency_values))
def test_plain_dependency_entries_are_what_the_model_gives(raw):
    fast = compat.plain_dependency_entry(raw)
    if fast is None:
        return
    model = wfmod._entry_models()[1].model_validate(raw)
    expected = (model.dependent, model.dependency, model.type, model.required_completion_percent,
                model.timeout_minutes)
    assert typed(list(fast)) == typed(list(expected))


def test_the_workflow_pin_says_why():
    assert "compat.plain_process_entry" in pin_line("pydantic>")


def test_a_plain_workflow_is_parsed_without_the_models(tmp_path):
    import subprocess
    import sys

    (tmp_path / "dag.toml").write_text(shell_dag_workflow(20))
    code = ("from console.engine import workflow\n"
            f"wf = workflow.parse_workflow({str(tmp_path / 'dag.toml')!r})\n"
            "print(len(wf.processes), len(wf.dependencies), workflow._models is None)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["20", "20", "True"]


# -- settings without pydantic-settings: held to it by tests/test_settings.py's property test ---------

def test_the_settings_pin_says_why():
    assert "compat.plain_settings" in pin_line("pydantic-settings")


def test_plain_settings_refers_what_needs_converting_to_pydantic_settings():
    from console import settings as S

    plain = compat.plain_settings({"engine": {"max_concurrent": 3}}, S.Settings._fields, S._SECTIONS, S.SecretStr)
    assert plain is not None and plain["engine"].max_concurrent == 3
    for data in ({"engine": {"max_concurrent": "3"}}, {"engine": {"max_concurrent": 0}}, {"engine": {"nope": 1}}):
        assert compat.plain_settings(data, S.Settings._fields, S._SECTIONS, S.SecretStr) is None, data
