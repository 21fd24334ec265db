"""The PostgreSQL adapter beyond the ports' contract (tests/test_store_conformance.py checks
that): how a URL selects it, its refusals on opening, migrations opened at once, the lease's
generation, and the command line running the demo workflow on a PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pg
import pytest
from conftest import ROOT

from console.errors import NotADatabase, SchemaTooNew, StoreUnavailable, UserError
from console.settings import DatabaseUrl, load_settings
from console.store import LeaseHolder, WriteBatch, open_store

SB = [sys.executable, "-m", "console"]
T0 = 1_700_000_000.0


@pytest.fixture
def url():
    server = pg.server()
    made = server.create_database()
    yield made
    server.drop_database(made)


def sb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SB, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_a_postgresql_url_selects_the_server_adapter_and_a_path_never_imports_psycopg(tmp_path):
    assert type(open_store("postgresql://u@h/db")).__name__ == "PostgresStore"
    assert type(open_store("postgres://u@h/db")).__name__ == "PostgresStore"
    # an SQLite user's process never loads the PostgreSQL driver
    code = ("import asyncio, sys; from console.store import open_store\n"
            f"s = open_store({str(tmp_path / 'x.db')!r}); asyncio.run(s.open()); asyncio.run(s.close())\n"
            "print(type(s).__name__, 'psycopg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["SqliteStore", "False"]


def test_a_database_url_in_the_settings_is_kept_as_written(monkeypatch):
    written = "postgresql://me:secret@db.example:5433/switchboard?sslmode=require"
    given = load_settings(db=written).db_path
    assert isinstance(given, DatabaseUrl) and str(given) == written  # not a path: no "//" folded
    monkeypatch.setenv("SWITCHBOARD_DB", written)
    monkeypatch.setenv("SWITCHBOARD_ENGINE__MAX_CONCURRENT", "3")  # the pydantic path, not the plain one
    settings = load_settings()
    assert str(settings.db_path) == written and settings.engine.max_concurrent == 3
    assert str(load_settings(db="~/x.db").db_path) == os.path.expanduser("~/x.db")


async def test_no_server_is_one_line_naming_the_database_without_its_password(tmp_path):
    store = open_store(f"postgresql://me:hunter2@/switchboard?host={tmp_path}")
    with pytest.raises(StoreUnavailable) as raised:
        await store.open()
    message = str(raised.value)
    assert isinstance(raised.value, UserError) and "\n" not in message
    assert "switchboard" in message and str(tmp_path) in message and "hunter2" not in message
    with pytest.raises(RuntimeError):
        await store.list_processes()


def test_the_command_line_says_so_in_one_line_and_exits_2(tmp_path):
    result = sb("status", "--db", f"postgresql://postgres@/nowhere?host={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "nowhere" in result.stderr and "Traceback" not in result.stderr


async def test_a_database_from_a_newer_switchboard_or_of_another_program_is_refused(url):
    import psycopg

    store = open_store(url)
    await store.open()
    await store.close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("UPDATE switchboard_schema SET version = 999")
    with pytest.raises(SchemaTooNew) as raised:
        await open_store(url).open()
    assert "v999" in str(raised.value) and "\n" not in str(raised.value)

    other = pg.server().create_database()
    try:
        async with await psycopg.AsyncConnection.connect(other, autocommit=True) as conn:
            await conn.execute("CREATE TABLE processes (pid INTEGER)")
        with pytest.raises(NotADatabase):
            await open_store(other).open()
    finally:
        pg.server().drop_database(other)


async def test_connections_opening_a_new_database_at_once_migrate_it_once(url):
    import psycopg

    stores = [open_store(url) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await stores[0].write(WriteBatch(pools={"gpu": 1}))
        assert [(await s.load_snapshot()).pools for s in stores] == [{"gpu": 1}] * 6
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    async with await psycopg.AsyncConnection.connect(url) as conn:
        assert await (await conn.execute("SELECT version FROM switchboard_schema")).fetchall() == [(1,)]
        assert await (await conn.execute("SELECT COUNT(*) FROM lease")).fetchone() == (1,)


async def test_the_lease_generation_rises_at_each_change_of_holder_and_outlives_a_release(url):
    one, two = open_store(url), open_store(url)
    await one.open()
    await two.open()
    try:
        def holder(token: str) -> LeaseHolder:
            return LeaseHolder(token, 1, "h", "runner", T0, T0)

        assert await one.acquire_lease(holder("t1"), lambda h: False) is None
        assert one.lease_generation == 1
        assert await one.acquire_lease(holder("t1"), lambda h: False) is None  # the same holder again
        assert one.lease_generation == 1
        assert await two.acquire_lease(holder("t2"), lambda h: False) is not None  # refused: unchanged
        assert two.lease_generation is None
        assert await two.acquire_lease(holder("t2"), lambda h: True) is None  # taken over
        assert two.lease_generation == 2
        await two.release_lease("t2")
        assert await one.acquire_lease(holder("t1"), lambda h: False) is None
        assert one.lease_generation == 3  # a freed lease taken again still counts on
    finally:
        await one.close()
        await two.close()


async def test_concurrent_writes_share_transactions_and_commit_in_order(url):
    store = open_store(url)
    await store.open()
    try:
        from console.model import Event

        writes = [store.write(WriteBatch(events=[Event(i, T0 + i, None, "running")])) for i in range(1, 201)]
        await asyncio.gather(*writes)
        assert [e.seq for e in await store.events(limit=1000)] == list(range(1, 201))
        assert store.commits < 200  # writes waiting for a commit were merged into the next one
    finally:
        await store.close()


def test_the_demo_workflow_runs_to_the_end_on_postgresql(url):
    run = sb("run", "--db", url, "--workflow", "demo", "--until-idle")
    assert run.returncode == 0, run.stderr
    status = sb("status", "--db", url, "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["processes"] and {p["state"] for p in report["processes"]} == {"completed"}
    assert report["counts"] == {"completed": len(report["processes"])}


def test_the_console_refuses_a_postgresql_database_in_one_line(tmp_path):
    # the terminal console reads a file's folder and shows its path: not yet a server's URL
    result = subprocess.run([*SB, "--db", f"postgresql://postgres@/x?host={tmp_path}"], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "PostgreSQL" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


async def test_a_user_who_may_not_create_the_tables_is_told_in_one_line(url):
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE ROLE reader LOGIN")
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        reader = url.replace("postgres:@", "reader@", 1)
        with pytest.raises(StoreUnavailable) as raised:
            await open_store(reader).open()
        assert "cannot set up the schema" in str(raised.value) and "\n" not in str(raised.value)
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("DROP ROLE reader")


def test_status_never_prints_a_password_written_in_the_url(url):
    # the embedded server trusts local connections, so the password is accepted and unused
    with_password = url.replace("postgresql://postgres", "postgresql://postgres:s3cret-pw", 1)
    assert "s3cret-pw" in with_password
    status = sb("status", "--db", with_password, "--json")
    assert status.returncode == 0, status.stderr
    assert "s3cret-pw" not in status.stdout + status.stderr
    assert json.loads(status.stdout)["db"].startswith("postgresql://")


async def test_a_call_cancelled_while_it_waits_for_a_connection_ends_cancelled(url):
    """A reader waiting for the pool's one connection is cancelled at each moment around the
    connection's return: it ends cancelled, or with its answer if it had one before; it never
    runs on with the cancellation swallowed (psycopg_pool's wait on Python 3.11, which left an
    engine stopping mid-prune waiting forever)."""
    from console.store.postgres import PostgresStore

    store = PostgresStore(url, pool_size=1)
    await store.open()
    pool = store._require()
    try:
        for turns in range(8):
            async with pool.connection():  # the only connection: the reader waits for it
                reader = asyncio.create_task(store.lease_holder())
                while pool.get_stats().get("requests_waiting", 0) < 1:
                    await asyncio.sleep(0)
            for _ in range(turns):
                await asyncio.sleep(0)
            if reader.done():
                assert reader.result() is None  # answered before the cancel came: nothing to cancel
                continue
            assert reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
    finally:
        await store.close()
