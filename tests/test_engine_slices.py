"""Long work split into slices that let the loop run: a large workflow's load, the store's row
building, bursts of loads, dispatch passes, WAL checkpoints. Behaviour only (never timing):
what others can see and do while it is half-way, and that it still ends up whole."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections import Counter

import pytest
import steps
from conftest import dep, py, running_engine, states, wait_for, workflow

from console.engine import orchestrator as orchestrator_module
from console.engine.pacing import Herd, TurnShare
from console.model import Event, State, UserError
from console.store import WriteBatch
from console.store import sqlite as sqlite_module


def chain(n: int, prefix: str = "p", fn: str = "noop") -> str:
    """n processes, each depending on the one before (so most of them wait)."""
    return "".join(py(f"{prefix}{i}", fn) for i in range(n)) + "".join(
        dep(f"{prefix}{i}", f"{prefix}{i - 1}") for i in range(1, n))


class Turns:
    """Counts turns of the loop and runs `each` at every one, until stopped. The loop is then
    never idle, so aiosqlite's thread gets the GIL only when the interpreter forces a switch
    (every 5 ms by default: a test took 10-20 s); meanwhile the switch comes sooner."""

    def __init__(self, each=None):
        self.count = 0
        self.each = each
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
        self._task = asyncio.create_task(self._run())

    async def _run(self):
        while True:
            self.count += 1
            if self.each is not None:
                await self.each()
            await asyncio.sleep(0)

    async def stop(self):
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        sys.setswitchinterval(self._switch)


def stored_ids(db) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {row[0] for row in con.execute("SELECT id FROM processes")}
    finally:
        con.close()


@pytest.fixture
def thin_slices(monkeypatch):
    """Every slice boundary yields, so a few hundred processes take many turns."""
    monkeypatch.setattr(orchestrator_module, "LOAD_SLICE_S", 0.0)


async def test_a_load_in_slices_is_hidden_until_committed_then_whole(tmp_path, thin_slices):
    n = 300
    wf = workflow(chain(n))
    seen_partial: list[int] = []
    refused: list[bool] = []

    async with running_engine(tmp_path) as orch:
        db = orch.store.path

        async def look():
            ids = {i for i in stored_ids(db) if i.startswith("p")}
            if ids and len(ids) != n:
                seen_partial.append(len(ids))
            if "p5" in orch.processes and not refused:  # registered in memory, half-way
                try:
                    await orch.resume("p5")
                except UserError as e:
                    refused.append("no process" in str(e))
                else:
                    refused.append(False)

        turns = Turns(look)
        result = await orch.load(wf)
        during = turns.count
        await orch.run_until_idle()
        await turns.stop()

        assert during > 10  # the load let the loop run many times...
        assert refused == [True]  # ...operators did not see its processes meanwhile...
        assert seen_partial == []  # ...and the database never held part of it
        assert result.added == [f"p{i}" for i in range(n)] and result.dependencies_added == n - 1
        assert set(states(orch).values()) == {"completed"}
    # in dependency order: nothing started before what it depends on completed
    assert [pid for what, pid, _ in steps.RECORD if what == "start"] == [f"p{i}" for i in range(n)]


async def test_no_run_of_a_half_loaded_workflow_starts(tmp_path, thin_slices, monkeypatch):
    """Ready processes (no dependencies) wait for their load's write like any other work."""
    wf = workflow("".join(py(f"r{i}", "noop") for i in range(200)))
    async with running_engine(tmp_path, max_concurrent=500) as orch:
        stored_at_first_start: list[int] = []

        class Starts(list):  # what the database holds when the first run's step begins
            def append(self, item):
                if not stored_at_first_start:
                    stored_at_first_start.append(len(stored_ids(orch.store.path)))
                super().append(item)

        monkeypatch.setattr(steps, "RECORD", Starts())
        await orch.load(wf)
        await orch.run_until_idle()
        assert stored_at_first_start == [200]  # the first run began once the whole load was committed
        assert set(states(orch).values()) == {"completed"}


