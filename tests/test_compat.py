"""What console/compat.py relies on in its dependencies' private parts: an upgrade that
changes any of it fails here, by name, instead of quietly changing the program."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading
from pathlib import Path

import aiosqlite

from console import compat

ROOT = Path(__file__).resolve().parent.parent


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
