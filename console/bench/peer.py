"""The same workload on huey's SQLite storage (`huey.SqliteHuey` and its consumer): a durable
task queue users would pick instead of Switchboard.

huey has no dependency graph (its pipelines are chains), so the DAG is expressed the way a
huey user would: every process is a task; when one finishes it bumps an atomic counter in
huey's storage for each dependent (`storage.incr`) and enqueues the dependent when the count
reaches its number of dependencies. Each task returns True, which huey stores as its result:
the durable record of the completion. Timed from enqueueing the roots to the last result
(counted by huey's completion signal, which it sends once the result is stored). Both sides
use WAL with synchronous=NORMAL (console.bench.baselines.NormalSyncConnection: huey's own
`fsync` flag offers only FULL or OFF)."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from console.bench.engine import dag_edges

# Chosen among thread workers 1/2/4, process workers 2/4 and polling delays 0.1 s (huey's default) / 0.01 s / 0.001 s
# as the fastest on the 2-core machine; see `notes()`.
WORKERS = 2
INITIAL_DELAY_S = 0.001
MAX_DELAY_S = 0.01


def notes(workers: int = WORKERS, initial_delay: float = INITIAL_DELAY_S, max_delay: float = MAX_DELAY_S) -> str:
    return (f"huey {_huey_version()} SqliteHuey (WAL, synchronous=NORMAL as ours), its Consumer in-process with "
            f"{workers} thread workers polling every {initial_delay * 1000:g} ms backing off to {max_delay * 1000:g} ms "
            "(huey's defaults are 100 ms to 10 s: far slower here), periodic tasks off; the same DAG (dag_edges): "
            "a task per process, dependents enqueued through an atomic counter in huey's storage when their last "
            "dependency finishes; every task returns True, stored as its result (the durable completion); timed "
            "from enqueueing the roots to the last stored result")


def _huey_version() -> str:
    import huey

    return huey.__version__


def run(n: int, workers: int = WORKERS, initial_delay: float = INITIAL_DELAY_S,
        max_delay: float = MAX_DELAY_S, worker_type: str = "thread") -> dict[str, Any]:
    from huey import SqliteHuey, signals
    from huey.consumer import Consumer

    from console.bench.baselines import NormalSyncConnection

    upstream: dict[int, int] = {}
    downstream: dict[int, list[int]] = {i: [] for i in range(n)}
    for a, b in dag_edges(n):
        upstream[a] = upstream.get(a, 0) + 1
        downstream[b].append(a)
    logging.getLogger("huey").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "huey.db"
        huey = SqliteHuey("bench", filename=str(db), factory=NormalSyncConnection)

        @huey.task(name="node")
        def node(i: int) -> bool:
            for j in downstream[i]:
                if huey.storage.incr(f"deps:{j}") == upstream[j]:
                    node(j)
            return True

        lock, completed, all_done = threading.Lock(), [0], threading.Event()

        @huey.signal(signals.SIGNAL_COMPLETE)
        def counted(signal: str, task: Any) -> None:  # after huey has stored the task's result
            with lock:
                completed[0] += 1
                if completed[0] == n:
                    all_done.set()

        consumer = Consumer(huey, workers=workers, worker_type=worker_type, periodic=False,
                            initial_delay=initial_delay, backoff=1.15, max_delay=max_delay,
                            check_worker_health=False)
        consumer.start()
        try:
            t0 = time.perf_counter()
            for i in range(n):
                if i not in upstream:
                    node(i)
            if not all_done.wait(timeout=600):  # huey is thread-based: no event loop in this child
                raise RuntimeError(f"huey completed {completed[0]} of {n} tasks in 600 s")
            wall = time.perf_counter() - t0
        finally:
            consumer.stop(graceful=True)
            huey.storage.close()
    return {"n": n, "wall_s": round(wall, 3), "peer_throughput_per_s": round(n / wall, 1),
            "workers": workers, "worker_type": worker_type, "initial_delay_s": initial_delay, "max_delay_s": max_delay}