async def test_a_dependency_finishing_mid_load_is_left_to_the_load(tmp_path, thin_slices):
    """`up` completes while a workflow that depends on it is half-loaded: its consequences for
    the new processes are written by the load's own transaction, never by `up`'s (a crash in
    between would otherwise leave part of the workflow in the database)."""
    n = 2000
    async with running_engine(tmp_path, max_concurrent=50) as orch:
        await orch.load(workflow(py("up", "wait_gate", gate="g")))
        await wait_for(lambda: orch.processes["up"].state is State.RUNNING)
        text = py("after", "noop") + dep("after", "up") + "".join(py(f"f{i}", "noop") for i in range(n))
        db = orch.store.path
        up_done_mid_load: list[bool] = []
        leaked: list[set[str]] = []

        async def look():
            after = orch.processes.get("after")
            if not steps.gate("g").is_set() and after is not None and after.state is State.WAITING:
                steps.gate("g").set()  # placed, waiting for `up`: now `up` completes
            ids = stored_ids(db)
            if orch.processes["up"].state is State.COMPLETED and "f0" not in ids:
                up_done_mid_load.append(True)
                if ids - {"up"}:
                    leaked.append(ids - {"up"})

        turns = Turns(look)
        await orch.load(workflow(text))
        await turns.stop()
        assert up_done_mid_load, "the dependency did not finish during the load (make the workflow larger)"
        assert leaked == []
        await orch.run_until_idle()
        assert set(states(orch).values()) == {"completed"}
    starts = [pid for what, pid, _ in steps.RECORD if what == "start"]
    assert starts.index("after") > starts.index("up")


async def test_a_cancelled_caller_does_not_stop_a_load_half_way(tmp_path, thin_slices):
    async with running_engine(tmp_path) as orch:
        load = asyncio.create_task(orch.load(workflow(chain(300))))
        for _ in range(5):
            await asyncio.sleep(0)
        assert "p0" in orch.processes and not load.done()
        load.cancel()
        with pytest.raises(asyncio.CancelledError):
            await load
        await orch.run_until_idle()
        assert len(stored_ids(orch.store.path)) == 300
        assert set(states(orch).values()) == {"completed"}


async def test_loads_wait_for_a_load_in_slices_and_keep_its_checks_valid(tmp_path, thin_slices):
    async with running_engine(tmp_path, dispatch=False) as orch:
        big = asyncio.create_task(orch.load(workflow(chain(300))))
        await asyncio.sleep(0)
        # depends on a process of the load in progress: accepted once that load is done, and
        # committed after it (the dependency row refers to a registered process)
        small = await orch.load(workflow(py("tail", "noop") + dep("tail", "p299")))
        assert big.done() and small.added == ["tail"] and small.dependencies_added == 1
        # a cycle through both workflows is refused
        with pytest.raises(UserError, match="cycle"):
            await orch.load(workflow(py("tail", "noop") + dep("p0", "tail")))
        assert (await orch.store.get_process("tail")) is not None


async def test_a_burst_of_loads_shares_turns_in_arrival_order(tmp_path, monkeypatch):
    monkeypatch.setattr(orchestrator_module, "LOAD_SLICE_S", 0.0002)  # a few loads per turn
    async with running_engine(tmp_path, dispatch=False) as orch:
        turns = Turns()
        await asyncio.gather(*(orch.load(workflow(py(f"v{i}", "noop"))) for i in range(300)))
        spread = turns.count
        await turns.stop()
        assert spread > 3, spread
        registered = [e.process_id for e in await orch.store.events(limit=1000) if e.type == "registered"]
        assert registered == [f"v{i}" for i in range(300)]


