"""Registering a workflow: checked whole, applied (in slices when large), committed in one
transaction."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from console.engine.graph import DependencyGraph
from console.engine.journal import Journal, new_event
from console.engine.pacing import TurnShare
from console.engine.placement import Placement
from console.engine.pools import ResourcePools
from console.engine.staging import Staging
from console.engine.workflow import Workflow, check_workflow
from console.model import Dependency, Process, RequestSource, State
from console.store import WriteBatch

# A large workflow is applied in slices of about this long, with the loop running in between
# (1,000 processes took ~35 ms in one step): see `Loader.load`. A sleeping task wakes two turns
# after its time (the timer, then the task), so a waiter can sit through two slices, and other
# work shares those turns. Under the load benchmark (10 interleaved runs each), the heartbeat's
# p99: 4 ms slices ~10+ ms, 2 ms 8.2 ms, 1 ms 6.1 ms (0.5 ms no better); a 1,000-command shell
# DAG and the 10,000-process throughput run take the same time with 1 ms as with 2.
LOAD_SLICE_S = 0.001


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


class Loader:
    """Registers workflows' new processes and queues them (see `load`)."""

    def __init__(self, processes: dict[str, Process], graph: DependencyGraph, pools: ResourcePools,
                 placement: Placement, staging: Staging, journal: Journal, wake: asyncio.Event,
                 slice_s: float = LOAD_SLICE_S):
        self._processes = processes
        self._graph = graph
        self._pools = pools
        self._placement = placement
        self._staging = staging
        self._journal = journal
        self._wake = wake
        self._slice_s = slice_s
        # loads share turns of the loop, in the order they come; while one is applied in slices,
        # the others wait for its end (its write's submission)
        self._turns = TurnShare(slice_s)
        self.in_slices: set[asyncio.Task[LoadResult]] = set()  # finished (committed) by stop()

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
            new, new_deps = check_workflow(wf, self._processes, self._graph, self._pools.sizes)
            result = LoadResult(existing=[p.id for p in wf.processes if p.id in self._processes])
            b = extra or WriteBatch()
            self._staging.loading.update(p.id for p in new)
            steps = self._steps(wf, new, new_deps, b, result, began + self._slice_s)
            try:
                sliced = next(steps, False)
            except BaseException:
                self._end(new, b, failed=True)
                raise
        finally:
            self._turns.leave()
        if sliced:
            self._turns.block()  # until _end
            task = asyncio.create_task(self._rest(steps, new, b, result), name=f"load:{wf.source}")
            self.in_slices.add(task)
            task.add_done_callback(self.in_slices.discard)
            return await asyncio.shield(task)
        await self._journal.commit(b)
        return result

    async def _rest(self, steps: Iterable[bool], new: list[Process], b: WriteBatch,
                    result: LoadResult) -> LoadResult:
        try:
            for _ in steps:
                await asyncio.sleep(0)
        except BaseException:
            self._end(new, b, failed=True)
            raise
        await self._journal.commit(b)
        return result

    def _steps(self, wf: Workflow, new: list[Process], new_deps: list[Dependency], b: WriteBatch,
               result: LoadResult, deadline: float) -> Iterator[bool]:
        """Applies a checked workflow, yielding each time a slice has taken its time (the
        first ends at `deadline`). Its last step ends the load (_end), right before the
        caller submits the write."""
        clock = time.perf_counter
        slice_s = self._slice_s
        loading = self._staging.loading
        placement = self._placement
        b.pools.update(wf.resources)
        self._pools.resize(wf.resources)
        now = time.time()
        # 1. registered, pending: no request and no edge yet, so nothing acts on them
        for i, p in enumerate(new):
            p.state, p.created_at, p.updated_at = State.PENDING, now, now
            self._processes[p.id] = p
            b.processes[p.id] = p
            b.events.append(new_event(p.id, "registered", f"{p.kind} from {wf.source}",
                                      {"priority": p.priority.value}))
            result.added.append(p.id)
            if i % 32 == 31 and clock() > deadline:
                yield True
                deadline = clock() + slice_s
        # 2. the edges of new dependents (an edge onto a process that was there already changes
        # where that one belongs: it waits for the last step)
        onto_existing: list[Dependency] = []
        for i, d in enumerate(new_deps):
            if d.dependent in loading:
                self._graph.add(d)
                b.dependencies.append(d)
            else:
                onto_existing.append(d)
            if i % 64 == 63 and clock() > deadline:
                yield True
                deadline = clock() + slice_s
        result.dependencies_added = len(new_deps)
        # 3. the new processes' requests, placed; those ready are held (Placement.place) until the end
        to_place = [p.id for p in new if p.id not in wf.held]
        for start in range(0, len(to_place), 32):
            chunk = to_place[start:start + 32]
            for pid in chunk:
                placement.request(self._processes[pid], RequestSource.WORKFLOW, b)
            self._place_own(chunk, b)
            if clock() > deadline and start + 32 < len(to_place):
                yield True
                deadline = clock() + slice_s
        # 4. in one step: the remaining edges, with the new placement of their dependents, the
        # new processes others asked to re-place meanwhile, and the load's end
        for d in onto_existing:
            self._graph.add(d)
            b.dependencies.append(d)
        recheck = self._staging.recheck
        again = {pid: None for pid in sorted(recheck) if pid in loading}
        again.update((d.dependent, None) for d in onto_existing if d.dependent in placement.requests)
        # a new process at the other end may now never run with the one already there (a
        # `resource` edge): placed again, its signature says so
        again.update((d.dependency, None) for d in onto_existing if d.dependency in loading)
        recheck.difference_update(again)
        self._place_own(again, b)
        self._end(new, b)

    def _place_own(self, ids: Iterable[str], b: WriteBatch) -> None:
        self._staging.placing_own = True
        try:
            self._placement.reconsider(ids, b)
        finally:
            self._staging.placing_own = False

    def _end(self, new: list[Process], b: WriteBatch, failed: bool = False) -> None:
        """The load's last step, right before its write is submitted (or its failure): its
        processes become visible to operators and those ready are released to the dispatcher,
        as made ready by this write (the Journal numbers it, and they wait for its commit)."""
        staging = self._staging
        placed: list[str] = []
        for p in new:
            staging.loading.discard(p.id)
            staging.recheck.discard(p.id)
            signature = staging.held.pop(p.id, None)
            if signature is not None and not failed:
                self._placement.ready.push(self._placement.requests[p.id], signature)
                placed.append(p.id)
        if failed:
            self._journal.forget_ready(b)
        elif placed:
            self._journal.made_ready(b, placed)
        self._wake.set()
        if self._turns.blocked:  # a load in slices ends: the others go on (after its submission)
            self._turns.unblock()
