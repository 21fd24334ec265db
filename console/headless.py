"""`switchboard run`: the engine without a screen. Events go to stdout as JSON lines."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from console import heap
from console.app import make_engine
from console.closedpipe import discard_output
from console.engine.workflow import Workflow
from console.model import Event, State
from console.settings import Settings
from console.store import ProcessReads, open_store


LEASE_LOST_EXIT = 3  # another runner took the database over; this one stopped without writing


class JsonLines:
    """Writes events as JSON lines: a loop turn's lines in one write. Standard output is often
    unbuffered (PYTHONUNBUFFERED, as container images set it), where a write per event was a
    system call per event (~6,000 for a 1,000-process workflow)."""

    def __init__(self, out: TextIO):
        self.out = out
        self._lines: list[str] = []

    def __call__(self, event: Event) -> None:
        if not self._lines:
            asyncio.get_running_loop().call_soon(self.flush)
        self._lines.append(event.json_line())

    def flush(self) -> None:
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines.clear()
        try:
            self.out.write(text)
            self.out.flush()
        except (BrokenPipeError, ValueError):  # reader went away: keep running, stop writing
            # its descriptor too: what the stream still buffers must not fail at its last flush
            if not discard_output(self.out):
                self.out = open(os.devnull, "w")  # noqa: SIM115


async def run(settings: Settings, workflow: Workflow | None, until_idle: bool,
              out: TextIO = sys.stdout, err: TextIO = sys.stderr, listener: socket.socket | None = None,
              check: Callable[[ProcessReads], Awaitable[Any]] | None = None) -> int:
    """`listener`: a bound socket to serve the HTTP intake on (see console.intake). `check`:
    called with the open store before the engine starts (a UserError there writes nothing)."""
    store = open_store(str(settings.db_path), settings.store.synchronous, settings.store.busy_timeout_ms)
    await store.open()
    if check is not None:
        try:
            await check(store)
        except BaseException:
            await store.close()
            raise
    orchestrator = make_engine(store, settings, role="runner")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stop_signal() -> None:
        if stop.is_set():
            err.write("switchboard: already stopping: running work is being persisted\n")
            err.flush()
        stop.set()

    # Handled until the lease is released: a second SIGTERM (a service manager's retry, or one
    # per thread of a parent that died: PR_SET_PDEATHSIG) must not cut the shutdown short.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_stop_signal)
    started = time.monotonic()
    intake: Any = None
    lines = JsonLines(out)
    try:
        orchestrator.bus.subscribe(lines)
        await orchestrator.start()
        if listener is not None:
            from console.intake import start_intake

            intake = await start_intake(orchestrator, settings, sock=listener)
            err.write(f"switchboard: intake listening on {intake.url}\n")
            err.flush()
        heap.settle()
        if workflow is not None:
            result = await orchestrator.load(workflow)
            err.write(f"switchboard: {workflow.source}: {result.describe()}\n")
        waits: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait()),
                                          asyncio.create_task(orchestrator.lease_lost.wait())]
        if until_idle:
            waits.append(asyncio.create_task(orchestrator.run_until_idle()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for t in waits:
            t.cancel()
    finally:
        try:
            if intake is not None:  # first: its waiting requests answer before the engine stops
                await intake.aclose()
            await orchestrator.stop()
            await store.close()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        lines.flush()  # what the stop published (interruptions) in this turn
    if orchestrator.lease_lost.is_set():
        taker = orchestrator.lease_taker
        whom = f"{taker.role} pid {taker.pid} on {taker.host}" if taker is not None else "another owner"
        err.write(f"switchboard: lost the database's lease to {whom}; stopped without writing\n")
        out.flush()
        return LEASE_LOST_EXIT
    states = [p.state for p in orchestrator.processes.values()]
    counts = {s.value: states.count(s) for s in State if states.count(s)}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no processes"
    err.write(f"switchboard: {summary} ({time.monotonic() - started:.2f} s)\n")
    out.flush()
    if until_idle:
        return 0 if all(s is State.COMPLETED for s in states) else 1
    return 0
