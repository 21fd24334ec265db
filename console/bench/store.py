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

LISTINGS = 30


async def measure(quick: bool = False) -> dict[str, Any]:
    from console.bench.baselines import fill_transfers
    from console.store import open_store

    rows = 50_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "b.db"
        store = open_store(str(path))
        await store.open()  # creates the schema
        await store.close()
        t0 = time.perf_counter()
        # set-up, before anything is measured; in a thread, as blocking sqlite3 work belongs
        await asyncio.to_thread(fill_transfers, path, rows, max(1, rows // 20))
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
