"""The orchestrator in-process: order, pools, dependencies, retries, cancel, restart."""

from __future__ import annotations

import asyncio
import time

import pytest
import steps
from conftest import LoopWatch, dep, on_every_adapter, py, running_engine, states, wait_for, workflow
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from console.model import State, UserError


def starts() -> list[str]:
    return [pid for what, pid, _ in steps.RECORD if what == "start"]


@on_every_adapter
async def test_priority_order_force_first_then_priority_then_fifo(tmp_path, adapter):
    async with running_engine(tmp_path, adapter=adapter, max_concurrent=1) as orch:
        await orch.load(workflow(py("gate", "wait_gate", gate="g")))
        await wait_for(lambda: orch.processes["gate"].state is State.RUNNING)
        text = "".join([
            py("low1", "noop", "low"), py("med1", "noop", "medium"), py("high1", "noop", "high"),
            py("crit1", "noop", "critical"), py("high2", "noop", "high"), py("low2", "noop", "low"),
            py("held", "noop", "low", extra="hold = true"),
        ])
        await orch.load(workflow(text))
        assert orch.processes["held"].state is State.PENDING
        await orch.resume("held", force=True)  # force_immediate jumps the whole queue
        assert [r.process_id for r in orch.queue()] == ["held", "crit1", "high1", "high2", "med1", "low1", "low2"]
        steps.gate("g").set()
        await orch.run_until_idle()
    assert starts() == ["gate", "held", "crit1", "high1", "high2", "med1", "low1", "low2"]


@on_every_adapter
async def test_every_ready_process_gets_a_free_slot_while_its_registration_commits(tmp_path, adapter):
    """Twenty placed by one load, twenty slots: the pass that runs while the load commits looks
    past only HOLD_MAX of them for work that could begin sooner, and still starts all twenty."""
    async with running_engine(tmp_path, adapter=adapter, max_concurrent=20) as orch:
        await orch.load(workflow("".join(py(f"g{i}", "wait_gate", gate="twenty") for i in range(20))))
        await wait_for(lambda: all(p.state is State.RUNNING for p in orch.processes.values()), timeout=3)
        steps.gate("twenty").set()
        await orch.run_until_idle()
    assert set(states(orch).values()) == {"completed"}


@pytest.mark.parametrize("independent", ["medium", "low"])
async def test_a_free_slot_goes_to_work_that_can_start_now_of_the_same_rank(tmp_path, monkeypatch, independent):
    """`x` is made ready by the commit of `d`'s completion, held up here; `y`, ready and
    committed before, takes the slot meanwhile if it has x's rank, never if lower."""
    from console.store import sqlite as store_sqlite

    real = store_sqlite._run_transaction

    def slow_for_d(conn, statements, *args, **kwargs):
        if any(sql.startswith("INSERT INTO events") and any(r[2] == "d" and r[3] == "completed" for r in rows)
               for sql, rows in statements):
            # aiosqlite's thread: the engine's loop runs on meanwhile. Held until y starts (it
            # should, at x's rank), or for a while in which y must not start (at a lower rank).
            hold = 10.0 if independent == "medium" else 0.3
            deadline = time.monotonic() + hold
            while "y" not in starts() and time.monotonic() < deadline:
                time.sleep(0.005)
        return real(conn, statements, *args, **kwargs)

    monkeypatch.setattr(store_sqlite, "_run_transaction", slow_for_d)
    async with running_engine(tmp_path, max_concurrent=1) as orch:
        await orch.load(workflow(py("d", "noop") + py("x", "noop") + py("y", "noop", independent) + dep("x", "d")))
        await orch.run_until_idle()
    assert starts() == (["d", "y", "x"] if independent == "medium" else ["d", "x", "y"])


