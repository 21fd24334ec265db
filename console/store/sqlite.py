"""The embedded store: one aiosqlite connection (one thread), WAL, group commit."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Generator, Iterable, Iterator

import aiosqlite

from console import compat
from console.errors import (
    NotADatabase,
    SchemaTooNew,
    StoreDamaged,
    StoreError,
    StoreUnavailable,
    WriteRejected,
)
from console.model import (
    Call,
    Checkpoint,
    Dependency,
    DependencyType,
    Event,
    json_text,
    Interruption,
    Metrics,
    Priority,
    Process,
    RequestSource,
    ResumeRequest,
    State,
    Transfer,
    TransferStatus,
    Turn,
    VoiceRequest,
)
from console.store import CHECKPOINTS_KEPT, Command, LeaseHolder, LogLine, Snapshot, VoiceLine, WriteBatch
from console.store.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

# WAL checkpoints (see SqliteStore._checkpoints): in the background once writes pause for
# CHECKPOINT_QUIET_S; by the writer itself, after a commit, only once the WAL has grown past
# WAL_MAX_BYTES (a steady stream of writes with no pause), which also truncates it back to that.
CHECKPOINT_QUIET_S = 0.25
ROWS_SLICE_S = 0.0015  # row building for a commit yields to the loop after this long (see LOAD_SLICE_S)
WAL_MAX_BYTES = 64 * 1024 * 1024
# Once the WAL has grown by this much since its last fdatasync, a thread of the store's starts
# the next one (see _WalWriteback).
WAL_WRITEBACK_BYTES = 2 * 1024 * 1024

_PROCESS_COLUMNS = (
    "id", "kind", "priority", "spec", "resources", "max_attempts", "state", "reason",
    "progress", "attempt", "failures", "interruption", "checkpoint", "checkpoint_seq",
    "created_at", "updated_at", "started_at", "finished_at", "resumes_total",
    "resumes_succeeded", "resumes_failed", "resume_seconds", "interruptions",
)
_UPSERT_PROCESS = (
    f"INSERT INTO processes ({', '.join(_PROCESS_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _PROCESS_COLUMNS)}) ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _PROCESS_COLUMNS if c != "id")
)
_REQUEST_COLUMNS = ("process_id", "priority", "requested_at", "seq", "source", "not_before", "force_immediate")


# Built once (model.json_text): json.dumps with options builds a new encoder on every call
# (measured: a tenth of the engine's time at 10,000 processes went to encoding rows).
_dumps = json_text


class _SpecJson:
    """A process's spec and resources as JSON, encoded once: they never change after
    registration, yet the row is written at every transition. Checked by identity, so a
    replaced spec is encoded again."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Any, Any, str, str]] = {}

    def __call__(self, p: Process) -> tuple[str, str]:
        hit = self._cache.get(p.id)
        if hit is None or hit[0] is not p.spec or hit[1] is not p.resources:
            resources = _dumps(p.resources) if p.resources else "{}"  # most have none
            hit = self._cache[p.id] = (p.spec, p.resources, _dumps(p.spec), resources)
        return hit[2], hit[3]


def _process_row(p: Process, spec_json: Callable[[Process], tuple[str, str]] | None = None) -> tuple:
    m = p.metrics
    spec, resources = spec_json(p) if spec_json is not None else (_dumps(p.spec), _dumps(p.resources))
    return (
        p.id, p.kind, p.priority.value, spec, resources, p.max_attempts,
        p.state.value, p.reason, p.progress, p.attempt, p.failures,
        _dumps(p.interruption.to_json()) if p.interruption else None,
        _dumps(p.checkpoint) if p.checkpoint is not None else None, p.checkpoint_seq,
        p.created_at, p.updated_at, p.started_at, p.finished_at, m.resumes_total,
        m.resumes_succeeded, m.resumes_failed, m.resume_seconds_total, m.interruptions,
    )


