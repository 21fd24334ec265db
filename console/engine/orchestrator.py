"""The resume orchestrator: one asyncio task on the host's loop, woken by events.

Life of a process: a resume request is placed (Placement) as blocked, waiting (dependencies,
retry time, resources) or ready; the dispatcher (Dispatcher) starts ready work while slots
and pools allow; the run's outcome (WorkRunner, Outcomes) is committed, announced, and only
the process's own neighbours in the graph are looked at again. Every change goes through a
WriteBatch that is committed before its events are published (Journal).

`Orchestrator` is the face the rest of the program uses: it holds the engine's memory
(processes, requests, graph, pools), wires the parts that each do one job, and runs the
life cycle (start, stop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from console.engine.bus import EventBus
from console.engine.dispatch import DISPATCH_BATCH, Dispatcher
from console.engine.graph import DependencyGraph
from console.engine.housekeeping import prune_history
from console.engine.inbox import CommandInbox
from console.engine.journal import Journal, new_event
from console.engine.lease import Lease, OwnedElsewhere, lease_is_stale
from console.engine.loading import LOAD_SLICE_S, Loader, LoadResult
from console.engine.operator import OperatorActions
from console.engine.outcomes import Outcomes
from console.engine.placement import Placement
from console.engine.pools import ResourcePools
from console.engine.progress import ProgressReports
from console.engine.recovery import recover
from console.engine.running import WorkRunner
from console.engine.staging import Staging
from console.engine.status import summarise
from console.engine.timers import WakeTimers
from console.engine.transitions import StateChanges
from console.engine.work import Work
from console.engine.workflow import Workflow
from console.kinds.context import _UNSET, RunContext
from console.model import Event, Process, ResumeRequest
from console.settings import Settings
from console.store import Command, LeaseHolder, Store, WriteBatch
from console.workdirs import workdir_for

__all__ = ["LoadResult", "Orchestrator", "OwnedElsewhere", "lease_is_stale", "summarise"]

log = logging.getLogger(__name__)


async def _end_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancels `tasks` and waits for their end, cancelling again the ones still going: a
    dependency can lose a cancellation (a database driver's wait can), and a loop that lost
    it would run on."""
    pending = {t for t in tasks if not t.done()}
    for t in pending:
        t.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.1)
        for t in pending:
            t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)  # their exceptions retrieved


