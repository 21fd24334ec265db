"""Engine measurements: a DAG of /bin/true against make -j5, shutdown with work in flight,
and the event loop's lateness while a 1,000-process DAG runs."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from console.bench.measure import Heartbeat, percentiles

SB = [sys.executable, "-m", "console"]


def dag_edges(n: int, seed: int = 7) -> list[tuple[int, int]]:
    """(dependent, dependency) pairs: each node after the first ten depends on two earlier ones."""
    rng = random.Random(seed)
    edges = []
    for i in range(10, n):
        for j in set(rng.sample(range(max(0, i - 50), i), 2)):
            edges.append((i, j))
    return edges


def shell_dag_workflow(n: int) -> str:
    parts = [f'[[process]]\nid = "p{i}"\nkind = "shell"\ncommand = ["/bin/true"]\n' for i in range(n)]
    parts += [f'[[dependency]]\ndependent = "p{a}"\ndependency = "p{b}"\n' for a, b in dag_edges(n)]
    return "\n".join(parts)


def python_dag_workflow(n: int, folder: Path, entry: str = "bench_steps:noop") -> str:
    """The same DAG of no-op `python` processes; writes the step module into `folder`."""
    (folder / "bench_steps.py").write_text("async def noop(ctx):\n    pass\n")
    parts = [f'[[process]]\nid = "p{i}"\nkind = "python"\nentry = "{entry}"\npath = "{folder}"\n' for i in range(n)]
    parts += [f'[[dependency]]\ndependent = "p{a}"\ndependency = "p{b}"\n' for a, b in dag_edges(n)]
    return "\n".join(parts)


def makefile(n: int) -> str:
    deps: dict[int, list[int]] = {}
    for a, b in dag_edges(n):
        deps.setdefault(a, []).append(b)
    lines = [".PHONY: all " + " ".join(f"p{i}" for i in range(n)), "all: " + " ".join(f"p{i}" for i in range(n))]
    for i in range(n):
        lines.append(f"p{i}: " + " ".join(f"p{j}" for j in deps.get(i, [])))
        lines.append("\t@/bin/true")
    return "\n".join(lines) + "\n"


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "XDG_DATA_HOME": str(tmp / "data")}


def shell_dag(n: int = 1000, repeats: int = 3) -> dict[str, Any]:
    """Wall time of `switchboard run --until-idle` (cold start included) and of make -j5."""
    ours, theirs = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            (tmp / "dag.toml").write_text(shell_dag_workflow(n))
            t0 = time.perf_counter()
            r = subprocess.run([*SB, "run", "--db", str(tmp / "b.db"), "--workflow", str(tmp / "dag.toml"),
                                "--until-idle"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(tmp))
            ours.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
            (tmp / "Makefile").write_text(makefile(n))
            if shutil.which("make"):
                t0 = time.perf_counter()
                subprocess.run(["make", "-s", "-j5", "-C", str(tmp)], check=True, stdout=subprocess.DEVNULL)
                theirs.append(time.perf_counter() - t0)
    out: dict[str, Any] = {"n": n, "shell_dag_s": statistics.median(ours)}
    if theirs:
        out["make_dag_s"] = statistics.median(theirs)
        out["ratio"] = out["shell_dag_s"] / out["make_dag_s"]
    return out


def shutdown(n: int = 100, repeats: int = 3) -> dict[str, Any]:
    """From SIGTERM to the runner's exit with `n` processes running (all persisted as interrupted)."""
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            wf = "\n".join(f'[[process]]\nid = "s{i}"\nkind = "shell"\ncommand = ["sleep", "60"]\n' for i in range(n))
            (tmp / "wf.toml").write_text(wf)
            db = tmp / "b.db"
            runner = subprocess.Popen([*SB, "run", "--db", str(db), "--workflow", str(tmp / "wf.toml"),
                                       "--max-concurrent", str(n)], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, env=_env(tmp), text=True)
            running = 0
            assert runner.stdout is not None  # stdout=PIPE
            for line in runner.stdout:  # wait until every process is running
                if '"type":"running"' in line:
                    running += 1
                    if running == n:
                        break
            t0 = time.perf_counter()
            runner.send_signal(signal.SIGTERM)
            runner.communicate(timeout=30)
            times.append(time.perf_counter() - t0)
            status = json.loads(subprocess.run([*SB, "status", "--db", str(db), "--json"], capture_output=True,
                                               text=True, env=_env(tmp), check=True).stdout)
            interrupted = sum(1 for p in status["processes"] if p["state"] == "interrupted")
            if interrupted != n:
                raise RuntimeError(f"only {interrupted} of {n} persisted as interrupted")
    return {"n": n, "shutdown_s": statistics.median(times), "runs": times}


async def _loop_lag(n: int, engine: dict[str, Any] | None = None) -> dict[str, Any]:
    """`n` no-op python processes in a DAG, in-process, every transition committed: wall time,
    completions per second and the loop's lateness meanwhile."""
    from console.engine.orchestrator import Orchestrator
    from console.engine.workflow import parse_workflow_text
    from console.settings import load_settings
    from console.store import open_store

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        workflow = parse_workflow_text(python_dag_workflow(n, tmp), "bench", tmp)  # before measuring
        settings = load_settings(db=tmp / "b.db", data_dir=tmp / "data", engine=engine)
        store = open_store(str(settings.db_path))
        await store.open()
        orch = Orchestrator(store, settings)
        await orch.start()
        with Heartbeat() as beat:
            t0 = time.perf_counter()
            await orch.load(workflow)
            await orch.run_until_idle()
            wall = time.perf_counter() - t0
        await orch.stop()
        await store.close()
        return {"n": n, "wall_s": round(wall, 3), "throughput_per_s": round(n / wall, 1),
                "max_concurrent": settings.engine.max_concurrent, "commits": store.commits,
                "loop_lag_ms": percentiles(beat.lags)}


def loop_lag(n: int = 1000, engine: dict[str, Any] | None = None) -> dict[str, Any]:
    return asyncio.run(_loop_lag(n, engine))


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m console.bench.engine")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    result = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "loop_lag": loop_lag(200 if args.quick else 1000),
        "shell_dag": shell_dag(200 if args.quick else 1000, repeats),
        "shutdown": shutdown(20 if args.quick else 100, repeats),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
