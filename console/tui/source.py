"""Where the console's panes get their data, and how its actions are carried out.

`LiveSource`: this console owns the database and runs the engine on its own loop; panes
read the engine's memory. `StoreSource`: another process owns it (or the console is
read-only); panes read a snapshot reloaded when the database changes, and actions go
through the owner's inbox, exactly as the CLI's do."""

from __future__ import annotations

import time
from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any, Callable, overload

from console.engine.graph import DependencyGraph
from console.engine.orchestrator import Orchestrator, lease_is_stale
from console.model import Call, Checkpoint, Event, Process, ResumeRequest, State, Transfer, UserError
from console.settings import Settings
from console.store import Command, LeaseHolder, Store, VoiceLine


EVENTS_AT_START = 500  # an observer's feed starts with the most recent events
EVENTS_PER_POLL = 5000
OPERATOR_ORDER = {State.FAILED: 0, State.INTERRUPTED: 1, State.BLOCKED: 2, State.CANCELLED: 3, State.PENDING: 4}


class Source:
    processes: dict[str, Process]
    requests: dict[str, ResumeRequest]
    graph: DependencyGraph
    store: Store
    owner: LeaseHolder | None = None
    read_only: bool = False

    def queue(self) -> list[Process]:
        """Processes holding a resume request, in dispatch order."""
        ordered = sorted(self.requests.values(), key=ResumeRequest.sort_key)
        return [self.processes[r.process_id] for r in ordered if r.process_id in self.processes]

    def running(self) -> list[Process]:
        return [p for p in self.processes.values() if p.state is State.RUNNING]

    def needs_operator(self) -> list[Process]:
        """Stopped work nobody will restart by itself."""
        out = [p for p in self.processes.values() if p.state in OPERATOR_ORDER and p.id not in self.requests]
        return sorted(out, key=lambda p: (OPERATOR_ORDER[p.state], -p.updated_at))

    def queue_key(self, p: Process, with_completed: bool = False) -> tuple[Any, ...] | None:
        """Where a process stands in the queue pane: requests in dispatch order, then stopped
        work that needs an operator, then (when asked) completed work, newest first."""
        req = self.requests.get(p.id)
        if req is not None:
            return (0, *req.sort_key())
        rank = OPERATOR_ORDER.get(p.state)
        if rank is not None:
            return (1, rank, -p.updated_at)
        if with_completed and p.state is State.COMPLETED:
            return (2, -p.updated_at)
        return None

    async def act(self, kind: str, payload: dict[str, Any]) -> str:
        raise NotImplementedError

    # -- reads of the database: the console's only way to it (its panes and dialogs) ----------------

    async def recent_events(self, limit: int) -> list[Event]:
        return await self.store.events(limit=limit)

    async def process_history(self, process_id: str, limit: int) -> list[Event]:
        return await self.store.events(process_id=process_id, limit=limit)

    async def checkpoints(self, process_id: str, limit: int) -> list[Checkpoint]:
        return await self.store.checkpoints(process_id, limit=limit)

    async def logs(self, process_id: str, limit: int) -> list[tuple[float, str]]:
        return await self.store.logs(process_id, limit=limit)

    async def calls(self, limit: int) -> list[Call]:
        return await self.store.list_calls(limit=limit)

    async def call(self, call_id: str, turns: int) -> Call | None:
        return await self.store.get_call(call_id, turns=turns)

    async def transfers(self, limit: int) -> list[Transfer]:
        return await self.store.list_transfers(limit=limit)

    async def transfer(self, transfer_id: str) -> Transfer | None:
        return await self.store.get_transfer(transfer_id)

    async def voice_lines(self, limit: int) -> list[VoiceLine]:
        return await self.store.voice_lines(limit=limit)


async def open_database(settings: Settings) -> Store:
    """The console's connection to its database, opened: one for the console's whole life,
    shared by the engine it may run and the Source its panes read through."""
    from console.store import open_store

    store = open_store(str(settings.db_path), settings.store.synchronous, settings.store.busy_timeout_ms)
    await store.open()
    return store


