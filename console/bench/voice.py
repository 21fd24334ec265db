"""Voice requests under load against the loopback Groq-compatible server (1 s latency):
the event loop's lateness and the wall time of N requests in flight, for each HTTP transport,
next to the design this replaces (the synchronous `Groq` client called from the loop)."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from console.bench.groqsim import GroqSim
from console.bench.measure import Heartbeat, percentiles

KEY = "gsk_bench_key"


async def _ours(sim: GroqSim, n: int, transport: str, latency_s: float = 1.0) -> dict[str, Any]:
    from console.app import make_engine
    from console.model import State
    from console.settings import load_settings
    from console.store import open_store
    from console.voice.center import call_center

    with tempfile.TemporaryDirectory() as d:
        settings = load_settings(db=Path(d) / "b.db", data_dir=Path(d), groq_api_key=KEY,
                                 groq_base_url=sim.base_url,
                                 engine={"max_concurrent": n}, groq={"concurrency": n, "transport": transport})
        store = open_store(str(settings.db_path))
        await store.open()
        engine = make_engine(store, settings)
        await engine.start()
        done = asyncio.Event()
        ids: set[str] = set()

        def watch(event: Any) -> None:
            if event.type == "completed" and event.process_id in ids:
                ids.discard(event.process_id)
                if not ids:
                    done.set()

        engine.bus.subscribe(watch)
        # Warm up: the SDK's first requests build caches (typing introspection, the SSL
        # context); cold, the first burst costs up to ~0.2 s of lateness once per process.
        warm = [await call_center(engine).create_voice_request("warm-up", text=f"warm up {i}") for i in range(4)]
        while any(engine.processes[v.id].state is not State.COMPLETED for v in warm):
            await asyncio.sleep(0.02)
        sim.reset()
        sim.configure(latency_s=latency_s)
        with Heartbeat() as beat:
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            center = call_center(engine)
            for i in range(n):
                vr = await center.create_voice_request(f"bench-{i}", text=f"caller utterance number {i}")
                ids.add(vr.id)
            await done.wait()
            wall = time.perf_counter() - t0
            await asyncio.sleep(0.05)
        states = {p.state for p in engine.processes.values()}
        await engine.stop()
        await store.close()
        assert states == {State.COMPLETED}, states
        return {"n": n, "wall_s": round(wall, 3), "loop_lag_ms": percentiles(beat.lags),
                "server_max_in_flight": sim.stats()["max_concurrent"]["chat"]}


class ReplacedBackend:
    """BASELINE MODEL of the replaced backend's voice path: async handlers that call the
    synchronous `Groq` client and `sqlite3` directly, so each request freezes the loop for
    its whole round trip."""

    def __init__(self, base_url: str, db_path: Path) -> None:
        from groq import Groq

        from console.bench.baselines import BlockingReplyLog

        self.client = Groq(api_key=KEY, base_url=base_url, max_retries=0)
        self.db = BlockingReplyLog(db_path)  # synchronous sqlite3 commits

    async def handle(self, i: int) -> None:
        await asyncio.sleep(0)  # handlers interleave on the loop, as requests would arrive
        completion = self.client.chat.completions.create(  # blocks the loop for the whole request
            model="llama-3.3-70b-versatile", messages=[{"role": "user", "content": f"utterance {i}"}])
        self.db.add(f"bench-{i}", completion.choices[0].message.content)  # blocks the loop too

    def close(self) -> None:
        self.db.close()
        self.client.close()


async def _baseline(sim: GroqSim, n: int) -> dict[str, Any]:
    """The replaced backend alone: n requests through `ReplacedBackend`."""
    with tempfile.TemporaryDirectory() as d:
        backend = ReplacedBackend(sim.base_url, Path(d) / "old.db")
        with Heartbeat() as beat:
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            await asyncio.gather(*(backend.handle(i) for i in range(n)))
            wall = time.perf_counter() - t0
            await asyncio.sleep(0.05)  # let the heartbeat report the last stall
        backend.close()
    return {"n": n, "wall_s": round(wall, 3), "loop_lag_ms": percentiles(beat.lags),
            "wall_s_extrapolated_to_200": round(wall / n * 200, 1)}


def run(n: int = 200, baseline_n: int = 5, latency_s: float = 1.0) -> dict[str, Any]:
    out: dict[str, Any] = {"server_latency_s": latency_s}
    with GroqSim(key=KEY) as sim:
        for transport in ("aiohttp", "httpx"):
            sim.reset()
            sim.configure(latency_s=latency_s)
            out[transport] = asyncio.run(_ours(sim, n, transport, latency_s))
        sim.reset()
        sim.configure(latency_s=latency_s)
        out["baseline_sync_client"] = asyncio.run(_baseline(sim, baseline_n))
    ours, theirs = out["aiohttp"]["loop_lag_ms"]["p99"], out["baseline_sync_client"]["loop_lag_ms"]["p99"]
    out["lag_p99_ratio_baseline_over_ours"] = round(theirs / max(ours, 0.001), 1)
    return out


def main(argv: list[str] | None = None) -> None:
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    print(json.dumps(run(50 if quick else 200, 3 if quick else 5), indent=2))


if __name__ == "__main__":
    main()