@on_every_adapter
@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    needs=st.lists(
        st.tuples(st.sampled_from(["cpu_intensive", "io_intensive", "memory_intensive", None]),
                  st.integers(1, 2), st.floats(0.0, 0.02)),
        min_size=1, max_size=14,
    ),
    max_concurrent=st.integers(1, 6),
)
def test_pools_are_never_over_subscribed(tmp_path_factory, adapter, needs, max_concurrent):
    tmp_path = tmp_path_factory.mktemp("pools")
    sizes = {"cpu_intensive": 2, "io_intensive": 3, "memory_intensive": 1}

    async def scenario():
        async with running_engine(tmp_path, adapter=adapter, max_concurrent=max_concurrent, resources=sizes) as orch:
            text = ""
            for i, (pool, amount, seconds) in enumerate(needs):
                resources = "{}" if pool is None else f"{{ {pool} = {min(amount, sizes[pool])} }}"
                text += py(f"p{i}", "sleep", resources=resources, seconds=seconds)
            worst: dict[str, int] = {}
            peak_running = 0

            def check(event):
                nonlocal peak_running
                # rebuild usage from the running processes, independently of the pool counters
                used: dict[str, int] = {}
                running = [p for p in orch.processes.values() if p.state is State.RUNNING]
                peak_running = max(peak_running, len(running))
                for p in running:
                    for name, n in p.resources.items():
                        used[name] = used.get(name, 0) + n
                for name, n in used.items():
                    worst[name] = max(worst.get(name, 0), n)

            orch.bus.subscribe(check)
            await orch.load(workflow(text))
            await orch.run_until_idle()
            assert all(s == "completed" for s in states(orch).values())
            for name, n in worst.items():
                assert n <= sizes[name], (name, n)
            assert peak_running <= max_concurrent
            assert all(v == 0 for v in orch.pools.used.values())  # every slot came back

    asyncio.run(scenario())


@on_every_adapter
async def test_sequential_waits_for_completion_and_data_starts_at_80_percent(tmp_path, adapter):
    async with running_engine(tmp_path, adapter=adapter) as orch:
        text = (py("up", "sleep", seconds=0.5, steps=10) + py("seq", "noop") + py("data", "noop")
                + dep("seq", "up") + dep("data", "up", "data", 80))
        started_at_progress = {}

        def watch(event):
            if event.type == "running" and event.process_id in ("seq", "data"):
                started_at_progress[event.process_id] = orch.processes["up"].progress

        orch.bus.subscribe(watch)
        await orch.load(workflow(text))
        assert orch.processes["data"].reason == "needs up ≥ 80%"
        await orch.run_until_idle()
    assert 80 <= started_at_progress["data"] < 100
    assert started_at_progress["seq"] == 100
    assert states(orch) == {"up": "completed", "seq": "completed", "data": "completed"}


@on_every_adapter
async def test_parallel_runs_together_and_resource_dependency_never_overlaps(tmp_path, adapter):
    async with running_engine(tmp_path, adapter=adapter, max_concurrent=4) as orch:
        text = (py("a", "sleep", seconds=0.2) + py("b", "sleep", seconds=0.2)
                + py("x", "sleep", seconds=0.2) + py("y", "sleep", seconds=0.2)
                + dep("b", "a", "parallel") + dep("y", "x", "resource"))
        await orch.load(workflow(text))
        await orch.run_until_idle()
    spans = {}
    for what, pid, t in steps.RECORD:
        spans.setdefault(pid, {})[what] = t
    overlap = lambda p, q: spans[p]["start"] < spans[q]["end"] and spans[q]["start"] < spans[p]["end"]  # noqa: E731
    assert overlap("a", "b")
    assert not overlap("x", "y")


@on_every_adapter
async def test_failed_dependency_blocks_then_restart_in_place_unblocks(tmp_path, adapter):
    async with running_engine(tmp_path, adapter=adapter) as orch:
        text = (py("root", "fail", extra="max_attempts = 2") + py("mid", "noop") + py("leaf", "noop")
                + dep("mid", "root") + dep("leaf", "mid"))
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert states(orch) == {"root": "failed", "mid": "blocked", "leaf": "blocked"}
        assert orch.processes["root"].reason.startswith("attempts used up (2/2): RuntimeError: boom")
        assert orch.processes["mid"].reason == "dependency root is failed"
        assert orch.processes["leaf"].reason == "dependency mid is blocked"
        # fix the code, restart the failed process in place: everything downstream follows
        orch.processes["root"].spec["entry"] = "steps:noop"
        message = await orch.resume("root")
        assert message in ("root: queued", "root: running", "root: completed")
        assert orch.processes["mid"].state is not State.BLOCKED
        await orch.run_until_idle()
        assert states(orch) == {"root": "completed", "mid": "completed", "leaf": "completed"}
        assert orch.processes["root"].metrics.resumes_failed == 2