async def close_database(store: Store) -> None:
    await store.close()


class LiveSource(Source):
    def __init__(self, engine: Orchestrator):
        self.engine = engine
        self.store = engine.store
        self.processes = engine.processes
        self.requests = engine.requests
        self.graph = engine.graph

    def running(self) -> list[Process]:
        return self.engine.running()

    async def act(self, kind: str, payload: dict[str, Any]) -> str:
        status, message = await self.engine.execute(Command(0, kind, payload, time.time()))
        if status != "done":
            raise UserError(message)
        return message


class StoreSource(Source):
    """Another process owns the database: a snapshot reloaded when the database changes, and
    an event feed as the owner's console shows it. The owner persists state changes as
    events but keeps progress and log notices in memory; here log notices come from the log
    lines it writes, and progress notices from the progress each reload finds changed."""

    def __init__(self, store: Store, settings: Settings, owner: LeaseHolder | None, read_only: bool):
        self.store = store
        self.settings = settings
        self.owner = owner  # the live owner, None when no engine runs this database
        self.last_owner = owner  # the most recent live owner seen, to name it once it is gone
        self.read_only = read_only
        self.processes = {}
        self.requests = {}
        self.graph = DependencyGraph()
        self._version: int | None = None
        self._last_seq = 0
        self._last_log = 0  # the id of the last log line fed
        self._notices: list[Event] = []  # progress seen since the last feed
        # Notices made here are numbered down from -1: never an engine event's number.
        self._notice_seq = 0

    async def refresh(self) -> bool:
        """Reload if another process changed the database. Returns whether it did."""
        version = await self.store.change_marker()
        if version == self._version:
            return False
        first = self._version is None
        self._version = version
        snapshot = await self.store.load_snapshot()
        processes = {p.id: p for p in snapshot.processes}
        if not first:
            self._note_progress(self.processes, processes)
        self.processes = processes
        self.requests = {r.process_id: r for r in snapshot.requests}
        graph = DependencyGraph()
        for d in snapshot.dependencies:
            graph.add(d)
        self.graph = graph
        await self.check_owner()
        return True

    async def check_owner(self) -> bool:
        """Whether a live process owns the database now (so its engine runs queued work)."""
        holder = await self.store.lease_holder()
        if holder is not None and lease_is_stale(holder, self.settings.engine.lease_ttl_s):
            holder = None
        self.owner = holder
        if holder is not None:
            self.last_owner = holder
        return holder is not None

    def _note_progress(self, before: dict[str, Process], after: dict[str, Process]) -> None:
        """A progress notice for each process that reported since the last reload: a new
        checkpoint, or new progress while it runs (the owner's notice at each report)."""
        for p in after.values():
            old = before.get(p.id)
            if old is None:
                continue
            checkpoint = p.checkpoint_seq != old.checkpoint_seq
            if checkpoint or (p.progress != old.progress and p.state is State.RUNNING):
                self._notices.append(self._notice(p.updated_at, p.id, "progress", "",
                                                  {"progress": round(p.progress, 1), "checkpoint": checkpoint}))

    def _notice(self, ts: float, pid: str, type_: str, message: str, data: dict[str, Any] | None = None) -> Event:
        self._notice_seq -= 1
        return Event(self._notice_seq, ts, pid, type_, message, data)

    async def new_events(self, first: bool = False) -> list[Event]:
        """What happened since the last call, in time order: the history's events, log lines
        and progress notices. `first`: the most recent of them instead."""
        if first:
            events = await self.store.events(limit=EVENTS_AT_START)
            lines = await self.store.log_lines(limit=EVENTS_AT_START)
        else:
            events = await self.store.events_after(self._last_seq, limit=EVENTS_PER_POLL)
            lines = await self.store.log_lines(self._last_log, limit=EVENTS_PER_POLL)
        if events:
            self._last_seq = events[-1].seq
        if lines:
            self._last_log = lines[-1].id
        notices, self._notices = self._notices, []
        notices += [self._notice(line.ts, line.process_id, "log", line.line) for line in lines]
        if not notices:
            return events
        merged = sorted([*events, *notices], key=lambda e: e.ts)  # stable: the history's order kept
        return merged[-EVENTS_AT_START:] if first else merged

    async def act(self, kind: str, payload: dict[str, Any]) -> str:
        if self.read_only:
            raise UserError("this console is read-only")
        from console.control import act

        status, message = await act(self.store, self.settings, kind, payload)
        if status != "done":
            raise UserError(message)
        return message


