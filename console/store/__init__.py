"""Storage: the only package with SQL.

The ports (`console.store.ports`) say what the engine and the front ends may ask of a
database; `SqliteStore` (aiosqlite, WAL) is the embedded adapter, `PostgresStore` (psycopg 3) the
server one, `MemoryStore` one in memory for fast tests.
"""

from __future__ import annotations

from console.store.ports import (
    CHECKPOINTS_KEPT,
    CallRecords,
    Command,
    EngineState,
    History,
    Inbox,
    LeaseHolder,
    Leases,
    LogLine,
    ProcessReads,
    Snapshot,
    Store,
    VoiceLine,
    WriteBatch,
)

__all__ = [
    "CHECKPOINTS_KEPT", "CallRecords", "Command", "EngineState", "History", "Inbox", "LeaseHolder", "Leases", "LogLine",
    "ProcessReads", "Snapshot", "Store", "VoiceLine", "WriteBatch", "is_server_url", "open_store",
]


def is_server_url(location: str) -> bool:
    """Whether `location` names a PostgreSQL database (a URL) rather than an SQLite file."""
    return location.startswith(("postgresql://", "postgres://"))


def open_store(path: str, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000, reads_only: bool = False) -> Store:
    """The store at `path`: a `postgresql://` (or `postgres://`) URL is a PostgreSQL database
    (psycopg is imported only then), anything else an SQLite file. `synchronous` and
    `busy_timeout_ms` are SQLite's settings; `reads_only`: the caller only reads, so an SQLite
    file that cannot be written is opened read-only."""
    if is_server_url(path):
        from console.store.postgres import PostgresStore

        return PostgresStore(path)
    from console.store.sqlite import SqliteStore

    return SqliteStore(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms, reads_only=reads_only)
