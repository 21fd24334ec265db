"""The console driven with Pilot: keys, panes reacting to engine events, quitting, bursts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

import tui_data
from conftest import LoopWatch, py, wait_for, workflow
from console.model import State
from console.settings import load_settings
from console.tui.app import SwitchboardApp
from console.tui.screens import ConfirmScreen, DetailsScreen, FormScreen, HelpScreen
from console.tui.widgets import RowList

SIZE = (120, 36)


def settings(tmp_path: Path):
    return load_settings(db=tmp_path / "t.db", data_dir=tmp_path / "data", groq_api_key=None,
                         groq_base_url="http://127.0.0.1:9", engine={"retry_base_s": 0.05})


async def started(pilot) -> SwitchboardApp:
    app = pilot.app
    await wait_for(lambda: app.source is not None, timeout=10)
    await pilot.pause()
    return app


async def select(pilot, list_id: str, pid: str) -> None:
    rows = pilot.app.screen.query_one(f"#{list_id}", RowList)
    await wait_for(lambda: any(getattr(i, "id", None) == pid for i in rows.items))
    rows.focus()
    rows.cursor = next(i for i, item in enumerate(rows.items) if getattr(item, "id", None) == pid)
    await pilot.pause()


async def test_resume_cancel_details_and_help_keys(tmp_path):
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        engine = app.engine
        assert engine is not None  # this console owns the database and dispatches
        # r: the held process runs
        await select(pilot, "queue", "report")
        await pilot.press("r")
        await wait_for(lambda: engine.processes["report"].state is State.COMPLETED)
        # c: asks first; the focused button is Cancel, so enter keeps the process
        await engine.load(workflow(py("long", "wait_gate", gate="never")))
        await wait_for(lambda: engine.processes["long"].state is State.RUNNING)
        await select(pilot, "active", "long")
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and app.screen.focused.id == "no"
        await pilot.press("enter")
        await pilot.pause()
        assert engine.processes["long"].state is State.RUNNING
        await select(pilot, "active", "long")
        await pilot.press("c")
        await pilot.pause()
        await pilot.click("#yes")
        await wait_for(lambda: engine.processes["long"].state is State.CANCELLED)
        # R: force-resume puts it first in line again
        await select(pilot, "queue", "long")
        await pilot.press("R")
        await wait_for(lambda: engine.processes["long"].state is State.RUNNING)
        # enter: details; ?: help listing resume and cancel
        await select(pilot, "queue", "train")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen) and app.screen.process.id == "train"
        await pilot.press("escape")
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        listed = {row[2] for row in app.screen.rows}
        assert {"resume", "force_resume", "cancel", "details", "new_voice", "transfer", "filter",
                "help", "quit", "export"} <= listed
        await pilot.press("escape")
        await pilot.press("q")
    assert engine.processes["long"].state is State.INTERRUPTED  # quitting drained it, nothing lost
    assert engine.processes["long"].interruption.type.value == "shutdown"


async def test_new_voice_request_and_transfer_from_the_keyboard(tmp_path):
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, FormScreen)
        app.screen.query_one("#field-call").value = "call-99"
        app.screen.query_one("#field-text").focus()
        await pilot.press(*"hello there", "enter")
        await wait_for(lambda: any(p.kind == "voice" and p.spec["call_id"] == "call-99"
                                   for p in app.engine.processes.values()))
        # t: a transfer for the call selected in the calls pane
        calls = app.screen.query_one("#calls", RowList)
        await wait_for(lambda: any(row[1] == "call:call-99" for row in calls.items))
        calls.focus()
        calls.cursor = next(i for i, row in enumerate(calls.items) if row[1] == "call:call-99")
        await pilot.pause()
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, FormScreen)
        await pilot.press(*"alice", "enter", *"bob", "enter")
        await wait_for(lambda: any(p.kind == "transfer" and p.spec["call_id"] == "call-99"
                                   and p.state is State.COMPLETED for p in app.engine.processes.values()))
        transfers = await app.store.list_transfers(call_id="call-99")
        assert transfers[0].status.value == "ready" and transfers[0].summary_source == "extractive"
        await wait_for(lambda: any(row[1] == f"tr:{transfers[0].id}" for row in calls.items))
        await pilot.press("q")


async def test_filter_tab_graph_and_export(tmp_path):
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path), read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        queue = app.screen.query_one("#queue", RowList)
        await wait_for(lambda: len(queue.items) >= 5)
        queue.focus()
        await pilot.press("slash", "v", "r")
        await wait_for(lambda: [p.id for p in queue.items] == ["vr-0001", "vr-0002"])
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is queue
        await pilot.press("tab")
        assert app.focused is not queue
        # g: the whole graph, roots first, with edges
        await pilot.press("g")
        graph = app.screen.query_one("#graph", RowList)
        await wait_for(lambda: any(row[1] == "evaluate" for row in graph.items))
        rows = {row[1]: row for row in graph.items}
        assert rows["evaluate"][2] == "← train" and rows["evaluate"][0] == "    "
        # e: the focused list to CSV and JSON
        queue.focus()
        await pilot.press("e")
        await wait_for(lambda: list((tmp_path / "data" / "exports").glob("queue-*.json")))
        exported = json.loads(next((tmp_path / "data" / "exports").glob("queue-*.json")).read_text())
        assert [r["id"] for r in exported] == ["vr-0001", "vr-0002"]  # the filter applies
        assert next((tmp_path / "data" / "exports").glob("queue-*.csv")).read_text().startswith("id,")
        # read-only: r refuses
        await pilot.press("r")
        await pilot.pause()
        assert "read-only" in str([n.message for n in app._notifications])
        await pilot.press("q")


async def test_a_burst_of_engine_events_is_coalesced_and_never_stalls(tmp_path):
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        refreshes = 0
        original = app._refresh

        def counting():
            nonlocal refreshes
            refreshes += 1
            original()

        app._refresh = counting
        events_before = len(app._events)
        text = "".join(py(f"p{i}", "noop") for i in range(250))  # ~1,000 events
        event_rows = app.screen.query_one("#events", RowList)
        async with LoopWatch() as watch:
            await app.engine.load(workflow(text))
            await app.engine.run_until_idle()
            # until the console has shown the newest event (its repaints are coalesced)
            await wait_for(lambda: "events" not in app._dirty and bool(event_rows.items)
                           and event_rows.items[-1] == app._events[-1], timeout=30)
        published = len(app._events) - events_before
        assert published >= 1000
        assert refreshes < published / 20, (refreshes, published)  # a few repaints, not one per event
        watch.assert_no_stall()
        assert event_rows.items[-1].type == "completed"  # the event log follows the newest
        await pilot.press("q")


async def test_console_observes_a_database_another_process_dispatches(tmp_path):
    wf = tmp_path / "wf.toml"
    wf.write_text(py("held", "noop", extra="hold = true") + py("g", "wait_gate", gate="never"))
    runner = subprocess.Popen([sys.executable, "-m", "console", "run", "--db", str(tmp_path / "t.db"),
                               "--workflow", str(wf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ})
    try:
        # the runner owns the database and runs its work: the console will only observe it
        await wait_for(lambda: (tmp_path / "t.db").exists() and _runner_owns(tmp_path / "t.db", "g"), timeout=60)
        app = SwitchboardApp(settings(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot)
            assert app.engine is None and app.source.owner.pid == runner.pid
            await select(pilot, "queue", "held")
            await pilot.press("r")  # goes through the owner's inbox
            await wait_for(lambda: app.source.processes["held"].state is State.COMPLETED, timeout=10)
            app._tick()
            status = app.screen.query_one("#status").text.plain
            assert f"dispatched by runner pid {runner.pid}" in status
            await pilot.press("q")
    finally:
        runner.terminate()
        runner.wait(timeout=10)


async def everything_handled(pilot) -> None:
    """Every key so far handled and whatever it asked of the engine done (the test data's
    steps are quick): a key that acted shows in the engine's state after this."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    if pilot.app.engine is not None:
        await asyncio.wait_for(pilot.app.engine.run_until_idle(), timeout=30)


