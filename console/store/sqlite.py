"""The embedded store: one aiosqlite connection (one thread), WAL, group commit
(console.store.group_commit), rows built by console.store.rows.

Committed (the ports' word) means the transaction's COMMIT returned, durable as the configured
`synchronous` makes it."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from console import compat
from console.errors import LeaseLost, NotADatabase, SchemaTooNew, StoreDamaged, StoreError, StoreUnavailable
from console.model import Call, Checkpoint, Dependency, Event, json_text, Process, ResumeRequest, Transfer, VoiceRequest
from console.store import Command, LeaseHolder, LogLine, Snapshot, VoiceLine, WriteBatch
from console.store.group_commit import GroupCommit, GroupCommitted, Settle
from console.store.rows import (
    PROCESS_COLUMNS,
    REQUEST_COLUMNS,
    TRANSFER_COLUMNS,
    VOICE_COLUMNS,
    WRITES,
    Budget,
    SpecJson,
    checkpoint_from,
    command_from,
    dependency_from,
    event_from,
    holder_from,
    new_command_from,
    process_from,
    request_from,
    transfer_from,
    turn_from,
    voice_from,
    write_steps,
)
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

_UPSERT_PROCESS = (
    f"INSERT INTO processes ({', '.join(PROCESS_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in PROCESS_COLUMNS)}) ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in PROCESS_COLUMNS if c != "id")
)
# a WriteBatch's statements, by the names of WRITES
_WRITE_SQL = {
    "upsert_process": _UPSERT_PROCESS,
    "add_dependency": "INSERT OR IGNORE INTO dependencies VALUES (?, ?, ?, ?, ?)",
    "delete_request": "DELETE FROM resume_requests WHERE process_id = ?",
    "upsert_request": f"INSERT OR REPLACE INTO resume_requests ({', '.join(REQUEST_COLUMNS)}) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)",
    "upsert_checkpoint": "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?)",
    "prune_checkpoints": "DELETE FROM checkpoints WHERE process_id = ? AND seq <= ?",
    "add_event": "INSERT INTO events (seq, ts, process_id, type, message, data) VALUES (?, ?, ?, ?, ?, ?)",
    "add_log": "INSERT INTO logs (process_id, ts, line) VALUES (?, ?, ?)",
    "upsert_pool": "INSERT OR REPLACE INTO pools VALUES (?, ?)",
    "upsert_call": "INSERT INTO calls VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at",
    # numbered inside the transaction, so concurrent requests on one call never collide
    "add_turn": "INSERT INTO turns (call_id, seq, role, text, created_at, source) VALUES "
                "(?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE call_id = ?), ?, ?, ?, ?)",
    "upsert_voice_request": f"INSERT OR REPLACE INTO voice_requests ({', '.join(VOICE_COLUMNS)}) "
                            f"VALUES ({', '.join('?' for _ in VOICE_COLUMNS)})",
    "upsert_transfer": f"INSERT OR REPLACE INTO transfers ({', '.join(TRANSFER_COLUMNS)}) "
                       f"VALUES ({', '.join('?' for _ in TRANSFER_COLUMNS)})",
    "answer_command": "UPDATE commands SET status = ?, result = ?, handled_at = ? WHERE id = ?",
}
assert set(_WRITE_SQL) == set(WRITES)


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


@_file_errors_as_the_ports
class SqliteStore(GroupCommitted):
    def __init__(self, path: str | Path, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000,
                 reads_only: bool = False):
        """`reads_only`: the caller only reads (`status`): a database that cannot be written (a
        read-only file, folder or filesystem) is then opened read-only instead of refused."""
        self.path = str(path)
        self._reads_only = reads_only
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._lease_token: str | None = None  # the lease this connection took: its writes carry it
        self._group = GroupCommit(self._apply, sqlite3.IntegrityError, on_committed=self._wrote,
                                  translate=self._port_error)
        self._spec_json = SpecJson()
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
        await self._group.drain()
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

    async def _apply(self, b: WriteBatch, settle: Settle) -> None:
        # Row building (JSON) happens here on the loop, in slices of ROWS_SLICE_S: a large batch
        # of new processes would otherwise hold the loop in one step. (The rows are read from the live objects:
        # one that changes between two slices is written again by the batch that changed it,
        # which commits after this one.)
        named: list[tuple[str, list[tuple]]] = []
        for _ in write_steps(b, named, self._spec_json, Budget(ROWS_SLICE_S)):
            await asyncio.sleep(0)
        statements = [(_WRITE_SQL[name], batch_rows) for name, batch_rows in named]
        wal = self.path + "-wal" if self._wal else None
        # The transaction runs as one job on aiosqlite's thread (one hop instead of one per
        # statement: each hop waits for a turn of a busy loop), which tells the loop the moment
        # the COMMIT returns.
        loop = asyncio.get_running_loop()
        on_commit = functools.partial(loop.call_soon_threadsafe, settle)
        if wal is not None and self._writeback is None:
            self._writeback = _WalWriteback(wal)
        async with self._transaction:
            await compat.on_connection_thread(self._require(), _run_transaction, statements, wal, on_commit,
                                              self._writeback, b.lease or self._lease_token)

    # -- WAL checkpoints ----------------------------------------------------------------

    def _port_error(self, e: BaseException) -> BaseException | None:
        """A failed commit's error as the port's, when SQLite says the file itself is wrong."""
        return _file_error(e, self.path) if isinstance(e, sqlite3.DatabaseError) else None

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
                except TimeoutError:
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
            self._lease_token = holder.token
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
        return holder_from(rows[0]) if rows else None

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
        return [process_from(r) for r in rows]

    async def get_process(self, process_id: str) -> Process | None:
        rows = await self._require().execute_fetchall("SELECT * FROM processes WHERE id = ?", (process_id,))
        return process_from(rows[0]) if rows else None

    async def list_dependencies(self) -> list[Dependency]:
        rows = await self._require().execute_fetchall("SELECT * FROM dependencies")
        return [dependency_from(r) for r in rows]

    async def list_requests(self) -> list[ResumeRequest]:
        rows = await self._require().execute_fetchall("SELECT * FROM resume_requests ORDER BY seq")
        return [request_from(r) for r in rows]

    async def change_marker(self) -> int:
        """PRAGMA data_version: it changes when another connection commits."""
        rows = await self._require().execute_fetchall("PRAGMA data_version")
        return rows[0][0]

    # -- inbox ------------------------------------------------------------------------------

    async def post_command(self, kind: str, payload: dict[str, Any]) -> int:
        db = self._require()
        cursor = await db.execute(
            "INSERT INTO commands (kind, payload, created_at) VALUES (?, ?, ?)", (kind, json_text(payload), time.time())
        )
        return cursor.lastrowid

    async def new_commands(self) -> list[Command]:
        rows = await self._require().execute_fetchall("SELECT * FROM commands WHERE status = 'new' ORDER BY id")
        return [new_command_from(r) for r in rows]

    async def get_command(self, command_id: int) -> Command | None:
        rows = await self._require().execute_fetchall("SELECT * FROM commands WHERE id = ?", (command_id,))
        return command_from(rows[0]) if rows else None

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
        return [event_from(r) for r in reversed(rows)]

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        rows = await self._require().execute_fetchall(
            "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))
        return [event_from(r) for r in rows]

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
        return [checkpoint_from(r) for r in reversed(rows)]

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
        return request_from(rows[0]) if rows else None

    # -- calls, voice requests, transfers -------------------------------------------------------

    async def get_call(self, call_id: str, turns: int = 50) -> Call | None:
        db = self._require()
        rows = await db.execute_fetchall("SELECT * FROM calls WHERE id = ?", (call_id,))
        if not rows:
            return None
        turn_rows = await db.execute_fetchall(
            "SELECT * FROM turns WHERE call_id = ? ORDER BY seq DESC LIMIT ?", (call_id, turns))
        count = (await db.execute_fetchall("SELECT COUNT(*) FROM turns WHERE call_id = ?", (call_id,)))[0][0]
        listed = [turn_from(r) for r in reversed(turn_rows)]
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
            by_call = {r["call_id"]: turn_from(r) for r in await db.execute_fetchall(
                f"SELECT * FROM turns WHERE {marks}", args)}
            for c in calls:
                c.last_turn = by_call.get(c.id)
        return calls

    async def get_voice_request(self, request_id: str) -> VoiceRequest | None:
        rows = await self._require().execute_fetchall("SELECT * FROM voice_requests WHERE id = ?", (request_id,))
        return voice_from(rows[0]) if rows else None

    async def voice_requests(self, call_id: str | None = None, limit: int = 100) -> list[VoiceRequest]:
        if call_id is None:
            rows = await self._require().execute_fetchall(
                "SELECT * FROM voice_requests ORDER BY created_at DESC LIMIT ?", (limit,))
        else:
            rows = await self._require().execute_fetchall(
                "SELECT * FROM voice_requests WHERE call_id = ? ORDER BY created_at DESC LIMIT ?", (call_id, limit))
        return [voice_from(r) for r in rows]

    async def voice_lines(self, limit: int = 100) -> list[VoiceLine]:
        """The newest voice requests as a list shows them: no JSON decoded, no dataclass built
        (300 full requests cost the console ~3 ms of loop time, read twice a second under load)."""
        rows = await self._require().execute_fetchall(
            f"SELECT {', '.join(VoiceLine._fields)} FROM voice_requests ORDER BY created_at DESC LIMIT ?", (limit,))
        return [VoiceLine(*r) for r in rows]

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        rows = await self._require().execute_fetchall("SELECT * FROM transfers WHERE id = ?", (transfer_id,))
        return transfer_from(rows[0]) if rows else None

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
        return [transfer_from(r) for r in rows]


class _WalWriteback:
    """Writes the WAL to disk while the engine runs, a few MB at a time, on a thread of its own.

    The checkpoint that closing the database runs first fdatasyncs the WAL: after a busy run
    that was every page the run wrote still in the page cache (a large part of the runner's
    exit after a big workflow). An fdatasync of the same file
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
                     writeback: _WalWriteback | None = None, lease: str | None = None) -> None:
    """Runs on aiosqlite's thread. `wal`: the WAL file, checkpointed here once it has grown
    past WAL_MAX_BYTES (after a restart it is truncated to that size, so a larger file means
    the log itself is larger); `writeback` is told its size."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if lease is not None:  # in the write's own transaction: a late write can never land
            row = conn.execute("SELECT token FROM lease WHERE id = 1").fetchone()
            if row is None or row[0] != lease:
                raise LeaseLost("this writer's lease was taken over; nothing of the write was committed")
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


def _split_script(script: str) -> list[str]:
    """Split a migration into statements (no semicolons inside our literals)."""
    statements = []
    for chunk in script.split(";"):
        lines = [ln for ln in chunk.splitlines() if not ln.strip().startswith("--")]
        text = "\n".join(lines).strip()
        if text:
            statements.append(text)
    return statements
