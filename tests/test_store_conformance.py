"""The storage ports' contract (console/store/ports.py), checked against every adapter.

Each test runs once per adapter in ADAPTERS. An adapter joins the suite with one `Adapter`:
how to make a fresh database and how to connect to it (PostgreSQL: a database of its own per
test on the session's embedded server, tests/pg.py, reached by its URL). Two connections to one database stand for two processes.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from pathlib import Path
from typing import Any

import pg
import pytest

from console.errors import (
    NotADatabase,
    SchemaTooNew,
    StoreError,
    StoreUnavailable,
    SwitchboardError,
    UserError,
    WriteRejected,
)
from console.model import (
    Call,
    Checkpoint,
    Dependency,
    DependencyType,
    Event,
    Interruption,
    InterruptionType,
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
from console.store import CHECKPOINTS_KEPT, LeaseHolder, Store, VoiceLine, WriteBatch, ports
from console.store.memory import MemoryDatabase, MemoryStore
from console.store.sqlite import SqliteStore


class Adapter:
    name: str

    def database(self, tmp_path: Path) -> Any:
        """A new, empty database: whatever `connect` needs to reach it."""
        raise NotImplementedError

    def connect(self, database: Any) -> Store:
        """A connection to `database`, not yet open."""
        raise NotImplementedError

    def discard(self, database: Any) -> None:
        """After the test: remove what `database` made outside tmp_path."""


class SqliteAdapter(Adapter):
    name = "sqlite"

    def database(self, tmp_path: Path) -> Any:
        return str(tmp_path / "conformance.db")

    def connect(self, database: Any) -> Store:
        return SqliteStore(database)


class MemoryAdapter(Adapter):
    name = "memory"

    def database(self, tmp_path: Path) -> Any:
        return MemoryDatabase()

    def connect(self, database: Any) -> Store:
        return MemoryStore(database)


class PostgresAdapter(Adapter):
    name = "postgres"

    def database(self, tmp_path: Path) -> Any:
        return pg.server().create_database()

    def connect(self, database: Any) -> Store:
        from console.store.postgres import PostgresStore

        return PostgresStore(database)

    def discard(self, database: Any) -> None:
        pg.server().drop_database(database)


ADAPTERS: dict[str, Adapter] = {a.name: a for a in (MemoryAdapter(), SqliteAdapter(), PostgresAdapter())}


@pytest.fixture(params=list(ADAPTERS))
def adapter(request) -> Adapter:
    return ADAPTERS[request.param]


@pytest.fixture
def database(adapter, tmp_path):
    made = adapter.database(tmp_path)
    yield made
    adapter.discard(made)


@pytest.fixture
async def connect(adapter, database):
    """Opens connections to the test's database; closes them all at the end."""
    opened: list[Store] = []

    async def open_one() -> Store:
        s = adapter.connect(database)
        await s.open()
        opened.append(s)
        return s

    yield open_one
    for s in reversed(opened):
        await s.close()


@pytest.fixture
async def store(connect) -> Store:
    return await connect()


T0 = 1_700_000_000.0


def proc(pid: str, created: float = T0, **kw: Any) -> Process:
    return Process(id=pid, kind="python", spec={"entry": "steps:ok", "args": {"n": [1, 2]}}, created_at=created,
                   updated_at=created, **kw)


def request(pid: str, seq: int, **kw: Any) -> ResumeRequest:
    return ResumeRequest(pid, Priority.HIGH, T0 + seq, seq, RequestSource.OPERATOR, **kw)


def event(seq: int, pid: str | None = "a", type_: str = "running", ts: float | None = None,
          data: dict | None = None) -> Event:
    return Event(seq, T0 + seq if ts is None else ts, pid, type_, f"event {seq}", data)


def transfer(tid: str, call: str, created: float, status: TransferStatus = TransferStatus.INITIATED) -> Transfer:
    return Transfer(tid, call, tid, "alice", "bob", status, created_at=created, updated_at=created)


# -- the adapter's surface ----------------------------------------------------------------------


