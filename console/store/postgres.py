"""The server store: PostgreSQL through psycopg 3 (async), a connection pool, group commit.

Imported only for a `postgresql://` URL (console.store.open_store), so the embedded setup never
loads psycopg. Its SQL is in sql/postgres/ (console.store.pg_sql).

How it keeps the ports' contracts:

* Group commit as SqliteStore: `write` merges its batch into the one gathering and a single
  flusher commits batches in order, one transaction each, every statement an executemany
  (psycopg pipelines its rows: one round trip per statement, not per row).
* Every writing transaction raises the `changes` counter, which is what `change_marker` reads.
* The lease is one row, read FOR UPDATE and taken in the same transaction; its `generation`
  rises each time it passes to another token (the fencing number of a future multi-runner
  write check, see `lease_generation`).
* Migrations run at open inside one transaction holding an advisory lock, so processes that
  open at once apply each one exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from console.errors import NotADatabase, SchemaTooNew, StoreUnavailable, WriteRejected
from console.model import (
    Call,
    Checkpoint,
    Dependency,
    DependencyType,
    Event,
    Interruption,
    json_text,
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
from console.store import pg_sql
from console.store.ports import CHECKPOINTS_KEPT, Command, LeaseHolder, LogLine, Snapshot, VoiceLine, WriteBatch

SQL = pg_sql.statements()
SCHEMA_VERSION = len(pg_sql.migrations())
# pg_advisory_xact_lock's key for migrating (any fixed number: it names the lock)
MIGRATION_LOCK = 0x5357_4243_4D49_4752  # "SWBCMIGR"
CONNECT_TIMEOUT_S = 10
POOL_SIZE = 4  # the writer and a few readers (an observer console reads while the engine writes)


def shown_url(url: str) -> str:
    """The URL without its password, for messages and `path`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, parts.fragment))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class _Commit(asyncio.Future):
    """A group commit's completion, shared by its writes and by `barrier`'s waiters: it cannot
    be cancelled, so one waiter being cancelled does not cancel what the others wait for."""

    def cancel(self, msg: Any = None) -> bool:
        return False


