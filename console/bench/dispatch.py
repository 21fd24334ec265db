"""Dispatch latency: from a dependency's completion (or its reaching the required percent) to
the dependent's handler starting, `python` kind, one sample per edge.

The DAG is layered (200 wide, 5 deep): each process after the first layer depends on one
process of the layer before it, half of the edges `sequential` (needs completion), half `data`
at 50 %. Each step works 20–200 ms (seeded), reporting 50 % half-way, so readiness is spread in
time; even so ~900 processes a second start and finish, near what one loop sustains (see
`throughput_per_s`), so the figure includes queueing behind the group commit.

`baseline` runs the same DAG and the same steps through a model of the replaced design."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from console.bench.measure import percentiles

MARKS: dict[str, dict[str, float]] = {}  # process id -> start / half / end (perf_counter)
POLL_S = 1.0  # the replaced design's scheduler tick


async def step(ctx: Any) -> None:
    """The python-kind entry point (`console.bench.dispatch:step`)."""
    marks = MARKS[ctx.process_id] = {"start": time.perf_counter()}
    await asyncio.sleep(ctx.args["work_s"] / 2)
    marks["half"] = time.perf_counter()
    await ctx.report(50)
    await asyncio.sleep(ctx.args["work_s"] / 2)
    marks["end"] = time.perf_counter()


def layered_dag(width: int, depth: int, seed: int = 11) -> tuple[list[tuple[str, float]], list[tuple[str, str, int]]]:
    """([(id, work_s)], [(dependent, dependency, required percent)]): width × depth edges."""
    rng = random.Random(seed)
    nodes = [(f"L{layer}n{i}", round(rng.uniform(0.02, 0.2), 4)) for layer in range(depth + 1) for i in range(width)]
    edges = [(f"L{layer}n{i}", f"L{layer - 1}n{rng.randrange(width)}", 50 if (layer + i) % 2 else 100)
             for layer in range(1, depth + 1) for i in range(width)]
    return nodes, edges


def sizes(quick: bool) -> tuple[int, int]:
    return (50, 1) if quick else (200, 5)  # width, depth: 50 or 1,000 edges


def _latencies(edges: list[tuple[str, str, int]]) -> list[float]:
    return [(MARKS[child]["start"] - MARKS[parent]["half" if percent < 100 else "end"]) * 1000
            for child, parent, percent in edges]


def _workflow(nodes: list[tuple[str, float]], edges: list[tuple[str, str, int]]) -> str:
    parts = [f'[[process]]\nid = "{pid}"\nkind = "python"\nentry = "console.bench.dispatch:step"\n'
             f'args = {{ work_s = {work} }}\n' for pid, work in nodes]
    parts += [f'[[dependency]]\ndependent = "{a}"\ndependency = "{b}"\n'
              f'type = "{"data" if p < 100 else "sequential"}"\nrequired_completion_percent = {p}\n'
              for a, b, p in edges]
    return "\n".join(parts)


async def ours(quick: bool = False) -> dict[str, Any]:
    from console.engine.orchestrator import Orchestrator
    from console.engine.workflow import parse_workflow_text
    from console.settings import load_settings
    from console.store import open_store

    width, depth = sizes(quick)
    nodes, edges = layered_dag(width, depth)
    MARKS.clear()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        workflow = parse_workflow_text(_workflow(nodes, edges), "bench", tmp)
        # a slot for every process (layers overlap): the figure is dispatch, not waiting for a slot
        settings = load_settings(db=tmp / "b.db", data_dir=tmp / "data", engine={"max_concurrent": len(nodes)})
        store = open_store(str(settings.db_path))
        await store.open()
        engine = Orchestrator(store, settings)
        await engine.start()
        t0 = time.perf_counter()
        await engine.load(workflow)
        await engine.run_until_idle()
        wall = time.perf_counter() - t0
        await engine.stop()
        await store.close()
    return {"edges": len(edges), "width": width, "depth": depth, "wall_s": round(wall, 3),
            "dispatch_latency_ms": percentiles(_latencies(edges))}


class _PollingModel:
    """BASELINE MODEL of the replaced design's scheduler, kept small but faithful: one loop
    that sleeps POLL_S between scans of every process, starts those whose dependencies are
    met, and writes each state change with the synchronous sqlite3 module
    (bench.baselines.BlockingProcessTable)."""

    class Ctx:
        def __init__(self, model: _PollingModel, pid: str, work_s: float) -> None:
            self.model, self.process_id, self.args = model, pid, {"work_s": work_s}

        async def report(self, progress: float) -> None:
            self.model.progress[self.process_id] = progress
            self.model.write(self.process_id)

    def __init__(self, nodes: list[tuple[str, float]], edges: list[tuple[str, str, int]], db: Path) -> None:
        self.work = dict(nodes)
        self.state = {pid: "pending" for pid, _ in nodes}
        self.progress = {pid: 0.0 for pid, _ in nodes}
        self.upstream: dict[str, list[tuple[str, int]]] = {pid: [] for pid, _ in nodes}
        for child, parent, percent in edges:
            self.upstream[child].append((parent, percent))
        from console.bench.baselines import BlockingProcessTable

        self.db = BlockingProcessTable(db, list(self.state))

    def write(self, pid: str) -> None:
        self.db.write(pid, self.state[pid], self.progress[pid])

    def _ready(self, pid: str) -> bool:
        return all(self.state[up] == "completed" or (percent < 100 and self.progress[up] >= percent)
                   for up, percent in self.upstream[pid])

    async def _run(self, pid: str) -> None:
        await step(self.Ctx(self, pid, self.work[pid]))
        self.state[pid], self.progress[pid] = "completed", 100.0
        self.write(pid)

    async def run(self) -> None:
        tasks = []
        while any(s != "completed" for s in self.state.values()):
            for pid, s in self.state.items():  # the scan of all processes
                if s == "pending" and self._ready(pid):
                    self.state[pid] = "running"
                    self.write(pid)
                    tasks.append(asyncio.create_task(self._run(pid)))
            await asyncio.sleep(POLL_S)
        await asyncio.gather(*tasks)
        self.db.close()


async def baseline(quick: bool = False) -> dict[str, Any]:
    width, depth = sizes(quick)
    nodes, edges = layered_dag(width, depth)
    MARKS.clear()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        await _PollingModel(nodes, edges, Path(d) / "old.db").run()
        wall = time.perf_counter() - t0
    return {"edges": len(edges), "width": width, "depth": depth, "wall_s": round(wall, 3), "poll_s": POLL_S,
            "dispatch_latency_ms": percentiles(_latencies(edges)),
            "model": "a 1 s polling scheduler over all processes, sqlite3 writes on the loop (see _PollingModel)"}
