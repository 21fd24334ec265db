"""The engine's writes: numbered as submitted, committed, then announced in that order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any, Callable

from console.engine.bus import EventBus
from console.engine.pacing import Herd
from console.errors import LeaseLost
from console.model import Event
from console.store import Store, WriteBatch

LOG_LINE_MAX = 2000


def new_event(pid: str | None, type_: str, message: str = "", data: dict[str, Any] | None = None) -> Event:
    """An event for a write's batch (or `announce`): numbered when that write is submitted."""
    return Event(0, time.time(), pid, type_, message, data)


class Journal:
    """Every write of the engine goes through here: nothing is published that a crash could
    take back. Events without a row of their own (notices, log lines) ride along with the next
    write. It also remembers which write made a process ready, so that the process's start
    waits for that commit only."""

    def __init__(self, store: Store, bus: EventBus):
        self.store = store
        self.bus = bus
        self.herd = Herd()  # after a commit or barrier many waited for: see Herd
        self.event_seq = 0  # the last number given to an event
        self._placed_in: dict[int, list[str]] = {}  # id(batch) -> processes it made ready
        self._placed_by: dict[str, int] = {}  # process -> the store write that made it ready
        self._pending_logs: list[tuple[str, float, str]] = []  # rows of log lines not yet written
        self._notices: list[Event] = []  # events without a row of their own not yet announced
        self._log_flush: asyncio.Task[None] | None = None
        self.fenced = False  # the lease was lost: the new owner owns the rows, nothing more is written
        self.on_lease_lost: Callable[[], None] = lambda: None

    # -- which write made a process ready --------------------------------------------------------

    def made_ready(self, b: WriteBatch, pids: Iterable[str]) -> None:
        """`pids` were made ready by the write of `b`: their start waits for its commit."""
        self._placed_in.setdefault(id(b), []).extend(pids)

    def forget_ready(self, b: WriteBatch) -> None:
        self._placed_in.pop(id(b), None)

    def barrier_for(self, pid: str) -> Any:
        """What a ready process's start must wait for (None: nothing), see `Store.barrier`."""
        return self.store.barrier(self._placed_by.get(pid))

    def take_barrier_for(self, pid: str) -> Any:
        """`barrier_for`, for a process that starts now: its write is forgotten."""
        return self.store.barrier(self._placed_by.pop(pid, None))

    # -- writing and announcing ----------------------------------------------------------------------

    async def commit(self, b: WriteBatch, extra: Iterable[Event] = ()) -> None:
        """Commit, then announce. `extra`: events without a row, announced after b's."""
        extra = list(extra)
        await self.write(b, [*b.events, *extra] if extra else None)

    def announce(self, event: Event) -> None:
        """Publish an event that has no row (a notice): numbered and published in its turn,
        after what the writes submitted before it publish."""
        self._notices.append(event)
        self._flush_soon()

    def log(self, pid: str, text: str) -> None:
        """Log lines are written and announced with the next write, in their turn."""
        now = time.time()
        for line in str(text).splitlines() or [""]:
            line = line[:LOG_LINE_MAX]
            self._pending_logs.append((pid, now, line))
            self._notices.append(Event(0, now, pid, "log", line))
        self._flush_soon()

    async def write(self, b: WriteBatch, events: list[Event] | None = None) -> None:
        """The work that `b` made ready remembers the write's number, so it waits for that
        commit only (`store.barrier(upto=)`). Its events (`events`: b's, with notices among
        them, in order) and the notices since the last write (log lines, whose rows join `b`)
        are numbered as it is submitted and published once it is committed. Writes are
        submitted, committed and resumed in one order (the store's group commit, then the
        Herd), so subscribers (`switchboard run`'s JSON lines) get events in the order of their
        numbers: a log line is never announced before the `running` that preceded it."""
        placed = self._placed_in.pop(id(b), ())
        if self.fenced:  # neither written nor announced: the store would refuse it anyway
            self._notices.clear()
            self._pending_logs.clear()
            return
        if events is None:
            events = b.events
        if self._notices:
            events = [*self._notices, *events]
            self._notices = []
            if self._pending_logs:
                b.logs.extend(self._pending_logs)
                self._pending_logs = []
        seq = self.event_seq
        for e in events:
            seq += 1
            e.seq = seq
        self.event_seq = seq
        if b.empty():
            if events:  # notices only: after what the writes submitted before them announce
                before = self.store.barrier()
                if before is not None:
                    try:
                        await before
                    except Exception:  # noqa: BLE001 - a failed write is its writer's to report
                        pass
                    await self.herd.through()
                for e in events:
                    self.bus.publish(e)
            return
        number = self.store.submitted + 1  # store.write numbers it before its first wait
        for pid in placed:
            self._placed_by[pid] = number
        try:
            await self.store.write(b)
        except LeaseLost:
            self.fenced = True
            self.on_lease_lost()
            return
        await self.herd.through()
        for e in events:
            self.bus.publish(e)

    def _flush_soon(self) -> None:
        if self._log_flush is None or self._log_flush.done():
            self._log_flush = asyncio.get_running_loop().create_task(self.flush_notices())

    async def flush_notices(self) -> None:
        """Notices (and log rows) that no other write took along: in a write of their own."""
        while self._notices:
            await self.write(WriteBatch())

    async def drain(self) -> None:
        """At stop: every notice and log line written and announced."""
        if self._log_flush is not None:
            await asyncio.gather(self._log_flush, return_exceptions=True)
        await self.flush_notices()
