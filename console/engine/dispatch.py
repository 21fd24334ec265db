"""Starting ready work: the dispatcher's loop and its passes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

from console import kinds
from console.engine.journal import Journal
from console.engine.placement import Placement
from console.engine.running import WorkRunner, raise_later
from console.engine.staging import Staging
from console.engine.timers import WakeTimers
from console.engine.transitions import StateChanges
from console.engine.work import Work
from console.model import Process, State
from console.store import WriteBatch

log = logging.getLogger(__name__)

# Runs started by one dispatch pass; more wait for the next turn of the loop. Runs made ready by
# one commit wake together: 200 voice requests started at once ran their first steps (~65 µs
# each, then their reads) back to back, ~13 ms of frozen loop.
DISPATCH_BATCH = 32
# How many ready runs placed by a write not yet committed one dispatch pass looks past, for work
# of their rank that can start now (Dispatcher.pass_once).
HOLD_MAX = 8


class Dispatcher:
    """Woken by events (a placement, a freed slot, a timer), starts ready work in dispatch
    order while the slots (max_concurrent) and resource pools allow, a batch per turn of the
    loop; tells `run_until_idle` when nothing is left to do."""

    def __init__(self, config: Any, placement: Placement, timers: WakeTimers, staging: Staging,
                 states: StateChanges, journal: Journal, runner: WorkRunner, running: dict[str, Work],
                 wake: asyncio.Event, stopping: Callable[[], bool],
                 run_context: Callable[[Process], Any], batch: int = DISPATCH_BATCH):
        self._config = config  # the engine's settings: max_concurrent
        self._placement = placement
        self._timers = timers
        self._staging = staging
        self._states = states
        self._journal = journal
        self._runner = runner
        self._running = running
        self._wake = wake
        self._stopping = stopping  # whether the engine is stopping
        self._run_context = run_context  # what a run is handed (Orchestrator._run_context)
        self._batch = batch
        self.idle = asyncio.Event()  # set by a pass that finds nothing left to do
        self.commits: set[asyncio.Task[None]] = set()  # dispatch passes' commits in flight

    async def run(self, dispatch_once: Callable[[], bool]) -> None:
        """The loop: a pass (`dispatch_once`, i.e. `pass_once`) each time it is woken."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping():
                return
            try:
                more = dispatch_once()
            except Exception:  # noqa: BLE001 - one bad pass must not stop dispatching
                log.exception("dispatch pass failed")
                more = False
            if more:  # the rest in the next turn, after what the loop has to do meanwhile
                self._wake.set()
                await asyncio.sleep(0)

    def pass_once(self) -> bool:
        """Starts what it can, up to a batch of runs; True if it stopped there."""
        placement, ready, running = self._placement, self._placement.ready, self._running
        max_concurrent = self._config.max_concurrent
        b = WriteBatch()
        due = self._timers.due()
        if due:
            placement.reconsider(due, b)
        started: list[Work] = []
        # Work placed by a write that is not committed yet cannot begin before that commit, and
        # a slot given to it waits (the 1,000-command DAG: 29 % of runs waited ~1.8 ms so). So
        # the pass takes candidates in dispatch order, looking past at most HOLD_MAX such, and
        # within a rank (force, priority) starts those that can begin now first; a lower rank
        # never passes a higher one. Every candidate that fits a free slot starts, as before.
        free = min(max_concurrent - len(running), self._batch)
        candidates: list[tuple[tuple[int, int], bool, str, Hashable]] = []
        ready_now = 0
        exhausted = False
        while ready_now < free and len(candidates) < free + HOLD_MAX:
            best = ready.pop_best(placement.fits)
            if best is None:
                exhausted = True
                break
            pid, signature = best
            now = self._journal.barrier_for(pid) is None
            ready_now += now
            rank = placement.requests[pid].sort_key()[:2]
            candidates.append((rank, not now, pid, signature))
        candidates.sort(key=lambda c: (c[0], c[1]))  # stable: dispatch order within each group
        for _, _, pid, signature in candidates:
            if len(running) < max_concurrent and len(started) < self._batch and placement.fits(signature):
                started.append(self._begin(pid, b))
            else:  # the slots are taken, or candidates before it took its pool
                ready.push(placement.requests[pid], signature)
        self._timers.arm()
        if not b.empty():
            # Not awaited: the next pass must not wait for this one's commit (that made ready
            # work wait tens of ms under load). Created before the runs, so these rows join the
            # group commit ahead of anything the runs write.
            task = asyncio.create_task(self._journal.commit(b), name="commit:dispatch")
            self.commits.add(task)
            task.add_done_callback(self._commit_done)
        # The work starts once what it was placed on is committed (its registration, its
        # dependency's completion), without waiting for its own `running` row: a crash in
        # between leaves it queued, so it simply runs again. `running` is announced once committed.
        for w in started:
            w.task = asyncio.create_task(self._runner.run(w), name=f"run:{w.process.id}")
        if len(started) == self._batch or (
                not exhausted and len(running) < max_concurrent and len(ready)):
            return True  # more in the next turn
        if self.is_idle():
            self.idle.set()
        return False

    def _begin(self, pid: str, b: WriteBatch) -> Work:
        p = self._placement.processes[pid]
        work = self._start_run(p, b)
        # its placement (and what it was placed on: a registration, a dependency's
        # completion) must be committed; placed by this pass's own timers: what came before
        work.barrier = self._journal.take_barrier_for(pid)
        if work.barrier is None and not self._stopping():
            begin = getattr(kinds.get(p.kind), "begin", None) if kinds.known(p.kind) else None
            if begin is not None:
                try:
                    work.begun = begin(work.ctx)  # started here, a turn sooner than by its task
                except Exception as e:  # noqa: BLE001 - the run raises it, where outcomes are made
                    work.begun = raise_later(e)
        return work

    def _start_run(self, p: Process, b: WriteBatch) -> Work:
        req = self._placement.requests.pop(p.id)
        b.requests[p.id] = None
        self._placement.pools.acquire(p.resources)
        p.attempt += 1
        p.started_at = time.time()
        p.metrics.resumes_total += 1
        self._states.set(p, State.RUNNING, None, b, data={"source": req.source.value})
        work = Work(p, self._run_context(p), time.monotonic())
        self._running[p.id] = work
        return work

    def _commit_done(self, task: asyncio.Task[None]) -> None:
        self.commits.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("committing a dispatch pass failed", exc_info=task.exception())

    def is_idle(self) -> bool:
        """Nothing running, ready, being loaded, or waiting on a timer."""
        if self._running or len(self._placement.ready) or self._staging.loading:
            return False
        return not self._timers.pending()
