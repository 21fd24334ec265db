"""The storage ports: what the engine and the front ends may ask of a database.

Each port is a Protocol an adapter implements; `Store` is all of them, the surface an adapter
offers whole (`SqliteStore`, `PostgresStore`, `MemoryStore`). A user names
the narrowest port it needs, so what it depends on is written down and a test can hand it any
adapter.

Words used in the contracts:

* committed: durable to the adapter's own standard (its module says which) and visible to
  every other connection to the same database from then on. A read never sees part of a write batch.
* connection: one adapter object after `open()`. Two connections to one database (two
  processes, or two objects in one process) see each other's commits.
* newest `limit`, in order: the last `limit` items by their order, returned oldest first.

Values in JSON fields (a process's spec, a checkpoint's data, an event's data, a command's
payload, ...) are stored as JSON: reads return JSON-equal copies (a tuple comes back as a list),
never the object that was written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

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

# -- what the ports carry -------------------------------------------------------------------------------


class VoiceLine(NamedTuple):
    """What a list shows of a voice request: its text fields, none of its JSON ones."""

    id: str
    call_id: str
    process_id: str | None
    stage: str
    input_text: str | None
    transcript: str | None
    reply: str | None


@dataclass
class WriteBatch:
    """Changes that are committed together. Later changes to the same key replace earlier ones,
    so a burst of transitions of one process costs one row write.

    How an adapter applies each field (in this order, so a row may refer to one added by an
    earlier field of the same batch):

    * processes: upserted whole, by id.
    * dependencies: added; an edge (dependent, dependency) already stored is kept as it is.
      Both ends must be stored processes.
    * requests: upserted by process id; None deletes the process's request. The process must
      be stored.
    * checkpoints: upserted by (process, seq); then a process's checkpoints numbered
      CHECKPOINTS_KEPT or more below its newest one in the batch are deleted. The process
      must be stored.
    * events: added with the numbers the engine gave them (increasing with time); a number
      already stored is refused.
    * logs: (process, ts, line), appended.
    * pools: upserted by name.
    * calls: upserted by id; a stored call keeps its created_at, takes the new updated_at.
    * turns: appended; the store numbers them per call, 1, 2, ... in batch order (the
      given seq is ignored). The call must be stored.
    * voice_requests, transfers: upserted whole, by id. Their call must be stored.
    * commands_done: id -> (status, result) for inbox commands; an unknown id is ignored.

    `lease`: the token of the lease the writer holds (the store fills in its own when None);
    a batch whose token is not the lease's current holder's is refused with LeaseLost, checked
    in the transaction that would commit it, and nothing of it is written.
    """

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
    lease: str | None = None

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
        self.lease = self.lease or other.lease


CHECKPOINTS_KEPT = 20  # per process; older ones are pruned as new ones arrive


@dataclass
class Snapshot:
    """What the engine loads at start, read as of one moment (no write falls between its parts).

    `last_event_seq` is the highest number an event stored has had, pruned or not (the store
    never prunes its newest event), so the engine never numbers two events alike.
    `last_request_seq` is the highest seq among the requests stored (0 if none)."""

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
    status: str = "new"  # new | done | error
    result: str | None = None


# -- the ports ------------------------------------------------------------------------------------------


class ProcessReads(Protocol):
    """The engine's state as committed, for readers (observers, the CLI, pollers)."""

    async def load_snapshot(self) -> Snapshot:
        """Everything the engine needs to start, as of one moment."""

    async def list_processes(self) -> list[Process]:
        """Every process, by (created_at, id)."""

    async def get_process(self, process_id: str) -> Process | None: ...

    async def list_dependencies(self) -> list[Dependency]: ...

    async def list_requests(self) -> list[ResumeRequest]:
        """Every resume request, by seq."""

    async def get_request(self, process_id: str) -> ResumeRequest | None: ...


class EngineState(ProcessReads, Protocol):
    """The owner's write path: one WriteBatch per commit, group-committed.

    Ordering: writes are numbered 1, 2, ... in the order `write` is called (the number is
    taken before `write` first suspends) and commit in that order; a write never commits
    before one numbered lower. Several writes may share one transaction."""

    submitted: int
    """How many non-empty writes have been submitted: the n-th one is write number n."""

    async def write(self, batch: WriteBatch) -> None:
        """Commit `batch` (see WriteBatch for how each field is applied). Returns once it is
        committed; an empty batch returns at once and takes no number. On failure it raises
        (WriteRejected for a broken integrity rule) and none of the batch is committed; writes
        that shared its transaction fail with it."""

    def barrier(self, upto: int | None = None) -> Awaitable[None] | None:
        """None if every write submitted so far (or the first `upto`) is committed; otherwise
        an awaitable done once they are (raising what their commit raised). Cancelling one
        waiter must not cancel it: others wait for the same one, so it is awaited directly."""