def test_the_adapter_offers_every_method_of_the_store_port(adapter, database):
    made = adapter.connect(database)
    for name, member in inspect.getmembers(Store, callable):
        if name.startswith("_"):
            continue
        assert hasattr(made, name), name
        wanted = list(inspect.signature(member).parameters.values())[1:]
        offered = list(inspect.signature(getattr(made, name)).parameters.values())
        assert [(p.name, p.default) for p in offered] == [(p.name, p.default) for p in wanted], name
        assert inspect.iscoroutinefunction(getattr(made, name)) == inspect.iscoroutinefunction(member), name
    assert isinstance(made.path, str) and made.submitted == 0


def test_the_adapter_offers_no_method_beyond_the_store_port(adapter, database):
    """A caller can ask only what the ports say, so it runs on every adapter: no method of one
    adapter's own (such as SQLite's change counter under its PRAGMA's name)."""
    made = adapter.connect(database)
    port = {name for name, _ in inspect.getmembers(Store, callable)}
    own = [name for name, _ in inspect.getmembers(made, inspect.ismethod)
           if not name.startswith("_") and name not in port]
    assert own == []


def test_the_ports_contracts_name_no_adapters_mechanism():
    """The contracts hold for every adapter: what one database does to keep them (a PRAGMA, a
    journal setting, a NOTIFY channel) is said in that adapter, not in the ports."""
    text = inspect.getsource(ports)
    for word in ("PRAGMA", "data_version", "synchronous", "journal", "WAL", "NOTIFY", "psycopg", "aiosqlite"):
        assert word not in text, word


# -- engine state ----------------------------------------------------------------------------------


async def test_processes_round_trip_as_json_and_list_by_creation(store):
    b, a = proc("b", T0 + 1), proc("a", T0 + 1)
    c = proc("c", T0, state=State.INTERRUPTED, progress=42.5, attempt=2, checkpoint={"at": (1, 2)},
             checkpoint_seq=3, interruption=Interruption(InterruptionType.RATE_LIMITED, "slow", T0, T0 + 60),
             resources={"gpu": 1})
    c.metrics.resumes_total = 4
    await store.write(WriteBatch(processes={p.id: p for p in (b, a, c)}))
    b.progress = 99.0  # a change after the write is not the store's
    assert [p.id for p in await store.list_processes()] == ["c", "a", "b"]
    got = await store.get_process("c")
    assert got == Process(**{**c.__dict__, "checkpoint": {"at": [1, 2]}})  # a tuple comes back as JSON's list
    assert got is not c and (await store.get_process("b")).progress == 0.0
    assert await store.get_process("nobody") is None


async def test_a_later_write_replaces_a_process_whole(store):
    p = proc("a")
    await store.write(WriteBatch(processes={"a": p}))
    p2 = proc("a", state=State.COMPLETED, progress=100.0, reason=None, finished_at=T0 + 5)
    await store.write(WriteBatch(processes={"a": p2}))
    assert await store.get_process("a") == p2
    assert len(await store.list_processes()) == 1


async def test_requests_are_upserted_by_process_listed_by_seq_and_deleted_by_none(store):
    await store.write(WriteBatch(processes={p: proc(p) for p in "abc"},
                                 requests={"a": request("a", 3), "b": request("b", 1), "c": request("c", 2)}))
    assert [r.process_id for r in await store.list_requests()] == ["b", "c", "a"]
    await store.write(WriteBatch(requests={"b": request("b", 7, not_before=T0 + 9, force_immediate=True),
                                           "c": None}))
    assert [(r.process_id, r.seq) for r in await store.list_requests()] == [("a", 3), ("b", 7)]
    assert await store.get_request("b") == request("b", 7, not_before=T0 + 9, force_immediate=True)
    assert await store.get_request("c") is None


async def test_a_dependency_is_added_once_and_the_first_one_stays(store):
    await store.write(WriteBatch(processes={p: proc(p) for p in "abc"},
                                 dependencies=[Dependency("b", "a", DependencyType.DATA, 80.0, 5.0)]))
    await store.write(WriteBatch(dependencies=[Dependency("b", "a"), Dependency("c", "b", DependencyType.RESOURCE)]))
    assert sorted(await store.list_dependencies(), key=lambda d: d.dependent) == [
        Dependency("b", "a", DependencyType.DATA, 80.0, 5.0), Dependency("c", "b", DependencyType.RESOURCE, 100.0)]


