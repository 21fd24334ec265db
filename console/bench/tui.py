"""Console measurements (headless Textual, `run_test`): start-up to the first frame with
100,000 events in the history, and the loop's lateness while a burst of 1,000 engine events
arrives."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from console.bench.measure import Heartbeat, percentiles


async def _history_db(path: Path, events: int) -> None:
    from console.model import Event
    from console.store import WriteBatch, open_store

    store = open_store(str(path))
    await store.open()
    now = time.time()
    for start in range(0, events, 10_000):
        await store.write(WriteBatch(events=[Event(i + 1, now - (events - i) * 0.01, f"p{i % 500}", "completed",
                                                   "history") for i in range(start, min(events, start + 10_000))]))
    await store.close()


async def startup(events: int = 100_000) -> dict[str, Any]:
    from console.settings import load_settings
    from console.tui.app import SwitchboardApp

    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "b.db"
        await _history_db(db, events)
        app = SwitchboardApp(load_settings(db=db, data_dir=Path(d)))
        t0 = time.perf_counter()
        async with app.run_test(size=(120, 36)) as pilot:
            first_frame = time.perf_counter() - t0  # run_test returns once the screen is mounted
            while app.source is None:
                await asyncio.sleep(0.005)
            await pilot.pause()
            loaded = time.perf_counter() - t0
            await app.shutdown()
        return {"history_events": events, "first_frame_s": round(first_frame, 3),
                "data_on_screen_s": round(loaded, 3)}


async def burst(processes: int = 250) -> dict[str, Any]:
    """`processes` no-op python processes: four events each (registered, queued, running,
    completed), plus progress; all through the console's subscription."""
    from console.engine.workflow import parse_workflow_text
    from console.settings import load_settings
    from console.tui.app import SwitchboardApp

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "bench_steps.py").write_text("async def noop(ctx):\n    pass\n")
        text = "\n".join(f'[[process]]\nid = "p{i}"\nkind = "python"\nentry = "bench_steps:noop"\npath = "{tmp}"\n'
                         for i in range(processes))
        app = SwitchboardApp(load_settings(db=tmp / "b.db", data_dir=tmp))
        async with app.run_test(size=(120, 36)) as pilot:
            while app.source is None:
                await asyncio.sleep(0.005)
            await pilot.pause()
            refreshes = 0
            original = app._refresh

            def counting() -> None:
                nonlocal refreshes
                refreshes += 1
                original()

            app._refresh = counting  # type: ignore[method-assign]
            before = len(app._events)
            workflow = parse_workflow_text(text, "bench", tmp)  # the bench's own work, before measuring
            with Heartbeat() as beat:
                await asyncio.sleep(0.05)
                await app.engine.load(workflow)
                await app.engine.run_until_idle()
                await asyncio.sleep(0.3)
            events = len(app._events) - before
            await app.shutdown()
        return {"events": events, "repaints": refreshes, "loop_lag_ms": percentiles(beat.lags)}


def main(argv: list[str] | None = None) -> None:
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    out = {"startup": asyncio.run(startup(10_000 if quick else 100_000)),
           "burst": asyncio.run(burst(100 if quick else 250))}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
