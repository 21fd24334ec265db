"""Listing the 50 newest transfers from a million, through the store's own API
(`Store.list_transfers`), on a fresh connection to a database of the store's own schema."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from console.bench.measure import percentiles

CHUNK = 50_000  # rows per executemany while filling
LISTINGS = 30


def _fill(path: Path, rows: int, calls: int) -> None:
    """Bulk rows with sqlite3's executemany into the schema the store created (its own write
    path builds each row as a Transfer: ~15,000 rows/s, too slow for a million). The one
    piece of SQL outside console/store/ besides the baselines, which model the replaced
    design's sqlite3 calls on purpose: fixture set-up for a benchmark, not product code."""
    import json
    import sqlite3

    statuses = ["initiated", "summarizing", "ready", "completed", "cancelled", "failed"]
    start = time.time() - rows  # one a second, oldest first
    summary = json.dumps({"caller": "Ann", "issue": "the bill is wrong again", "steps_taken": ["checked the invoice"],
                          "sentiment": "frustrated", "next_action": "refund the late fee"})
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")  # set-up only
    db.execute("BEGIN")
    db.executemany("INSERT INTO calls (id, created_at, updated_at) VALUES (?, ?, ?)",
                   ((f"call-{c}", start, start) for c in range(calls)))
    for first in range(0, rows, CHUNK):
        db.executemany(
            "INSERT INTO transfers (id, call_id, process_id, from_agent, to_agent, status, summary, summary_source, "
            "reason, created_at, updated_at, completed_at) VALUES (?, ?, ?, 'alice', 'bob', ?, ?, 'llm', NULL, ?, ?, NULL)",
            ((f"tr-{i:07d}", f"call-{i % calls}", f"transfer-{i:07d}", statuses[i % len(statuses)], summary,
              start + i, start + i) for i in range(first, min(rows, first + CHUNK))))
    db.execute("COMMIT")
    db.close()


async def measure(quick: bool = False) -> dict[str, Any]:
    from console.store import open_store

    rows = 50_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "b.db"
        store = open_store(str(path))
        await store.open()  # creates the schema
        await store.close()
        t0 = time.perf_counter()
        # set-up, before anything is measured; in a thread, as blocking sqlite3 work belongs
        await asyncio.to_thread(_fill, path, rows, max(1, rows // 20))
        fill_s = time.perf_counter() - t0

        store = open_store(str(path))  # a fresh connection: the first listing is a cold one
        await store.open()
        times = []
        for _ in range(LISTINGS):
            t = time.perf_counter()
            listed = await store.list_transfers(limit=50)
            times.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        ready = await store.list_transfers(status="ready", limit=50)
        by_status_ms = (time.perf_counter() - t) * 1000
        await store.close()
    if len(listed) != 50 or listed[0].id != f"tr-{rows - 1:07d}" or len(ready) != 50:
        raise RuntimeError("the listing is not the 50 newest transfers")
    return {"rows": rows, "fill_s": round(fill_s, 2), "store_list_ms": round(statistics.median(times), 3),
            "first_listing_ms": round(times[0], 3), "listing_ms": percentiles(times),
            "by_status_ms": round(by_status_ms, 3)}