@pytest.mark.parametrize("bad", ["dependency", "request", "checkpoint", "turn", "voice request", "transfer",
                                 "event number"])
async def test_a_batch_referring_to_what_is_not_stored_is_rejected_whole(connect, bad):
    store, other = await connect(), await connect()
    await store.write(WriteBatch(processes={"a": proc("a")}, events=[event(1)]))
    batch = WriteBatch(processes={"new": proc("new")}, events=[event(2)], calls={"c1": Call("c1", T0, T0)})
    if bad == "dependency":
        batch.dependencies.append(Dependency("a", "ghost"))
    elif bad == "request":
        batch.requests["ghost"] = request("ghost", 1)
    elif bad == "checkpoint":
        batch.checkpoints.append(Checkpoint("ghost", 1, 5.0, {}, T0))
    elif bad == "turn":
        batch.turns.append(Turn("ghost-call", "caller", "hello", T0))
    elif bad == "voice request":
        batch.voice_requests["v"] = VoiceRequest("v", "ghost-call", "v", created_at=T0)
    elif bad == "transfer":
        batch.transfers["t"] = transfer("t", "ghost-call", T0)
    else:
        batch.events.append(event(1, "b"))
    with pytest.raises(WriteRejected) as raised:
        await store.write(batch)
    assert isinstance(raised.value, StoreError) and isinstance(raised.value, SwitchboardError)
    for reader in (store, other):  # none of the batch is committed
        assert [p.id for p in await reader.list_processes()] == ["a"]
        assert [e.seq for e in await reader.events()] == [1] and await reader.get_call("c1") is None
        assert (await reader.events())[0].process_id == "a"
    await store.write(WriteBatch(processes={"b": proc("b")}))  # and the store goes on
    assert [p.id for p in await other.list_processes()] == ["a", "b"]


async def test_the_snapshot_holds_everything_the_engine_starts_from(store):
    await store.write(WriteBatch(
        processes={p: proc(p, T0 + i) for i, p in enumerate("abc")},
        dependencies=[Dependency("b", "a")],
        requests={"b": request("b", 4), "c": request("c", 9)},
        pools={"gpu": 2, "cpu": 8},
        events=[event(1), event(2), event(5)],
    ))
    await store.write(WriteBatch(pools={"gpu": 3}, requests={"c": None}))
    snap = await store.load_snapshot()
    assert [p.id for p in snap.processes] == ["a", "b", "c"]
    assert snap.dependencies == [Dependency("b", "a")]
    assert [r.process_id for r in snap.requests] == ["b"]
    assert snap.pools == {"gpu": 3, "cpu": 8}
    assert (snap.last_event_seq, snap.last_request_seq) == (5, 4)
    empty = WriteBatch()
    await store.write(empty)
    assert store.submitted == 2  # an empty write takes no number


# -- writes: ordering, commit, barrier ---------------------------------------------------------------


async def test_writes_are_numbered_and_committed_in_order_and_seen_by_others_once_write_returns(connect):
    store, other = await connect(), await connect()
    p = proc("a")
    writes = []
    for i in range(1, 6):
        p = proc("a", progress=float(i))
        writes.append(asyncio.create_task(store.write(WriteBatch(processes={"a": p}, events=[event(i)]))))
    await asyncio.sleep(0)  # each write has started: it is numbered
    assert store.submitted == 5
    await writes[2]
    # write 3 has returned: it and every write before it are visible to another connection
    assert (await other.get_process("a")).progress >= 3.0
    assert [e.seq for e in await other.events()][:3] == [1, 2, 3]
    await asyncio.gather(*writes)
    assert (await other.get_process("a")).progress == 5.0
    assert store.barrier() is None and store.barrier(upto=5) is None