@on_every_adapter
async def test_cancelled_dependency_blocks_dependents(tmp_path, adapter):
    async with running_engine(tmp_path, adapter=adapter) as orch:
        await orch.load(workflow(py("a", "wait_gate", gate="never") + py("b", "noop") + dep("b", "a")))
        await wait_for(lambda: orch.processes["a"].state is State.RUNNING)
        assert await orch.cancel("a") == "a: cancelled"
        assert states(orch) == {"a": "cancelled", "b": "blocked"}
        assert orch.processes["b"].reason == "dependency a is cancelled"
        assert orch.processes["a"].interruption.type.value == "operator"


@on_every_adapter
async def test_dependency_timeout_blocks(tmp_path, adapter):
    async with running_engine(tmp_path, adapter=adapter) as orch:
        text = (py("slow", "noop", extra="hold = true") + py("b", "noop")
                + dep("b", "slow", timeout=0.3 / 60))
        await orch.load(workflow(text))
        assert orch.processes["b"].state is State.WAITING
        await orch.run_until_idle()  # not idle before the time-out fires
        assert orch.processes["b"].state is State.BLOCKED
        assert orch.processes["b"].reason == "dependency slow timed out after 0.005 min"


@on_every_adapter
def test_cycles_are_refused_naming_the_cycle(tmp_path, adapter):
    async def scenario():
        async with running_engine(tmp_path, adapter=adapter) as orch:
            text = (py("a", "noop") + py("b", "noop") + py("c", "noop")
                    + dep("b", "a") + dep("c", "b") + dep("a", "c", "data", 50))
            with pytest.raises(UserError, match=r"test.toml: dependency cycle refused: (a → c → b → a|b → a → c → b|c → b → a → c)"):
                await orch.load(workflow(text))
            assert orch.processes == {}  # all or nothing
    asyncio.run(scenario())


@on_every_adapter
async def test_interruptions_retry_with_backoff_and_honour_retry_at(tmp_path, adapter):
    async with running_engine(tmp_path, adapter=adapter, retry_base_s=0.05) as orch:
        text = py("limited", "flaky", retry_in=0.4, type="rate_limited") + py("blip", "flaky", failures=2)
        t0 = time.monotonic()
        await orch.load(workflow(text))
        await wait_for(lambda: orch.processes["limited"].state is State.WAITING)
        assert orch.processes["limited"].reason.startswith("retry at ")
        assert orch.processes["limited"].interruption.type.value == "rate_limited"
        await orch.run_until_idle()
    runs = [(pid, t - t0) for what, pid, t in steps.RECORD if what == "start"]
    limited = [t for pid, t in runs if pid == "limited"]
    assert len(limited) == 2 and limited[1] - limited[0] >= 0.38  # not before retry-after
    assert [pid for pid, _ in runs].count("blip") == 3
    assert states(orch) == {"limited": "completed", "blip": "completed"}
    assert orch.processes["blip"].metrics.interruptions == 2


@on_every_adapter
async def test_errors_retry_until_max_attempts_then_fail_and_permanent_failure_is_not_retried(tmp_path, adapter):
    async with running_engine(tmp_path, adapter=adapter) as orch:
        await orch.load(workflow(py("bad", "fail", extra="max_attempts = 3") + py("key", "fail_permanently")))
        await orch.run_until_idle()
        assert orch.processes["bad"].state is State.FAILED and orch.processes["bad"].attempt == 3
        assert orch.processes["key"].state is State.FAILED and orch.processes["key"].attempt == 1
        assert orch.processes["key"].reason == "the key was rejected"
        log = await orch.store.logs("bad")
        assert any("RuntimeError: boom" in line for _, line in log)  # the traceback is kept


@on_every_adapter
async def test_operator_interruption_waits_then_completes_after_resume(tmp_path, adapter):
    flag = tmp_path / "key-configured"
    async with running_engine(tmp_path, adapter=adapter) as orch:
        await orch.load(workflow(py("v", "needs_operator", flag=str(flag))))
        await orch.run_until_idle()  # interrupted(no_provider) counts as idle: no timer retry
        p = orch.processes["v"]
        assert p.state is State.INTERRUPTED and p.interruption.type.value == "no_provider"
        assert "v" not in orch.requests
        flag.write_text("yes")
        await orch.resume("v")
        await orch.run_until_idle()
        assert p.state is State.COMPLETED


