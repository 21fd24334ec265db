"""The server store: PostgreSQL through psycopg 3 (async), a connection pool, group commit.

Imported only for a `postgresql://` URL (console.store.open_store), so the embedded setup never
loads psycopg. Its SQL is in sql/postgres/ (console.store.pg_sql).

How it keeps the ports' contracts:

* Group commit (console.store.group_commit): batches commit in order, one transaction each,
  every statement an executemany (psycopg pipelines its rows: one round trip per statement,
  not per row). Rows are built by console.store.rows, as for SQLite.
* Every writing transaction raises the `changes` counter, which is what `change_marker` reads.
* The lease is one row, read FOR UPDATE and taken in the same transaction; its `generation`
  rises each time it passes to another token (the fencing number of a future multi-runner
  write check, see `lease_generation`).
* Migrations run at open inside one transaction holding an advisory lock, so processes that
  open at once apply each one exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from console.errors import LeaseLost, NotADatabase, SchemaTooNew, StoreUnavailable
from console.model import Call, Checkpoint, Dependency, Event, json_text, Process, ResumeRequest, Transfer, Turn, VoiceRequest
from console.store import pg_sql
from console.store.group_commit import GroupCommit, GroupCommitted, Settle
from console.store.ports import Command, LeaseHolder, LogLine, Snapshot, VoiceLine, WriteBatch
from console.store.rows import (
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
    write_rows,
)

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


class PostgresStore(GroupCommitted):
    def __init__(self, url: str, pool_size: int = POOL_SIZE, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        self.path = shown_url(url)
        self._url = url
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._pool: AsyncConnectionPool | None = None
        self._group = GroupCommit(self._apply, psycopg.IntegrityError, detail=_first_line)
        self._spec_json = SpecJson()
        self._lease_token: str | None = None  # the lease this connection took: its writes carry it
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
        await self._group.drain()
        await self._pool.close()
        self._pool = None

    def _require(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection of the pool. psycopg_pool waits for a free one through asyncio.wait_for,
        which on Python 3.11 can swallow a cancellation that arrives as the connection does
        (CPython gh-86296): the task ran on as if not cancelled, and an engine stopping while it
        pruned history never ended. A request made during the wait is still counted on the task
        (Task.cancelling), so it is raised here."""
        task = asyncio.current_task()
        asked = task.cancelling() if task is not None else 0
        async with self._require().connection() as conn:
            if task is not None and task.cancelling() > asked:
                raise asyncio.CancelledError
            yield conn

    async def _rows(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        async with self._connection() as conn:
            return await (await conn.execute(SQL[name], params)).fetchall()

    # -- group commit -----------------------------------------------------------------

    async def _apply(self, batch: WriteBatch, settle: Settle) -> None:
        statements = write_rows(batch, self._spec_json)
        lease = batch.lease or self._lease_token
        async with self._connection() as conn:
            async with conn.transaction():
                if lease is not None:  # locked in the write's own transaction: a late write never lands
                    current = holder_from(await (await conn.execute(SQL["lease_for_update"])).fetchone())
                    if current is None or current.token != lease:
                        raise LeaseLost("this writer's lease was taken over; nothing of the write was committed")
                async with conn.cursor() as cur:
                    for name, rows in statements:
                        await cur.executemany(SQL[name], rows)
                    await cur.execute(SQL["bump_changes"])

    # -- ownership ----------------------------------------------------------------------

    async def acquire_lease(
        self, holder: LeaseHolder, is_stale: Callable[[LeaseHolder], bool]
    ) -> LeaseHolder | None:
        async with self._connection() as conn:
            async with conn.transaction():
                current = holder_from(await (await conn.execute(SQL["lease_for_update"])).fetchone())
                if current is not None and current.token != holder.token and not is_stale(current):
                    return current
                taken = await (await conn.execute(SQL["take_lease"], {
                    "token": holder.token, "pid": holder.pid, "host": holder.host, "role": holder.role,
                    "acquired_at": holder.acquired_at, "heartbeat_at": holder.heartbeat_at})).fetchone()
                await conn.execute(SQL["bump_changes"])
        self.lease_generation = taken["generation"]
        self._lease_token = holder.token
        return None

    async def renew_lease(self, token: str, now: float) -> bool:
        async with self._connection() as conn:
            async with conn.transaction():
                renewed = (await conn.execute(SQL["renew_lease"], {"token": token, "now": now})).rowcount == 1
                if renewed:
                    await conn.execute(SQL["bump_changes"])
        return renewed

    async def release_lease(self, token: str) -> None:
        async with self._connection() as conn:
            async with conn.transaction():
                if (await conn.execute(SQL["release_lease"], {"token": token})).rowcount:
                    await conn.execute(SQL["bump_changes"])

    async def lease_holder(self) -> LeaseHolder | None:
        rows = await self._rows("lease_holder")
        return holder_from(rows[0]) if rows else None

    # -- state ----------------------------------------------------------------------------

    async def load_snapshot(self) -> Snapshot:
        async with self._connection() as conn:
            # one snapshot of the database for every part
            async with conn.transaction():
                await conn.execute(SQL["read_one_moment"])

                async def rows(name: str) -> list[dict[str, Any]]:
                    return await (await conn.execute(SQL[name])).fetchall()

                processes = [process_from(r) for r in await rows("list_processes")]
                dependencies = [dependency_from(r) for r in await rows("list_dependencies")]
                requests = [request_from(r) for r in await rows("list_requests")]
                pools = {r["name"]: r["size"] for r in await rows("list_pools")}
                last_event = (await rows("last_event_seq"))[0]["n"]
                last_request = (await rows("last_request_seq"))[0]["n"]
        return Snapshot(processes, dependencies, requests, pools, last_event, last_request)

    async def list_processes(self) -> list[Process]:
        return [process_from(r) for r in await self._rows("list_processes")]

    async def get_process(self, process_id: str) -> Process | None:
        rows = await self._rows("get_process", {"id": process_id})
        return process_from(rows[0]) if rows else None

    async def list_dependencies(self) -> list[Dependency]:
        return [dependency_from(r) for r in await self._rows("list_dependencies")]

    async def list_requests(self) -> list[ResumeRequest]:
        return [request_from(r) for r in await self._rows("list_requests")]

    async def get_request(self, process_id: str) -> ResumeRequest | None:
        rows = await self._rows("get_request", {"id": process_id})
        return request_from(rows[0]) if rows else None

    async def change_marker(self) -> int:
        """The `changes` counter: every writing transaction, on any connection, raises it."""
        return (await self._rows("change_marker"))[0]["n"]

    # -- inbox ------------------------------------------------------------------------------

    async def post_command(self, kind: str, payload: dict[str, Any]) -> int:
        async with self._connection() as conn:
            async with conn.transaction():
                row = await (await conn.execute(SQL["post_command"], {
                    "kind": kind, "payload": json_text(payload), "created_at": time.time()})).fetchone()
                await conn.execute(SQL["bump_changes"])
        return row["id"]

    async def new_commands(self) -> list[Command]:
        return [new_command_from(r) for r in await self._rows("new_commands")]

    async def get_command(self, command_id: int) -> Command | None:
        rows = await self._rows("get_command", {"id": command_id})
        return command_from(rows[0]) if rows else None

    # -- history ----------------------------------------------------------------------------

    async def events(
        self, process_id: str | None = None, limit: int = 100, before_seq: int | None = None
    ) -> list[Event]:
        rows = await self._rows("events", {"process_id": process_id, "before_seq": before_seq, "limit": limit})
        return [event_from(r) for r in reversed(rows)]

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        return [event_from(r) for r in await self._rows("events_after", {"seq": seq, "limit": limit})]

    async def count_events(self, types: list[str], since: float) -> dict[str, int]:
        rows = await self._rows("count_events", {"types": list(types), "since": since})
        return {r["type"]: r["n"] for r in rows}

    async def checkpoints(self, process_id: str, limit: int = 20) -> list[Checkpoint]:
        rows = await self._rows("checkpoints", {"id": process_id, "limit": limit})
        return [checkpoint_from(r) for r in reversed(rows)]

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
        async with self._connection() as conn:
            async with conn.transaction():
                deleted = (await conn.execute(SQL[name], params)).rowcount
                if deleted:
                    await conn.execute(SQL["bump_changes"])
        return deleted

    # -- calls, voice requests, transfers -------------------------------------------------------

    async def get_call(self, call_id: str, turns: int = 50) -> Call | None:
        async with self._connection() as conn:
            async with conn.transaction():  # the call, its turns and their count as of one moment
                await conn.execute(SQL["read_one_moment"])
                call = await (await conn.execute(SQL["get_call"], {"id": call_id})).fetchone()
                if call is None:
                    return None
                turn_rows = await (await conn.execute(SQL["call_turns"], {"id": call_id, "limit": turns})).fetchall()
                count = (await (await conn.execute(SQL["count_turns"], {"id": call_id})).fetchone())["n"]
        listed = [turn_from(r) for r in reversed(turn_rows)]
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
        return voice_from(rows[0]) if rows else None

    async def voice_requests(self, call_id: str | None = None, limit: int = 100) -> list[VoiceRequest]:
        return [voice_from(r) for r in await self._rows("voice_requests", {"call_id": call_id, "limit": limit})]

    async def voice_lines(self, limit: int = 100) -> list[VoiceLine]:
        return [VoiceLine(**r) for r in await self._rows("voice_lines", {"limit": limit})]

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        rows = await self._rows("get_transfer", {"id": transfer_id})
        return transfer_from(rows[0]) if rows else None

    async def list_transfers(
        self, status: str | None = None, limit: int = 50, offset: int = 0, call_id: str | None = None
    ) -> list[Transfer]:
        rows = await self._rows("list_transfers", {"status": status, "call_id": call_id, "limit": limit,
                                                   "offset": offset})
        return [transfer_from(r) for r in rows]


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