async def test_a_barrier_is_done_once_the_writes_up_to_it_commit_and_outlives_a_cancelled_waiter(connect):
    store, other = await connect(), await connect()
    writes = [asyncio.create_task(store.write(WriteBatch(events=[event(i)]))) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    first, every = store.barrier(upto=1), store.barrier()
    # An adapter that commits as it is called has nothing to wait for (None); one that
    # commits in groups hands out what to await. Either way, once it is done the writes are in.
    if every is not None:
        waiter = asyncio.create_task(asyncio.wait_for(every, 10))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        await every  # the waiter's cancellation did not cancel it
    elif first is not None:
        await first
    assert [e.seq for e in await other.events()] == [1, 2, 3]
    assert store.barrier() is None and store.barrier(upto=3) is None
    await asyncio.gather(*writes)


# -- leases ---------------------------------------------------------------------------------------------


def holder(token: str, beat: float = T0) -> LeaseHolder:
    return LeaseHolder(token, 100, "host", "runner", T0, beat)


async def test_a_lease_is_taken_when_free_refused_while_held_and_taken_over_when_stale(connect):
    one, two = await connect(), await connect()
    assert await one.lease_holder() is None
    assert await one.acquire_lease(holder("t1"), lambda h: False) is None
    assert await two.lease_holder() == holder("t1")
    assert await two.acquire_lease(holder("t2"), lambda h: False) == holder("t1")  # held, not stale
    assert await one.acquire_lease(holder("t1", T0 + 1), lambda h: False) is None  # its own token again
    judged = []

    def stale(h: LeaseHolder) -> bool:
        judged.append(h.token)
        return True

    assert await two.acquire_lease(holder("t2"), stale) is None  # stale: taken over
    assert judged == ["t1"] and (await one.lease_holder()).token == "t2"
    assert await one.renew_lease("t1", T0 + 50) is False  # the old holder learns it lost it


async def test_a_lease_is_renewed_and_released_by_its_token_only(connect):
    one, two = await connect(), await connect()
    await one.acquire_lease(holder("t1"), lambda h: False)
    assert await two.renew_lease("t2", T0 + 10) is False
    assert (await two.lease_holder()).heartbeat_at == T0
    assert await one.renew_lease("t1", T0 + 10) is True
    assert (await two.lease_holder()).heartbeat_at == T0 + 10
    await two.release_lease("t2")
    assert (await one.lease_holder()).token == "t1"
    await one.release_lease("t1")
    assert await two.lease_holder() is None
    assert await one.renew_lease("t1", T0 + 20) is False
    assert await two.acquire_lease(holder("t2"), lambda h: False) is None


# -- inbox ------------------------------------------------------------------------------------------------


async def test_a_command_goes_from_post_to_the_owner_and_its_answer_back(connect):
    owner, cli = await connect(), await connect()
    first = await cli.post_command("resume", {"process_id": "a", "ids": (1, 2)})
    second = await cli.post_command("cancel", {"process_id": "b"})
    assert second > first
    new = await owner.new_commands()
    assert [(c.id, c.kind, c.payload, c.status, c.result) for c in new] == [
        (first, "resume", {"process_id": "a", "ids": [1, 2]}, "new", None),
        (second, "cancel", {"process_id": "b"}, "new", None)]
    await owner.write(WriteBatch(commands_done={first: ("done", '{"ok": true}'), 999: ("done", "")}))
    answered = await cli.get_command(first)
    assert (answered.status, answered.result, answered.kind) == ("done", '{"ok": true}', "resume")
    assert (await cli.get_command(second)).status == "new"
    assert [c.id for c in await owner.new_commands()] == [second]
    await owner.write(WriteBatch(commands_done={second: ("error", "no such process")}))
    assert await owner.new_commands() == []
    assert (await cli.get_command(second)).result == "no such process"
    assert await cli.get_command(999) is None


# -- history -------------------------------------------------------------------------------------------


async def test_events_page_back_from_the_newest_and_forward_after_a_number(store):
    await store.write(WriteBatch(events=[event(i, "a" if i % 2 else "b", data={"i": i} if i < 3 else None)
                                         for i in range(1, 11)]))
    assert [e.seq for e in await store.events(limit=3)] == [8, 9, 10]
    assert [e.seq for e in await store.events(limit=3, before_seq=8)] == [5, 6, 7]
    assert [e.seq for e in await store.events(process_id="a", limit=2)] == [7, 9]
    assert [e.seq for e in await store.events(process_id="b", limit=10, before_seq=5)] == [2, 4]
    assert [e.seq for e in await store.events_after(7)] == [8, 9, 10]
    assert [e.seq for e in await store.events_after(0, limit=2)] == [1, 2]
    assert await store.events_after(10) == []
    one, three = (await store.events(limit=10))[0], (await store.events(limit=10))[2]
    assert (one.ts, one.process_id, one.type, one.message, one.data) == (T0 + 1, "a", "running", "event 1", {"i": 1})
    assert three.data is None


async def test_count_events_counts_from_the_newest_event_older_than_since(store):
    types = ["completed", "failed", "completed", "running", "failed", "completed"]
    await store.write(WriteBatch(events=[event(i + 1, type_=t, ts=T0 + 10 * i) for i, t in enumerate(types)]))
    assert await store.count_events(["completed", "failed"], T0 + 15) == {"failed": 1, "completed": 2}
    assert await store.count_events(["completed", "failed"], T0 + 20) == {"failed": 1, "completed": 2}  # at since: in
    assert await store.count_events(["completed"], T0 - 1) == {"completed": 3}
    assert await store.count_events(["completed", "failed"], T0 + 100) == {}


async def test_checkpoints_keep_the_newest_and_list_them_in_order(store):
    await store.write(WriteBatch(processes={"a": proc("a"), "b": proc("b")},
                                 checkpoints=[Checkpoint("b", 1, 1.0, {"b": 1}, T0)]))
    for seq in range(1, CHECKPOINTS_KEPT + 6):
        await store.write(WriteBatch(checkpoints=[Checkpoint("a", seq, float(seq), {"step": seq}, T0 + seq)]))
    kept = await store.checkpoints("a", limit=100)
    assert [c.seq for c in kept] == list(range(6, CHECKPOINTS_KEPT + 6))
    assert [c.seq for c in await store.checkpoints("a", limit=3)] == [23, 24, 25]
    assert kept[-1] == Checkpoint("a", 25, 25.0, {"step": 25}, T0 + 25)
    await store.write(WriteBatch(checkpoints=[Checkpoint("a", 25, 30.0, [1, 2], T0 + 30)]))  # same number: replaced
    assert (await store.checkpoints("a", limit=1))[0].data == [1, 2]
    assert [c.seq for c in await store.checkpoints("b")] == [1]
    assert await store.checkpoints("nobody") == []


async def test_logs_keep_the_order_written_and_list_the_newest(store):
    await store.write(WriteBatch(logs=[("a", T0 + i, f"line {i}") for i in range(5)] + [("b", T0, "other")]))
    await store.write(WriteBatch(logs=[("a", T0 + 1, "late line")]))
    assert await store.logs("a", limit=3) == [(T0 + 3, "line 3"), (T0 + 4, "line 4"), (T0 + 1, "late line")]
    assert await store.logs("b") == [(T0, "other")]
    assert await store.logs("nobody") == []


async def test_pruning_deletes_old_history_and_answered_commands_but_keeps_the_numbering(connect):
    store, other = await connect(), await connect()
    await store.write(WriteBatch(events=[event(i, ts=T0 + i) for i in range(1, 8)],
                                 logs=[("a", T0 + i, f"l{i}") for i in range(1, 8)]))
    assert await store.prune_history(T0 + 5, batch_size=2) == 8  # events 1-4, log lines 1-4
    assert [e.seq for e in await other.events()] == [5, 6, 7]
    assert [line for _, line in await other.logs("a")] == ["l5", "l6", "l7"]
    await store.prune_history(T0 + 1000, batch_size=2)
    assert [e.seq for e in await other.events()] == [7]  # the newest event stays ...
    assert (await other.load_snapshot()).last_event_seq == 7  # ... so no number is given twice
    assert await other.logs("a") == []

    answered, waiting = await other.post_command("resume", {}), await other.post_command("cancel", {})
    await store.write(WriteBatch(commands_done={answered: ("done", "")}))
    await store.prune_history(T0)  # handled after T0: kept
    assert (await other.get_command(answered)).status == "done"
    await store.prune_history(T0 * 2)
    assert await other.get_command(answered) is None
    assert (await other.get_command(waiting)).status == "new"  # a command not yet answered stays


# -- calls, voice requests, transfers ------------------------------------------------------------------


async def test_turns_are_numbered_per_call_and_calls_keep_their_creation_time(connect):
    store, other = await connect(), await connect()
    await store.write(WriteBatch(calls={"c1": Call("c1", T0, T0), "c2": Call("c2", T0, T0 + 1)},
                                 turns=[Turn("c1", "caller", "one", T0), Turn("c2", "caller", "first", T0),
                                        Turn("c1", "assistant", "two", T0 + 1, "vr1", seq=77)]))
    await store.write(WriteBatch(calls={"c1": Call("c1", T0 + 50, T0 + 5)},
                                 turns=[Turn("c1", "caller", "three", T0 + 5)]))
    call = await other.get_call("c1", turns=2)
    assert (call.created_at, call.updated_at, call.turn_count) == (T0, T0 + 5, 3)
    assert [(t.seq, t.text) for t in call.turns] == [(2, "two"), (3, "three")]
    assert call.turns[0] == Turn("c1", "assistant", "two", T0 + 1, "vr1", seq=2)
    assert call.last_turn == call.turns[-1]
    assert [t.seq for t in (await other.get_call("c2")).turns] == [1]
    bare = await other.get_call("c1", turns=0)
    assert (bare.turns, bare.turn_count, bare.last_turn) == ([], 3, None)
    assert await other.get_call("nobody") is None


async def test_calls_list_the_most_recently_updated_first_with_their_last_turn(store):
    await store.write(WriteBatch(calls={c: Call(c, T0, T0 + i) for i, c in enumerate(["c0", "c1", "c2"])},
                                 turns=[Turn("c0", "caller", "hi", T0), Turn("c0", "agent", "hello", T0 + 1)]))
    listed = await store.list_calls()
    assert [c.id for c in listed] == ["c2", "c1", "c0"]
    assert [(c.turn_count, c.turns) for c in listed] == [(0, []), (0, []), (2, [])]
    assert listed[0].last_turn is None and listed[2].last_turn.text == "hello" and listed[2].last_turn.seq == 2
    assert [c.id for c in await store.list_calls(limit=1, offset=1)] == ["c1"]


async def test_voice_requests_round_trip_and_list_newest_first(store):
    await store.write(WriteBatch(calls={"c1": Call("c1", T0, T0), "c2": Call("c2", T0, T0)}, voice_requests={
        "v1": VoiceRequest("v1", "c1", "v1", input_text="hello", created_at=T0 + 1, updated_at=T0 + 1),
        "v2": VoiceRequest("v2", "c2", "v2", audio_path="/tmp/a.wav", created_at=T0 + 2, updated_at=T0 + 2),
        "v3": VoiceRequest("v3", "c1", "v3", input_text="again", created_at=T0 + 3, updated_at=T0 + 3),
    }))
    done = VoiceRequest("v1", "c1", "v1", input_text="hello", transcript="hello", reply="hi there", stage="done",
                        latency_ms={"stt": 1.5, "total": 9.0}, usage={"prompt_tokens": 7}, model="m",
                        created_at=T0 + 1, updated_at=T0 + 9)
    await store.write(WriteBatch(voice_requests={"v1": done}))
    assert await store.get_voice_request("v1") == done
    assert await store.get_voice_request("nobody") is None
    assert [v.id for v in await store.voice_requests()] == ["v3", "v2", "v1"]
    assert [v.id for v in await store.voice_requests(call_id="c1")] == ["v3", "v1"]
    assert [v.id for v in await store.voice_requests(limit=1)] == ["v3"]
    assert await store.voice_lines(limit=2) == [VoiceLine("v3", "c1", "v3", "queued", "again", None, None),
                                                VoiceLine("v2", "c2", "v2", "queued", None, None, None)]
    assert (await store.voice_lines())[2] == VoiceLine("v1", "c1", "v1", "done", "hello", "hello", "hi there")


async def test_transfers_list_newest_first_by_status_and_call_a_page_at_a_time(store):
    await store.write(WriteBatch(calls={"c1": Call("c1", T0, T0), "c2": Call("c2", T0, T0)}, transfers={
        "t1": transfer("t1", "c1", T0 + 1, TransferStatus.COMPLETED),
        "t2": transfer("t2", "c2", T0 + 2, TransferStatus.READY),
        "t3": transfer("t3", "c1", T0 + 3, TransferStatus.READY),
        "t4": transfer("t4", "c2", T0 + 4),
    }))
    assert [t.id for t in await store.list_transfers()] == ["t4", "t3", "t2", "t1"]
    assert [t.id for t in await store.list_transfers(status="ready")] == ["t3", "t2"]
    assert [t.id for t in await store.list_transfers(call_id="c1")] == ["t3", "t1"]
    assert [t.id for t in await store.list_transfers(status="ready", call_id="c2")] == ["t2"]
    assert [t.id for t in await store.list_transfers(limit=2, offset=1)] == ["t3", "t2"]
    summarised = transfer("t3", "c1", T0 + 3, TransferStatus.COMPLETED)
    summarised.summary, summarised.summary_source, summarised.completed_at = {"intent": "refund"}, "llm", T0 + 8
    await store.write(WriteBatch(transfers={"t3": summarised}))
    assert await store.get_transfer("t3") == summarised
    assert [t.id for t in await store.list_transfers(status="ready")] == ["t2"]
    assert await store.get_transfer("nobody") is None


# -- change marker, life cycle ----------------------------------------------------------------------------


async def test_the_change_marker_differs_once_another_connection_committed(connect):
    watcher, writer = await connect(), await connect()
    seen = await watcher.change_marker()
    assert await watcher.change_marker() == seen  # nothing happened
    await writer.write(WriteBatch(processes={"a": proc("a")}))
    after_write = await watcher.change_marker()
    assert after_write != seen
    await writer.post_command("resume", {"process_id": "a"})
    after_post = await watcher.change_marker()
    assert after_post != after_write
    await writer.acquire_lease(holder("t1"), lambda h: False)
    assert await watcher.change_marker() != after_post


async def test_what_is_committed_outlives_the_connection(adapter, database):
    first = adapter.connect(database)
    await first.open()
    await first.write(WriteBatch(processes={"a": proc("a")}, events=[event(1)], calls={"c1": Call("c1", T0, T0)}))
    command = await first.post_command("resume", {"process_id": "a"})
    await first.acquire_lease(holder("t1"), lambda h: False)
    await first.close()
    await first.close()  # closing twice does nothing
    with pytest.raises(RuntimeError):
        await first.list_processes()
    again = adapter.connect(database)
    await again.open()
    try:
        assert [p.id for p in await again.list_processes()] == ["a"]
        assert [e.seq for e in await again.events()] == [1]
        assert (await again.get_command(command)).kind == "resume"
        assert (await again.lease_holder()).token == "t1"
        assert (await again.get_call("c1")).created_at == T0
    finally:
        await again.close()


# -- the SQLite adapter's refusals on opening ------------------------------------------------------------


def _refusal(e: BaseException) -> bool:
    return isinstance(e, StoreError) and isinstance(e, UserError) and "\n" not in str(e)


async def test_sqlite_refuses_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages of a database " * 200)
    with pytest.raises(NotADatabase) as raised:
        await SqliteStore(path).open()
    assert _refusal(raised.value) and str(path) in str(raised.value)


async def test_sqlite_refuses_a_database_from_a_newer_switchboard(tmp_path):
    path = tmp_path / "new.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 999")
    con.close()
    with pytest.raises(SchemaTooNew) as raised:
        await SqliteStore(path).open()
    assert _refusal(raised.value) and "v999" in str(raised.value)


async def test_sqlite_refuses_a_folder_that_does_not_exist(tmp_path):
    with pytest.raises(StoreUnavailable) as raised:
        await SqliteStore(tmp_path / "missing" / "t.db").open()
    assert _refusal(raised.value)
    assert not (tmp_path / "missing").exists()
