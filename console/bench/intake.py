"""The HTTP intake under load, on 127.0.0.1, with the loopback Groq-compatible server behind it:

* requests per second for `POST /ai-voice?wait=false` from 50 concurrent clients, and the
  serving loop's lateness meanwhile (the engine works off the accepted requests at the same
  time: Groq latency 1 s, 32 in flight);
* the loop's lateness while the intake serves 200 concurrent `POST /ai-voice` calls that
  wait for their replies (Groq latency 1 s, 200 in flight; in the full run also with the
  default `groq.concurrency` of 32, which spreads the Groq SDK's work over time).

The clients run in another process (`--load`), so they do not share the measured loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from console.bench.groqsim import GroqSim
from console.bench.measure import Heartbeat, percentiles
from console.bench.voice import KEY

CLIENTS = 50
BURST = 200
LATENCY_S = 1.0


@contextlib.asynccontextmanager
async def _serving(sim: GroqSim, folder: Path, concurrency: int, groq: int | None = None) -> AsyncIterator[Any]:
    from console import heap
    from console.app import make_engine
    from console.intake import start_intake
    from console.settings import load_settings
    from console.store import open_store

    settings = load_settings(db=folder / "bench.db", data_dir=folder, groq_api_key=KEY, groq_base_url=sim.base_url,
                             engine={"max_concurrent": concurrency}, groq={"concurrency": groq or concurrency},
                             intake={"voice_wait_timeout_s": 60})
    store = open_store(str(settings.db_path))
    await store.open()
    engine = make_engine(store, settings)
    await engine.start()
    intake = await start_intake(engine, settings, "127.0.0.1", 0)
    heap.settle()  # as the runner does once its engine and intake are up (headless.run)
    try:
        yield intake
    finally:
        await intake.aclose()
        await engine.stop()
        await store.close()


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load generator in its own process; the heartbeat runs only while it sends."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.bench.intake", "--load", json.dumps(spec),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    ready = await proc.stdout.readline()  # after its imports and connection set-up
    if ready.strip() != b"READY":
        await proc.wait()
        raise RuntimeError(f"the load generator did not start (exit {proc.returncode})")
    with Heartbeat() as beat:
        proc.stdin.write(b"GO\n")
        await proc.stdin.drain()
        out = await proc.stdout.read()
    await proc.wait()
    result = json.loads(out)
    result["loop_lag_ms"] = percentiles(beat.lags)
    return result


async def _rate(sim: GroqSim, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        sim.reset()
        sim.configure(latency_s=LATENCY_S)
        async with _serving(sim, Path(d), concurrency=32) as intake:
            await _load({"url": intake.url, "mode": "rate", "clients": CLIENTS, "seconds": 1.0})  # warm-up
            result = await _load({"url": intake.url, "mode": "rate", "clients": CLIENTS, "seconds": seconds})
    return result


async def _burst(sim: GroqSim, n: int, groq: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        sim.reset()
        async with _serving(sim, Path(d), concurrency=n, groq=groq) as intake:
            # warm-up: the SDK's first requests build its caches on the loop (see bench.voice)
            await _load({"url": intake.url, "mode": "burst", "n": 4})
            sim.reset()
            sim.configure(latency_s=LATENCY_S)
            result = await _load({"url": intake.url, "mode": "burst", "n": n})
        result["server_max_in_flight"] = sim.stats()["max_concurrent"]["chat"]
    return result


async def measure(quick: bool = False) -> dict[str, Any]:
    seconds = 2.0 if quick else 5.0
    with GroqSim(key=KEY) as sim:
        rate = await _rate(sim, seconds)
        burst = await _burst(sim, BURST)
        paced = None if quick else await _burst(sim, BURST, groq=32)
    out = {
        "intake_rps": rate["rps"],
        "intake_loop_lag_ms": rate["loop_lag_ms"],
        "voice_200_loop_lag_ms": burst["loop_lag_ms"],
        "rate": {"endpoint": "POST /ai-voice?wait=false", "clients": CLIENTS, **rate,
                 "backend": f"groqsim {LATENCY_S:g} s latency, 32 in flight"},
        "voice_200": {"endpoint": "POST /ai-voice (waits for the reply)", **burst,
                      "backend": f"groqsim {LATENCY_S:g} s latency, {BURST} in flight"},
    }
    if paced is not None:
        out["voice_200_groq32"] = {"endpoint": "POST /ai-voice (waits for the reply)", **paced,
                                   "backend": f"groqsim {LATENCY_S:g} s latency, 32 in flight (the default)"}
    return out


# -- the load generator (its own process) ----------------------------------------------------------------

async def _generate(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    url, mode = spec["url"], spec["mode"]
    statuses: dict[str, int] = {}
    states: dict[str, int] = {}
    latencies: list[float] = []
    n_clients = spec.get("clients") or spec["n"]
    connector = aiohttp.TCPConnector(limit=n_clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def one(worker: int, i: int, query: str) -> None:
            t = time.perf_counter()
            async with session.post(f"{url}/ai-voice{query}",
                                    json={"call_id": f"load-{worker}", "text": f"caller utterance {i}"}) as r:
                body = await r.json()
            latencies.append((time.perf_counter() - t) * 1000)
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
            states[body.get("state", "?")] = states.get(body.get("state", "?"), 0) + 1

        async def rate_client(worker: int, deadline: float) -> None:
            i = 0
            while time.perf_counter() < deadline:
                await one(worker, i, "?wait=false")
                i += 1

        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        t0 = time.perf_counter()
        if mode == "rate":
            deadline = t0 + float(spec["seconds"])
            await asyncio.gather(*(rate_client(w, deadline) for w in range(n_clients)))
        else:
            await asyncio.gather(*(one(i, 0, "") for i in range(n_clients)))
        wall = time.perf_counter() - t0
    done = sum(statuses.values())
    out: dict[str, Any] = {"requests": done, "wall_s": round(wall, 3), "statuses": statuses, "states": states,
                           "latency_ms": percentiles(latencies)}
    if mode == "rate":
        out["rps"] = round(done / wall, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["--load"]:
        print(json.dumps(asyncio.run(_generate(json.loads(args[1])))), flush=True)
        return
    print(json.dumps(asyncio.run(measure(quick="--quick" in args)), indent=2))


if __name__ == "__main__":
    main()
