"""The loop's lateness under everything at once: the console (headless `run_test`, owning
the engine) receives the events while a DAG of `python` processes runs and voice requests
are in flight against the loopback Groq-compatible server (1 s latency).

`baseline` is the same console and DAG with the voice requests served the replaced way
(`voice.ReplacedBackend`: the synchronous Groq client and sqlite3 called from the loop)."""

from __future__ import annotations

import asyncio
import atexit
import tempfile
import time
from pathlib import Path
from typing import Any

from console.bench.engine import python_dag_workflow
from console.bench.groqsim import GroqSim
from console.bench.measure import Heartbeat, percentiles
from console.bench.voice import KEY, ReplacedBackend

LATENCY_S = 1.0
WARM_UP = 4  # the SDK builds its caches on the first requests of a process (~0.2 s once)


def sizes(quick: bool) -> dict[str, int]:
    return {"dag": 200 if quick else 1000, "voice": 50 if quick else 200,
            "baseline_voice": 1 if quick else 5}


async def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _run(sim: GroqSim, quick: bool, baseline: bool) -> dict[str, Any]:
    from console.engine.workflow import parse_workflow_text
    from console.model import State
    from console.settings import load_settings
    from console.tui.app import SwitchboardApp
    from console.voice.center import call_center

    n = sizes(quick)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        workflow = parse_workflow_text(python_dag_workflow(n["dag"], tmp), "bench", tmp)  # before measuring
        # slots for every voice request in flight, and some for the DAG beside them
        settings = load_settings(db=tmp / "b.db", data_dir=tmp, groq_api_key=KEY, groq_base_url=sim.base_url,
                                 engine={"max_concurrent": n["voice"] + 50},
                                 groq={"concurrency": n["voice"], "transport": "aiohttp"})
        app = SwitchboardApp(settings, settle_heap=True)  # as the command line starts it
        async with app.run_test(headless=True, size=(120, 36)) as pilot:
            await _until(lambda: app.engine is not None, 30, "the console's engine")
            await pilot.pause()
            engine = app.engine
            center = call_center(engine)
            events = 0

            def count(_: Any) -> None:
                nonlocal events
                events += 1

            engine.bus.subscribe(count)
            if not baseline:  # the replaced backend does not use the async client
                warm = [await center.create_voice_request("warm-up", text=f"warm up {i}") for i in range(WARM_UP)]
                await _until(lambda: all(engine.processes[v.id].state is State.COMPLETED for v in warm), 30,
                             "warm-up")
            sim.reset()
            sim.configure(latency_s=LATENCY_S)
            backend = ReplacedBackend(sim.base_url, tmp / "old.db") if baseline else None
            events = 0
            with Heartbeat() as beat:
                await asyncio.sleep(0.05)
                t0 = time.perf_counter()
                await engine.load(workflow)
                if backend is None:
                    await asyncio.gather(*(center.create_voice_request(f"bench-{i}", text=f"caller utterance {i}")
                                           for i in range(n["voice"])))
                else:
                    await asyncio.gather(*(backend.handle(i) for i in range(n["baseline_voice"])))
                await engine.run_until_idle()
                wall = time.perf_counter() - t0
                await asyncio.sleep(0.05)  # let the heartbeat report the last stall
            if backend is not None:
                backend.close()
            states = {p.state for p in engine.processes.values()}
            in_flight = sim.stats()["max_concurrent"]["chat"]
            await app.shutdown()
        if states != {State.COMPLETED}:
            raise RuntimeError(f"not everything completed: {sorted(s.value for s in states)}")
        out = {"dag_processes": n["dag"], "wall_s": round(wall, 3), "events_to_console": events,
               "heartbeats": len(beat.lags), "loop_lag_ms": percentiles(beat.lags),
               "server_max_in_flight": in_flight}
        if backend is None:
            out["voice_requests"] = n["voice"]
        else:
            out["voice_requests_replaced_backend"] = n["baseline_voice"]
        return out


_sim: GroqSim | None = None


def _server() -> GroqSim:
    """One loopback server per process: the quick suite runs both variants in one child."""
    global _sim
    if _sim is None:
        _sim = GroqSim(key=KEY).start()
        atexit.register(_sim.close)
    return _sim


async def measure(quick: bool = False, baseline: bool = False) -> dict[str, Any]:
    return await _run(_server(), quick, baseline)