@on_every_adapter
async def test_an_action_from_another_connection_reaches_the_owner_through_its_inbox(tmp_path, adapter):
    """The CLI's path: the lease refuses it the database, so the action goes into the inbox;
    the owner sees the change marker move, carries the action out and answers."""
    from console.control import act
    from console.store import open_store
    from console.store.memory import MemoryStore

    async with running_engine(tmp_path, adapter=adapter, max_concurrent=1) as orch:
        await orch.load(workflow(py("gate", "wait_gate", gate="g") + py("q", "noop")))
        await wait_for(lambda: orch.processes["q"].state is State.QUEUED)
        cli = MemoryStore(orch.store.database) if adapter == "memory" else open_store(orch.store.path)
        await cli.open()
        try:
            status, message = await act(cli, orch.settings, "cancel", {"id": "q"})
            assert (status, orch.processes["q"].state) == ("done", State.CANCELLED), message
            assert (await cli.get_process("q")).state is State.CANCELLED
            status, message = await act(cli, orch.settings, "cancel", {"id": "q"})
            assert status == "error" and "already cancelled" in message
        finally:
            await cli.close()
        steps.gate("g").set()
        await orch.run_until_idle()


@on_every_adapter
async def test_cancel_queued_and_resume_cancelled(tmp_path, adapter):
    async with running_engine(tmp_path, adapter=adapter, max_concurrent=1) as orch:
        await orch.load(workflow(py("gate", "wait_gate", gate="g") + py("q", "noop")))
        await wait_for(lambda: orch.processes["gate"].state is State.RUNNING)
        assert orch.processes["q"].state is State.QUEUED
        await orch.cancel("q")
        assert orch.processes["q"].state is State.CANCELLED and "q" not in orch.requests
        with pytest.raises(UserError, match="already cancelled"):
            await orch.cancel("q")
        await orch.resume("q")
        steps.gate("g").set()
        await orch.run_until_idle()
        assert states(orch) == {"gate": "completed", "q": "completed"}
        with pytest.raises(UserError, match="only interrupted, cancelled"):
            await orch.resume("q")
        with pytest.raises(UserError, match="no process 'nope'"):
            await orch.resume("nope")


@on_every_adapter
async def test_cancel_running_shell_kills_the_subprocess(tmp_path, adapter):
    pidfile = tmp_path / "child.pid"
    text = f'''
[[process]]
id = "long"
kind = "shell"
command = ["sh", "-c", "echo $$ > {pidfile}; exec sleep 30"]
'''
    async with running_engine(tmp_path, adapter=adapter, cancel_grace_s=120) as orch:
        await orch.load(workflow(text))
        await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
        child = int(pidfile.read_text())
        # sleep dies on SIGTERM: the cancel returns without waiting out the grace for SIGKILL
        await asyncio.wait_for(orch.cancel("long"), timeout=30)
        assert orch.processes["long"].state is State.CANCELLED
        with pytest.raises(ProcessLookupError):
            import os
            os.kill(child, 0)


@on_every_adapter
async def test_shell_protocol_checkpoint_env_and_exit_codes(tmp_path, adapter):
    out = tmp_path / "seen.txt"
    text = f'''
[[process]]
id = "s"
kind = "shell"
shell = true
command = "echo attempt=$SWITCHBOARD_ATTEMPT cp=$SWITCHBOARD_CHECKPOINT >> {out}; echo '::progress 40'; echo '::checkpoint {{\\"step\\": 2}}'; echo hi; echo oops >&2; [ $SWITCHBOARD_ATTEMPT -ge 2 ] || exit 75"
'''
    async with running_engine(tmp_path, adapter=adapter) as orch:
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert orch.processes["s"].state is State.COMPLETED
        lines = out.read_text().splitlines()
        assert lines == ["attempt=1 cp=", 'attempt=2 cp={"step": 2}']
        checkpoints = await orch.store.checkpoints("s")
        assert [c.data for c in checkpoints] == [{"step": 2}, {"step": 2}]
        logged = [line for _, line in await orch.store.logs("s")]
        assert "hi" in logged and "oops" in logged


