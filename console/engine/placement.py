"""Placing resume requests: where each process that holds one belongs, and what follows
downstream."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Container, Hashable, Iterable

from console.engine.graph import DependencyGraph
from console.engine.journal import Journal
from console.engine.pools import ResourcePools
from console.engine.ready import ReadyQueue
from console.engine.staging import Staging
from console.engine.timers import WakeTimers
from console.engine.transitions import StateChanges
from console.model import DEAD_ENDS, Dependency, Process, RequestSource, ResumeRequest, State
from console.store import WriteBatch


def _clock_text(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


class Placement:
    """Puts each process that holds a resume request where it belongs: blocked (a dependency
    that will never be met), waiting (dependencies, retry time, resources) or in the ready
    queue, and follows the consequences to its dependents. Also decides whether a ready
    process fits the free resources now (`fits`)."""

    def __init__(self, processes: dict[str, Process], requests: dict[str, ResumeRequest],
                 graph: DependencyGraph, pools: ResourcePools, running: Container[str], staging: Staging,
                 timers: WakeTimers, states: StateChanges, journal: Journal, wake: asyncio.Event):
        self.processes = processes
        self.requests = requests
        self.graph = graph
        self.pools = pools
        self.ready = ReadyQueue()
        self.request_seq = 0  # the last number given to a request
        self._running = running
        self._staging = staging
        self._timers = timers
        self._states = states
        self._journal = journal
        self._wake = wake
        self._signatures: dict[Hashable, dict[str, int]] = {}

    def request(
        self, p: Process, source: RequestSource, b: WriteBatch,
        force: bool = False, not_before: float | None = None,
    ) -> ResumeRequest:
        self.request_seq += 1
        req = ResumeRequest(
            process_id=p.id, priority=p.priority, requested_at=time.time(), seq=self.request_seq,
            source=source, not_before=not_before, force_immediate=force,
        )
        self.requests[p.id] = req
        b.requests[p.id] = req
        return req

    @staticmethod
    def satisfied(d: Dependency, up: Process) -> bool:
        if up.state is State.COMPLETED:
            return True
        # 100 % means "completed": a run may report 100 and still fail while finishing.
        return d.required_completion_percent < 100 and up.progress >= d.required_completion_percent

    def place(self, p: Process, b: WriteBatch) -> bool:
        """Put a process that holds a request where it belongs. Returns True if it got blocked."""
        req = self.requests[p.id]
        self.unready(p.id)
        now = time.time()
        unmet: list[tuple[Dependency, Process]] = []
        for d in self.graph.upstream(p.id):
            if not d.type.orders:
                continue
            up = self.processes[d.dependency]
            if self.satisfied(d, up):
                continue
            if up.state in DEAD_ENDS:
                self.block(p, f"dependency {up.id} is {up.state.value}", b)
                return True
            if d.timeout_minutes is not None and now >= req.requested_at + d.timeout_minutes * 60:
                self.block(p, f"dependency {up.id} timed out after {d.timeout_minutes:g} min", b)
                return True
            unmet.append((d, up))
        if unmet:
            d, up = unmet[0]
            need = "to complete" if d.required_completion_percent >= 100 else f"≥ {d.required_completion_percent:g}%"
            more = f" (+{len(unmet) - 1} more)" if len(unmet) > 1 else ""
            self._states.set(p, State.WAITING, f"needs {up.id} {need}{more}", b)
            for d, _ in unmet:
                if d.timeout_minutes is not None:
                    self._timers.add(req.requested_at + d.timeout_minutes * 60, p.id)
            return False
        if req.not_before is not None and req.not_before > now and not req.force_immediate:
            self._states.set(p, State.WAITING, f"retry at {_clock_text(req.not_before)}", b)
            self._timers.add(req.not_before, p.id)
            return False
        shortage = self.pools.shortage(p.resources)
        if shortage is None:
            busy = [x for x in self.graph.exclusive_partners(p.id) if x in self._running]
            if busy:
                shortage = f"never runs with {busy[0]} (running)"
        self._states.set(p, State.WAITING if shortage else State.QUEUED, shortage, b)
        signature = self._signature(p)
        if p.id in self._staging.loading:
            # not before its registration is submitted: the load releases it then (Loader)
            self._staging.held[p.id] = signature
            return False
        self.ready.push(req, signature)
        self._journal.made_ready(b, (p.id,))
        self._wake.set()
        return False

    def unready(self, process_id: str) -> None:
        self.ready.remove(process_id)
        self._staging.held.pop(process_id, None)

    def block(self, p: Process, reason: str, b: WriteBatch) -> None:
        self.requests.pop(p.id, None)
        b.requests[p.id] = None
        self.unready(p.id)
        self._states.set(p, State.BLOCKED, reason, b)

    def reconsider(self, ids: Iterable[str], b: WriteBatch) -> None:
        """Re-place the given processes and follow the consequences downstream, iteratively
        (a chain of 10,000 must not hit the recursion limit)."""
        staging = self._staging
        work = deque(ids)
        while work:
            p = self.processes[work.popleft()]
            if p.id in staging.loading and not staging.placing_own:
                # Written by no batch but its load's, or a crash could commit part of a workflow:
                # the load places it again in its last step.
                staging.recheck.add(p.id)
                continue
            if p.id in self.requests and p.state is not State.RUNNING:
                if self.place(p, b):
                    work.extend(self.dependents(p, lambda q: q.id in self.requests))
            elif p.state is State.BLOCKED and self.dead_upstream(p) is None:
                self.request(p, RequestSource.DEPENDENCY, b)
                if not self.place(p, b):
                    work.extend(self.dependents(p, lambda q: q.state is State.BLOCKED))

    def dependents(self, p: Process, keep: Callable[[Process], bool]) -> list[str]:
        return [d.dependent for d in self.graph.downstream(p.id)
                if d.type.orders and keep(self.processes[d.dependent])]

    def dead_upstream(self, p: Process) -> Process | None:
        for d in self.graph.upstream(p.id):
            up = self.processes[d.dependency]
            if d.type.orders and not self.satisfied(d, up) and up.state in DEAD_ENDS:
                return up
        return None

    def _signature(self, p: Process) -> Hashable:
        if self.graph.exclusive_partners(p.id):
            sig: Hashable = ("exclusive", p.id)
        else:
            sig = tuple(sorted(p.resources.items()))
        self._signatures[sig] = p.resources
        return sig

    def fits(self, signature: Hashable) -> bool:
        """Whether ready work of this signature can start now (pools, exclusive partners)."""
        need = self._signatures[signature]
        if not self.pools.fits(need):
            return False
        if isinstance(signature, tuple) and signature[:1] == ("exclusive",):
            return not any(pid in self._running for pid in self.graph.exclusive_partners(signature[1]))
        return True
