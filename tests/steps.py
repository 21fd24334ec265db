"""Entry points for `python`-kind processes in the tests (imported by the engine by name).

In-process tests read what happened from RECORD; subprocess tests get files in args."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from console.model import Interrupted, PermanentFailure

RECORD: list[tuple[str, str, float]] = []  # (event, process id, monotonic time)
GATES: dict[str, asyncio.Event] = {}


def gate(name: str) -> asyncio.Event:
    if name not in GATES:
        GATES[name] = asyncio.Event()
    return GATES[name]


async def noop(ctx) -> None:
    RECORD.append(("start", ctx.process_id, time.monotonic()))


async def sleep(ctx) -> None:
    """Sleeps args.seconds, reporting progress in args.steps steps."""
    RECORD.append(("start", ctx.process_id, time.monotonic()))
    steps = int(ctx.args.get("steps", 1))
    for i in range(steps):
        await asyncio.sleep(float(ctx.args.get("seconds", 0.05)) / steps)
        await ctx.report(100 * (i + 1) / steps)
    RECORD.append(("end", ctx.process_id, time.monotonic()))


async def wait_gate(ctx) -> None:
    RECORD.append(("start", ctx.process_id, time.monotonic()))
    await gate(ctx.args["gate"]).wait()
    RECORD.append(("end", ctx.process_id, time.monotonic()))


async def fail(ctx) -> None:
    raise RuntimeError("boom")


async def fail_permanently(ctx) -> None:
    raise PermanentFailure("the key was rejected")


async def flaky(ctx) -> None:
    """Interrupted (transient) on the first attempts, then completes."""
    RECORD.append(("start", ctx.process_id, time.monotonic()))
    if ctx.attempt <= int(ctx.args.get("failures", 1)):
        retry_in = ctx.args.get("retry_in")
        retry_at = time.time() + float(retry_in) if retry_in is not None else None
        raise Interrupted("not yet", ctx.args.get("type", "transient"), retry_at=retry_at)


async def needs_operator(ctx) -> None:
    if not ctx.args.get("flag") or not Path(ctx.args["flag"]).exists():
        raise Interrupted("no provider configured", "no_provider")


async def counted(ctx) -> None:
    """Counts to args.total in steps with a checkpoint each, sleeping args.step_s between;
    appends each run's starting checkpoint to args.log (a file) so tests see resumes."""
    start = (ctx.checkpoint or {}).get("done", 0)
    with open(ctx.args["log"], "a") as f:
        f.write(json.dumps({"process": ctx.process_id, "attempt": ctx.attempt, "from": start}) + "\n")
    total = int(ctx.args.get("total", 10))
    for i in range(start, total):
        await asyncio.sleep(float(ctx.args.get("step_s", 0.05)))
        await ctx.report(100 * (i + 1) / total, checkpoint={"done": i + 1})


async def cooperative(ctx) -> None:
    """Checkpoints and returns early when the engine asks it to stop."""
    done = (ctx.checkpoint or {}).get("done", 0)
    while done < 1000:
        if ctx.stopping.is_set():
            await ctx.report(checkpoint={"done": done})
            raise Interrupted("stopping", "shutdown")
        await asyncio.sleep(0.01)
        done += 1


async def noisy(ctx) -> None:
    """Logs text that must be shown literally: markup and a terminal escape sequence."""
    ctx.log("[bold]not bold[/bold] \x1b[31mnot red\x1b[0m")
    await ctx.report(100)
