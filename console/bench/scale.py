"""Scale of history: the runner's peak memory for many no-op processes, and the console
opening a database that holds a million processes (mostly completed)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from console.bench.engine import SB, _env, python_dag_workflow
from console.bench.measure import Heartbeat, percentiles


def runner_memory(n: int) -> dict[str, Any]:
    """`switchboard run --until-idle` over `n` no-op python processes in a DAG, in a fresh
    process: its wall time and peak RSS (ru_maxrss of that process alone, through wait4)."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "dag.toml").write_text(python_dag_workflow(n, tmp))
        t0 = time.perf_counter()
        runner = subprocess.Popen([*SB, "run", "--db", str(tmp / "b.db"), "--workflow", str(tmp / "dag.toml"),
                                   "--until-idle"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, env=_env(tmp))
        assert runner.stderr is not None
        stderr = runner.stderr.read()  # until it exits: a pipe left unread could fill and stall it
        _, status, usage = os.wait4(runner.pid, 0)
        wall = time.perf_counter() - t0
        runner.returncode = os.waitstatus_to_exitcode(status)
        if runner.returncode != 0:
            raise RuntimeError(stderr.decode(errors="replace").strip().splitlines()[-1:])
        return {"n": n, "runner_wall_s": round(wall, 2), "runner_rss_mb": round(usage.ru_maxrss / 1024, 1)}


async def console_open(processes: int) -> dict[str, Any]:
    """The console (headless, owning the database) opening `processes` processes of history:
    time to the first frame, to the data on screen, and the loop's lateness meanwhile."""
    from console.bench.baselines import fill_processes
    from console.settings import load_settings
    from console.store import open_store
    from console.tui.app import SwitchboardApp

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "bench_steps.py").write_text("async def noop(ctx):\n    pass\n")
        db = tmp / "b.db"
        store = open_store(str(db))
        await store.open()  # the schema, at the current version
        await store.close()
        await asyncio.to_thread(fill_processes, db, processes, tmp)
        app = SwitchboardApp(load_settings(db=db, data_dir=tmp / "data"))
        with Heartbeat() as beat:
            t0 = time.perf_counter()
            async with app.run_test(size=(120, 36)) as pilot:
                first_frame = time.perf_counter() - t0  # run_test returns once the screen is mounted
                while app.source is None:
                    await asyncio.sleep(0.005)
                await pilot.pause()
                loaded = time.perf_counter() - t0
                await asyncio.sleep(0.5)  # what the open leaves queued on the loop shows here
                await app.shutdown()
        return {"history_processes": processes, "open_first_frame_s": round(first_frame, 3),
                "open_data_on_screen_s": round(loaded, 3), "open_loop_lag_ms": percentiles(beat.lags)}


def main(argv: list[str] | None = None) -> None:
    import json

    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    print(json.dumps({"runner": runner_memory(2000 if quick else 100_000),
                      "console_open": asyncio.run(console_open(50_000 if quick else 1_000_000))}, indent=2))


if __name__ == "__main__":
    main()
