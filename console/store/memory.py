"""An adapter that keeps the database in memory: the whole `Store`, no SQL, no file.

For fast tests of code that does not care which database is behind the ports. A
`MemoryDatabase` is what a file is to SqliteStore: several `MemoryStore` connections to one
share it, see each other's commits and outlive each other (it lasts as long as the object).

Each write is one transaction, committed as soon as `write` is called (before it first
suspends), so `barrier` always answers None. Rows are stored as copies and JSON values as JSON,
so a reader never sees a change made to an object after it was written, as with SQLite.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any

from console.errors import LeaseLost, WriteRejected
from console.model import (
    Call,
    Checkpoint,
    Dependency,
    Event,
    Interruption,
    Metrics,
    Process,
    ResumeRequest,
    Transfer,
    Turn,
    VoiceRequest,
    json_text,
)
from console.store.ports import CHECKPOINTS_KEPT, Command, LeaseHolder, LogLine, Snapshot, VoiceLine, WriteBatch


def _json(value: Any) -> Any:
    """`value` as the store gives it back: through JSON, as written (model.json_text)."""
    return None if value is None else json.loads(json_text(value))


def _process(p: Process) -> Process:
    i = p.interruption
    return replace(
        p, spec=_json(p.spec), resources=_json(p.resources), checkpoint=_json(p.checkpoint),
        interruption=None if i is None else Interruption(i.type, i.message, i.occurred_at, i.retry_at),
        metrics=replace(p.metrics) if isinstance(p.metrics, Metrics) else p.metrics,
    )


def _event(e: Event) -> Event:
    return Event(e.seq, e.ts, e.process_id, e.type, e.message, _json(e.data) or None)


def _voice(v: VoiceRequest) -> VoiceRequest:
    return replace(v, latency_ms=_json(v.latency_ms), usage=_json(v.usage))


def _transfer(t: Transfer) -> Transfer:
    return replace(t, summary=_json(t.summary))


@dataclass
class _CommandRow:
    command: Command
    handled_at: float | None = None


@dataclass
class MemoryDatabase:
    """The shared state. Only MemoryStore reads or changes it."""

    processes: dict[str, Process] = field(default_factory=dict)
    dependencies: dict[tuple[str, str], Dependency] = field(default_factory=dict)
    requests: dict[str, ResumeRequest] = field(default_factory=dict)
    checkpoints: dict[str, dict[int, Checkpoint]] = field(default_factory=dict)
    events: dict[int, Event] = field(default_factory=dict)  # by seq
    logs: list[tuple[str, float, str]] = field(default_factory=list)  # in the order written
    log_ids: list[int] = field(default_factory=list)  # each line's number, beside it in `logs`
    last_log_id: int = 0
    pools: dict[str, int] = field(default_factory=dict)
    lease: LeaseHolder | None = None
    commands: dict[int, _CommandRow] = field(default_factory=dict)
    last_command_id: int = 0
    calls: dict[str, tuple[float, float]] = field(default_factory=dict)  # id: (created_at, updated_at)
    turns: dict[str, list[Turn]] = field(default_factory=dict)  # by call, in seq order
    voice_requests: dict[str, VoiceRequest] = field(default_factory=dict)
    transfers: dict[str, Transfer] = field(default_factory=dict)
    commits: int = 0  # transactions that changed something, by any connection


class MemoryStore:
    """A connection to a MemoryDatabase (a new one of its own if none is given)."""

    def __init__(self, database: MemoryDatabase | None = None, path: str = ":memory:"):
        self.database = database if database is not None else MemoryDatabase()
        self.path = path
        self.submitted = 0
        self._own_commits = 0
        self._open = False
        self._lease_token: str | None = None  # the lease this connection took: its writes carry it

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _db(self) -> MemoryDatabase:
        if not self._open:
            raise RuntimeError("store is not open")
        return self.database

    def _committed(self) -> None:
        self.database.commits += 1
        self._own_commits += 1

    async def change_marker(self) -> Hashable:
        """The number of commits other connections have made (as SQLite's data_version, this
        connection's own commits leave it alone)."""
        return self._db().commits - self._own_commits

    # -- writes -------------------------------------------------------------------------------

    async def write(self, batch: WriteBatch) -> None:
        if batch.empty():
            return
        db = self._db()
        self.submitted += 1
        lease = batch.lease or self._lease_token
        if lease is not None and (db.lease is None or db.lease.token != lease):
            raise LeaseLost("this writer's lease was taken over; nothing of the write was committed")
        _check(db, batch)
        _apply(db, batch)
        self._committed()
        await asyncio.sleep(0)  # a write suspends, as every adapter's does

    def barrier(self, upto: int | None = None) -> Awaitable[None] | None:
        return None  # every write is committed before `write` first suspends

    # -- leases -------------------------------------------------------------------------------

    async def acquire_lease(
        self, holder: LeaseHolder, is_stale: Callable[[LeaseHolder], bool]
    ) -> LeaseHolder | None:
        db = self._db()
        current = db.lease
        if current is not None and current.token != holder.token and not is_stale(replace(current)):
            return replace(current)
        db.lease = replace(holder)
        self._lease_token = holder.token
        self._committed()
        return None

    async def renew_lease(self, token: str, now: float) -> bool:
        db = self._db()
        if db.lease is None or db.lease.token != token:
            return False
        db.lease.heartbeat_at = now
        self._committed()
        return True

    async def release_lease(self, token: str) -> None:
        db = self._db()
        if db.lease is not None and db.lease.token == token:
            db.lease = None
            self._committed()

    async def lease_holder(self) -> LeaseHolder | None:
        lease = self._db().lease
        return None if lease is None else replace(lease)

    # -- state ----------------------------------------------------------------------------------

    async def load_snapshot(self) -> Snapshot:
        db = self._db()
        return Snapshot(
            await self.list_processes(), await self.list_dependencies(), await self.list_requests(),
            dict(db.pools), max(db.events, default=0), max((r.seq for r in db.requests.values()), default=0),
        )

    async def list_processes(self) -> list[Process]:
        return [_process(p) for p in sorted(self._db().processes.values(), key=lambda p: (p.created_at, p.id))]

    async def get_process(self, process_id: str) -> Process | None:
        p = self._db().processes.get(process_id)
        return None if p is None else _process(p)

    async def list_dependencies(self) -> list[Dependency]:
        return [replace(d) for d in self._db().dependencies.values()]

    async def list_requests(self) -> list[ResumeRequest]:
        return [replace(r) for r in sorted(self._db().requests.values(), key=lambda r: r.seq)]

    async def get_request(self, process_id: str) -> ResumeRequest | None:
        r = self._db().requests.get(process_id)
        return None if r is None else replace(r)

    # -- inbox ------------------------------------------------------------------------------------

    async def post_command(self, kind: str, payload: dict[str, Any]) -> int:
        db = self._db()
        db.last_command_id += 1
        db.commands[db.last_command_id] = _CommandRow(Command(db.last_command_id, kind, _json(payload), time.time()))
        self._committed()
        return db.last_command_id

    async def new_commands(self) -> list[Command]:
        rows = sorted(self._db().commands.values(), key=lambda r: r.command.id)
        return [replace(r.command, payload=_json(r.command.payload)) for r in rows if r.command.status == "new"]

    async def get_command(self, command_id: int) -> Command | None:
        row = self._db().commands.get(command_id)
        return None if row is None else replace(row.command, payload=_json(row.command.payload))

    # -- history ----------------------------------------------------------------------------------

    async def events(
        self, process_id: str | None = None, limit: int = 100, before_seq: int | None = None
    ) -> list[Event]:
        chosen = [e for seq, e in sorted(self._db().events.items())
                  if (process_id is None or e.process_id == process_id) and (before_seq is None or seq < before_seq)]
        return [_event(e) for e in chosen[max(0, len(chosen) - limit):]]

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        return [_event(e) for s, e in sorted(self._db().events.items()) if s > seq][:limit]

    async def count_events(self, types: list[str], since: float) -> dict[str, int]:
        ordered = [e for _, e in sorted(self._db().events.items())]
        start = 0
        for i in range(len(ordered) - 1, -1, -1):  # after the newest event older than `since`
            if ordered[i].ts < since:
                start = i + 1
                break
        counts: dict[str, int] = {}
        for e in ordered[start:]:
            if e.type in types:
                counts[e.type] = counts.get(e.type, 0) + 1
        return counts

    async def checkpoints(self, process_id: str, limit: int = 20) -> list[Checkpoint]:
        kept = sorted(self._db().checkpoints.get(process_id, {}).items())
        return [replace(c, data=_json(c.data)) for _, c in kept[max(0, len(kept) - limit):]]

    async def log_lines(self, after_id: int | None = None, limit: int = 1000) -> list[LogLine]:
        db = self._db()
        lines = [LogLine(n, pid, ts, line) for n, (pid, ts, line) in zip(db.log_ids, db.logs)]
        if after_id is None:
            return lines[max(0, len(lines) - limit):]
        return [x for x in lines if x.id > after_id][:limit]

    async def logs(self, process_id: str, limit: int = 100) -> list[tuple[float, str]]:
        lines = [(ts, line) for pid, ts, line in self._db().logs if pid == process_id]
        return lines[max(0, len(lines) - limit):]

    async def prune_history(self, before: float, batch_size: int = 5000) -> int:
        db = self._db()
        newest = max(db.events, default=None)
        old_events = [seq for seq, e in db.events.items() if e.ts < before and seq != newest]
        for seq in old_events:
            del db.events[seq]
        kept = [(n, entry) for n, entry in zip(db.log_ids, db.logs) if entry[1] >= before]
        pruned_logs = len(db.logs) - len(kept)
        db.log_ids = [n for n, _ in kept]
        db.logs = [entry for _, entry in kept]
        old_commands = [cid for cid, r in db.commands.items()
                        if r.command.status != "new" and r.handled_at is not None and r.handled_at < before]
        for cid in old_commands:
            del db.commands[cid]
        if old_events or pruned_logs or old_commands:
            self._committed()
        return len(old_events) + pruned_logs

    # -- calls, voice requests, transfers -----------------------------------------------------------

    async def get_call(self, call_id: str, turns: int = 50) -> Call | None:
        db = self._db()
        row = db.calls.get(call_id)
        if row is None:
            return None
        all_turns = db.turns.get(call_id, [])
        listed = [replace(t) for t in all_turns[max(0, len(all_turns) - turns):]] if turns > 0 else []
        return Call(call_id, row[0], row[1], listed, len(all_turns), listed[-1] if listed else None)

    async def list_calls(self, limit: int = 50, offset: int = 0) -> list[Call]:
        db = self._db()
        newest = sorted(db.calls.items(), key=lambda item: item[1][1], reverse=True)[offset:offset + limit]
        calls = []
        for call_id, (created_at, updated_at) in newest:
            turns = db.turns.get(call_id, [])
            calls.append(Call(call_id, created_at, updated_at, [], len(turns), replace(turns[-1]) if turns else None))
        return calls

    async def get_voice_request(self, request_id: str) -> VoiceRequest | None:
        v = self._db().voice_requests.get(request_id)
        return None if v is None else _voice(v)

    def _newest_voice(self, call_id: str | None, limit: int) -> list[VoiceRequest]:
        chosen = [v for v in self._db().voice_requests.values() if call_id is None or v.call_id == call_id]
        return sorted(chosen, key=lambda v: v.created_at, reverse=True)[:limit]

    async def voice_requests(self, call_id: str | None = None, limit: int = 100) -> list[VoiceRequest]:
        return [_voice(v) for v in self._newest_voice(call_id, limit)]

    async def voice_lines(self, limit: int = 100) -> list[VoiceLine]:
        return [VoiceLine(v.id, v.call_id, v.process_id, v.stage, v.input_text, v.transcript, v.reply)
                for v in self._newest_voice(None, limit)]

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        t = self._db().transfers.get(transfer_id)
        return None if t is None else _transfer(t)

    async def list_transfers(
        self, status: str | None = None, limit: int = 50, offset: int = 0, call_id: str | None = None
    ) -> list[Transfer]:
        chosen = [t for t in self._db().transfers.values()
                  if (status is None or t.status.value == status) and (call_id is None or t.call_id == call_id)]
        chosen.sort(key=lambda t: t.created_at, reverse=True)
        return [_transfer(t) for t in chosen[offset:offset + limit]]


def _check(db: MemoryDatabase, b: WriteBatch) -> None:
    """Refuse a batch that refers to a process or call neither stored nor in the batch (as
    SQLite's foreign keys do), before any of it is applied."""
    processes = db.processes.keys() | b.processes.keys()
    calls = db.calls.keys() | b.calls.keys()
    for d in b.dependencies:
        for pid in (d.dependent, d.dependency):
            if pid not in processes:
                raise WriteRejected(f"dependency {d.dependent} -> {d.dependency}: no process {pid!r}")
    for pid, r in b.requests.items():
        if r is not None and pid not in processes:
            raise WriteRejected(f"resume request: no process {pid!r}")
    for c in b.checkpoints:
        if c.process_id not in processes:
            raise WriteRejected(f"checkpoint: no process {c.process_id!r}")
    for record in [*b.turns, *b.voice_requests.values(), *b.transfers.values()]:
        if record.call_id not in calls:
            raise WriteRejected(f"{type(record).__name__.lower()}: no call {record.call_id!r}")
    for e in b.events:
        if e.seq in db.events:
            raise WriteRejected(f"event number {e.seq} is taken")
    numbers = [e.seq for e in b.events]
    if len(set(numbers)) != len(numbers):
        raise WriteRejected("two events in the batch have one number")


def _apply(db: MemoryDatabase, b: WriteBatch) -> None:
    for p in b.processes.values():
        db.processes[p.id] = _process(p)
    for d in b.dependencies:
        db.dependencies.setdefault((d.dependent, d.dependency), replace(d))
    for pid, r in b.requests.items():
        if r is None:
            db.requests.pop(pid, None)
        else:
            db.requests[pid] = replace(r)
    newest: dict[str, int] = {}
    for c in b.checkpoints:
        db.checkpoints.setdefault(c.process_id, {})[c.seq] = replace(c, data=_json(c.data))
        newest[c.process_id] = max(newest.get(c.process_id, 0), c.seq)
    for pid, seq in newest.items():
        kept = db.checkpoints[pid]
        for old in [s for s in kept if s <= seq - CHECKPOINTS_KEPT]:
            del kept[old]
    for e in b.events:
        db.events[e.seq] = _event(e)
    db.logs.extend(b.logs)
    db.log_ids.extend(range(db.last_log_id + 1, db.last_log_id + 1 + len(b.logs)))
    db.last_log_id += len(b.logs)
    db.pools.update(b.pools)
    for c in b.calls.values():
        stored = db.calls.get(c.id)
        db.calls[c.id] = (c.created_at if stored is None else stored[0], c.updated_at)
    for t in b.turns:
        turns = db.turns.setdefault(t.call_id, [])
        turns.append(replace(t, seq=len(turns) + 1))
    for v in b.voice_requests.values():
        db.voice_requests[v.id] = _voice(v)
    for t in b.transfers.values():
        db.transfers[t.id] = _transfer(t)
    now = time.time()
    for cid, (status, result) in b.commands_done.items():
        row = db.commands.get(cid)
        if row is not None:
            row.command = replace(row.command, status=status, result=result)
            row.handled_at = now
