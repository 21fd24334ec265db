"""Storage: the only package with SQL.

`Store` is the interface the engine and the front ends use; `SqliteStore` (aiosqlite,
WAL) is the embedded default. A PostgreSQL adapter would implement the same Protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, NamedTuple, Protocol

from console.model import (
    Call,
    Checkpoint,
    Dependency,
    Event,
    Process,
    ResumeRequest,
    Transfer,
    Turn,
    VoiceRequest,
)


class VoiceLine(NamedTuple):
    """What a list shows of a voice request: its text fields, none of its JSON ones."""

    id: str
    call_id: str
    process_id: str | None
    stage: str
    input_text: str | None
    transcript: str | None
    reply: str | None


class LogLine(NamedTuple):
    """A line a process logged, numbered in the order lines were written."""

    id: int
    process_id: str
    ts: float
    line: str


@dataclass
class WriteBatch:
    """Changes that are committed together. Later changes to the same key replace earlier ones,
    so a burst of transitions of one process costs one row write."""

    processes: dict[str, Process] = field(default_factory=dict)
    requests: dict[str, ResumeRequest | None] = field(default_factory=dict)  # None: delete
    dependencies: list[Dependency] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    logs: list[tuple[str, float, str]] = field(default_factory=list)  # (process, ts, line)
    pools: dict[str, int] = field(default_factory=dict)
    commands_done: dict[int, tuple[str, str]] = field(default_factory=dict)  # id: (status, result)
    calls: dict[str, Call] = field(default_factory=dict)  # upserted (created_at kept)
    turns: list[Turn] = field(default_factory=list)  # appended; the store numbers them per call
    voice_requests: dict[str, VoiceRequest] = field(default_factory=dict)
    transfers: dict[str, Transfer] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (
            self.processes or self.requests or self.dependencies or self.checkpoints
            or self.events or self.logs or self.pools or self.commands_done
            or self.calls or self.turns or self.voice_requests or self.transfers
        )

    def merge(self, other: WriteBatch) -> None:
        self.processes.update(other.processes)
        self.requests.update(other.requests)
        self.dependencies.extend(other.dependencies)
        self.checkpoints.extend(other.checkpoints)
        self.events.extend(other.events)
        self.logs.extend(other.logs)
        self.pools.update(other.pools)
        self.commands_done.update(other.commands_done)
        self.calls.update(other.calls)
        self.turns.extend(other.turns)
        self.voice_requests.update(other.voice_requests)
        self.transfers.update(other.transfers)


@dataclass
class Snapshot:
    """What the engine loads at start."""

    processes: list[Process]
    dependencies: list[Dependency]
    requests: list[ResumeRequest]
    pools: dict[str, int]
    last_event_seq: int
    last_request_seq: int


@dataclass
class LeaseHolder:
    token: str
    pid: int
    host: str
    role: str
    acquired_at: float
    heartbeat_at: float


@dataclass
class Command:
    id: int
    kind: str
    payload: dict[str, Any]
    created_at: float
    status: str = "new"
    result: str | None = None


class Store(Protocol):
    path: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # writes
    async def write(self, batch: WriteBatch) -> None:
        """Commit `batch`; concurrent calls are grouped into one transaction."""

    submitted: int  # write() calls so far; the n-th write is write number n

    def barrier(self, upto: int | None = None) -> Awaitable[None] | None:
        """Done once every write submitted so far (or the first `upto`) is committed; None if
        they are already. A waiter's cancellation must not cancel it (others wait for it too):
        the engine awaits it directly."""

    # ownership
    async def acquire_lease(
        self, holder: LeaseHolder, is_stale: Callable[[LeaseHolder], bool]
    ) -> LeaseHolder | None:
        """Take the lease; returns the live holder instead if someone else has it."""

    async def renew_lease(self, token: str, now: float) -> bool: ...
    async def release_lease(self, token: str) -> None: ...
    async def lease_holder(self) -> LeaseHolder | None: ...

    # state
    async def load_snapshot(self) -> Snapshot: ...
    async def list_processes(self) -> list[Process]: ...
    async def get_process(self, process_id: str) -> Process | None: ...
    async def list_dependencies(self) -> list[Dependency]: ...
    async def list_requests(self) -> list[ResumeRequest]: ...
    async def data_version(self) -> int: ...

    # inbox of actions for the owner
    async def post_command(self, kind: str, payload: dict[str, Any]) -> int: ...
    async def new_commands(self) -> list[Command]: ...
    async def get_command(self, command_id: int) -> Command | None: ...

    # history
    async def events(
        self, process_id: str | None = None, limit: int = 100, before_seq: int | None = None
    ) -> list[Event]: ...
    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]: ...
    async def count_events(self, types: list[str], since: float) -> dict[str, int]: ...
    async def checkpoints(self, process_id: str, limit: int = 20) -> list[Checkpoint]: ...
    async def logs(self, process_id: str, limit: int = 100) -> list[tuple[float, str]]: ...
    async def log_lines(self, after_id: int | None = None, limit: int = 1000) -> list[LogLine]:
        """Every process's log lines in the order written: after line `after_id`, or (None)
        the newest `limit`."""
    async def prune_history(self, before: float, batch_size: int = 5000) -> int: ...
    async def get_request(self, process_id: str) -> ResumeRequest | None: ...

    # calls, voice requests, transfers
    async def get_call(self, call_id: str, turns: int = 50) -> Call | None: ...
    async def list_calls(self, limit: int = 50, offset: int = 0) -> list[Call]: ...
    async def get_voice_request(self, request_id: str) -> VoiceRequest | None: ...
    async def voice_requests(self, call_id: str | None = None, limit: int = 100) -> list[VoiceRequest]: ...
    async def voice_lines(self, limit: int = 100) -> list[VoiceLine]: ...
    async def get_transfer(self, transfer_id: str) -> Transfer | None: ...
    async def list_transfers(
        self, status: str | None = None, limit: int = 50, offset: int = 0, call_id: str | None = None
    ) -> list[Transfer]: ...


def open_store(path: str, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000) -> Store:
    from console.store.sqlite import SqliteStore

    return SqliteStore(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