async def test_turn_share_lets_a_lone_section_through_and_spreads_a_crowd():
    share = TurnShare(budget=0.0)  # every section uses up its turn
    await share.enter()  # alone: at once
    share.leave()
    order: list[int] = []
    turn = 0

    async def section(i: int) -> None:
        await share.enter()
        order.append((i, turn))
        share.leave()

    async def ticker():
        nonlocal turn
        while True:
            turn += 1
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(section(i) for i in range(5)))
    tick.cancel()
    assert [i for i, _ in order] == [0, 1, 2, 3, 4]
    assert len({t for _, t in order}) == 5  # one per turn when each uses up the budget


async def test_a_herd_woken_together_goes_on_a_few_per_turn_in_order():
    herd = Herd(per_turn=4)
    await herd.through()  # alone: at once, without waiting for a turn
    woke = asyncio.get_running_loop().create_future()
    order: list[tuple[int, int]] = []

    async def waiter(i: int) -> None:
        await woke
        await herd.through()
        order.append((i, turns.count))

    waiters = [asyncio.create_task(waiter(i)) for i in range(18)]
    await asyncio.sleep(0)  # all waiting
    turns = Turns()
    woke.set_result(None)
    await asyncio.gather(*waiters)
    await turns.stop()
    assert [i for i, _ in order] == list(range(18))  # all of them, in the order they woke
    per_turn = Counter(t for _, t in order)
    assert max(per_turn.values()) <= 4 and len(per_turn) >= 5


async def test_runs_released_by_one_commit_begin_a_few_per_turn(tmp_path, monkeypatch):
    """Eighty processes registered by one load can all begin once its commit lands: their
    first steps are spread over turns of the loop (Herd), and every one of them runs."""
    began: list[int] = []  # the turn each run's step began in

    class Starts(list):
        def append(self, item):
            began.append(turns.count)
            super().append(item)

    monkeypatch.setattr(steps, "RECORD", Starts())
    async with running_engine(tmp_path, max_concurrent=100) as orch:
        turns = Turns()
        await orch.load(workflow("".join(py(f"p{i}", "noop") for i in range(80))))
        await wait_for(lambda: all(p.state is State.COMPLETED for p in orch.processes.values()))
        await turns.stop()
    assert len(began) == 80 and max(Counter(began).values()) <= orch._herd.per_turn


async def test_dispatch_in_batches_keeps_the_order(tmp_path, monkeypatch):
    monkeypatch.setattr(orchestrator_module, "DISPATCH_BATCH", 3)
    async with running_engine(tmp_path, max_concurrent=1) as orch:
        await orch.load(workflow(py("gate", "wait_gate", gate="g")))
        await wait_for(lambda: orch.processes["gate"].state is State.RUNNING)
        text = "".join(py(f"q{i}", "noop", priority) for i, priority in
                       enumerate(["low", "high", "medium", "critical", "low", "high", "medium"]))
        await orch.load(workflow(text))
        steps.gate("g").set()
        await orch.run_until_idle()
    started = [pid for what, pid, _ in steps.RECORD if what == "start"]
    assert started == ["gate", "q3", "q1", "q5", "q2", "q6", "q0", "q4"]


async def test_dispatch_in_batches_starts_everything(tmp_path, monkeypatch):
    monkeypatch.setattr(orchestrator_module, "DISPATCH_BATCH", 4)
    async with running_engine(tmp_path, max_concurrent=100) as orch:
        await orch.load(workflow("".join(py(f"r{i}", "noop") for i in range(50))))
        await orch.run_until_idle()
        assert set(states(orch).values()) == {"completed"}


async def test_rows_are_built_in_slices_and_committed_in_one_transaction(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "ROWS_SLICE_S", 0.0)
    async with running_engine(tmp_path, dispatch=False) as orch:
        before = orch.store.commits
        turns = Turns()
        await orch.store.write(WriteBatch(events=[Event(i, 1.0, None, "completed", "", {"i": i})
                                                  for i in range(1, 2001)]))
        spread = turns.count
        await turns.stop()
        assert orch.store.commits - before == 1
        assert spread > 5  # the loop ran while the rows were built
        assert len(await orch.store.events(limit=5000)) == 2000


