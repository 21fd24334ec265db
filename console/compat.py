"""The private parts of dependencies the program still relies on, each because measured on a
figure of `switchboard bench` it is worth at least a fifth of it. Nothing else may use a
dependency's private API; tests/test_compat.py fails loudly when an upgrade changes what is
relied on here, and the version pin in pyproject.toml says why it is pinned."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import aiosqlite


def on_connection_thread(db: aiosqlite.Connection, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    """`fn(connection, *args)` run as one job on aiosqlite's own thread, in turn with the
    connection's other calls, with the `sqlite3.Connection` itself: a whole transaction is one
    hop between the loop and that thread instead of one per statement (through the public
    `execute`/`executemany`, each statement waits for a turn of a busy loop, and the dispatch
    latency figure grows with it: the figure is at the pin in pyproject.toml)."""
    return db._execute(fn, db._conn, *args)  # noqa: SLF001 - see the module's docstring