class Orchestrator:
    """The engine as the rest of the program sees it (the console, the intake, the call
    centre, the CLI's runner): its memory, the operations on it, and its life cycle. The work
    itself is done by the parts it owns, each given only what it needs."""

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
        # shared objects for handlers (e.g. one API client for all voice work), closed at stop
        self.services: dict[str, Any] = {}
        # run after the database is loaded and before crash recovery (which fires state hooks)
        self.start_hooks: list[Callable[[], Awaitable[None]]] = []
        self._running: dict[str, Work] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._started = False
        self._stopping = False
        self._stopped = False
        self.lease_lost = asyncio.Event()  # set once another owner has taken the database over
        self.lease_taker: LeaseHolder | None = None  # who took it, when it could be read

        # The parts, wired. The dispatch batch and the load slice are taken from this module's
        # names when the engine is made, so a test can narrow them here.
        self._journal = Journal(store, self.bus)
        self._journal.on_lease_lost = self._lost_lease
        self._herd = self._journal.herd
        self._states = StateChanges()
        # kind name -> fn(process, previous state, batch): lets a kind keep its own records
        # (e.g. a transfer's status) in step with its process, in the same transaction
        self.state_hooks = self._states.hooks
        self._staging = Staging()
        self._timers = WakeTimers(self.processes, self.requests, self._wake)
        self._placement = Placement(self.processes, self.requests, self.graph, self.pools, self._running,
                                    self._staging, self._timers, self._states, self._journal, self._wake)
        self._outcomes = Outcomes(self.config, self._placement, self._states)
        self._runner = WorkRunner(self._running, self.pools, self._placement.ready, self._outcomes,
                                  self._journal, self._wake, lambda: self._stopping)
        self._dispatcher = Dispatcher(self.config, self._placement, self._timers, self._staging, self._states,
                                      self._journal, self._runner, self._running, self._wake,
                                      lambda: self._stopping, self._run_context, batch=DISPATCH_BATCH)
        self._loader = Loader(self.processes, self.graph, self.pools, self._placement, self._staging,
                              self._journal, self._wake, slice_s=LOAD_SLICE_S)
        self._operator = OperatorActions(self._placement, self._staging, self._states, self._running,
                                         self._journal)
        self._progress = ProgressReports(self._placement, self._journal)
        self._lease = Lease(store, role, self.config.lease_ttl_s)
        self._inbox = CommandInbox(store)
        self.commands = self._inbox.handlers
        self.commands.update({
            "resume": lambda a: self.resume(a["id"], force=bool(a.get("force"))),
            "cancel": lambda a: self.cancel(a["id"]),
            "load": lambda a: self._load_command(a),
        })

    def _run_context(self, p: Process) -> RunContext:
        """What the run of `p` is handed (a kind's `run`, a python entry point's `ctx`)."""
        return RunContext(self, p, self.config.cancel_grace_s)

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self, dispatch: bool = True) -> None:
        """Claim the database, load it, recover from a crash, and (with `dispatch`) start work."""
        await self._lease.acquire()
        self._started = True
        snapshot = await self.store.load_snapshot()
        self.pools.resize(snapshot.pools)
        self._journal.event_seq = snapshot.last_event_seq
        self._placement.request_seq = snapshot.last_request_seq
        for p in snapshot.processes:
            self.processes[p.id] = p
        for d in snapshot.dependencies:
            self.graph.add(d)
        for r in snapshot.requests:
            self.requests[r.process_id] = r
        for hook in self.start_hooks:
            await hook()
        await self.commit(recover(self._placement, self._states))
        self._tasks.append(asyncio.create_task(self._lease.heartbeat(self._lost_lease), name="lease-heartbeat"))
        if dispatch:
            self.dispatching = True
            self._tasks.append(asyncio.create_task(self._dispatcher.run(self._dispatch_once), name="dispatch"))
            self._tasks.append(asyncio.create_task(self._inbox.watch(self.config.external_poll_s),
                                                   name="external-changes"))
            self._tasks.append(asyncio.create_task(prune_history(self.store, self.config), name="housekeeping"))
            self._wake.set()

    def _lost_lease(self) -> None:
        """Another owner took the database over: nothing more is written (the journal drops it,
        the store refuses it), dispatching stops; `lease_lost` tells the host, which stops."""
        if self.lease_lost.is_set():
            return
        self._journal.fenced = True
        self.dispatching = False
        self._stopping = True
        self._wake.set()
        asyncio.get_running_loop().create_task(self._learn_new_owner(), name="lease-lost")

    async def _learn_new_owner(self) -> None:
        try:
            self.lease_taker = await self.store.lease_holder()
        except Exception:  # noqa: BLE001 - who took it is for the message only
            log.warning("reading the new owner of the lease failed", exc_info=True)
        self.lease_lost.set()

    def _dispatch_once(self) -> bool:
        """One pass of the dispatcher (its loop calls it through here)."""
        return self._dispatcher.pass_once()

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
        await asyncio.gather(*self._dispatcher.commits, *self._loader.in_slices, return_exceptions=True)
        # After a lost lease, running work is stopped at once, as cancel stops it: its rows are
        # the new owner's, so nothing of it is persisted.
        await self._runner.stop_all(0 if self._journal.fenced else self.config.shutdown_grace_s)
        self._timers.cancel()
        await _end_tasks(self._tasks)
        await self._journal.drain()
        for service in self.services.values():
            close = getattr(service, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # noqa: BLE001 - closing must not stop the shutdown
                    log.exception("closing %r failed", service)
        if not self._journal.fenced:
            await self._lease.release()
        self._stopped = True

    def service(self, name: str, factory: Callable[[], Any]) -> Any:
        """One shared instance per name, made on first use."""
        if name not in self.services:
            self.services[name] = factory()
        return self.services[name]

    async def run_until_idle(self) -> None:
        """Wait until nothing is queued, waiting on a timer, or running."""
        idle = self._dispatcher.idle
        while True:
            idle.clear()
            self._wake.set()
            await idle.wait()
            if self._dispatcher.is_idle():
                return

    # -- loading workflows ----------------------------------------------------------------------

    async def take_turn(self) -> None:
        """For a caller about to `load` (with `admitted=True`, in the same synchronous section):
        returns at once, unless many loads arrive together or one is being applied in slices;
        then in a later turn of the loop."""
        await self._loader.take_turn()

    async def load(self, wf: Workflow, extra: WriteBatch | None = None, *, admitted: bool = False) -> LoadResult:
        """Register a workflow's new processes and queue them, all or nothing (see Loader.load)."""
        return await self._loader.load(wf, extra, admitted=admitted)

    async def _load_command(self, payload: dict[str, Any]) -> str:
        return (await self.load(Workflow.from_json(payload))).describe()

    # -- operator actions (console, CLI through the inbox, intake) ------------------------------

    async def resume(self, process_id: str, force: bool = False) -> str:
        return await self._operator.resume(process_id, force)

    async def cancel(self, process_id: str) -> str:
        return await self._operator.cancel(process_id)

    # -- commands from other processes ----------------------------------------------------------

    async def process_commands(self) -> int:
        return await self._inbox.process()

    async def execute(self, c: Command) -> tuple[str, str]:
        return await self._inbox.execute(c)

    # -- writes and events ----------------------------------------------------------------------

    def new_event(self, pid: str | None, type_: str, message: str = "", data: dict[str, Any] | None = None) -> Event:
        """An event for a write's batch (or `announce`): numbered when that write is submitted."""
        return new_event(pid, type_, message, data)

    async def commit(self, b: WriteBatch, extra: Iterable[Event] = ()) -> None:
        """Commit, then announce: nothing is published that a crash could take back. `extra`:
        events without a row, announced after b's."""
        await self._journal.commit(b, extra)

    def announce(self, event: Event) -> None:
        """Publish an event that has no row (a notice), in its turn."""
        self._journal.announce(event)

    # -- what handlers call ---------------------------------------------------------------------

    async def report(self, p: Process, progress: float | None, checkpoint: Any = _UNSET,
                     extra: WriteBatch | None = None) -> None:
        await self._progress.report(p, progress, checkpoint, checkpoint is not _UNSET, extra)

    def log(self, p: Process, text: str) -> None:
        """Log lines are written and announced with the next write, in their turn."""
        self._journal.log(p.id, text)

    def workdir(self, process_id: str) -> Path:
        return workdir_for(self.settings.resolved_data_dir, process_id)  # one folder per id, 0700

    # -- read side ------------------------------------------------------------------------------

    def queue(self) -> list[ResumeRequest]:
        """Resume requests in dispatch order."""
        return sorted(self.requests.values(), key=ResumeRequest.sort_key)

    def running(self) -> list[Process]:
        return [w.process for w in self._running.values()]

    async def status(self) -> dict[str, Any]:
        return await summarise(self.store, list(self.processes.values()), self.pools.sizes,
                               self.config.max_concurrent, len(self.requests))