class Leases(Protocol):
    """Who dispatches the database: one lease per database, at most one holder.

    Guarantee: `acquire_lease` checks and takes the lease in one transaction, so two
    contenders never both get it; the holder keeps it while it renews, and learns it lost it
    (taken over as stale) when `renew_lease` returns False, after which it must stop
    dispatching. Writes by a holder that has lost its lease are not refused by this contract;
    a server adapter may add fencing (a number raised at each take-over, checked by `write`)."""

    async def acquire_lease(
        self, holder: LeaseHolder, is_stale: Callable[[LeaseHolder], bool]
    ) -> LeaseHolder | None:
        """Take the lease for `holder` and return None if it is free, held under the same
        token, or held by someone `is_stale` judges stale; otherwise leave it and return the
        live holder."""

    async def renew_lease(self, token: str, now: float) -> bool:
        """Set the heartbeat to `now` if `token` holds the lease; False (and no change) if not."""

    async def release_lease(self, token: str) -> None:
        """Free the lease if `token` holds it; otherwise nothing."""

    async def lease_holder(self) -> LeaseHolder | None: ...


class Inbox(Protocol):
    """Actions other processes (the CLI, observer consoles) ask the lease holder to carry out.

    Only the lease holder reads new commands and answers them, through
    `WriteBatch.commands_done`, so reading them needs no claim (an adapter serving several
    consumers would claim with SKIP LOCKED)."""

    async def post_command(self, kind: str, payload: dict[str, Any]) -> int:
        """Add a command (status "new"), committed when this returns; its id is greater than
        that of every command stored."""

    async def new_commands(self) -> list[Command]:
        """The commands not yet answered, by id."""

    async def get_command(self, command_id: int) -> Command | None:
        """The command with its status ("new", or what answered it) and result."""


class LogLine(NamedTuple):
    """A line a process logged, numbered in the order lines were written."""

    id: int
    process_id: str
    ts: float
    line: str


class History(Protocol):
    """What happened: events, checkpoints and log lines, newest kept, oldest pruned.

    Events are numbered in time order (the engine numbers them as they happen); an adapter
    may rely on it for the questions asked of their time."""

    async def events(
        self, process_id: str | None = None, limit: int = 100, before_seq: int | None = None
    ) -> list[Event]:
        """The newest `limit` events (of one process, numbered below `before_seq`), in order."""

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        """The first `limit` events numbered above `seq`, in order."""

    async def count_events(self, types: list[str], since: float) -> dict[str, int]:
        """Events of each of `types` (a type with none is left out) from `since` on: those
        after the newest event older than `since`."""

    async def checkpoints(self, process_id: str, limit: int = 20) -> list[Checkpoint]:
        """The process's newest `limit` checkpoints, in seq order."""

    async def log_lines(self, after_id: int | None = None, limit: int = 1000) -> list[LogLine]:
        """Every process's log lines in the order written: after line `after_id`, or (None)
        the newest `limit`."""

    async def logs(self, process_id: str, limit: int = 100) -> list[tuple[float, str]]:
        """The process's newest `limit` log lines as (ts, line), in the order written."""

    async def prune_history(self, before: float, batch_size: int = 5000) -> int:
        """Delete events and log lines older than `before` (never the newest event, which
        keeps the numbering going) and answered commands handled before it; events and log
        lines in transactions of at most `batch_size` rows, so writers are not held up.
        Returns the events and log lines deleted."""


class CallRecords(Protocol):
    """Calls with their turns, voice requests and transfers (written through WriteBatch)."""

    async def get_call(self, call_id: str, turns: int = 50) -> Call | None:
        """The call with its newest `turns` turns in order, turn_count (all its turns) and
        last_turn (the newest of those listed: None with `turns` 0)."""

    async def list_calls(self, limit: int = 50, offset: int = 0) -> list[Call]:
        """Calls, most recently updated first, each with turn_count and last_turn (no turns)."""

    async def get_voice_request(self, request_id: str) -> VoiceRequest | None: ...

    async def voice_requests(self, call_id: str | None = None, limit: int = 100) -> list[VoiceRequest]:
        """Newest (by created_at) first, of one call or all."""

    async def voice_lines(self, limit: int = 100) -> list[VoiceLine]:
        """The newest voice requests as `voice_requests` lists them, text fields only."""

    async def get_transfer(self, transfer_id: str) -> Transfer | None: ...

    async def list_transfers(
        self, status: str | None = None, limit: int = 50, offset: int = 0, call_id: str | None = None
    ) -> list[Transfer]:
        """Newest (by created_at) first, filtered by status and call, a page at `offset`."""


class Store(EngineState, Leases, Inbox, History, CallRecords, Protocol):
    """An adapter's whole surface: every port, plus its life cycle.

    Using a connection that is not open is a programming error (RuntimeError)."""

    path: str
    """Where the database is, as shown to the user (a file, or a server DSN without secrets)."""

    async def open(self) -> None:
        """Connect, creating or migrating the schema. Raises StoreUnavailable, NotADatabase or
        SchemaTooNew (all UserErrors: the message is one line for the user)."""

    async def close(self) -> None:
        """Commit what was submitted, then disconnect. Closing a closed store does nothing."""

    async def change_marker(self) -> Hashable:
        """An opaque value that differs from any earlier one once another connection has
        committed a change: compare two with == and reload if they differ. Whether this
        connection's own commits change it is up to the adapter, and so is what the value is
        (each adapter's method says)."""
