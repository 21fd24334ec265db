"""The resume orchestrator: one asyncio task on the host's loop, woken by events.

Life of a process: a resume request is placed (`_place`) as blocked, waiting (dependencies,
retry time, resources) or ready; the dispatcher starts ready work while slots and pools
allow; the run's outcome is committed, announced, and only the process's own neighbours
in the graph are looked at again. Every change goes through a WriteBatch that is committed
before its events are published.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import random
import socket
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Hashable, Iterable

from console import kinds
from console.engine.bus import EventBus
from console.engine.graph import DependencyGraph
from console.engine.pacing import Herd, TurnShare
from console.engine.pools import ResourcePools
from console.engine.ready import ReadyQueue
from console.engine.workflow import Workflow, check_workflow
from console.kinds.context import _UNSET, RunContext
from console.limits import capped
from console.model import (
    AUTO_RETRY,
    DEAD_ENDS,
    IN_QUEUE,
    RESUMABLE,
    Checkpoint,
    Dependency,
    Event,
    Interrupted,
    Interruption,
    InterruptionType,
    PermanentFailure,
    Process,
    RequestSource,
    ResumeRequest,
    State,
    UserError,
)
from console.settings import Settings
from console.store import Command, History, LeaseHolder, Store, WriteBatch

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 600.0
# A large workflow is applied in slices of about this long, with the loop running in between
# (1,000 processes took ~35 ms in one step): see `load`. A sleeping task wakes two turns after
# its time (the timer, then the task), so a waiter can sit through two slices, and other work
# shares those turns. Under the load benchmark (10 interleaved runs each), the heartbeat's p99:
# 4 ms slices ~10+ ms, 2 ms 8.2 ms, 1 ms 6.1 ms (0.5 ms no better); a 1,000-command shell DAG
# and the 10,000-process throughput run take the same time with 1 ms as with 2.
LOAD_SLICE_S = 0.001
# Runs started by one dispatch pass; more wait for the next turn of the loop. Runs made ready by
# one commit wake together: 200 voice requests started at once ran their first steps (~65 µs
# each, then their reads) back to back, ~13 ms of frozen loop.
DISPATCH_BATCH = 32
# How many ready runs placed by a write not yet committed one dispatch pass looks past, for work
# of their rank that can start now (_dispatch_once).
HOLD_MAX = 8
LOG_LINE_MAX = 2000
CLI_LEASE_WAIT_S = 5.0


class OwnedElsewhere(UserError):
    def __init__(self, db: str, holder: LeaseHolder):
        super().__init__(
            f"{db} is already dispatched by {holder.role} pid {holder.pid} on {holder.host}; "
            "use `switchboard status`, `resume` and `cancel` to act through it"
        )
        self.holder = holder


@dataclass
class LoadResult:
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    dependencies_added: int = 0

    def describe(self) -> str:
        text = f"loaded {len(self.added)} new process(es)"
        if self.existing:
            text += f", {len(self.existing)} already present (left as they are)"
        return text + f", {self.dependencies_added} new dependency(ies)"


@dataclass
class _Work:
    process: Process
    ctx: RunContext
    started: float
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # "cancel" | "shutdown"
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # outcome committed
    # writes that must be committed before the work starts (its registration, the
    # completion of what it depends on), but not its own `running` row
    barrier: Any = None
    begun: Any = None  # what the kind's `begin` returned: the run awaits it instead of `run`
    # its task has taken its first step: cancelling a task before that skips its body (no
    # outcome, no slot released), so a cancel before then is left to the run (stop_reason)
    entered: bool = False


async def _raise(e: BaseException) -> None:
    raise e


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_ENGINE_DIR = os.path.dirname(os.path.dirname(kinds.__file__)) + os.sep


def _engine_code(filename: str) -> bool:
    """A traceback frame of this program's own code (not a handler's)."""
    return filename.startswith(_ENGINE_DIR) or filename.startswith("<frozen ")


def lease_is_stale(holder: LeaseHolder, ttl_s: float) -> bool:
    """Whether the holder of a database's lease has stopped owning it: its heartbeat is older
    than `ttl_s`, or it ran on this host and its process is gone."""
    if time.time() - holder.heartbeat_at > ttl_s:
        return True
    # On this host we can tell at once whether the owner is still alive (kill -9 case).
    return holder.host == socket.gethostname() and holder.pid != os.getpid() and not _pid_alive(holder.pid)


def _clock_text(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


class Orchestrator:
    def __init__(self, store: Store, settings: Settings, *, role: str = "runner"):
        self.store = store
        self.settings = settings
        self.config = settings.engine
        self.role = role
        self.bus = EventBus()
        self.processes: dict[str, Process] = {}
        self.requests: dict[str, ResumeRequest] = {}
        self.graph = DependencyGraph()
        self.pools = ResourcePools(self.config.resources)
        self.dispatching = False
        self.commands: dict[str, Callable[[dict[str, Any]], Awaitable[str]]] = {
            "resume": lambda a: self.resume(a["id"], force=bool(a.get("force"))),
            "cancel": lambda a: self.cancel(a["id"]),
            "load": lambda a: self._load_command(a),
        }
        # kind name -> fn(process, previous state, batch): lets a kind keep its own records
        # (e.g. a transfer's status) in step with its process, in the same transaction
        self.state_hooks: dict[str, Callable[[Process, State, WriteBatch], None]] = {}
        # shared objects for handlers (e.g. one API client for all voice work), closed at stop
        self.services: dict[str, Any] = {}
        # run after the database is loaded and before crash recovery (which fires state hooks)
        self.start_hooks: list[Callable[[], Awaitable[None]]] = []
        self._ready = ReadyQueue()
        # processes of a workflow being loaded: not dispatched, nor visible to operator actions,
        # until the write that registers them has been submitted
        self._loading: set[str] = set()
        self._held: dict[str, Hashable] = {}  # ready to start, but still loading: signature
        self._recheck: set[str] = set()  # loading processes that others asked to re-place
        self._load_placing = False  # the load is placing its own processes
        # loads share turns of the loop, in the order they come; while one is applied in slices,
        # the others wait for its end (its write's submission)
        self._turns = TurnShare(LOAD_SLICE_S)
        self._herd = Herd()  # after a commit or barrier many waited for: see Herd
        self._loads_in_slices: set[asyncio.Task[LoadResult]] = set()  # finished (committed) by stop()
        self._signatures: dict[Hashable, dict[str, int]] = {}
        self._running: dict[str, _Work] = {}
        self._timers: list[tuple[float, int, str]] = []  # (when, n, process id)
        self._timer_n = 0
        self._timer_handle: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._event_seq = 0
        self._request_seq = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._commits: set[asyncio.Task[None]] = set()  # dispatch passes' commits in flight
        self._placed_in: dict[int, list[str]] = {}  # id(batch) -> processes it made ready
        self._placed_by: dict[str, int] = {}  # process -> the store write that made it ready
        self._pending_logs: list[tuple[str, float, str]] = []  # rows of log lines not yet written
        self._notices: list[Event] = []  # events without a row of their own (log lines) not yet announced
        self._log_flush: asyncio.Task[None] | None = None
        self._commands_lock = asyncio.Lock()
        self._token = os.urandom(16).hex()
        self._started = False
        self._stopping = False
        self._stopped = False

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self, dispatch: bool = True) -> None:
        """Claim the database, load it, recover from a crash, and (with `dispatch`) start work."""
        deadline = time.monotonic() + CLI_LEASE_WAIT_S
        while True:
            now = time.time()
            holder = LeaseHolder(self._token, os.getpid(), socket.gethostname(), self.role, now, now)
            current = await self.store.acquire_lease(holder, self._lease_is_stale)
            if current is None:
                break
            # A CLI command holds the database for a moment only: wait for it.
            if current.role != "cli" or time.monotonic() > deadline:
                raise OwnedElsewhere(self.store.path, current)
            await asyncio.sleep(0.05)
        self._started = True
        snapshot = await self.store.load_snapshot()
        self.pools.resize(snapshot.pools)
        self._event_seq = snapshot.last_event_seq
        self._request_seq = snapshot.last_request_seq
        for p in snapshot.processes:
            self.processes[p.id] = p
        for d in snapshot.dependencies:
            self.graph.add(d)
        for r in snapshot.requests:
            self.requests[r.process_id] = r
        for hook in self.start_hooks:
            await hook()
        await self._recover()
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="lease-heartbeat"))
        if dispatch:
            self.dispatching = True
            self._tasks.append(asyncio.create_task(self._dispatch_loop(), name="dispatch"))
            self._tasks.append(asyncio.create_task(self._watch_external(), name="external-changes"))
            self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
            self._wake.set()

    def _lease_is_stale(self, holder: LeaseHolder) -> bool:
        return lease_is_stale(holder, self.config.lease_ttl_s)

    async def _recover(self) -> None:
        b = WriteBatch()
        for p in self.processes.values():
            if p.state is State.RUNNING:
                p.metrics.interruptions += 1
                p.interruption = Interruption(
                    InterruptionType.CRASH, "the previous owner stopped while this was running"
                )
                self._set(p, State.INTERRUPTED, None, b)
                self._request(p, RequestSource.RECOVERY, b)
            elif p.state in IN_QUEUE and p.id not in self.requests:
                self._request(p, RequestSource.RECOVERY, b)
        for pid in list(self.requests):
            p = self.processes.get(pid)
            if p is None or p.state not in IN_QUEUE | {State.INTERRUPTED, State.PENDING}:
                del self.requests[pid]
                b.requests[pid] = None
        self._reconsider(list(self.requests), b)
        await self.commit(b)

    async def stop(self) -> None:
        """Stop taking work, give running work its grace period, persist what is left as
        interrupted(shutdown) so the next start resumes it, and release the database."""
        if self._stopped or not self._started:
            return
        self._stopping = True
        self.dispatching = False
        self._wake.set()
        # Let a dispatch pass in progress finish, so every started run has its task.
        for t in self._tasks:
            if t.get_name() == "dispatch":
                await asyncio.gather(t, return_exceptions=True)
        await asyncio.gather(*self._commits, *self._loads_in_slices, return_exceptions=True)
        works = list(self._running.values())
        for w in works:
            w.stop_reason = "shutdown"
            w.ctx.stopping.set()
        tasks = [w.task for w in works if w.task is not None]
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=self.config.shutdown_grace_s)
            for t in still:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._log_flush is not None:
            await asyncio.gather(self._log_flush, return_exceptions=True)
        await self._flush_notices()
        for service in self.services.values():
            close = getattr(service, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # noqa: BLE001 - closing must not stop the shutdown
                    log.exception("closing %r failed", service)
        await self.store.release_lease(self._token)
        self._stopped = True

    def service(self, name: str, factory: Callable[[], Any]) -> Any:
        """One shared instance per name, made on first use."""
        if name not in self.services:
            self.services[name] = factory()
        return self.services[name]

    async def run_until_idle(self) -> None:
        """Wait until nothing is queued, waiting on a timer, or running."""
        while True:
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()
            if self._is_idle():
                return

    # -- the dispatcher -------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                more = self._dispatch_once()
            except Exception:  # noqa: BLE001 - one bad pass must not stop dispatching
                log.exception("dispatch pass failed")
                more = False
            if more:  # the rest in the next turn, after what the loop has to do meanwhile
                self._wake.set()
                await asyncio.sleep(0)

    def _dispatch_once(self) -> bool:
        """Starts what it can, up to DISPATCH_BATCH runs; True if it stopped there."""
        b = WriteBatch()
        self._fire_due_timers(b)
        started: list[_Work] = []
        # Work placed by a write that is not committed yet cannot begin before that commit, and
        # a slot given to it waits (the 1,000-command DAG: 29 % of runs waited ~1.8 ms so). So
        # the pass takes candidates in dispatch order, looking past at most HOLD_MAX such, and
        # within a rank (force, priority) starts those that can begin now first; a lower rank
        # never passes a higher one. Every candidate that fits a free slot starts, as before.
        free = min(self.config.max_concurrent - len(self._running), DISPATCH_BATCH)
        candidates: list[tuple[tuple[int, int], bool, str, Hashable]] = []
        ready_now = 0
        exhausted = False
        while ready_now < free and len(candidates) < free + HOLD_MAX:
            best = self._ready.pop_best(self._fits)
            if best is None:
                exhausted = True
                break
            pid, signature = best
            now = self.store.barrier(self._placed_by.get(pid)) is None
            ready_now += now
            rank = self.requests[pid].sort_key()[:2]
            candidates.append((rank, not now, pid, signature))
        candidates.sort(key=lambda c: (c[0], c[1]))  # stable: dispatch order within each group
        for _, _, pid, signature in candidates:
            if len(self._running) < self.config.max_concurrent and len(started) < DISPATCH_BATCH \
                    and self._fits(signature):
                started.append(self._begin(pid, b))
            else:  # the slots are taken, or candidates before it took its pool
                self._ready.push(self.requests[pid], signature)
        self._arm_timer()
        if not b.empty():
            # Not awaited: the next pass must not wait for this one's commit (that made ready
            # work wait tens of ms under load). Created before the runs, so these rows join the
            # group commit ahead of anything the runs write.
            task = asyncio.create_task(self.commit(b), name="commit:dispatch")
            self._commits.add(task)
            task.add_done_callback(self._commit_done)
        # The work starts once what it was placed on is committed (its registration, its
        # dependency's completion), without waiting for its own `running` row: a crash in
        # between leaves it queued, so it simply runs again. `running` is announced once committed.
        for w in started:
            w.task = asyncio.create_task(self._run(w), name=f"run:{w.process.id}")
        if len(started) == DISPATCH_BATCH or (
                not exhausted and len(self._running) < self.config.max_concurrent and len(self._ready)):
            return True  # more in the next turn
        if self._is_idle():
            self._idle.set()
        return False

    def _begin(self, pid: str, b: WriteBatch) -> _Work:
        p = self.processes[pid]
        work = self._start_run(p, b)
        # its placement (and what it was placed on: a registration, a dependency's
        # completion) must be committed; placed by this pass's own timers: what came before
        work.barrier = self.store.barrier(self._placed_by.pop(pid, None))
        if work.barrier is None and not self._stopping:
            begin = getattr(kinds.get(p.kind), "begin", None) if kinds.known(p.kind) else None
            if begin is not None:
                try:
                    work.begun = begin(work.ctx)  # started here, a turn sooner than by its task
                except Exception as e:  # noqa: BLE001 - the run raises it, where outcomes are made
                    work.begun = _raise(e)
        return work

    def _commit_done(self, task: asyncio.Task[None]) -> None:
        self._commits.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("committing a dispatch pass failed", exc_info=task.exception())

    def _fits(self, signature: Hashable) -> bool:
        need = self._signatures[signature]
        if not self.pools.fits(need):
            return False
        if isinstance(signature, tuple) and signature[:1] == ("exclusive",):
            return not any(pid in self._running for pid in self.graph.exclusive_partners(signature[1]))
        return True

    def _signature(self, p: Process) -> Hashable:
        if self.graph.exclusive_partners(p.id):
            sig: Hashable = ("exclusive", p.id)
        else:
            sig = tuple(sorted(p.resources.items()))
        self._signatures[sig] = p.resources
        return sig

    def _start_run(self, p: Process, b: WriteBatch) -> _Work:
        req = self.requests.pop(p.id)
        b.requests[p.id] = None
        self.pools.acquire(p.resources)
        p.attempt += 1
        p.started_at = time.time()
        p.metrics.resumes_total += 1
        self._set(p, State.RUNNING, None, b, data={"source": req.source.value})
        work = _Work(p, RunContext(self, p, self.config.cancel_grace_s), time.monotonic())
        self._running[p.id] = work
        return work

    def _is_idle(self) -> bool:
        if self._running or len(self._ready) or self._loading:
            return False
        return not any(self._timer_valid(pid) for _, _, pid in self._timers)

    # -- timers (retry times and dependency time-outs) -------------------------------------------

    def _add_timer(self, when: float, pid: str) -> None:
        self._timer_n += 1
        heapq.heappush(self._timers, (when, self._timer_n, pid))

    def _timer_valid(self, pid: str) -> bool:
        p = self.processes.get(pid)
        return p is not None and p.state is State.WAITING and pid in self.requests

    def _fire_due_timers(self, b: WriteBatch) -> None:
        now = time.time()
        due: list[str] = []
        while self._timers and self._timers[0][0] <= now:
            _, _, pid = heapq.heappop(self._timers)
            if self._timer_valid(pid):
                due.append(pid)
        if due:
            self._reconsider(due, b)

    def _arm_timer(self) -> None:
        while self._timers and not self._timer_valid(self._timers[0][2]):
            heapq.heappop(self._timers)
        when = self._timers[0][0] if self._timers else None
        if when == self._timer_when:
            return
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        self._timer_when = when
        if when is not None:
            self._timer_handle = asyncio.get_running_loop().call_later(
                max(0.0, when - time.time()), self._timer_fired
            )

    def _timer_fired(self) -> None:
        self._timer_handle = None
        self._timer_when = None
        self._wake.set()

    # -- placing requests -----------------------------------------------------------------------

    def _satisfied(self, d: Dependency, up: Process) -> bool:
        if up.state is State.COMPLETED:
            return True
        # 100 % means "completed": a run may report 100 and still fail while finishing.
        return d.required_completion_percent < 100 and up.progress >= d.required_completion_percent

    def _place(self, p: Process, b: WriteBatch) -> bool:
        """Put a process that holds a request where it belongs. Returns True if it got blocked."""
        req = self.requests[p.id]
        self._unready(p.id)
        now = time.time()
        unmet: list[tuple[Dependency, Process]] = []
        for d in self.graph.upstream(p.id):
            if not d.type.orders:
                continue
            up = self.processes[d.dependency]
            if self._satisfied(d, up):
                continue
            if up.state in DEAD_ENDS:
                self._block(p, f"dependency {up.id} is {up.state.value}", b)
                return True
            if d.timeout_minutes is not None and now >= req.requested_at + d.timeout_minutes * 60:
                self._block(p, f"dependency {up.id} timed out after {d.timeout_minutes:g} min", b)
                return True
            unmet.append((d, up))
        if unmet:
            d, up = unmet[0]
            need = "to complete" if d.required_completion_percent >= 100 else f"≥ {d.required_completion_percent:g}%"
            more = f" (+{len(unmet) - 1} more)" if len(unmet) > 1 else ""
            self._set(p, State.WAITING, f"needs {up.id} {need}{more}", b)
            for d, _ in unmet:
                if d.timeout_minutes is not None:
                    self._add_timer(req.requested_at + d.timeout_minutes * 60, p.id)
            return False
        if req.not_before is not None and req.not_before > now and not req.force_immediate:
            self._set(p, State.WAITING, f"retry at {_clock_text(req.not_before)}", b)
            self._add_timer(req.not_before, p.id)
            return False
        shortage = self.pools.shortage(p.resources)
        if shortage is None:
            busy = [x for x in self.graph.exclusive_partners(p.id) if x in self._running]
            if busy:
                shortage = f"never runs with {busy[0]} (running)"
        self._set(p, State.WAITING if shortage else State.QUEUED, shortage, b)
        signature = self._signature(p)
        if p.id in self._loading:
            # not before its registration is submitted: the load releases it then (_end_load)
            self._held[p.id] = signature
            return False
        self._ready.push(req, signature)
        self._placed_in.setdefault(id(b), []).append(p.id)
        self._wake.set()
        return False

    def _unready(self, process_id: str) -> None:
        self._ready.remove(process_id)
        self._held.pop(process_id, None)

    def _block(self, p: Process, reason: str, b: WriteBatch) -> None:
        self.requests.pop(p.id, None)
        b.requests[p.id] = None
        self._unready(p.id)
        self._set(p, State.BLOCKED, reason, b)

    def _reconsider(self, ids: Iterable[str], b: WriteBatch) -> None:
        """Re-place the given processes and follow the consequences downstream, iteratively
        (a chain of 10,000 must not hit the recursion limit)."""
        work = deque(ids)
        while work:
            p = self.processes[work.popleft()]
            if p.id in self._loading and not self._load_placing:
                # Written by no batch but its load's, or a crash could commit part of a workflow:
                # the load places it again in its last step.
                self._recheck.add(p.id)
                continue
            if p.id in self.requests and p.state is not State.RUNNING:
                if self._place(p, b):
                    work.extend(self._dependents(p, lambda q: q.id in self.requests))
            elif p.state is State.BLOCKED and self._dead_upstream(p) is None:
                self._request(p, RequestSource.DEPENDENCY, b)
                if not self._place(p, b):
                    work.extend(self._dependents(p, lambda q: q.state is State.BLOCKED))

    def _dependents(self, p: Process, keep: Callable[[Process], bool]) -> list[str]:
        return [d.dependent for d in self.graph.downstream(p.id)
                if d.type.orders and keep(self.processes[d.dependent])]

    def _dead_upstream(self, p: Process) -> Process | None:
        for d in self.graph.upstream(p.id):
            up = self.processes[d.dependency]
            if d.type.orders and not self._satisfied(d, up) and up.state in DEAD_ENDS:
                return up
        return None

    def _request(
        self, p: Process, source: RequestSource, b: WriteBatch,
        force: bool = False, not_before: float | None = None,
    ) -> ResumeRequest:
        self._request_seq += 1
        req = ResumeRequest(
            process_id=p.id, priority=p.priority, requested_at=time.time(), seq=self._request_seq,
            source=source, not_before=not_before, force_immediate=force,
        )
        self.requests[p.id] = req
        b.requests[p.id] = req
        return req

    # -- state changes --------------------------------------------------------------------------

    def _set(
        self, p: Process, state: State, reason: str | None, b: WriteBatch,
        message: str = "", data: dict[str, Any] | None = None,
    ) -> None:
        if p.state is state and p.reason == reason and not message:
            return
        previous = p.state
        p.state = state
        p.reason = None if reason is None else capped(reason)
        p.updated_at = time.time()
        b.processes[p.id] = p
        hook = self.state_hooks.get(p.kind)
        if hook is not None and previous is not state:
            hook(p, previous, b)
        progress = p.progress
        info = {"from": previous.value, "attempt": p.attempt,
                "progress": progress if progress == 0.0 or progress == 100.0 else round(progress, 1)}
        if state is State.INTERRUPTED and p.interruption is not None:
            info["interruption"] = p.interruption.to_json()
        if data:
            info.update(data)
        b.events.append(self.new_event(p.id, state.value, message or reason or "", info))

    def new_event(self, pid: str | None, type_: str, message: str = "", data: dict[str, Any] | None = None) -> Event:
        """An event for a write's batch (or `announce`): numbered when that write is submitted."""
        return Event(0, time.time(), pid, type_, message, data)

    async def commit(self, b: WriteBatch, extra: Iterable[Event] = ()) -> None:
        """Commit, then announce: nothing is published that a crash could take back. `extra`:
        events without a row, announced after b's."""
        extra = list(extra)
        await self._write(b, [*b.events, *extra] if extra else None)

    def announce(self, event: Event) -> None:
        """Publish an event that has no row (a notice): numbered and published in its turn,
        after what the writes submitted before it publish."""
        self._notices.append(event)
        self._flush_soon()

    async def _write(self, b: WriteBatch, events: list[Event] | None = None) -> None:
        """Every write goes through here. The work that `b` made ready remembers the write's
        number, so it waits for that commit only (`store.barrier(upto=)`). Its events (`events`:
        b's, with notices among them, in order) and the notices since the last write (log lines,
        whose rows join `b`) are numbered as it is submitted and published once it is committed.
        Writes are submitted, committed and resumed in one order (the store's group commit,
        then the Herd), so subscribers (`switchboard run`'s JSON lines) get events in the order
        of their numbers: a log line is never announced before the `running` that preceded it."""
        placed = self._placed_in.pop(id(b), ())
        if events is None:
            events = b.events
        if self._notices:
            events = [*self._notices, *events]
            self._notices = []
            if self._pending_logs:
                b.logs.extend(self._pending_logs)
                self._pending_logs = []
        seq = self._event_seq
        for e in events:
            seq += 1
            e.seq = seq
        self._event_seq = seq
        if b.empty():
            if events:  # notices only: after what the writes submitted before them announce
                before = self.store.barrier()
                if before is not None:
                    try:
                        await before
                    except Exception:  # noqa: BLE001 - a failed write is its writer's to report
                        pass
                    await self._herd.through()
                for e in events:
                    self.bus.publish(e)
            return
        number = self.store.submitted + 1  # store.write numbers it before its first wait
        for pid in placed:
            self._placed_by[pid] = number
        await self.store.write(b)
        await self._herd.through()
        for e in events:
            self.bus.publish(e)

    # -- running work ---------------------------------------------------------------------------

    async def _run(self, w: _Work) -> None:
        p = w.process
        w.entered = True
        outcome: str
        detail: Any = None
        try:
            if w.begun is not None:
                if w.stop_reason is not None:  # cancelled before this task began: stop what began
                    inner = asyncio.ensure_future(w.begun)
                    await asyncio.sleep(0)  # its first step: it is watching the command now
                    inner.cancel()
                    await inner
                else:
                    await w.begun
            else:
                if w.barrier is not None:
                    await w.barrier  # not cancelled by this run's cancellation (Store.barrier)
                    await self._herd.through()
                if w.stop_reason is not None:  # cancelled or stopped before it began
                    raise asyncio.CancelledError
                kind = kinds.get(p.kind)
                await kind.run(w.ctx)
            outcome = "completed"
        except asyncio.CancelledError:
            outcome = "stopped"
            if w.stop_reason is None:  # cancelled from outside (the loop is going away)
                w.stop_reason = "shutdown"
        except Interrupted as e:
            outcome, detail = "interrupted", e
        except PermanentFailure as e:
            outcome, detail = "failed", str(e) or type(e).__name__
        except KeyError as e:
            outcome, detail = "error", f"unknown kind {p.kind!r}" if str(e).strip("'") == p.kind else repr(e)
        except Exception as e:  # noqa: BLE001 - a handler's exception never stops the engine
            outcome, detail = "error", f"{type(e).__name__}: {e}"
            self._log_exception(p, e)
        finally:
            # Slots are returned on every path, before anything else can await.
            self.pools.release(p.resources)
            self._running.pop(p.id, None)
        b = WriteBatch()
        self._finish(w, outcome, detail, b)
        if len(self._ready):
            # the freed slot goes to ready work now, not after this commit (what this commit
            # makes ready waits for it: its barrier); with nothing ready, the wake after the
            # commit finds the engine idle only once the outcome is committed
            self._wake.set()
        try:
            await self.commit(b)
        finally:
            w.finished.set()
            self._wake.set()
        if outcome == "stopped" and w.stop_reason == "shutdown" and not self._stopping:
            raise asyncio.CancelledError

    def _log_exception(self, p: Process, e: Exception) -> None:
        """A run's unexpected exception: the frames of the handler's own code (a python-kind
        entry point) go to the process's log, for its author, without the engine's; one
        raised by the engine or a kind has no such frames and goes, whole, to the program's
        log only (the process's reason says what it was)."""
        own = [f for f in traceback.extract_tb(e.__traceback__) if not _engine_code(f.filename)]
        if not own:
            log.error("%s: its run raised an unexpected exception", p.id, exc_info=e)
            return
        lines = ["Traceback (most recent call last):\n", *traceback.StackSummary.from_list(own).format(),
                 *traceback.format_exception_only(type(e), e)]
        self.log(p, "".join(lines).rstrip())

    def _finish(self, w: _Work, outcome: str, detail: Any, b: WriteBatch) -> None:
        p = w.process
        now = time.time()
        elapsed = time.monotonic() - w.started
        if outcome == "completed":
            p.progress = 100.0
            p.finished_at = now
            p.interruption = None
            p.metrics.resumes_succeeded += 1
            p.metrics.resume_seconds_total += elapsed
            self._set(p, State.COMPLETED, None, b, data={"elapsed_s": round(elapsed, 4)})
            self._reconsider(self._dependents(p, lambda q: q.state is State.WAITING), b)
            return
        if w.stop_reason == "cancel":
            p.interruption = Interruption(InterruptionType.OPERATOR, "cancelled by an operator")
            self._set(p, State.CANCELLED, "cancelled while running", b)
            self._reconsider(self._dependents(p, lambda q: q.id in self.requests), b)
            return
        if w.stop_reason == "shutdown":
            p.metrics.interruptions += 1
            p.interruption = Interruption(InterruptionType.SHUTDOWN, "stopped by a shutdown; resumes at next start")
            self._set(p, State.INTERRUPTED, None, b)
            self._request(p, RequestSource.SHUTDOWN, b)
            return
        if outcome == "interrupted" and detail.type is InterruptionType.ERROR:
            outcome, detail = "error", detail.message  # an error, whoever reports it, uses up attempts
        if outcome == "failed":
            p.failures += 1  # a failed attempt, if the last one (TRY shows it)
            p.metrics.resumes_failed += 1
            p.metrics.resume_seconds_total += elapsed
            self._fail(p, str(detail), b)
            return
        if outcome == "error":
            p.failures += 1
            p.metrics.resumes_failed += 1
            p.metrics.resume_seconds_total += elapsed
            if p.failures >= p.max_attempts:
                self._fail(p, f"attempts used up ({p.failures}/{p.max_attempts}): {detail}", b)
                return
            interruption = Interrupted(str(detail), InterruptionType.ERROR)
        else:
            interruption = detail
        self._interrupt(p, interruption, b)

    def _fail(self, p: Process, reason: str, b: WriteBatch) -> None:
        p.finished_at = time.time()
        self._set(p, State.FAILED, reason, b)
        self._reconsider(self._dependents(p, lambda q: q.id in self.requests), b)

    def _interrupt(self, p: Process, e: Interrupted, b: WriteBatch) -> None:
        p.metrics.interruptions += 1
        p.interruption = Interruption(e.type, e.message, retry_at=e.retry_at)
        self._set(p, State.INTERRUPTED, None, b, message=f"{e.type.value}: {e.message}".rstrip(": "))
        if e.type in AUTO_RETRY:
            if e.retry_at is not None:
                not_before = max(e.retry_at, time.time())
            else:
                exponent = max(0, p.attempt - 1)
                delay = min(self.config.retry_max_s, self.config.retry_base_s * 2**exponent)
                not_before = time.time() + delay * random.uniform(0.5, 1.0)  # jitter
            self._request(p, RequestSource.RETRY, b, not_before=not_before)
            self._reconsider([p.id], b)

    # -- what handlers call -----------------------------------------------------------------------

    async def report(self, p: Process, progress: float | None, checkpoint: Any = _UNSET,
                     extra: WriteBatch | None = None) -> None:
        b = extra or WriteBatch()
        before = p.progress
        if progress is not None:
            p.progress = min(100.0, max(0.0, float(progress)))
        if checkpoint is not _UNSET:
            p.checkpoint_seq += 1
            p.checkpoint = checkpoint
            b.checkpoints.append(Checkpoint(p.id, p.checkpoint_seq, p.progress, checkpoint, time.time()))
        p.updated_at = time.time()
        b.processes[p.id] = p
        notice = self.new_event(p.id, "progress", "", {"progress": round(p.progress, 1),
                                                   "checkpoint": checkpoint is not _UNSET})
        own = len(b.events)
        if p.progress > before:
            crossed = [
                d.dependent for d in self.graph.downstream(p.id)
                if d.type.orders and before < d.required_completion_percent <= p.progress
                and self.processes[d.dependent].state is State.WAITING
            ]
            # placed in the same transaction as the progress that frees them (they start once it
            # is committed): one commit between the report and the dependent's start, not two
            self._reconsider(crossed, b)
        await self._write(b, [*b.events[:own], notice, *b.events[own:]])  # the order a reader expects

    def log(self, p: Process, text: str) -> None:
        """Log lines are written and announced with the next write (`_write`), in their turn."""
        now = time.time()
        for line in str(text).splitlines() or [""]:
            line = line[:LOG_LINE_MAX]
            self._pending_logs.append((p.id, now, line))
            self._notices.append(Event(0, now, p.id, "log", line))
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._log_flush is None or self._log_flush.done():
            self._log_flush = asyncio.get_running_loop().create_task(self._flush_notices())

    async def _flush_notices(self) -> None:
        """Notices (and log rows) that no other write took along: in a write of their own."""
        while self._notices:
            await self._write(WriteBatch())

    def workdir(self, process_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in process_id)
        path = self.settings.resolved_data_dir / "work" / safe
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- operator actions (console, CLI through the inbox, intake) ----------------------------------

    def _get(self, process_id: str) -> Process:
        p = self.processes.get(process_id)
        if p is None or process_id in self._loading:  # not registered until its load is submitted
            raise UserError(f"no process {process_id!r}")
        return p

    async def resume(self, process_id: str, force: bool = False) -> str:
        p = self._get(process_id)
        b = WriteBatch()
        if p.state in IN_QUEUE:
            if not force:
                raise UserError(f"{p.id} is already {p.state.value}" + (f" ({p.reason})" if p.reason else ""))
            req = self.requests[p.id]
            self._request(p, RequestSource.OPERATOR, b, force=True)
            self.requests[p.id].requested_at = req.requested_at  # keep its dependency time-outs
        elif p.state in RESUMABLE:
            if p.state is State.FAILED:
                p.failures = 0  # a fresh set of attempts
            self._request(p, RequestSource.OPERATOR, b, force=force)
        else:
            raise UserError(f"{p.id} is {p.state.value}; only interrupted, cancelled, failed, blocked "
                            "or pending processes can be resumed")
        self._reconsider([p.id], b)
        self._reconsider(self._dependents(p, lambda q: q.state is State.BLOCKED), b)
        await self.commit(b)
        return f"{p.id}: {p.state.value}" + (f" ({p.reason})" if p.reason else "")

    async def cancel(self, process_id: str) -> str:
        p = self._get(process_id)
        if p.state is State.RUNNING:
            w = self._running[p.id]
            w.stop_reason = "cancel"
            if w.task is not None and w.entered:  # else its run sees stop_reason when it begins
                w.task.cancel()
            await w.finished.wait()
            return f"{p.id}: {p.state.value}"
        if p.state in (State.COMPLETED, State.CANCELLED):
            raise UserError(f"{p.id} is already {p.state.value}")
        b = WriteBatch()
        self.requests.pop(p.id, None)
        b.requests[p.id] = None
        self._unready(p.id)
        p.interruption = Interruption(InterruptionType.OPERATOR, "cancelled by an operator")
        self._set(p, State.CANCELLED, "cancelled by an operator", b)
        self._reconsider(self._dependents(p, lambda q: q.id in self.requests), b)
        await self.commit(b)
        return f"{p.id}: cancelled"

    async def _load_command(self, payload: dict[str, Any]) -> str:
        return (await self.load(Workflow.from_json(payload))).describe()

    async def take_turn(self) -> None:
        """For a caller about to `load` (with `admitted=True`, in the same synchronous section):
        returns at once, unless many loads arrive together or one is being applied in slices;
        then in a later turn of the loop."""
        await self._turns.enter()

    async def load(self, wf: Workflow, extra: WriteBatch | None = None, *, admitted: bool = False) -> LoadResult:
        """Register a workflow's new processes and queue them. Idempotent and all-or-nothing:
        every check runs before the first change, and everything is committed in one
        transaction. `extra` is committed in the same transaction (a voice request's own record,
        say). Loads that arrive together (a burst of voice requests) share the turns of the loop
        (TurnShare): a few per turn, in the order they came; `admitted` says the caller took
        its turn (`take_turn`) and calls this in the same synchronous section.

        A large workflow is applied in slices (LOAD_SLICE_S) with the loop running in between.
        Meanwhile nothing acts on it: its processes are registered before they get a request or
        an edge, the dispatcher does not start any of them until the write that registers them
        is submitted (work starts once that is committed, as always), operator actions do not
        see them yet, other work's consequences for them (a dependency completing meanwhile) are
        left to the load's own last step so that no other transaction writes them, edges onto
        processes already there are added in that step too, with those processes' new placement,
        and other loads wait for this one's submission. A caller cancelled half-way does not stop
        it: it finishes and commits."""
        if not admitted:  # at once, unless many come together or one is being applied in slices
            await self._turns.enter()
        began = time.perf_counter()  # the checks count towards the first slice
        try:
            new, new_deps = check_workflow(wf, self.processes, self.graph, self.pools.sizes)
            result = LoadResult(existing=[p.id for p in wf.processes if p.id in self.processes])
            b = extra or WriteBatch()
            self._loading.update(p.id for p in new)
            steps = self._load_steps(wf, new, new_deps, b, result, began + LOAD_SLICE_S)
            try:
                sliced = next(steps, False)
            except BaseException:
                self._end_load(new, b, failed=True)
                raise
        finally:
            self._turns.leave()
        if sliced:
            self._turns.block()  # until _end_load
            task = asyncio.create_task(self._load_rest(steps, new, b, result), name=f"load:{wf.source}")
            self._loads_in_slices.add(task)
            task.add_done_callback(self._loads_in_slices.discard)
            return await asyncio.shield(task)
        await self.commit(b)
        return result

    async def _load_rest(self, steps: Iterable[bool], new: list[Process], b: WriteBatch,
                         result: LoadResult) -> LoadResult:
        try:
            for _ in steps:
                await asyncio.sleep(0)
        except BaseException:
            self._end_load(new, b, failed=True)
            raise
        await self.commit(b)
        return result

    def _load_steps(self, wf: Workflow, new: list[Process], new_deps: list[Dependency], b: WriteBatch,
                    result: LoadResult, deadline: float) -> Iterable[bool]:
        """Applies a checked workflow, yielding each time a slice has taken LOAD_SLICE_S (the
        first ends at `deadline`). Its last step ends the load (_end_load), right before the
        caller submits the write."""
        clock = time.perf_counter
        b.pools.update(wf.resources)
        self.pools.resize(wf.resources)
        now = time.time()
        # 1. registered, pending: no request and no edge yet, so nothing acts on them
        for i, p in enumerate(new):
            p.state, p.created_at, p.updated_at = State.PENDING, now, now
            self.processes[p.id] = p
            b.processes[p.id] = p
            b.events.append(self.new_event(p.id, "registered", f"{p.kind} from {wf.source}",
                                        {"priority": p.priority.value}))
            result.added.append(p.id)
            if i % 32 == 31 and clock() > deadline:
                yield True
                deadline = clock() + LOAD_SLICE_S
        # 2. the edges of new dependents (an edge onto a process that was there already changes
        # where that one belongs: it waits for the last step)
        onto_existing: list[Dependency] = []
        for i, d in enumerate(new_deps):
            if d.dependent in self._loading:
                self.graph.add(d)
                b.dependencies.append(d)
            else:
                onto_existing.append(d)
            if i % 64 == 63 and clock() > deadline:
                yield True
                deadline = clock() + LOAD_SLICE_S
        result.dependencies_added = len(new_deps)
        # 3. the new processes' requests, placed; those ready are held (_place) until the end
        to_place = [p.id for p in new if p.id not in wf.held]
        for start in range(0, len(to_place), 32):
            chunk = to_place[start:start + 32]
            for pid in chunk:
                self._request(self.processes[pid], RequestSource.WORKFLOW, b)
            self._place_own(chunk, b)
            if clock() > deadline and start + 32 < len(to_place):
                yield True
                deadline = clock() + LOAD_SLICE_S
        # 4. in one step: the remaining edges, with the new placement of their dependents, the
        # new processes others asked to re-place meanwhile, and the load's end
        for d in onto_existing:
            self.graph.add(d)
            b.dependencies.append(d)
        again = {pid: None for pid in sorted(self._recheck) if pid in self._loading}
        again.update((d.dependent, None) for d in onto_existing if d.dependent in self.requests)
        # a new process at the other end may now never run with the one already there (a
        # `resource` edge): placed again, its signature says so
        again.update((d.dependency, None) for d in onto_existing if d.dependency in self._loading)
        self._recheck.difference_update(again)
        self._place_own(again, b)
        self._end_load(new, b)

    def _place_own(self, ids: Iterable[str], b: WriteBatch) -> None:
        self._load_placing = True
        try:
            self._reconsider(ids, b)
        finally:
            self._load_placing = False

    def _end_load(self, new: list[Process], b: WriteBatch, failed: bool = False) -> None:
        """The load's last step, right before its write is submitted (or its failure): its
        processes become visible to operators and those ready are released to the dispatcher,
        as made ready by this write (`_write` numbers it, and they wait for its commit)."""
        placed = self._placed_in.setdefault(id(b), [])
        for p in new:
            self._loading.discard(p.id)
            self._recheck.discard(p.id)
            signature = self._held.pop(p.id, None)
            if signature is not None and not failed:
                self._ready.push(self.requests[p.id], signature)
                placed.append(p.id)
        if failed or not placed:
            self._placed_in.pop(id(b), None)
        self._wake.set()
        if self._turns.blocked:  # a load in slices ends: the others go on (after its submission)
            self._turns.unblock()

    # -- commands from other processes -------------------------------------------------------------

    async def _watch_external(self) -> None:
        version = await self.store.change_marker()
        await self.process_commands()
        while True:
            await asyncio.sleep(self.config.external_poll_s)
            try:
                current = await self.store.change_marker()
                if current != version:
                    version = current
                    await self.process_commands()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("reading commands failed")

    async def process_commands(self) -> int:
        async with self._commands_lock:
            commands = await self.store.new_commands()
            for c in commands:
                status, result = await self.execute(c)
                await self.store.write(WriteBatch(commands_done={c.id: (status, result)}))
            return len(commands)

    async def execute(self, c: Command) -> tuple[str, str]:
        handler = self.commands.get(c.kind)
        if handler is None:
            return "error", f"unknown command {c.kind!r}"
        try:
            return "done", await handler(c.payload)
        except UserError as e:
            return "error", str(e)
        except Exception as e:  # noqa: BLE001 - reported back to whoever asked
            log.exception("command %s failed", c.kind)
            return "error", f"{type(e).__name__}: {e}"

    # -- background upkeep -------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = self.config.lease_ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.store.renew_lease(self._token, time.time()):
                    log.error("lost the claim on %s; dispatching stops", self.store.path)
                    self.dispatching = False
                    self._stopping = True
                    self._wake.set()
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("renewing the claim failed")

    async def _housekeeping(self) -> None:
        while True:
            try:
                cutoff = time.time() - self.config.history_retention_hours * 3600
                await self.store.prune_history(cutoff)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("pruning history failed")
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)

    # -- read side ----------------------------------------------------------------------------------

    def queue(self) -> list[ResumeRequest]:
        """Resume requests in dispatch order."""
        return sorted(self.requests.values(), key=ResumeRequest.sort_key)

    def running(self) -> list[Process]:
        return [w.process for w in self._running.values()]

    async def status(self) -> dict[str, Any]:
        return await summarise(self.store, list(self.processes.values()), self.pools.sizes,
                               self.config.max_concurrent, len(self.requests))


async def summarise(store: History, processes: list[Process], pool_sizes: dict[str, int],
                    max_concurrent: int, queued: int) -> dict[str, Any]:
    """The orchestrator's status, from processes alone, so observers (the CLI) compute the
    same figures as the owner."""
    counts = {s.value: 0 for s in State}
    pools = ResourcePools(pool_sizes)
    running = []
    for p in processes:
        counts[p.state.value] += 1
        if p.state is State.RUNNING:
            running.append(p.id)
            pools.resize({n: pools.sizes.get(n, 0) for n in p.resources})
            for n, amount in p.resources.items():
                pools.used[n] = pools.used.get(n, 0) + amount
    hour = await store.count_events(["completed", "failed"], time.time() - 3600)
    finished = hour.get("completed", 0) + hour.get("failed", 0)
    return {
        "counts": counts,
        "active": len(running),
        "queued": queued,
        "running": sorted(running),
        "success_rate_1h": hour.get("completed", 0) / finished if finished else None,
        "resources": pools.utilisation(),
        "max_concurrent": max_concurrent,
    }