async def test_wal_checkpoints_run_off_the_commit_path_once_writes_pause(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_QUIET_S", 0.05)
    async with running_engine(tmp_path, dispatch=False) as orch:
        store = orch.store
        assert (await (await store._require().execute("PRAGMA wal_autocheckpoint")).fetchone())[0] == 0
        for i in range(20):
            await store.write(WriteBatch(events=[Event(i + 1, 1.0, None, "completed")]))
        assert store.checkpoints_run == 0  # not while writes go on
        await wait_for(lambda: store.checkpoints_run >= 1)


async def test_the_wal_stays_bounded_when_writes_never_pause(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_QUIET_S", 3600.0)  # no pause long enough
    monkeypatch.setattr(sqlite_module, "WAL_MAX_BYTES", 256 * 1024)
    async with running_engine(tmp_path, dispatch=False) as orch:
        wal = orch.store.path + "-wal"
        sizes = []
        for i in range(60):
            await orch.store.write(WriteBatch(events=[Event(i * 100 + j + 1, 1.0, None, "completed", "x" * 200)
                                                      for j in range(100)]))
            sizes.append(os.path.getsize(wal))
        assert orch.store.checkpoints_run == 0
    # each transaction adds ~40 pages; without checkpoints 60 of them grow the WAL to ~10 MB
    assert max(sizes) < 2 * 1024 * 1024, max(sizes)


async def test_a_cancelled_writer_does_not_cancel_the_commit_others_wait_for(tmp_path):
    async with running_engine(tmp_path, dispatch=False) as orch:
        store = orch.store
        first = asyncio.create_task(store.write(WriteBatch(events=[Event(1, 1.0, None, "completed")])))
        second = asyncio.create_task(store.write(WriteBatch(events=[Event(2, 1.0, None, "completed")])))
        await asyncio.sleep(0)  # both merged into one batch, its commit under way
        first.cancel()
        await second  # committed, not cancelled by the other writer's cancellation
        with pytest.raises(asyncio.CancelledError):
            await first  # the cancellation arrives once the commit is done
        assert [e.seq for e in await store.events()] == [1, 2]


async def test_a_resource_edge_onto_a_running_process_holds_in_a_sliced_load(tmp_path, thin_slices):
    """`x` was there and runs; a large workflow adds `p`, which must never run with `x`."""
    async with running_engine(tmp_path, max_concurrent=10) as orch:
        await orch.load(workflow(py("x", "wait_gate", gate="x")))
        await wait_for(lambda: orch.processes["x"].state is State.RUNNING)
        text = (py("x", "wait_gate", gate="x") + py("p", "noop") + dep("x", "p", type_="resource")
                + "".join(py(f"f{i}", "noop") for i in range(300)))
        await orch.load(workflow(text))
        await wait_for(lambda: orch.processes["f299"].state is State.COMPLETED)
        assert orch.processes["p"].state is State.WAITING  # never runs with x (running)
        steps.gate("x").set()
        await orch.run_until_idle()
        assert orch.processes["p"].state is State.COMPLETED
    starts = [pid for what, pid, _ in steps.RECORD if what == "start"]
    ends = [pid for what, pid, _ in steps.RECORD if what == "end"]
    assert "x" in ends and starts.index("p") > starts.index("x")


async def test_stopping_during_a_load_in_slices_commits_it_first(tmp_path, thin_slices):
    async with running_engine(tmp_path, dispatch=False) as orch:
        load = asyncio.create_task(orch.load(workflow(chain(300))))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not load.done()
        await orch.stop()
        assert load.done() and len(load.result().added) == 300
    assert len(stored_ids(tmp_path / "t.db")) == 300