@on_every_adapter
async def test_loading_is_idempotent_and_hold_stays_pending(tmp_path, adapter):
    text = py("a", "noop") + py("h", "noop", extra="hold = true") + dep("h", "a")
    async with running_engine(tmp_path, adapter=adapter) as orch:
        first = await orch.load(workflow(text))
        await orch.run_until_idle()
        second = await orch.load(workflow(text))
        await orch.run_until_idle()
    assert first.added == ["a", "h"] and first.dependencies_added == 1
    assert second.added == [] and second.existing == ["a", "h"] and second.dependencies_added == 0
    assert starts() == ["a"]
    assert states(orch) == {"a": "completed", "h": "pending"}


@on_every_adapter
async def test_unknown_pool_and_unknown_process_are_refused_whole(tmp_path, adapter):
    async with running_engine(tmp_path, adapter=adapter) as orch:
        with pytest.raises(UserError, match=r"process 'a': field 'resources': unknown pool 'gpu'"):
            await orch.load(workflow(py("a", "noop", resources="{ gpu = 1 }")))
        with pytest.raises(UserError, match=r"field 'dependency': unknown process 'ghost'"):
            await orch.load(workflow(py("a", "noop") + dep("a", "ghost")))
        with pytest.raises(UserError, match=r"needs 5 of pool 'cpu_intensive', which has only 2"):
            await orch.load(workflow(py("a", "noop", resources="{ cpu_intensive = 5 }")))
        assert orch.processes == {}
        assert await orch.store.events() == []


@on_every_adapter
async def test_metrics_and_status(tmp_path, adapter):
    async with running_engine(tmp_path, adapter=adapter) as orch:
        await orch.load(workflow(py("f", "flaky") + py("n", "noop")))
        await orch.run_until_idle()
        m = orch.processes["f"].metrics
        assert (m.resumes_total, m.resumes_succeeded, m.interruptions) == (2, 1, 1)
        assert m.reliability == 1.0 and m.interruption_rate == 0.5 and m.average_resume_s is not None
        status = await orch.status()
        assert status["counts"]["completed"] == 2 and status["success_rate_1h"] == 1.0
        assert status["resources"]["cpu_intensive"] == {"used": 0, "size": 2}


async def test_no_stall_while_1000_processes_run(tmp_path):
    """A generous guard against blocking calls; the fine figure is in the benchmark."""
    text = "".join(py(f"p{i}", "noop") for i in range(1000))
    text += "".join(dep(f"p{i}", f"p{i // 2}") for i in range(1, 1000))  # a binary tree
    async with running_engine(tmp_path) as orch:
        async with LoopWatch() as watch:
            await orch.load(workflow(text))
            await orch.run_until_idle()
        assert all(s == "completed" for s in states(orch).values())
    watch.assert_no_stall()


async def test_group_commit_batches_a_burst(tmp_path):
    text = "".join(py(f"p{i}", "noop") for i in range(300))
    async with running_engine(tmp_path, max_concurrent=50) as orch:
        before = orch.store.commits
        await orch.load(workflow(text))
        await orch.run_until_idle()
        commits = orch.store.commits - before
    # 300 processes × 3 transitions, committed in far fewer transactions
    assert commits < 300, commits


async def test_last_hour_and_retention_go_by_event_numbers(tmp_path):
    """No index on events.ts (migration 4): the last hour's counts and retention read the
    events' numbers, which follow time."""
    import sqlite3

    from console.model import Event
    from console.store import WriteBatch

    now = time.time()
    async with running_engine(tmp_path, dispatch=False) as orch:
        store = orch.store
        await store.write(WriteBatch(events=[
            Event(1, now - 7200, None, "completed"), Event(2, now - 7100, None, "failed"),
            Event(3, now - 7000, None, "completed"), Event(4, now - 60, None, "completed"),
            Event(5, now - 50, None, "failed"), Event(6, now - 40, None, "completed"),
            Event(7, now - 30, None, "running"),
        ]))
        assert await store.count_events(["completed", "failed"], now - 3600) == {"completed": 2, "failed": 1}
        assert await store.count_events(["completed", "failed"], now - 9999) == {"completed": 4, "failed": 2}
        assert await store.count_events(["completed"], now) == {}
        assert await store.prune_history(now - 3600, batch_size=2) == 3
        assert await store.prune_history(now - 3600, batch_size=2) == 0
        assert [e.seq for e in await store.events(limit=10)] == [4, 5, 6, 7]
    with sqlite3.connect(tmp_path / "t.db") as con:
        indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "events_ts" not in indexes and "events_process" in indexes