def _process_from(row: sqlite3.Row) -> Process:
    return Process(
        id=row["id"],
        kind=row["kind"],
        priority=Priority(row["priority"]),
        spec=json.loads(row["spec"]),
        resources=json.loads(row["resources"]),
        max_attempts=row["max_attempts"],
        state=State(row["state"]),
        reason=row["reason"],
        progress=row["progress"],
        attempt=row["attempt"],
        failures=row["failures"],
        interruption=Interruption.from_json(json.loads(row["interruption"]) if row["interruption"] else None),
        checkpoint=json.loads(row["checkpoint"]) if row["checkpoint"] is not None else None,
        checkpoint_seq=row["checkpoint_seq"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        metrics=Metrics(
            resumes_total=row["resumes_total"],
            resumes_succeeded=row["resumes_succeeded"],
            resumes_failed=row["resumes_failed"],
            resume_seconds_total=row["resume_seconds"],
            interruptions=row["interruptions"],
        ),
    )


def _request_row(r: ResumeRequest) -> tuple:
    return (r.process_id, r.priority.value, r.requested_at, r.seq, r.source.value, r.not_before,
            int(r.force_immediate))


def _request_from(row: sqlite3.Row) -> ResumeRequest:
    return ResumeRequest(
        process_id=row["process_id"],
        priority=Priority(row["priority"]),
        requested_at=row["requested_at"],
        seq=row["seq"],
        source=RequestSource(row["source"]),
        not_before=row["not_before"],
        force_immediate=bool(row["force_immediate"]),
    )


def _dependency_from(row: sqlite3.Row) -> Dependency:
    return Dependency(
        dependent=row["dependent"],
        dependency=row["dependency"],
        type=DependencyType(row["type"]),
        required_completion_percent=row["required_completion_percent"],
        timeout_minutes=row["timeout_minutes"],
    )


def _event_from(row: sqlite3.Row) -> Event:
    return Event(
        seq=row["seq"], ts=row["ts"], process_id=row["process_id"], type=row["type"],
        message=row["message"], data=json.loads(row["data"]) if row["data"] else None,
    )


def _file_error(e: sqlite3.Error, path: str) -> StoreError | None:
    """The port's error for what SQLite says is wrong with the file itself (damaged, not a
    database, read-only), naming the file and what to do; None for any other error."""
    name = getattr(e, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_CORRUPT"):
        return StoreDamaged(f"{path}: the database file is damaged ({e}; {_quick_check(path)}): restore it "
                            "from a backup")
    if name.startswith("SQLITE_NOTADB"):
        return NotADatabase(f"{path}: not a Switchboard database ({e})")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
        folder = Path(path).parent
        if not os.access(folder, os.W_OK):  # SQLite needs its -wal and -shm files beside the database
            return StoreUnavailable(f"{path}: cannot open the database: its folder {folder} is read-only")
        return StoreUnavailable(f"{path}: cannot open the database for writing ({e})")
    return None


def _quick_check(path: str) -> str:
    """The first problem SQLite's quick_check finds, in words, from a read-only connection."""
    try:
        con = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = con.execute("PRAGMA quick_check(1)").fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        return f"quick_check: {e}"
    found = " ".join(str(r[0]).replace("*** in database main ***", "") for r in rows)
    return "quick_check: " + " ".join(found.split())  # one line


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def call(self: SqliteStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            error = _file_error(e, self.path)
            if error is None:
                raise
            raise error from None

    return call


def _file_errors_as_the_ports(cls: type) -> type:
    """Every public coroutine of the store raises the port's error for a damaged or read-only
    file, not sqlite3's (`write` through its flusher, which hands the error to each waiter)."""
    for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction):  # inherited ones too
        if not name.startswith("_") and name != "write":
            setattr(cls, name, _translated(member))
    return cls


def _rejected(e: sqlite3.IntegrityError) -> WriteRejected:
    rejected = WriteRejected(f"the write broke an integrity rule ({e}); none of it was committed")
    rejected.__cause__ = e
    return rejected


class _Commit(asyncio.Future):
    """A group commit's completion, shared by every write in the batch and by the work waiting
    for it (`barrier`). It cannot be cancelled: a waiter being cancelled must not cancel what
    the others wait for (the waiter's cancellation arrives once the commit is done). So it is
    awaited directly: through `asyncio.shield` each waiter woke one turn of the loop later
    (a few ms under load)."""

    def cancel(self, msg: Any = None) -> bool:
        return False


@_file_errors_as_the_ports
class SqliteStore:
    def __init__(self, path: str | Path, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000,
                 reads_only: bool = False):
        """`reads_only`: the caller only reads (`status`): a database that cannot be written (a
        read-only file, folder or filesystem) is then opened read-only instead of refused."""
        self.path = str(path)
        self._reads_only = reads_only
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._pending = WriteBatch()
        self._pending_done: asyncio.Future[None] | None = None
        self._inflight_done: asyncio.Future[None] | None = None
        self.submitted = 0  # write() calls merged so far: a write's number, for barrier(upto=)
        self._inflight_upto = 0  # the last write in the batch being committed
        self._committed_upto = 0  # every write up to this one is committed
        self._flusher: asyncio.Task[None] | None = None
        self.commits = 0  # transactions written by the group committer (for tests and benchmarks)
        self._spec_json = _SpecJson()
        self._wal = False
        self._writeback: _WalWriteback | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._checkpoint_db: aiosqlite.Connection | None = None
        self._last_commit = 0.0  # loop time of the last commit, for the quiet-time checkpoint
        self._checkpointed = True  # nothing committed since the last background checkpoint began
        self.checkpoints_run = 0  # background checkpoints (for tests)
        self._closing = asyncio.Event()
        # a transaction spans several awaits on the one connection: one at a time
        self._transaction = asyncio.Lock()

    # -- life cycle -------------------------------------------------------------------

    async def open(self) -> None:
        path = Path(self.path)
        if not path.parent.is_dir():
            raise StoreUnavailable(f"{path.parent}: the database's folder does not exist")
        if self._reads_only and path.is_file() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            await self._open_read_only(path)
            return
        # Create the file ourselves so it is private (0600); SQLite gives -wal/-shm the same mode.
        try:
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as e:
            raise StoreUnavailable(f"{path}: cannot open database: {e.strerror}") from None
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            self._wal = await _configure(self._db, int(self._busy_timeout_ms), self._synchronous)
            await self._migrate()
        except BaseException as e:
            # close, or aiosqlite's (non-daemon) thread keeps the program from exiting
            await self._db.close()
            self._db = None
            if isinstance(e, sqlite3.DatabaseError):
                raise _file_error(e, self.path) or NotADatabase(f"{path}: not a Switchboard database ({e})") from None
            raise

    async def _open_read_only(self, path: Path) -> None:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        if not os.access(path.parent, os.W_OK):
            # SQLite cannot make the -shm file it reads a WAL database through; nothing can
            # change the database there either, so it is read as it is
            uri += "&immutable=1"
        self._db = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            await self._db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            version = (await (await self._db.execute("PRAGMA user_version")).fetchone())[0]
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(f"{self.path}: database schema v{version} is newer than this Switchboard "
                                   f"(v{SCHEMA_VERSION})")
            if version < SCHEMA_VERSION:
                raise StoreUnavailable(f"{self.path}: the database cannot be written here, and it needs "
                                       f"upgrading (schema v{version} → v{SCHEMA_VERSION}) first")
        except BaseException as e:
            await self._db.close()
            self._db = None
            if isinstance(e, sqlite3.DatabaseError):
                raise _file_error(e, self.path) or NotADatabase(f"{path}: not a Switchboard database ({e})") from None
            raise

    async def _migrate(self) -> None:
        db = self._require()
        version = (await (await db.execute("PRAGMA user_version")).fetchone())[0]
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{self.path}: database schema v{version} is newer than this Switchboard (v{SCHEMA_VERSION})"
            )
        for number in range(version, SCHEMA_VERSION):
            async with self._transaction:
                await _migrate_to(db, number)

    async def close(self) -> None:
        if self._db is None:
            return
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        if self._checkpointer is not None:
            # not cancelled: a connection being opened must not be left with its thread running
            self._closing.set()
            await asyncio.gather(self._checkpointer, return_exceptions=True)
            self._checkpointer = None
        if self._checkpoint_db is not None:
            await self._checkpoint_db.close()
            self._checkpoint_db = None
        if self._writeback is not None:
            self._writeback.stop()
            self._writeback = None
        # the last connection to close checkpoints what is left and removes the WAL
        await self._db.close()
        self._db = None

    def _require(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    # -- group commit -----------------------------------------------------------------

    async def write(self, batch: WriteBatch) -> None:
        if batch.empty():
            return
        self._pending.merge(batch)
        if self._pending_done is None:
            self._pending_done = _Commit(loop=asyncio.get_running_loop())
        done = self._pending_done
        self.submitted += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="store-flush")
        await done

    def barrier(self, upto: int | None = None) -> asyncio.Future[None] | None:
        """A future done once every write submitted so far (or the first `upto`) is committed;
        None if they are. (Batches commit in order, so a later one stands for all before it.)
        With `upto`, work placed by a write in the batch being committed need not also wait
        for the batch that gathers meanwhile: under load that halves its wait."""
        if upto is not None and upto <= self._committed_upto:
            return None
        if upto is not None and upto <= self._inflight_upto:
            future = self._inflight_done
        else:
            future = self._pending_done or self._inflight_done
        return None if future is None or future.done() else future

    async def _flush_loop(self) -> None:
        while not self._pending.empty():
            batch, done = self._pending, self._pending_done
            self._pending, self._pending_done = WriteBatch(), None
            self._inflight_done, self._inflight_upto = done, self.submitted
            try:
                await self._apply(batch, done, self._inflight_upto)
            except BaseException as e:  # noqa: BLE001 - handed to every waiter
                if isinstance(e, sqlite3.IntegrityError):  # the port's error, not the driver's
                    e = _rejected(e)
                elif isinstance(e, sqlite3.DatabaseError):
                    e = _file_error(e, self.path) or e
                if done is not None and not done.done():
                    done.set_exception(e)
                    done.exception()  # mark retrieved: a waiter may have gone
                if isinstance(e, asyncio.CancelledError):
                    raise
            else:
                self._committed(self._inflight_upto, done)

    def _committed(self, upto: int, done: asyncio.Future[None] | None) -> None:
        """A batch is committed (called by aiosqlite's thread through the loop, as soon as the
        COMMIT returns, and again by the flusher: idempotent)."""
        self._committed_upto = max(self._committed_upto, upto)
        if done is not None and not done.done():
            self.commits += 1
            done.set_result(None)
            self._wrote()

    async def _apply(self, b: WriteBatch, done: asyncio.Future[None] | None = None, upto: int = 0) -> None:
        # Row building (JSON) happens here on the loop, in slices of ROWS_SLICE_S: a batch of
        # 1,000 new processes took ~24 ms in one step. (The rows are read from the live objects:
        # one that changes between two slices is written again by the batch that changed it,
        # which commits after this one.)
        statements: list[tuple[str, list[tuple]]] = []
        for _ in _statement_steps(b, statements, self._spec_json, _Budget(ROWS_SLICE_S)):
            await asyncio.sleep(0)
        wal = self.path + "-wal" if self._wal else None
        # The transaction runs as one job on aiosqlite's thread (one hop instead of one per
        # statement: each hop waits for a turn of a busy loop), which tells the loop the moment
        # the COMMIT returns.
        loop = asyncio.get_running_loop()
        on_commit = functools.partial(loop.call_soon_threadsafe, self._committed, upto, done)
        if wal is not None and self._writeback is None:
            self._writeback = _WalWriteback(wal)
        async with self._transaction:
            await compat.on_connection_thread(self._require(), _run_transaction, statements, wal, on_commit,
                                              self._writeback)

    # -- WAL checkpoints ----------------------------------------------------------------

    def _wrote(self) -> None:
        """After a commit: a background checkpoint follows once the writes pause."""
        if not self._wal or self._closing.is_set():
            return
        self._last_commit = asyncio.get_running_loop().time()
        self._checkpointed = False
        if self._checkpointer is None or self._checkpointer.done():
            self._checkpointer = asyncio.create_task(self._checkpoints(), name="store-checkpoint")

    async def _checkpoints(self) -> None:
        """A passive checkpoint on a second connection (its own aiosqlite thread) once no
        commit has come for CHECKPOINT_QUIET_S.

        Not while writes go on: a checkpoint running beside the writer (copying pages, fsyncing
        the database, on a 2-core machine) still slowed its commits. Dispatch benchmark, p99 of
        dispatch latency, medians of 10 interleaved runs: SQLite's automatic checkpoint inside
        the commits 52 ms, a background checkpoint after every commit 44 ms, this 19 ms.
        A passive checkpoint never takes the write lock, so a write that comes meanwhile still
        commits. If writes never pause, the writer checkpoints itself once the WAL passes
        WAL_MAX_BYTES (_run_transaction): rarely, but that commit then takes longer."""
        loop = asyncio.get_running_loop()
        while not self._checkpointed and not self._closing.is_set():
            quiet_for = loop.time() - self._last_commit
            if quiet_for < CHECKPOINT_QUIET_S:
                try:
                    await asyncio.wait_for(self._closing.wait(), CHECKPOINT_QUIET_S - quiet_for)
                except asyncio.TimeoutError:
                    pass
                continue
            self._checkpointed = True
            try:
                if self._checkpoint_db is None:
                    db = await aiosqlite.connect(self.path, isolation_level=None)
                    try:
                        await db.execute(f"PRAGMA synchronous = {self._synchronous}")
                    except BaseException:
                        await db.close()
                        raise
                    self._checkpoint_db = db
                await self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.checkpoints_run += 1
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the writer's own checkpoint is the fallback
                log.warning("background WAL checkpoint failed", exc_info=True)

    # -- ownership ----------------------------------------------------------------------

    async def acquire_lease(
        self, holder: LeaseHolder, is_stale: Callable[[LeaseHolder], bool]
    ) -> LeaseHolder | None:
        db = self._require()
        async with self._transaction:
            return await self._acquire_lease(db, holder, is_stale)

    async def _acquire_lease(self, db: aiosqlite.Connection, holder: LeaseHolder,
                             is_stale: Callable[[LeaseHolder], bool]) -> LeaseHolder | None:
        await db.execute("BEGIN IMMEDIATE")
        try:
            current = await self._lease_row()
            if current is not None and current.token != holder.token and not is_stale(current):
                await db.execute("ROLLBACK")
                return current
            await db.execute(
                "INSERT OR REPLACE INTO lease VALUES (1, ?, ?, ?, ?, ?, ?)",
                (holder.token, holder.pid, holder.host, holder.role, holder.acquired_at, holder.heartbeat_at),
            )
            await db.execute("COMMIT")
            return None
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise

    async def renew_lease(self, token: str, now: float) -> bool:
        db = self._require()
        cursor = await db.execute("UPDATE lease SET heartbeat_at = ? WHERE id = 1 AND token = ?", (now, token))
        return cursor.rowcount == 1

    async def release_lease(self, token: str) -> None:
        await self._require().execute("DELETE FROM lease WHERE id = 1 AND token = ?", (token,))

    async def lease_holder(self) -> LeaseHolder | None:
        return await self._lease_row()

    async def _lease_row(self) -> LeaseHolder | None:
        rows = await self._require().execute_fetchall("SELECT * FROM lease WHERE id = 1")
        if not rows:
            return None
        r = rows[0]
        return LeaseHolder(r["token"], r["pid"], r["host"], r["role"], r["acquired_at"], r["heartbeat_at"])

    # -- state ----------------------------------------------------------------------------

    async def load_snapshot(self) -> Snapshot:
        db = self._require()
        # One read transaction, so the pieces agree with each other.
        async with self._transaction:
            await db.execute("BEGIN")
            try:
                processes = await self.list_processes()
                dependencies = await self.list_dependencies()
                requests = await self.list_requests()
                pools = {r["name"]: r["size"] for r in await db.execute_fetchall("SELECT name, size FROM pools")}
                last_event = (await db.execute_fetchall("SELECT COALESCE(MAX(seq), 0) FROM events"))[0][0]
                last_request = (await db.execute_fetchall("SELECT COALESCE(MAX(seq), 0) FROM resume_requests"))[0][0]
            finally:
                await db.execute("COMMIT")
        return Snapshot(processes, dependencies, requests, pools, last_event, last_request)

    async def list_processes(self) -> list[Process]:
        rows = await self._require().execute_fetchall("SELECT * FROM processes ORDER BY created_at, id")
        return [_process_from(r) for r in rows]

    async def get_process(self, process_id: str) -> Process | None:
        rows = await self._require().execute_fetchall("SELECT * FROM processes WHERE id = ?", (process_id,))
        return _process_from(rows[0]) if rows else None

    async def list_dependencies(self) -> list[Dependency]:
        rows = await self._require().execute_fetchall("SELECT * FROM dependencies")
        return [_dependency_from(r) for r in rows]

    async def list_requests(self) -> list[ResumeRequest]:
        rows = await self._require().execute_fetchall("SELECT * FROM resume_requests ORDER BY seq")
        return [_request_from(r) for r in rows]

    async def change_marker(self) -> int:
        """PRAGMA data_version: it changes when another connection commits."""
        rows = await self._require().execute_fetchall("PRAGMA data_version")
        return rows[0][0]

    data_version = change_marker  # the name callers used before the ports

    # -- inbox ------------------------------------------------------------------------------

    async def post_command(self, kind: str, payload: dict[str, Any]) -> int:
        db = self._require()
        cursor = await db.execute(
            "INSERT INTO commands (kind, payload, created_at) VALUES (?, ?, ?)", (kind, _dumps(payload), time.time())
        )
        return cursor.lastrowid

    async def new_commands(self) -> list[Command]:
        rows = await self._require().execute_fetchall("SELECT * FROM commands WHERE status = 'new' ORDER BY id")
        return [Command(r["id"], r["kind"], json.loads(r["payload"]), r["created_at"]) for r in rows]

    async def get_command(self, command_id: int) -> Command | None:
        rows = await self._require().execute_fetchall("SELECT * FROM commands WHERE id = ?", (command_id,))
        if not rows:
            return None
        r = rows[0]
        return Command(r["id"], r["kind"], json.loads(r["payload"]), r["created_at"], r["status"], r["result"])

    # -- history ----------------------------------------------------------------------------

    async def events(
        self, process_id: str | None = None, limit: int = 100, before_seq: int | None = None
    ) -> list[Event]:
        where, args = [], []
        if process_id is not None:
            where.append("process_id = ?")
            args.append(process_id)
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        sql = "SELECT * FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        rows = await self._require().execute_fetchall(sql, (*args, limit))
        return [_event_from(r) for r in reversed(rows)]

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        rows = await self._require().execute_fetchall(
            "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))
        return [_event_from(r) for r in rows]

    async def count_events(self, types: list[str], since: float) -> dict[str, int]:
        # Events are numbered in time order (no index on ts): the window starts after the
        # newest event older than `since`, found by reading back from the newest.
        marks = ", ".join("?" for _ in types)
        rows = await self._require().execute_fetchall(
            "SELECT type, COUNT(*) AS n FROM events WHERE seq > "
            "COALESCE((SELECT seq FROM events WHERE ts < ? ORDER BY seq DESC LIMIT 1), -1) "
            f"AND type IN ({marks}) GROUP BY type",
            (since, *types),
        )
        return {r["type"]: r["n"] for r in rows}

    async def checkpoints(self, process_id: str, limit: int = 20) -> list[Checkpoint]:
        rows = await self._require().execute_fetchall(
            "SELECT * FROM checkpoints WHERE process_id = ? ORDER BY seq DESC LIMIT ?", (process_id, limit)
        )
        return [
            Checkpoint(r["process_id"], r["seq"], r["progress"], json.loads(r["data"]), r["created_at"])
            for r in reversed(rows)
        ]

    async def logs(self, process_id: str, limit: int = 100) -> list[tuple[float, str]]:
        rows = await self._require().execute_fetchall(
            "SELECT ts, line FROM logs WHERE process_id = ? ORDER BY id DESC LIMIT ?", (process_id, limit)
        )
        return [(r["ts"], r["line"]) for r in reversed(rows)]

    async def log_lines(self, after_id: int | None = None, limit: int = 1000) -> list[LogLine]:
        db = self._require()
        if after_id is None:
            rows = await db.execute_fetchall(
                "SELECT id, process_id, ts, line FROM logs ORDER BY id DESC LIMIT ?", (limit,))
            rows = list(reversed(rows))
        else:
            rows = await db.execute_fetchall(
                "SELECT id, process_id, ts, line FROM logs WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        return [LogLine(r["id"], r["process_id"], r["ts"], r["line"]) for r in rows]

    async def prune_history(self, before: float, batch_size: int = 5000) -> int:
        """Delete events and log lines older than `before`, a batch per transaction so other
        writers are never held up for long."""
        db = self._require()
        total = 0
        # Events are numbered in time order and have no index on ts: each batch looks at the
        # oldest `batch_size` only, so a history with nothing to delete costs one short read.
        # The newest event stays: the engine numbers on from it after a restart.
        statements = (
            "DELETE FROM events WHERE seq IN "
            "(SELECT seq FROM (SELECT seq, ts FROM events ORDER BY seq LIMIT ?2) WHERE ts < ?1 "
            "AND seq < (SELECT MAX(seq) FROM events))",
            "DELETE FROM logs WHERE id IN (SELECT id FROM logs WHERE ts < ?1 LIMIT ?2)",
        )
        for sql in statements:
            while True:
                cursor = await db.execute(sql, (before, batch_size))
                total += cursor.rowcount
                if cursor.rowcount < batch_size:
                    break
                await asyncio.sleep(0)  # let other work run between batches
        await db.execute(
            "DELETE FROM commands WHERE status != 'new' AND handled_at < ?", (before,)
        )
        return total

    async def get_request(self, process_id: str) -> ResumeRequest | None:
        rows = await self._require().execute_fetchall(
            "SELECT * FROM resume_requests WHERE process_id = ?", (process_id,))
        return _request_from(rows[0]) if rows else None

    # -- calls, voice requests, transfers -------------------------------------------------------

    async def get_call(self, call_id: str, turns: int = 50) -> Call | None:
        db = self._require()
        rows = await db.execute_fetchall("SELECT * FROM calls WHERE id = ?", (call_id,))
        if not rows:
            return None
        turn_rows = await db.execute_fetchall(
            "SELECT * FROM turns WHERE call_id = ? ORDER BY seq DESC LIMIT ?", (call_id, turns))
        count = (await db.execute_fetchall("SELECT COUNT(*) FROM turns WHERE call_id = ?", (call_id,)))[0][0]
        listed = [_turn_from(r) for r in reversed(turn_rows)]
        return Call(rows[0]["id"], rows[0]["created_at"], rows[0]["updated_at"], listed, count,
                    listed[-1] if listed else None)

    async def list_calls(self, limit: int = 50, offset: int = 0) -> list[Call]:
        db = self._require()
        rows = await db.execute_fetchall(
            "SELECT c.*, (SELECT COUNT(*) FROM turns t WHERE t.call_id = c.id) AS n, "
            "(SELECT MAX(seq) FROM turns t WHERE t.call_id = c.id) AS last_seq "
            "FROM calls c ORDER BY c.updated_at DESC LIMIT ? OFFSET ?", (limit, offset))
        calls = [Call(r["id"], r["created_at"], r["updated_at"], [], r["n"]) for r in rows]
        last = {(r["id"], r["last_seq"]) for r in rows if r["last_seq"] is not None}
        if last:
            marks = " OR ".join("(call_id = ? AND seq = ?)" for _ in last)
            args = [x for pair in last for x in pair]
            by_call = {r["call_id"]: _turn_from(r) for r in await db.execute_fetchall(
                f"SELECT * FROM turns WHERE {marks}", args)}
            for c in calls:
                c.last_turn = by_call.get(c.id)
        return calls

    async def get_voice_request(self, request_id: str) -> VoiceRequest | None:
        rows = await self._require().execute_fetchall("SELECT * FROM voice_requests WHERE id = ?", (request_id,))
        return _voice_from(rows[0]) if rows else None

    async def voice_requests(self, call_id: str | None = None, limit: int = 100) -> list[VoiceRequest]:
        if call_id is None:
            rows = await self._require().execute_fetchall(
                "SELECT * FROM voice_requests ORDER BY created_at DESC LIMIT ?", (limit,))
        else:
            rows = await self._require().execute_fetchall(
                "SELECT * FROM voice_requests WHERE call_id = ? ORDER BY created_at DESC LIMIT ?", (call_id, limit))
        return [_voice_from(r) for r in rows]

    async def voice_lines(self, limit: int = 100) -> list[VoiceLine]:
        """The newest voice requests as a list shows them: no JSON decoded, no dataclass built
        (300 full requests cost the console ~3 ms of loop time, read twice a second under load)."""
        rows = await self._require().execute_fetchall(
            f"SELECT {', '.join(VoiceLine._fields)} FROM voice_requests ORDER BY created_at DESC LIMIT ?", (limit,))
        return [VoiceLine(*r) for r in rows]

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        rows = await self._require().execute_fetchall("SELECT * FROM transfers WHERE id = ?", (transfer_id,))
        return _transfer_from(rows[0]) if rows else None

    async def list_transfers(
        self, status: str | None = None, limit: int = 50, offset: int = 0, call_id: str | None = None
    ) -> list[Transfer]:
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if call_id is not None:
            where.append("call_id = ?")
            args.append(call_id)
        sql = "SELECT * FROM transfers" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC LIMIT ? OFFSET ?"
        rows = await self._require().execute_fetchall(sql, (*args, limit, offset))
        return [_transfer_from(r) for r in rows]


class _Budget:
    """How long a slice of row building may take before the loop gets a turn."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.perf_counter() + seconds

    def spent(self) -> bool:
        return time.perf_counter() > self.deadline

    def renew(self) -> None:
        self.deadline = time.perf_counter() + self.seconds


def _build(make: Callable[[Any], tuple], items: Iterable[Any], budget: _Budget | None
           ) -> Generator[None, None, list[tuple]]:
    rows = []
    for i, item in enumerate(items):
        rows.append(make(item))
        if budget is not None and i & 63 == 63 and budget.spent():
            yield
            budget.renew()
    return rows


def _statement_steps(b: WriteBatch, out: list[tuple[str, list[tuple]]],
                     spec_json: Callable[[Process], tuple[str, str]] | None = None,
                     budget: _Budget | None = None) -> Iterator[None]:
    """Fills `out` with the batch as (sql, rows) pairs, in an order that respects the foreign
    keys; with a `budget`, yields each time building has used it up (the caller lets the loop
    run, then goes on)."""
    if b.processes:
        out.append((_UPSERT_PROCESS, (yield from _build(lambda p: _process_row(p, spec_json),
                                                         list(b.processes.values()), budget))))
    if b.dependencies:
        out.append(("INSERT OR IGNORE INTO dependencies VALUES (?, ?, ?, ?, ?)", (yield from _build(
            lambda d: (d.dependent, d.dependency, d.type.value, d.required_completion_percent, d.timeout_minutes),
            b.dependencies, budget))))
    gone = [(pid,) for pid, r in b.requests.items() if r is None]
    if gone:
        out.append(("DELETE FROM resume_requests WHERE process_id = ?", gone))
    queued = yield from _build(_request_row, [r for r in b.requests.values() if r is not None], budget)
    if queued:
        out.append((f"INSERT OR REPLACE INTO resume_requests ({', '.join(_REQUEST_COLUMNS)}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", queued))
    if b.checkpoints:
        out.append(("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?)", (yield from _build(
            lambda c: (c.process_id, c.seq, c.progress, _dumps(c.data), c.created_at), b.checkpoints, budget))))
        newest: dict[str, int] = {}
        for c in b.checkpoints:
            newest[c.process_id] = max(newest.get(c.process_id, 0), c.seq)
        old = [(pid, seq - CHECKPOINTS_KEPT) for pid, seq in newest.items() if seq > CHECKPOINTS_KEPT]
        if old:
            out.append(("DELETE FROM checkpoints WHERE process_id = ? AND seq <= ?", old))
    if b.events:
        out.append(("INSERT INTO events (seq, ts, process_id, type, message, data) VALUES (?, ?, ?, ?, ?, ?)",
                    (yield from _build(lambda e: (e.seq, e.ts, e.process_id, e.type, e.message, e.data_json()),
                                       b.events, budget))))
    if b.logs:
        out.append(("INSERT INTO logs (process_id, ts, line) VALUES (?, ?, ?)", b.logs))
    if b.pools:
        out.append(("INSERT OR REPLACE INTO pools VALUES (?, ?)", list(b.pools.items())))
    if b.calls:
        out.append(("INSERT INTO calls VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at",
                    [(c.id, c.created_at, c.updated_at) for c in b.calls.values()]))
    if b.turns:
        # numbered inside the transaction, so concurrent requests on one call never collide
        out.append(("INSERT INTO turns (call_id, seq, role, text, created_at, source) VALUES "
                    "(?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE call_id = ?), ?, ?, ?, ?)",
                    [(t.call_id, t.call_id, t.role, t.text, t.created_at, t.source) for t in b.turns]))
    if b.voice_requests:
        out.append((f"INSERT OR REPLACE INTO voice_requests ({', '.join(_VOICE_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in _VOICE_COLUMNS)})",
                    (yield from _build(_voice_row, list(b.voice_requests.values()), budget))))
    if b.transfers:
        out.append((f"INSERT OR REPLACE INTO transfers ({', '.join(_TRANSFER_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in _TRANSFER_COLUMNS)})",
                    [_transfer_row(t) for t in b.transfers.values()]))
    if b.commands_done:
        now = time.time()
        out.append(("UPDATE commands SET status = ?, result = ?, handled_at = ? WHERE id = ?",
                    [(status, result, now, cid) for cid, (status, result) in b.commands_done.items()]))


class _WalWriteback:
    """Writes the WAL to disk while the engine runs, a few MB at a time, on a thread of its own.

    The checkpoint that closing the database runs first fdatasyncs the WAL: after a busy run
    that was every page the run wrote still in the page cache (a 1,000-process workflow:
    ~15 MB, 75 ms of the runner's exit, measured with strace). An fdatasync of the same file
    on another descriptor writes those pages earlier, off the loop and off the writer's
    thread, so the closing one has only the last few to write. It changes nothing SQLite
    relies on: data reaches the disk sooner, never later."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.synced = 0  # the WAL's size at the last fdatasync requested
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def grown(self, size: int) -> None:
        """After a commit (on the writer's thread), with the WAL's size."""
        if size < self.synced:  # restarted from its beginning after a checkpoint
            self.synced = 0
        if size - self.synced < WAL_WRITEBACK_BYTES or self._stopped:
            return
        self.synced = size
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="store-wal-writeback", daemon=True)
            self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopped:
                return
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            except OSError:  # gone (closed meanwhile) or unsupported: the checkpoint syncs it
                pass


async def _configure(db: aiosqlite.Connection, busy_timeout_ms: int, synchronous: str) -> bool:
    """The connection's settings; True if the database is in WAL mode."""
    await db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    mode = await (await db.execute("PRAGMA journal_mode = WAL")).fetchone()
    wal = str(mode[0]).lower() == "wal"
    if wal:
        # No checkpoint inside a commit: SQLite's automatic one ran in the commit that crossed
        # 1,000 WAL pages, copying them and fsyncing the database, and every write gathered
        # meanwhile waited for it. See SqliteStore._checkpoints for what happens instead.
        await db.execute("PRAGMA wal_autocheckpoint = 0")
        await db.execute(f"PRAGMA journal_size_limit = {WAL_MAX_BYTES}")
    await db.execute(f"PRAGMA synchronous = {synchronous}")
    await db.execute("PRAGMA foreign_keys = ON")
    return wal


async def _migrate_to(db: aiosqlite.Connection, number: int) -> None:
    """Migration `number` (0-based) in its own transaction."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        # re-check inside the write lock: another process may have migrated meanwhile
        if (await (await db.execute("PRAGMA user_version")).fetchone())[0] > number:
            await db.execute("ROLLBACK")
            return
        for statement in _split_script(MIGRATIONS[number]):
            await db.execute(statement)
        await db.execute(f"PRAGMA user_version = {number + 1}")
        await db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        raise


def _run_transaction(conn: sqlite3.Connection, statements: list[tuple[str, list[tuple]]],
                     wal: str | None = None, on_commit: Callable[[], Any] | None = None,
                     writeback: _WalWriteback | None = None) -> None:
    """Runs on aiosqlite's thread. `wal`: the WAL file, checkpointed here once it has grown
    past WAL_MAX_BYTES (after a restart it is truncated to that size, so a larger file means
    the log itself is larger); `writeback` is told its size."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in statements:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if on_commit is not None:
        try:
            on_commit()
        except RuntimeError:  # the loop is closed: the flusher settles it, if anyone
            pass
    if wal is not None:
        try:
            size = os.stat(wal).st_size
            if size > WAL_MAX_BYTES:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            elif writeback is not None:
                writeback.grown(size)
        except (OSError, sqlite3.Error):
            log.warning("WAL checkpoint after a commit failed", exc_info=True)


_VOICE_COLUMNS = ("id", "call_id", "process_id", "input_text", "audio_path", "transcript", "reply",
                  "speech_path", "stage", "latency_ms", "usage", "model", "created_at", "updated_at")
_TRANSFER_COLUMNS = ("id", "call_id", "process_id", "from_agent", "to_agent", "status", "summary",
                     "summary_source", "reason", "created_at", "updated_at", "completed_at")


def _voice_row(v: VoiceRequest) -> tuple:
    return (v.id, v.call_id, v.process_id, v.input_text, v.audio_path, v.transcript, v.reply, v.speech_path,
            v.stage, _dumps(v.latency_ms), _dumps(v.usage), v.model, v.created_at, v.updated_at)


def _voice_from(r: sqlite3.Row) -> VoiceRequest:
    return VoiceRequest(
        id=r["id"], call_id=r["call_id"], process_id=r["process_id"], input_text=r["input_text"],
        audio_path=r["audio_path"], transcript=r["transcript"], reply=r["reply"], speech_path=r["speech_path"],
        stage=r["stage"], latency_ms=json.loads(r["latency_ms"]), usage=json.loads(r["usage"]), model=r["model"],
        created_at=r["created_at"], updated_at=r["updated_at"],
    )


def _transfer_row(t: Transfer) -> tuple:
    return (t.id, t.call_id, t.process_id, t.from_agent, t.to_agent, t.status.value,
            _dumps(t.summary) if t.summary is not None else None, t.summary_source, t.reason,
            t.created_at, t.updated_at, t.completed_at)


def _transfer_from(r: sqlite3.Row) -> Transfer:
    return Transfer(
        id=r["id"], call_id=r["call_id"], process_id=r["process_id"], from_agent=r["from_agent"],
        to_agent=r["to_agent"], status=TransferStatus(r["status"]),
        summary=json.loads(r["summary"]) if r["summary"] else None, summary_source=r["summary_source"],
        reason=r["reason"], created_at=r["created_at"], updated_at=r["updated_at"], completed_at=r["completed_at"],
    )


def _turn_from(r: sqlite3.Row) -> Turn:
    return Turn(call_id=r["call_id"], role=r["role"], text=r["text"], created_at=r["created_at"],
                source=r["source"], seq=r["seq"])


def _split_script(script: str) -> list[str]:
    """Split a migration into statements (no semicolons inside our literals)."""
    statements = []
    for chunk in script.split(";"):
        lines = [ln for ln in chunk.splitlines() if not ln.strip().startswith("--")]
        text = "\n".join(lines).strip()
        if text:
            statements.append(text)
    return statements
