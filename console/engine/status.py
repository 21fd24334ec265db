"""The engine's status in figures."""

from __future__ import annotations

import time
from typing import Any

from console.engine.pools import ResourcePools
from console.model import Process, State
from console.store import History


async def summarise(store: History, processes: list[Process], pool_sizes: dict[str, int],
                    max_concurrent: int, queued: int) -> dict[str, Any]:
    """The orchestrator's status, from processes alone, so observers (the CLI) compute the
    same figures as the owner."""
    counts = {s.value: 0 for s in State}
    pools = ResourcePools(pool_sizes)
    running = []
    for p in processes:
        counts[p.state.value] += 1
        if p.state is State.RUNNING:
            running.append(p.id)
            pools.resize({n: pools.sizes.get(n, 0) for n in p.resources})
            for n, amount in p.resources.items():
                pools.used[n] = pools.used.get(n, 0) + amount
    hour = await store.count_events(["completed", "failed"], time.time() - 3600)
    finished = hour.get("completed", 0) + hour.get("failed", 0)
    return {
        "counts": counts,
        "active": len(running),
        "queued": queued,
        "running": sorted(running),
        "success_rate_1h": hour.get("completed", 0) / finished if finished else None,
        "resources": pools.utilisation(),
        "max_concurrent": max_concurrent,
    }