class OrderedView(Sequence[Process]):
    """Some of the processes, in an order, kept sorted by placing again only the processes
    that changed since the last refresh: re-sorting 10,000 on every refresh cost ~10 ms
    of loop time. `key(process)` is its place, or None when it is not in the view."""

    def __init__(self, processes: dict[str, Process], key: Callable[[Process], Any]) -> None:
        self._processes = processes
        self._key = key
        self._sorted: list[tuple[Any, str]] = []
        self._placed: dict[str, tuple[Any, str]] = {}
        self.rebuild(processes)

    def rebuild(self, processes: dict[str, Process]) -> None:
        self._processes = processes
        entries = ((self._key(p), p.id) for p in processes.values())
        self._sorted = sorted(e for e in entries if e[0] is not None)
        self._placed = {pid: (k, pid) for k, pid in self._sorted}

    def update(self, pids: Iterable[str]) -> None:
        for pid in pids:
            old = self._placed.pop(pid, None)
            if old is not None:
                del self._sorted[bisect_left(self._sorted, old)]
            p = self._processes.get(pid)
            key = self._key(p) if p is not None else None
            if key is not None:
                entry = (key, pid)
                insort(self._sorted, entry)
                self._placed[pid] = entry

    def snapshot(self) -> "OrderedSnapshot":
        """The order as it is now, unchanged by later updates: what a list is handed (a copy
        of the entries, not of the processes)."""
        return OrderedSnapshot(self._processes, list(self._sorted), self._placed)

    def __len__(self) -> int:
        return len(self._sorted)

    @overload
    def __getitem__(self, index: int) -> Process: ...
    @overload
    def __getitem__(self, index: slice) -> list[Process]: ...
    def __getitem__(self, index: int | slice) -> Process | list[Process]:
        if isinstance(index, slice):
            return [self._processes[pid] for _, pid in self._sorted[index]]
        return self._processes[self._sorted[index][1]]


class OrderedSnapshot(Sequence[Process]):
    """An OrderedView's order at one moment: a copy of its entries (a list of pointers, cheap),
    not of the processes."""

    def __init__(self, processes: dict[str, Process], entries: list[tuple[Any, str]],
                 live_places: dict[str, tuple[Any, str]]) -> None:
        self._processes = processes
        self._sorted = entries
        self._live_places = live_places  # the view's, which may have moved on since

    def index_of(self, pid: str) -> int | None:
        entry = self._live_places.get(pid)
        if entry is not None:  # most processes have not moved since: found by bisection
            i = bisect_left(self._sorted, entry)
            if i < len(self._sorted) and self._sorted[i][1] == pid:
                return i
        return next((i for i, (_, placed) in enumerate(self._sorted) if placed == pid), None)

    def __len__(self) -> int:
        return len(self._sorted)

    @overload
    def __getitem__(self, index: int) -> Process: ...
    @overload
    def __getitem__(self, index: slice) -> list[Process]: ...
    def __getitem__(self, index: int | slice) -> Process | list[Process]:
        if isinstance(index, slice):
            return [self._processes[pid] for _, pid in self._sorted[index]]
        return self._processes[self._sorted[index][1]]


