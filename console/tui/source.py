"""Where the console's panes get their data, and how its actions are carried out.

`LiveSource`: this console owns the database and runs the engine on its own loop; panes
read the engine's memory. `StoreSource`: another process owns it (or the console is
read-only); panes read a snapshot reloaded when the database changes, and actions go
through the owner's inbox, exactly as the CLI's do."""

from __future__ import annotations

import time
from typing import Any

from console.engine.graph import DependencyGraph
from console.engine.orchestrator import Orchestrator
from console.model import Event, Process, ResumeRequest, State, UserError
from console.settings import Settings
from console.store import Command, LeaseHolder, Store


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
        order = {State.FAILED: 0, State.INTERRUPTED: 1, State.BLOCKED: 2, State.CANCELLED: 3, State.PENDING: 4}
        out = [p for p in self.processes.values() if p.state in order and p.id not in self.requests]
        return sorted(out, key=lambda p: (order[p.state], -p.updated_at))

    async def act(self, kind: str, payload: dict[str, Any]) -> str:
        raise NotImplementedError


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
    def __init__(self, store: Store, settings: Settings, owner: LeaseHolder | None, read_only: bool):
        self.store = store
        self.settings = settings
        self.owner = owner
        self.read_only = read_only
        self.processes = {}
        self.requests = {}
        self.graph = DependencyGraph()
        self._version: int | None = None
        self._last_seq = 0

    async def refresh(self) -> bool:
        """Reload if another process changed the database. Returns whether it did."""
        version = await self.store.data_version()
        if version == self._version:
            return False
        self._version = version
        snapshot = await self.store.load_snapshot()
        self.processes = {p.id: p for p in snapshot.processes}
        self.requests = {r.process_id: r for r in snapshot.requests}
        graph = DependencyGraph()
        for d in snapshot.dependencies:
            graph.add(d)
        self.graph = graph
        self.owner = await self.store.lease_holder()
        return True

    async def new_events(self, first: bool = False) -> list[Event]:
        if first:
            events = await self.store.events(limit=500)
        else:
            events = await self.store.events_after(self._last_seq, limit=5000)
        if events:
            self._last_seq = events[-1].seq
        return events

    async def act(self, kind: str, payload: dict[str, Any]) -> str:
        if self.read_only:
            raise UserError("this console is read-only")
        from console.control import act

        status, message = await act(self.store, self.settings, kind, payload)
        if status != "done":
            raise UserError(message)
        return message
