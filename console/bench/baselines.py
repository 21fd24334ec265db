"""SQLite as the benchmarks' comparisons and fixtures use it. It lives in the bench package
because only `switchboard bench` needs it: nothing in the product imports console.bench.

- `BlockingProcessTable`, `BlockingReplyLog`: the replaced designs' writes, with the
  synchronous `sqlite3` module called straight from async code. They block the caller (the
  event loop) on purpose: that is what the baselines measure.
- `NormalSyncConnection`: huey's SQLite connections at our durability (WAL, synchronous=NORMAL; huey's
  own `fsync` flag offers only FULL or OFF), for the throughput peer.
- `fill_transfers`: the listing benchmark's million rows, bulk-inserted (the store's own
  write path builds each row as a Transfer: ~15,000 rows/s, too slow for a million). Called
  in a worker thread, before anything is measured.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SQLITE_VERSION = sqlite3.sqlite_version


class BlockingProcessTable:
    """The replaced scheduler's state table: one synchronous commit per state change."""

    def __init__(self, path: Path, process_ids: list[str]) -> None:
        self.db = sqlite3.connect(path)
        # our durability settings, so that the figure isolates the polling
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("CREATE TABLE processes (id TEXT PRIMARY KEY, state TEXT, progress REAL)")
        self.db.executemany("INSERT INTO processes VALUES (?, 'pending', 0)", [(pid,) for pid in process_ids])
        self.db.commit()

    def write(self, process_id: str, state: str, progress: float) -> None:
        self.db.execute("UPDATE processes SET state = ?, progress = ? WHERE id = ?", (state, progress, process_id))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class BlockingReplyLog:
    """The replaced voice backend's reply table: one synchronous commit per reply."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS replies (call TEXT, reply TEXT)")

    def add(self, call: str, reply: str) -> None:
        self.db.execute("INSERT INTO replies VALUES (?, ?)", (call, reply))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class NormalSyncConnection(sqlite3.Connection):
    """A connection at synchronous=NORMAL: handed to huey's `SqliteHuey(factory=...)`, which
    passes its extra keyword arguments on to `sqlite3.connect` (huey's own `fsync` flag offers
    only FULL or OFF)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA synchronous = NORMAL")


_CHUNK = 50_000  # rows per executemany while filling


def fill_transfers(path: Path, rows: int, calls: int) -> None:
    """`rows` transfers over `calls` calls, one a second, oldest first, into the schema the
    store created (blocking: run it in a worker thread)."""
    statuses = ["initiated", "summarizing", "ready", "completed", "cancelled", "failed"]
    start = time.time() - rows
    summary = json.dumps({"caller": "Ann", "issue": "the bill is wrong again", "steps_taken": ["checked the invoice"],
                          "sentiment": "frustrated", "next_action": "refund the late fee"})
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = OFF")  # set-up only
        db.execute("BEGIN")
        db.executemany("INSERT INTO calls (id, created_at, updated_at) VALUES (?, ?, ?)",
                       ((f"call-{c}", start, start) for c in range(calls)))
        for first in range(0, rows, _CHUNK):
            db.executemany(
                "INSERT INTO transfers (id, call_id, process_id, from_agent, to_agent, status, summary, "
                "summary_source, reason, created_at, updated_at, completed_at) "
                "VALUES (?, ?, ?, 'alice', 'bob', ?, ?, 'llm', NULL, ?, ?, NULL)",
                _transfer_rows(first, min(rows, first + _CHUNK), calls, statuses, summary, start))
        db.execute("COMMIT")
    finally:
        db.close()


def _transfer_rows(first: int, last: int, calls: int, statuses: list[str], summary: str, start: float) -> Any:
    return ((f"tr-{i:07d}", f"call-{i % calls}", f"transfer-{i:07d}", statuses[i % len(statuses)], summary,
             start + i, start + i) for i in range(first, last))


def fill_processes(path: Path, rows: int, step_folder: Path) -> None:
    """`rows` python processes into the schema the store created, oldest first: mostly
    completed, one in a thousand failed (waiting for an operator), one in ten thousand pending
    (a no-op step in `step_folder`). Blocking: run it in a worker thread."""
    spec = json.dumps({"entry": "bench_steps:noop", "path": str(step_folder)})
    start = time.time() - rows
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = OFF")  # set-up only
        db.execute("BEGIN")
        for first in range(0, rows, _CHUNK):
            db.executemany(
                "INSERT INTO processes (id, kind, priority, spec, resources, max_attempts, state, progress, "
                "created_at, updated_at, started_at, finished_at) "
                "VALUES (?, 'python', 'medium', ?, '{}', 3, ?, ?, ?, ?, ?, ?)",
                _process_rows(first, min(rows, first + _CHUNK), spec, start))
        db.execute("COMMIT")
    finally:
        db.close()


def _process_state(i: int) -> str:
    return "pending" if i % 10_000 == 5 else "failed" if i % 1000 == 7 else "completed"


def _process_rows(first: int, last: int, spec: str, start: float) -> Any:
    for i in range(first, last):
        state = _process_state(i)
        done = state != "pending"
        yield (f"h{i:07d}", spec, state, 1.0 if state == "completed" else 0.0, start + i, start + i,
               start + i if done else None, start + i + 0.5 if done else None)