class StateCounts:
    """Processes per state for the header, kept up to date from the processes that changed."""

    def __init__(self, processes: dict[str, Process]) -> None:
        self.rebuild(processes)

    def rebuild(self, processes: dict[str, Process]) -> None:
        self._processes = processes
        self._state = {pid: p.state for pid, p in processes.items()}
        self.counts: Counter[State] = Counter(self._state.values())

    def update(self, pids: Iterable[str]) -> None:
        for pid in pids:
            p = self._processes.get(pid)
            old = self._state.get(pid)
            new = p.state if p is not None else None
            if old is not new:
                if old is not None:
                    self.counts[old] -= 1
                if new is not None:
                    self.counts[new] += 1
                    self._state[pid] = new
                else:
                    self._state.pop(pid, None)


class GraphLayout:
    """The whole dependency graph as rows, each process under what it depends on, by depth
    (the longest path from a root), roots first. Built once in O(V + E); processes added
    later (a voice request, a transfer) are placed by their own edges alone, so a new call
    beside 10,000 processes costs microseconds, not a ~90 ms rebuild. States are not kept
    here: rows are looked up as they render."""

    def __init__(self) -> None:
        self._for: int | None = None  # id() of the processes dict it was built from
        self._edges = 0
        self._depth: dict[str, int] = {}
        self._keys: list[tuple[int, float, str]] = []
        self.rows: list[tuple[str, str, str]] = []

    def sync(self, processes: dict[str, Process], graph: DependencyGraph) -> list[tuple[str, str, str]]:
        if self._for != id(processes):
            self._rebuild(processes, graph)
            return self.rows
        new = [processes[pid] for pid in processes.keys() - self._depth.keys()]
        if not new and len(graph) == self._edges:
            return self.rows
        new.sort(key=lambda p: p.created_at)
        if self._edges + sum(len(graph.upstream(p.id)) for p in new) != len(graph):
            self._rebuild(processes, graph)  # an edge between processes placed already
            return self.rows
        for p in new:
            ups = [d.dependency for d in graph.upstream(p.id) if d.type.orders]
            if any(u not in self._depth for u in ups):
                self._rebuild(processes, graph)
                return self.rows
            self._place(p, graph, 1 + max((self._depth[u] for u in ups), default=-1))
        self._edges = len(graph)
        return self.rows

    def _place(self, p: Process, graph: DependencyGraph, depth: int) -> None:
        self._depth[p.id] = depth
        key = (depth, p.created_at, p.id)
        i = bisect_left(self._keys, key)
        self._keys.insert(i, key)
        ups = [d.dependency for d in graph.upstream(p.id)]
        self.rows.insert(i, ("  " * min(depth, 8), p.id, f"← {', '.join(ups)}" if ups else "root"))

    def _rebuild(self, processes: dict[str, Process], graph: DependencyGraph) -> None:
        depth: dict[str, int] = {}
        pending = {pid: sum(1 for d in graph.upstream(pid) if d.type.orders) for pid in processes}
        ready = deque(pid for pid, n in pending.items() if n == 0)
        for pid in ready:
            depth[pid] = 0
        while ready:
            pid = ready.popleft()
            for d in graph.downstream(pid):
                if not d.type.orders or d.dependent not in pending:
                    continue
                depth[d.dependent] = max(depth.get(d.dependent, 0), depth[pid] + 1)
                pending[d.dependent] -= 1
                if pending[d.dependent] == 0:
                    ready.append(d.dependent)
        self._for, self._edges = id(processes), len(graph)
        self._depth, self._keys, self.rows = {}, [], []
        for p in sorted(processes.values(), key=lambda p: (depth.get(p.id, 0), p.created_at, p.id)):
            d = depth.get(p.id, 0)
            self._depth[p.id] = d
            self._keys.append((d, p.created_at, p.id))
            ups = [e.dependency for e in graph.upstream(p.id)]
            self.rows.append(("  " * min(d, 8), p.id, f"← {', '.join(ups)}" if ups else "root"))