def _runner_owns(db: Path, running: str) -> bool:
    """`switchboard status` names an owner, and it has started process `running`."""
    out = subprocess.run([sys.executable, "-m", "console", "status", "--json", "--db", str(db)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return False
    status = json.loads(out.stdout)
    return status["owner"] is not None and any(
        p["id"] == running and p["state"] == "running" for p in status["processes"])


def test_unknown_theme_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "console", "--db", "t.db", "--theme", "nope"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("switchboard: unknown theme 'nope' (available:")
    assert len(result.stderr.splitlines()) == 1


async def test_keys_typed_fast_after_slash_go_to_the_filter_not_to_the_list(tmp_path):
    """Keys arrive together (a fast typist, a paste): `/` opens the filter and `red` is its
    text. None of `r` (resume), `e` (export) may act on the selected process."""
    from textual import events

    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await select(pilot, "queue", "report")  # held: `r` would resume it
        for key, char in [("slash", "/"), ("r", "r"), ("e", "e"), ("d", "d")]:
            app.post_message(events.Key(key, char))  # no pause in between
        await everything_handled(pilot)
        assert app.screen.query_one("#filter").value == "red"
        assert app.engine.processes["report"].state is State.PENDING
        assert not (tmp_path / "data" / "exports").exists()
        await pilot.press("escape", "q")


async def test_panes_kept_up_incrementally_match_a_full_rebuild(tmp_path):
    """The queue's order and the header's counts are updated from the processes each
    event names; after a run with every kind of outcome they equal a rebuild from scratch."""
    from console.tui.source import OrderedView, StateCounts

    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        engine = app.engine
        await pilot.press("a")  # completed work too (this rebuilds; what follows is incremental)
        text = "".join(py(f"ok{i}", "noop", priority=("low", "high", "critical")[i % 3]) for i in range(30))
        text += py("bad", "fail_permanently") + py("held", "noop", extra="hold = true")
        text += py("gate", "wait_gate", gate="never") + py("after", "noop", extra='')
        text += '[[dependency]]\ndependent = "after"\ndependency = "gate"\n'
        await engine.load(workflow(text))
        await wait_for(lambda: engine.processes["bad"].state is State.FAILED)
        await wait_for(lambda: engine.processes["gate"].state is State.RUNNING)
        await wait_for(lambda: app._refresh_timer is None)
        app._dirty.add("queue")
        app._refresh()
        fresh = OrderedView(engine.processes, lambda p: app.source.queue_key(p, True))
        assert [p.id for p in app.screen.query_one("#queue", RowList).items] == [p.id for p in fresh]
        assert app._counts.counts == StateCounts(engine.processes).counts
        await pilot.press("q")


async def test_a_large_load_is_placed_in_the_queue_over_a_few_passes(tmp_path, monkeypatch):
    """Placing 1,000 processes in one refresh pass held the loop ~12 ms: a pass places at most
    TOUCHED_PER_PASS, the next passes the rest, and the queue ends up complete and in order."""
    from console.tui import app as console_app
    from console.tui.source import OrderedView

    monkeypatch.setattr(console_app, "TOUCHED_PER_PASS", 7)
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        engine = app.engine
        text = "".join(py(f"p{i:02}", "noop", priority=("low", "high")[i % 2], extra="hold = true")
                       for i in range(30))
        placed: list[int] = []
        update = app._queue_view.update
        app._queue_view.update = lambda pids: (placed.append(len(list(pids))), update(pids))[1]
        await engine.load(workflow(text))
        await wait_for(lambda: len(app.screen.query_one("#queue", RowList).items) == 30, timeout=10)
        assert sum(placed) >= 30 and max(placed) <= 7
        fresh = OrderedView(engine.processes, lambda p: app.source.queue_key(p, False))
        assert [p.id for p in app.screen.query_one("#queue", RowList).items] == [p.id for p in fresh]
        assert app._counts.counts == console_app.StateCounts(engine.processes).counts
        await pilot.press("q")


def test_whole_graph_layout_placed_incrementally_equals_a_rebuild():
    from console.engine.graph import DependencyGraph
    from console.model import Dependency, DependencyType, Process
    from console.tui.source import GraphLayout

    processes: dict[str, Process] = {}
    graph = DependencyGraph()

    def add(pid: str, *ups: str, type_: DependencyType = DependencyType.SEQUENTIAL) -> None:
        processes[pid] = Process(id=pid, kind="python", created_at=float(len(processes)))
        for up in ups:
            graph.add(Dependency(dependent=pid, dependency=up, type=type_))

    def fresh() -> list:
        return GraphLayout().sync(processes, graph)

    add("a"), add("b", "a"), add("c", "b"), add("x")
    layout = GraphLayout()
    assert layout.sync(processes, graph) == fresh()
    rebuilds = []
    rebuild = layout._rebuild
    layout._rebuild = lambda *args: (rebuilds.append(1), rebuild(*args))
    add("d", "c", "x")  # deepest so far
    add("e", "a")
    add("f", "e", type_=DependencyType.PARALLEL)  # orders nothing: a root, shown with its edge
    assert layout.sync(processes, graph) == fresh()
    assert [r[1] for r in layout.rows][:4] == ["a", "x", "f", "b"]
    assert dict((r[1], r[0]) for r in layout.rows)["d"] == "      "
    assert not rebuilds  # new processes were placed by their own edges
    graph.add(Dependency(dependent="x", dependency="c"))  # an edge between placed processes
    assert layout.sync(processes, graph) == fresh()
    assert dict((r[1], r[0]) for r in layout.rows)["d"] == "        "
    assert rebuilds == [1]


async def test_console_serves_the_intake_and_shows_its_traffic(tmp_path):
    """`switchboard --listen`: the intake runs on the console's loop; a call posted over a real
    socket shows in the calls pane, the status bar names the address, quitting closes it."""
    import httpx

    s = settings(tmp_path).model_copy(update={"intake": settings(tmp_path).intake.model_copy(
        update={"listen": "127.0.0.1:0"})})
    app = SwitchboardApp(s)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await wait_for(lambda: app.intake is not None, timeout=10)
        async with httpx.AsyncClient(base_url=app.intake.url) as client:
            answer = await client.post("/ai-voice?wait=false", json={"call_id": "call-web", "text": "hello"})
        assert answer.status_code == 202
        calls = app.screen.query_one("#calls", RowList)
        await wait_for(lambda: any(row[1] == "call:call-web" for row in calls.items))
        app._tick()
        assert f"intake {app.intake.address}" in app.screen.query_one("#status").text.plain
        url = app.intake.url
        await pilot.press("q")
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz", timeout=2)


async def test_keys_rebound_from_the_settings_act_and_are_shown(tmp_path):
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    s = settings(tmp_path)
    s = s.model_copy(update={"tui": s.tui.model_copy(update={"keymap": {"resume": "x", "export": "f5"}})})
    app = SwitchboardApp(s)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await select(pilot, "queue", "report")
        await pilot.press("r")  # no longer bound
        await everything_handled(pilot)
        assert app.engine.processes["report"].state is State.PENDING
        await pilot.press("x")
        await wait_for(lambda: app.engine.processes["report"].state is State.COMPLETED)
        keys = app.screen.query_one("#keys").render().plain
        assert "x Resume" in keys and "f5 Export" in keys and "r Resume" not in keys
        await pilot.press("question_mark")
        await pilot.pause()
        assert ("x", "Resume", "resume") in app.screen.rows
        await pilot.press("escape", "q")


async def test_demo_console_comes_alive_and_quitting_keeps_the_running_step_at_its_checkpoint(tmp_path):
    from console.demo.seed import demo_settings, seed

    app = SwitchboardApp(demo_settings(settings(tmp_path), str(tmp_path / "demo.db")), prepare=seed)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        engine = app.engine
        screen = app.screen
        await wait_for(lambda: all(screen.query_one(f"#{pane}", RowList).items
                                   for pane in ("queue", "active", "calls", "events")), timeout=15)
        await wait_for(lambda: any(p.checkpoint for p in engine.running()), timeout=15)
        running = next(p for p in engine.running() if p.checkpoint)
        assert any(p.kind == "voice" and p.state is State.INTERRUPTED for p in engine.processes.values())
        await pilot.press("q")
    assert running.state is State.INTERRUPTED and running.interruption.type.value == "shutdown"
    assert running.checkpoint  # it resumes from there


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_puts_the_console_in_a_browser_tab(tmp_path):
    """`switchboard serve`: the page over real HTTP, then what a browser tab does: a websocket
    that starts a console process, whose screen comes back and which quits on `q`."""
    import aiohttp

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "console", "serve", "--port", str(port),
                               "--db", str(tmp_path / "s.db")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env={**os.environ, "HOME": str(tmp_path)})
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):  # until it listens
                try:
                    async with http.get(f"http://127.0.0.1:{port}/") as page:
                        body = await page.text()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            assert page.status == 200 and "Switchboard" in body
            async with http.ws_connect(f"http://127.0.0.1:{port}/ws?width=120&height=36") as ws:
                screen = b""
                deadline = time.monotonic() + 30
                while b"Queue" not in screen and time.monotonic() < deadline:
                    message = await ws.receive(timeout=30)
                    if message.type == aiohttp.WSMsgType.BINARY:
                        screen += message.data
                assert b"Queue" in screen and b"Events" in screen
                await ws.send_json(["stdin", "q"])
                while (await ws.receive(timeout=15)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                                                  aiohttp.WSMsgType.CLOSING):
                    pass  # the server closes the tab's socket once its console has exited
        assert (tmp_path / "s.db").exists()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_listens_on_this_machine_only(tmp_path):
    result = subprocess.run([sys.executable, "-m", "console", "serve", "--host", "0.0.0.0", "--db",
                             str(tmp_path / "s.db")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "listens on this machine only" in result.stderr
    assert not (tmp_path / "s.db").exists()


def _console_in_a_terminal(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """`switchboard demo` as a person starts it: its own process on a pseudo-terminal."""
    import pty
    import termios
    import fcntl
    import struct

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "console", "demo", "--db", str(tmp_path / "d.db")],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # its controlling terminal
                            env={**os.environ, "HOME": str(tmp_path), "TERM": "xterm-256color"})
    os.close(slave)
    return proc, master


def _drain(master: int, seconds: float, until: Callable[[], bool] = lambda: False) -> None:
    """Read what the console draws (a terminal that is not read blocks its writer), for
    `seconds` at most, or until `until()` holds."""
    import select

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                os.read(master, 65536)
            except OSError:
                return


def _demo_state(tmp_path: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "console", "status", "--json", "--db", str(tmp_path / "d.db")],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
    return {p["id"]: p for p in json.loads(out.stdout)["processes"]}


@pytest.mark.parametrize("how", ["SIGTERM", "terminal closed"])
def test_the_console_stops_gracefully_on_sigterm_and_when_its_terminal_goes(tmp_path, how):
    import signal

    proc, master = _console_in_a_terminal(tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "d.db").exists() or not any(
                p["state"] == "running" and p["kind"] == "python" for p in _demo_state(tmp_path).values()):
            assert time.monotonic() < deadline, "the demo never ran a step"
            _drain(master, 0.5)
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
            _drain(master, 30, until=lambda: proc.poll() is not None)
        else:
            os.close(master)  # the kernel hangs the terminal up: SIGHUP
        assert proc.wait(timeout=15) in (0, 128 + signal.SIGHUP)
    finally:
        if proc.poll() is None:
            proc.kill()
        if how == "SIGTERM":
            os.close(master)
    states = _demo_state(tmp_path)
    stopped = [p for p in states.values() if p["interruption"] and p["interruption"]["type"] == "shutdown"]
    assert stopped, states  # the step that was running was persisted by a graceful shutdown
    assert not [p for p in states.values() if p["state"] == "running"]
