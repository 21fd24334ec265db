"""Storage: the only package with SQL.

The ports (`console.store.ports`) say what the engine and the front ends may ask of a
database; `SqliteStore` (aiosqlite, WAL) is the embedded adapter, `MemoryStore` one in memory
for fast tests. A PostgreSQL adapter would implement the same `Store`.
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
    ProcessReads,
    Snapshot,
    Store,
    VoiceLine,
    WriteBatch,
)

__all__ = [
    "CHECKPOINTS_KEPT", "CallRecords", "Command", "EngineState", "History", "Inbox", "LeaseHolder", "Leases",
    "ProcessReads", "Snapshot", "Store", "VoiceLine", "WriteBatch", "open_store",
]


def open_store(path: str, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000) -> Store:
    from console.store.sqlite import SqliteStore

    return SqliteStore(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