async def test_a_growing_wal_is_written_to_disk_while_the_engine_runs(tmp_path, monkeypatch):
    """So that closing (whose checkpoint fdatasyncs the WAL first) has little left to write."""
    import os

    from console.model import Event
    from console.store import WriteBatch
    from console.store import sqlite as sqlite_module

    synced: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    async with running_engine(tmp_path, dispatch=False) as orch:
        for chunk in range(4):  # ~4 MB of events, in commits of ~1 MB
            await orch.store.write(WriteBatch(events=[
                Event(chunk * 1000 + i, time.time(), None, "log", "x" * 1000) for i in range(1, 1001)]))
        await wait_for(lambda: synced)
        assert synced and synced[0].endswith("t.db-wal"), synced
        assert os.path.getsize(str(tmp_path / "t.db-wal")) >= sqlite_module.WAL_WRITEBACK_BYTES


async def test_history_retention_prunes_old_events_in_batches(tmp_path):
    from console.model import Event
    from console.store import WriteBatch

    async with running_engine(tmp_path, dispatch=False) as orch:
        old = time.time() - 48 * 3600
        batch = WriteBatch(events=[Event(i, old, None, "completed") for i in range(1, 12_001)],
                           logs=[("x", old, "line")] * 100)
        batch.events.append(Event(20_000, time.time(), None, "completed"))
        await orch.store.write(batch)
        removed = await orch.store.prune_history(time.time() - 24 * 3600, batch_size=5000)
        assert removed == 12_100
        assert [e.seq for e in await orch.store.events(limit=10)] == [20_000]
        assert (await orch.status())["counts"]["completed"] == 0


async def test_a_runs_exception_shows_the_handlers_frames_only_and_the_engines_go_to_the_program_log(
        tmp_path, caplog):
    """A python-kind entry point's traceback is its own code's, without the engine's frames; an
    exception raised by the engine or a kind (here the shell kind, on an environment variable
    name it cannot pass) is not in the process's log or events at all, but once, whole, in
    the program's log."""
    engine_error = ('[[process]]\nid = "env"\nkind = "shell"\ncommand = ["true"]\n'
                    'env = { "A=B" = "x" }\nmax_attempts = 2\n')
    events = []
    caplog.set_level("ERROR", logger="console")
    async with running_engine(tmp_path) as orch:
        orch.bus.subscribe(events.append)
        await orch.load(workflow(py("bad", "fail", extra="max_attempts = 1") + engine_error))
        await orch.run_until_idle()
        bad = [line for _, line in await orch.store.logs("bad")]
        env = [line for _, line in await orch.store.logs("env")]
        assert orch.processes["env"].reason == "attempts used up (2/2): ValueError: illegal environment variable name"
    text = "\n".join(bad)
    assert text.startswith("Traceback (most recent call last):") and "steps.py" in text
    assert 'raise RuntimeError("boom")' in text and text.endswith("RuntimeError: boom")
    assert "console/engine" not in text and "console/kinds" not in text, text
    assert env == []
    assert not [e for e in events if e.process_id == "env" and e.type == "log"]
    raised = [r for r in caplog.records if r.exc_info and r.getMessage().startswith("env:")]
    assert len(raised) == 2  # one per run, each once
    assert isinstance(raised[0].exc_info[1], ValueError)