class PostgresStore:
    def __init__(self, url: str, pool_size: int = POOL_SIZE, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        self.path = shown_url(url)
        self._url = url
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._pool: AsyncConnectionPool | None = None
        self._pending = WriteBatch()
        self._pending_done: asyncio.Future[None] | None = None
        self._inflight_done: asyncio.Future[None] | None = None
        self.submitted = 0  # write() calls merged so far: a write's number, for barrier(upto=)
        self._inflight_upto = 0  # the last write in the batch being committed
        self._committed_upto = 0  # every write up to this one is committed
        self._flusher: asyncio.Task[None] | None = None
        self.commits = 0  # transactions written by the group committer (for tests and benchmarks)
        self.lease_generation: int | None = None
        """The lease's generation when this connection last took it (None: never took it)."""

    # -- life cycle -------------------------------------------------------------------

    async def open(self) -> None:
        try:
            first = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, row_factory=dict_row, connect_timeout=self._connect_timeout_s)
        except psycopg.Error as e:
            raise StoreUnavailable(f"{self.path}: cannot connect to PostgreSQL ({_first_line(e)})") from None
        try:
            await _migrate(first, self.path)
        except psycopg.Error as e:  # e.g. a user without the right to create tables
            raise StoreUnavailable(f"{self.path}: cannot set up the schema ({_first_line(e)})") from None
        finally:
            await first.close()
        pool = AsyncConnectionPool(
            self._url, min_size=1, max_size=self._pool_size, open=False, name="switchboard",
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": self._connect_timeout_s},
        )
        try:
            await pool.open(wait=True, timeout=self._connect_timeout_s)
        except PoolTimeout:
            await pool.close()
            raise StoreUnavailable(f"{self.path}: cannot connect to PostgreSQL (no connection in "
                                   f"{self._connect_timeout_s:g} s)") from None
        self._pool = pool

    async def close(self) -> None:
        if self._pool is None:
            return
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self._pool.close()
        self._pool = None

    def _require(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def _rows(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        async with self._require().connection() as conn:
            return await (await conn.execute(SQL[name], params)).fetchall()

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
        None if they are. Batches commit in order, so a later one stands for all before it."""
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
                await self._apply(batch)
            except BaseException as e:  # noqa: BLE001 - handed to every waiter
                if isinstance(e, psycopg.IntegrityError):  # the port's error, not the driver's
                    rejected = WriteRejected(
                        f"the write broke an integrity rule ({_first_line(e)}); none of it was committed")
                    rejected.__cause__ = e
                    e = rejected
                if done is not None and not done.done():
                    done.set_exception(e)
                    done.exception()  # mark retrieved: a waiter may have gone
                if isinstance(e, asyncio.CancelledError):
                    raise
            else:
                self._committed_upto = max(self._committed_upto, self._inflight_upto)
                if done is not None and not done.done():
                    self.commits += 1
                    done.set_result(None)

    async def _apply(self, batch: WriteBatch) -> None:
        statements = _batch_statements(batch)
        async with self._require().connection() as conn:
            async with conn.transaction():
                async with conn.cursor() as cur:
                    for sql, rows in statements:
                        await cur.executemany(sql, rows)
                    await cur.execute(SQL["bump_changes"])

    # -- ownership ----------------------------------------------------------------------

    async def acquire_lease(
        self, holder: LeaseHolder, is_stale: Callable[[LeaseHolder], bool]
    ) -> LeaseHolder | None:
        async with self._require().connection() as conn:
            async with conn.transaction():
                current = _holder_from(await (await conn.execute(SQL["lease_for_update"])).fetchone())
                if current is not None and current.token != holder.token and not is_stale(current):
                    return current
                taken = await (await conn.execute(SQL["take_lease"], {
                    "token": holder.token, "pid": holder.pid, "host": holder.host, "role": holder.role,
                    "acquired_at": holder.acquired_at, "heartbeat_at": holder.heartbeat_at})).fetchone()
                await conn.execute(SQL["bump_changes"])
        self.lease_generation = taken["generation"]
        return None

    async def renew_lease(self, token: str, now: float) -> bool:
        async with self._require().connection() as conn:
            async with conn.transaction():
                renewed = (await conn.execute(SQL["renew_lease"], {"token": token, "now": now})).rowcount == 1
                if renewed:
                    await conn.execute(SQL["bump_changes"])
        return renewed

    async def release_lease(self, token: str) -> None:
        async with self._require().connection() as conn:
            async with conn.transaction():
                if (await conn.execute(SQL["release_lease"], {"token": token})).rowcount:
                    await conn.execute(SQL["bump_changes"])

    async def lease_holder(self) -> LeaseHolder | None:
        rows = await self._rows("lease_holder")
        return _holder_from(rows[0]) if rows else None

    # -- state ----------------------------------------------------------------------------

    async def load_snapshot(self) -> Snapshot:
        async with self._require().connection() as conn:
            # one snapshot of the database for every part
            async with conn.transaction():
                await conn.execute(SQL["read_one_moment"])

                async def rows(name: str) -> list[dict[str, Any]]:
                    return await (await conn.execute(SQL[name])).fetchall()

                processes = [_process_from(r) for r in await rows("list_processes")]
                dependencies = [_dependency_from(r) for r in await rows("list_dependencies")]
                requests = [_request_from(r) for r in await rows("list_requests")]
                pools = {r["name"]: r["size"] for r in await rows("list_pools")}
                last_event = (await rows("last_event_seq"))[0]["n"]
                last_request = (await rows("last_request_seq"))[0]["n"]
        return Snapshot(processes, dependencies, requests, pools, last_event, last_request)

    async def list_processes(self) -> list[Process]:
        return [_process_from(r) for r in await self._rows("list_processes")]

    async def get_process(self, process_id: str) -> Process | None:
        rows = await self._rows("get_process", {"id": process_id})
        return _process_from(rows[0]) if rows else None

    async def list_dependencies(self) -> list[Dependency]:
        return [_dependency_from(r) for r in await self._rows("list_dependencies")]

    async def list_requests(self) -> list[ResumeRequest]:
        return [_request_from(r) for r in await self._rows("list_requests")]

    async def get_request(self, process_id: str) -> ResumeRequest | None:
        rows = await self._rows("get_request", {"id": process_id})
        return _request_from(rows[0]) if rows else None

    async def change_marker(self) -> int:
        """The `changes` counter: every writing transaction, on any connection, raises it."""
        return (await self._rows("change_marker"))[0]["n"]

    # -- inbox ------------------------------------------------------------------------------

    async def post_command(self, kind: str, payload: dict[str, Any]) -> int:
        async with self._require().connection() as conn:
            async with conn.transaction():
                row = await (await conn.execute(SQL["post_command"], {
                    "kind": kind, "payload": json_text(payload), "created_at": time.time()})).fetchone()
                await conn.execute(SQL["bump_changes"])
        return row["id"]

    async def new_commands(self) -> list[Command]:
        return [Command(r["id"], r["kind"], json.loads(r["payload"]), r["created_at"])
                for r in await self._rows("new_commands")]

    async def get_command(self, command_id: int) -> Command | None:
        rows = await self._rows("get_command", {"id": command_id})
        if not rows:
            return None
        r = rows[0]
        return Command(r["id"], r["kind"], json.loads(r["payload"]), r["created_at"], r["status"], r["result"])

    # -- history ----------------------------------------------------------------------------

    async def events(
        self, process_id: str | None = None, limit: int = 100, before_seq: int | None = None
    ) -> list[Event]:
        rows = await self._rows("events", {"process_id": process_id, "before_seq": before_seq, "limit": limit})
        return [_event_from(r) for r in reversed(rows)]

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        return [_event_from(r) for r in await self._rows("events_after", {"seq": seq, "limit": limit})]

    async def count_events(self, types: list[str], since: float) -> dict[str, int]:
        rows = await self._rows("count_events", {"types": list(types), "since": since})
        return {r["type"]: r["n"] for r in rows}

    async def checkpoints(self, process_id: str, limit: int = 20) -> list[Checkpoint]:
        rows = await self._rows("checkpoints", {"id": process_id, "limit": limit})
        return [Checkpoint(r["process_id"], r["seq"], r["progress"], json.loads(r["data"]), r["created_at"])
                for r in reversed(rows)]

    async def log_lines(self, after_id: int | None = None, limit: int = 1000) -> list[LogLine]:
        if after_id is None:
            rows = list(reversed(await self._rows("log_lines_newest", {"limit": limit})))
        else:
            rows = await self._rows("log_lines_after", {"after": after_id, "limit": limit})
        return [LogLine(r["id"], r["process_id"], r["ts"], r["line"]) for r in rows]

    async def logs(self, process_id: str, limit: int = 100) -> list[tuple[float, str]]:
        rows = await self._rows("logs", {"id": process_id, "limit": limit})
        return [(r["ts"], r["line"]) for r in reversed(rows)]

    async def prune_history(self, before: float, batch_size: int = 5000) -> int:
        """Events and log lines a batch per transaction, so the writer is never held up long."""
        total = 0
        params = {"before": before, "batch": batch_size}
        for name in ("prune_events", "prune_logs"):
            while True:
                deleted = await self._delete(name, params)
                total += deleted
                if deleted < batch_size:
                    break
                await asyncio.sleep(0)  # let other work run between batches
        await self._delete("prune_commands", params)
        return total

    async def _delete(self, name: str, params: dict[str, Any]) -> int:
        async with self._require().connection() as conn:
            async with conn.transaction():
                deleted = (await conn.execute(SQL[name], params)).rowcount
                if deleted:
                    await conn.execute(SQL["bump_changes"])
        return deleted

    # -- calls, voice requests, transfers -------------------------------------------------------

    async def get_call(self, call_id: str, turns: int = 50) -> Call | None:
        async with self._require().connection() as conn:
            async with conn.transaction():  # the call, its turns and their count as of one moment
                await conn.execute(SQL["read_one_moment"])
                call = await (await conn.execute(SQL["get_call"], {"id": call_id})).fetchone()
                if call is None:
                    return None
                turn_rows = await (await conn.execute(SQL["call_turns"], {"id": call_id, "limit": turns})).fetchall()
                count = (await (await conn.execute(SQL["count_turns"], {"id": call_id})).fetchone())["n"]
        listed = [_turn_from(r) for r in reversed(turn_rows)]
        return Call(call["id"], call["created_at"], call["updated_at"], listed, count, listed[-1] if listed else None)

    async def list_calls(self, limit: int = 50, offset: int = 0) -> list[Call]:
        calls = []
        for r in await self._rows("list_calls", {"limit": limit, "offset": offset}):
            last = None
            if r["t_seq"] is not None:
                last = Turn(call_id=r["id"], role=r["t_role"], text=r["t_text"], created_at=r["t_created_at"],
                            source=r["t_source"], seq=r["t_seq"])
            calls.append(Call(r["id"], r["created_at"], r["updated_at"], [], r["n"], last))
        return calls

    async def get_voice_request(self, request_id: str) -> VoiceRequest | None:
        rows = await self._rows("get_voice_request", {"id": request_id})
        return _voice_from(rows[0]) if rows else None

    async def voice_requests(self, call_id: str | None = None, limit: int = 100) -> list[VoiceRequest]:
        return [_voice_from(r) for r in await self._rows("voice_requests", {"call_id": call_id, "limit": limit})]

    async def voice_lines(self, limit: int = 100) -> list[VoiceLine]:
        return [VoiceLine(**r) for r in await self._rows("voice_lines", {"limit": limit})]

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        rows = await self._rows("get_transfer", {"id": transfer_id})
        return _transfer_from(rows[0]) if rows else None

    async def list_transfers(
        self, status: str | None = None, limit: int = 50, offset: int = 0, call_id: str | None = None
    ) -> list[Transfer]:
        rows = await self._rows("list_transfers", {"status": status, "call_id": call_id, "limit": limit,
                                                   "offset": offset})
        return [_transfer_from(r) for r in rows]


# -- migrations -----------------------------------------------------------------------------------------


async def _migrate(conn: psycopg.AsyncConnection, shown: str) -> None:
    """Brings the schema to SCHEMA_VERSION in one transaction. The advisory lock makes processes
    opening at once wait for each other, so the one that comes second finds the work done."""
    async with conn.transaction():
        await conn.execute(SQL["migration_lock"], {"key": MIGRATION_LOCK})
        found = await (await conn.execute(SQL["schema_found"])).fetchone()
        if not found["ours"]:
            if found["taken"]:
                raise NotADatabase(f"{shown}: not a Switchboard database (it has a processes table of its own)")
            await conn.execute(SQL["create_schema_version"])
        version = (await (await conn.execute(SQL["schema_version"])).fetchone())["version"]
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(f"{shown}: database schema v{version} is newer than this Switchboard (v{SCHEMA_VERSION})")
        for number in range(version, SCHEMA_VERSION):
            await conn.execute(pg_sql.migrations()[number])
        if version < SCHEMA_VERSION:
            await conn.execute(SQL["set_schema_version"], {"version": SCHEMA_VERSION})


# -- rows --------------------------------------------------------------------------------------------------


def _batch_statements(b: WriteBatch) -> list[tuple[str, list[tuple]]]:
    """The batch as (sql, rows) pairs, in an order that respects the foreign keys."""
    out: list[tuple[str, list[tuple]]] = []
    if b.processes:
        out.append((SQL["upsert_process"], [_process_row(p) for p in b.processes.values()]))
    if b.dependencies:
        out.append((SQL["add_dependency"], [
            (d.dependent, d.dependency, d.type.value, d.required_completion_percent, d.timeout_minutes)
            for d in b.dependencies]))
    gone = [(pid,) for pid, r in b.requests.items() if r is None]
    if gone:
        out.append((SQL["delete_request"], gone))
    queued = [_request_row(r) for r in b.requests.values() if r is not None]
    if queued:
        out.append((SQL["upsert_request"], queued))
    if b.checkpoints:
        # one row per (process, seq): a later checkpoint of the same number replaces an earlier one
        latest = {(c.process_id, c.seq): c for c in b.checkpoints}
        out.append((SQL["upsert_checkpoint"], [
            (c.process_id, c.seq, c.progress, json_text(c.data), c.created_at) for c in latest.values()]))
        newest: dict[str, int] = {}
        for c in b.checkpoints:
            newest[c.process_id] = max(newest.get(c.process_id, 0), c.seq)
        old = [(pid, seq - CHECKPOINTS_KEPT) for pid, seq in newest.items() if seq > CHECKPOINTS_KEPT]
        if old:
            out.append((SQL["prune_checkpoints"], old))
    if b.events:
        out.append((SQL["add_event"], [(e.seq, e.ts, e.process_id, e.type, e.message, e.data_json())
                                       for e in b.events]))
    if b.logs:
        out.append((SQL["add_log"], list(b.logs)))
    if b.pools:
        out.append((SQL["upsert_pool"], list(b.pools.items())))
    if b.calls:
        out.append((SQL["upsert_call"], [(c.id, c.created_at, c.updated_at) for c in b.calls.values()]))
    if b.turns:
        out.append((SQL["add_turn"], [(t.call_id, t.call_id, t.role, t.text, t.created_at, t.source)
                                      for t in b.turns]))
    if b.voice_requests:
        out.append((SQL["upsert_voice_request"], [_voice_row(v) for v in b.voice_requests.values()]))
    if b.transfers:
        out.append((SQL["upsert_transfer"], [_transfer_row(t) for t in b.transfers.values()]))
    if b.commands_done:
        now = time.time()
        out.append((SQL["answer_command"], [(status, result, now, cid)
                                            for cid, (status, result) in b.commands_done.items()]))
    return out


def _process_row(p: Process) -> tuple:
    m = p.metrics
    return (
        p.id, p.kind, p.priority.value, json_text(p.spec), json_text(p.resources), p.max_attempts,
        p.state.value, p.reason, p.progress, p.attempt, p.failures,
        json_text(p.interruption.to_json()) if p.interruption else None,
        json_text(p.checkpoint) if p.checkpoint is not None else None, p.checkpoint_seq,
        p.created_at, p.updated_at, p.started_at, p.finished_at, m.resumes_total,
        m.resumes_succeeded, m.resumes_failed, m.resume_seconds_total, m.interruptions,
    )


def _process_from(r: dict[str, Any]) -> Process:
    return Process(
        id=r["id"], kind=r["kind"], priority=Priority(r["priority"]), spec=json.loads(r["spec"]),
        resources=json.loads(r["resources"]), max_attempts=r["max_attempts"], state=State(r["state"]),
        reason=r["reason"], progress=r["progress"], attempt=r["attempt"], failures=r["failures"],
        interruption=Interruption.from_json(json.loads(r["interruption"]) if r["interruption"] else None),
        checkpoint=json.loads(r["checkpoint"]) if r["checkpoint"] is not None else None,
        checkpoint_seq=r["checkpoint_seq"], created_at=r["created_at"], updated_at=r["updated_at"],
        started_at=r["started_at"], finished_at=r["finished_at"],
        metrics=Metrics(resumes_total=r["resumes_total"], resumes_succeeded=r["resumes_succeeded"],
                        resumes_failed=r["resumes_failed"], resume_seconds_total=r["resume_seconds"],
                        interruptions=r["interruptions"]),
    )


def _request_row(r: ResumeRequest) -> tuple:
    return (r.process_id, r.priority.value, r.requested_at, r.seq, r.source.value, r.not_before,
            bool(r.force_immediate))


def _request_from(r: dict[str, Any]) -> ResumeRequest:
    return ResumeRequest(process_id=r["process_id"], priority=Priority(r["priority"]),
                         requested_at=r["requested_at"], seq=r["seq"], source=RequestSource(r["source"]),
                         not_before=r["not_before"], force_immediate=r["force_immediate"])


def _dependency_from(r: dict[str, Any]) -> Dependency:
    return Dependency(dependent=r["dependent"], dependency=r["dependency"], type=DependencyType(r["type"]),
                      required_completion_percent=r["required_completion_percent"],
                      timeout_minutes=r["timeout_minutes"])


def _event_from(r: dict[str, Any]) -> Event:
    return Event(seq=r["seq"], ts=r["ts"], process_id=r["process_id"], type=r["type"], message=r["message"],
                 data=json.loads(r["data"]) if r["data"] else None)


def _holder_from(r: dict[str, Any] | None) -> LeaseHolder | None:
    if r is None or r["token"] is None:
        return None
    return LeaseHolder(r["token"], r["pid"], r["host"], r["role"], r["acquired_at"], r["heartbeat_at"])


def _turn_from(r: dict[str, Any]) -> Turn:
    return Turn(call_id=r["call_id"], role=r["role"], text=r["text"], created_at=r["created_at"],
                source=r["source"], seq=r["seq"])


def _voice_row(v: VoiceRequest) -> tuple:
    return (v.id, v.call_id, v.process_id, v.input_text, v.audio_path, v.transcript, v.reply, v.speech_path,
            v.stage, json_text(v.latency_ms), json_text(v.usage), v.model, v.created_at, v.updated_at)


def _voice_from(r: dict[str, Any]) -> VoiceRequest:
    return VoiceRequest(
        id=r["id"], call_id=r["call_id"], process_id=r["process_id"], input_text=r["input_text"],
        audio_path=r["audio_path"], transcript=r["transcript"], reply=r["reply"], speech_path=r["speech_path"],
        stage=r["stage"], latency_ms=json.loads(r["latency_ms"]), usage=json.loads(r["usage"]), model=r["model"],
        created_at=r["created_at"], updated_at=r["updated_at"],
    )


def _transfer_row(t: Transfer) -> tuple:
    return (t.id, t.call_id, t.process_id, t.from_agent, t.to_agent, t.status.value,
            json_text(t.summary) if t.summary is not None else None, t.summary_source, t.reason,
            t.created_at, t.updated_at, t.completed_at)


def _transfer_from(r: dict[str, Any]) -> Transfer:
    return Transfer(
        id=r["id"], call_id=r["call_id"], process_id=r["process_id"], from_agent=r["from_agent"],
        to_agent=r["to_agent"], status=TransferStatus(r["status"]),
        summary=json.loads(r["summary"]) if r["summary"] else None, summary_source=r["summary_source"],
        reason=r["reason"], created_at=r["created_at"], updated_at=r["updated_at"], completed_at=r["completed_at"],
    )