async def test_the_try_counter_is_failed_attempts_and_never_exceeds_max_attempts(tmp_path):
    """TRY (Process.tries, what the console and `status` show) counts failed attempts: runs
    ended by a shutdown, by a wait for an operator (no provider) or started again by an
    operator's resume are not; a process failed after its attempts shows n/n."""
    text = (py("slow", "wait_gate", gate="never", extra="max_attempts = 2")
            + py("op", "needs_operator", flag=str(tmp_path / "never"), extra="max_attempts = 1")
            + py("bad", "fail", extra="max_attempts = 2"))
    for restart in range(3):  # each stop interrupts `slow` (shutdown); the next start resumes it
        async with running_engine(tmp_path, shutdown_grace_s=0.05) as orch:
            if restart == 0:
                await orch.load(workflow(text))
            await wait_for(lambda: orch.processes["slow"].state is State.RUNNING
                           and orch.processes["op"].state is State.INTERRUPTED
                           and orch.processes["bad"].state is State.FAILED)
            await orch.resume("op")  # the operator resumes it: it waits for a provider again
            await wait_for(lambda: orch.processes["op"].state is State.INTERRUPTED and "op" not in orch.requests)
        slow, op, bad = (orch.processes[pid] for pid in ("slow", "op", "bad"))
        assert slow.state is State.INTERRUPTED and slow.interruption.type.value == "shutdown"
        assert slow.attempt == restart + 1 and op.attempt == restart + 2  # every run is counted
        assert (slow.tries, op.tries, bad.tries) == ("0/2", "0/1", "2/2")
    async with running_engine(tmp_path) as orch:
        await wait_for(lambda: orch.processes["slow"].state is State.RUNNING)
        await orch.cancel("slow")
        await orch.resume("bad")  # failed: a fresh set of attempts, used up again
        await orch.run_until_idle()
        bad = orch.processes["bad"]
        assert bad.state is State.FAILED and bad.attempt == 4 and bad.tries == "2/2"
        assert bad.summary()["failures"] == 2


async def test_subscribers_get_events_in_seq_order_and_a_notice_waits_for_the_writes_before_it(tmp_path):
    """Log lines (written with the next write), progress notices, state changes of work that
    runs side by side, and a notice without a row (`announce`) reach a subscriber in seq order;
    the notice comes after a write submitted before it, once that is committed."""
    from console.model import Event
    from console.store import WriteBatch

    seen: list[Event] = []
    async with running_engine(tmp_path, max_concurrent=8) as orch:
        orch.bus.subscribe(seen.append)
        await orch.load(workflow("".join(py(f"n{i}", "noisy") for i in range(40))
                                 + "".join(py(f"s{i}", "sleep", seconds=0.02, steps=2) for i in range(10))))
        await orch.run_until_idle()
        b = WriteBatch()
        b.events.append(orch.new_event(None, "pool", "a write in flight"))
        write = asyncio.create_task(orch.commit(b))
        await asyncio.sleep(0)  # submitted, not committed
        orch.announce(orch.new_event(None, "provider", "a notice"))
        await write
        await wait_for(lambda: seen[-1].type == "provider")
    seqs = [e.seq for e in seen]
    assert seqs == sorted(set(seqs)), [(a, b) for a, b in zip(seqs, seqs[1:]) if b <= a][:5]
    assert [e.type for e in seen[-2:]] == ["pool", "provider"]
    assert sum(e.type == "log" for e in seen) == 40 and sum(e.type == "progress" for e in seen) == 60


async def test_stop_ends_background_work_that_swallowed_its_cancellation(tmp_path):
    """A cancellation can be lost inside a dependency (a database driver's wait can lose it; an
    inbox handler that ignores it, here): stop() cancels the engine's own tasks again until
    they have ended, and returns, the database released."""
    from conftest import make_settings

    from console.engine.orchestrator import Orchestrator
    from console.store import open_store

    entered = asyncio.Event()

    async def stubborn(payload):
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # swallowed: its task goes on
        return "done"

    settings = make_settings(tmp_path, external_poll_s=0.01)
    store = open_store(str(settings.db_path))
    await store.open()
    orch = Orchestrator(store, settings)
    orch.commands["stubborn"] = stubborn
    await orch.start()
    cli = open_store(str(settings.db_path))  # another connection, as the CLI's
    await cli.open()
    try:
        await cli.post_command("stubborn", {})
        await asyncio.wait_for(entered.wait(), 10)
        await asyncio.wait_for(orch.stop(), 10)
        assert await cli.lease_holder() is None
    finally:
        await cli.close()
        await store.close()
