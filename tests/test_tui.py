"""The console driven with Pilot: keys, panes reacting to engine events, quitting, bursts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tui_data
from conftest import LoopWatch, dep, py, wait_for, workflow

from console.model import State
from console.settings import load_settings
from console.tui.app import SwitchboardApp
from console.tui.screens import ConfirmScreen, DetailsScreen, FormScreen, HelpScreen
from console.tui.widgets import RowList, clean

SIZE = (120, 36)


def settings(tmp_path: Path):
    return load_settings(db=tmp_path / "t.db", data_dir=tmp_path / "data", groq_api_key=None,
                         groq_base_url="http://127.0.0.1:9", engine={"retry_base_s": 0.05})


async def started(pilot) -> SwitchboardApp:
    app = pilot.app
    await wait_for(lambda: app.source is not None, timeout=10)
    await pilot.pause()
    return app


def notifications(app) -> list[str]:
    """What the app tells the user from now on (its toasts' text)."""
    notes: list[str] = []
    notify = app.notify

    def recording(message, *args, **kwargs):
        notes.append(str(message))
        return notify(message, *args, **kwargs)

    app.notify = recording
    return notes


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
    import fcntl
    import pty
    import struct
    import termios

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


async def test_the_cursor_stays_on_its_process_as_rows_arrive_above_and_r_acts_on_it(tmp_path):
    """Rows inserted above the cursor move the selected process down the list: the cursor
    goes with it, and `r` resumes that process, not whatever took its old line."""
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        engine = app.engine
        queue = app.screen.query_one("#queue", RowList)
        await select(pilot, "queue", "report")
        before = [p.id for p in queue.items].index("report")
        # held work newer than `report` is listed above it
        await engine.load(workflow("".join(py(f"new{i}", "noop", extra="hold = true") for i in range(3))))
        await wait_for(lambda: sum(p.id.startswith("new") for p in queue.items) == 3, timeout=5)
        ids = [p.id for p in queue.items]
        assert ids.index("report") > before  # it moved down...
        assert queue.selected.id == "report" and queue.chosen == "report"  # ...and the cursor with it
        await pilot.press("r")
        await wait_for(lambda: engine.processes["report"].state is State.COMPLETED)
        assert all(engine.processes[f"new{i}"].state is State.PENDING for i in range(3))
        await pilot.press("q")


async def test_when_the_selected_row_leaves_nothing_acts_on_its_neighbour_until_a_key_moves(tmp_path):
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        engine = app.engine
        queue = app.screen.query_one("#queue", RowList)
        notes = notifications(app)
        await engine.load(workflow(py("gone", "noop", extra="hold = true") + py("stays", "noop", extra="hold = true")))
        await select(pilot, "queue", "gone")
        await engine.resume("gone")  # runs and completes: it leaves the queue
        await wait_for(lambda: all(p.id != "gone" for p in queue.items), timeout=5)
        assert queue.unconfirmed and queue.selected is not None
        neighbour = queue.selected.id
        state = engine.processes[neighbour].state
        for key in ("r", "R", "c", "enter"):
            await pilot.press(key)
            await pilot.pause(0.1)
            assert app.screen is app.screen_stack[0]  # no dialog, no details
        assert engine.processes[neighbour].state is state
        assert any("gone left the list" in note for note in notes)
        await pilot.press("up", "down") if queue.cursor == 0 else await pilot.press("down", "up")
        assert not queue.unconfirmed
        chosen = queue.selected.id
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen) and app.screen.process.id == chosen
        await pilot.press("escape", "q")


async def test_the_dependencies_of_a_new_selection_are_a_new_list_not_rows_that_left(tmp_path):
    """Moving the queue's cursor shows another process's relations: in that pane, `enter` acts
    on the row under its cursor, not "… left the list"."""
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        engine = app.engine
        await engine.load(workflow(py("up", "noop", extra="hold = true") + py("mid", "noop", extra="hold = true")
                                   + py("down", "noop", extra="hold = true") + dep("mid", "up") + dep("down", "mid")))
        graph = app.screen.query_one("#graph", RowList)
        await select(pilot, "queue", "up")
        await wait_for(lambda: [r[1] for r in graph.items] == ["up", "mid"])
        await select(pilot, "queue", "mid")
        await wait_for(lambda: [r[1] for r in graph.items] == ["up", "mid", "down"])
        graph.focus()
        await pilot.pause()
        assert not graph.unconfirmed
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen) and app.screen.process.id == graph.selected[1]
        await pilot.press("escape", "q")


async def test_a_filter_shows_in_the_title_and_a_cleared_filter_leaves_the_list_live(tmp_path):
    """/vr, backspace twice, esc: the queue is the whole queue again and keeps up with new
    work. A filter that is on says so in the pane's title, with how many rows it lets
    through; a list the filter empties says that, not that there is nothing."""
    from console.tui.source import OrderedView

    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        engine = app.engine
        queue = app.screen.query_one("#queue", RowList)

        def fresh() -> list[str]:  # the queue as the engine has it now
            return [p.id for p in OrderedView(engine.processes, lambda p: app.source.queue_key(p, False))]

        await pilot.press("down", "slash", "v", "r")
        await wait_for(lambda: [p.id for p in queue.items] == ["vr-0001", "vr-0002"])
        assert queue.border_title == f"Queue — filter: vr (2 of {len(fresh())})"
        await pilot.press("backspace", "backspace", "escape")
        await wait_for(lambda: [p.id for p in queue.items] == fresh())
        assert queue.border_title == "Queue"
        await engine.load(workflow("".join(py(f"new{i}", "noop", extra="hold = true") for i in range(3))))
        await wait_for(lambda: [p.id for p in queue.items] == fresh() and "new2" in fresh(), timeout=5)
        assert len({p.id for p in queue.items}) == len(queue.items)
        # an emptied list says why it is empty
        await pilot.press("slash", *"zzz", "enter")
        await wait_for(lambda: not queue.items)
        assert queue.border_title == f"Queue — filter: zzz (0 of {len(fresh())})"
        assert "filter" in queue.empty and "queue is empty" not in queue.empty
        await pilot.press("q")


async def _palette(pilot, command: str) -> None:
    from textual.command import CommandPalette

    await pilot.press("ctrl+p")
    await wait_for(lambda: isinstance(pilot.app.screen, CommandPalette))
    await pilot.press(*command)
    await pilot.pause(0.5)  # the palette searches its commands as the text changes
    await pilot.press("enter")


@pytest.mark.parametrize("command, state, count", [("Resume all interrupted", State.INTERRUPTED, 2),
                                                   ("Cancel all queued", None, 3)])
async def test_bulk_actions_from_the_palette_ask_first_naming_how_many(tmp_path, command, state, count):
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        engine = app.engine
        if state is None:  # three queued (held, then asked for: nothing else runs beside the gate)
            await engine.load(workflow(py("gate", "wait_gate", gate="never", resources="{ cpu_intensive = 2 }")
                                       + "".join(py(f"q{i}", "noop", resources="{ cpu_intensive = 2 }",
                                                    extra="hold = true") for i in range(count))))
            await wait_for(lambda: engine.processes["gate"].state is State.RUNNING)
            for i in range(count):
                await engine.resume(f"q{i}")
            targets = [p.id for p in app.source.queue()]
        else:
            targets = [p.id for p in engine.processes.values() if p.state is state]
        assert len(targets) >= count
        attempts = {pid: engine.processes[pid].attempt for pid in targets}
        await _palette(pilot, command)
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen))
        assert f" {len(targets)} " in app.screen.question
        await pilot.press("enter")  # the focused button is the safe one
        await pilot.pause(0.2)
        assert {pid: engine.processes[pid].attempt for pid in targets} == attempts
        assert state is None or all(engine.processes[pid].state is state for pid in targets)
        await _palette(pilot, command)
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#yes")
        if state is None:
            await wait_for(lambda: all(engine.processes[pid].state is State.CANCELLED for pid in targets))
        else:
            await wait_for(lambda: all(engine.processes[pid].attempt > attempts[pid] for pid in targets))
        await pilot.press("q")


async def test_a_transfer_can_be_read_in_full_and_completed_or_cancelled_with_keys_from_the_footer(tmp_path):
    from console.tui.screens import TransferScreen
    from console.voice.center import call_center

    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        store = app.store
        first = (await store.list_transfers(call_id="call-7"))[0]
        second = await call_center(app.engine).create_transfer("call-8", "carol", "dave")
        await wait_for(lambda: app.engine.processes[second.id].state is State.COMPLETED)
        calls = app.screen.query_one("#calls", RowList)
        keys = app.screen.query_one("#keys")
        await wait_for(lambda: {f"tr:{first.id}", f"tr:{second.id}"} <= {row[1] for row in calls.items}
                       and all(row[2] == "ready" for row in calls.items if row[1].startswith("tr:")), timeout=5)
        calls.focus()
        calls.cursor = next(i for i, row in enumerate(calls.items) if row[1] == "call:call-7")
        await pilot.pause()
        assert "Complete" not in keys.render().plain  # a call is chosen, not a transfer
        await pilot.press("y")
        assert (await store.get_transfer(first.id)).status.value == "ready"
        calls.cursor = next(i for i, row in enumerate(calls.items) if row[1] == f"tr:{first.id}")
        await wait_for(lambda: "y Complete" in keys.render().plain and "x Cancel transfer" in keys.render().plain)
        # enter: the whole summary, and its keys
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, TransferScreen) and app.screen.transfer is not None)
        shown = app.screen.query_one("#transfer-summary").render().plain
        for value in first.summary.values():
            text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
            assert clean(text) in shown  # all of it, as text (control characters made visible)
        assert "alice → bob" in shown
        await pilot.press("y")  # completes it from the details view
        await wait_for(lambda: isinstance(app.screen, TransferScreen) is False)
        await wait_for_status(store, first.id, "completed")
        # x on the other: asks, then cancels
        await wait_for(lambda: any(row[1] == f"tr:{second.id}" for row in calls.items))
        calls.cursor = next(i for i, row in enumerate(calls.items) if row[1] == f"tr:{second.id}")
        await pilot.pause()
        await pilot.press("x")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#yes")
        await wait_for_status(store, second.id, "cancelled")
        await pilot.press("q")


async def wait_for_status(store, transfer_id: str, status: str) -> None:
    for _ in range(100):
        if (await store.get_transfer(transfer_id)).status.value == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{transfer_id} never became {status}")


async def test_a_refused_form_keeps_what_was_typed_and_shows_the_error_under_its_field(tmp_path):
    from textual.widgets import Input, Label

    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        engine = app.engine

        def field(name: str) -> Input:
            return app.screen.query_one(f"#field-{name}", Input)

        def error(name: str) -> str:
            label = app.screen.query_one(f"#error-{name}", Label)
            return str(label.render()) if label.display else ""

        voices = sum(p.kind == "voice" for p in engine.processes.values())
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, FormScreen))
        field("call").value = "bad id!"
        field("text").focus()
        await pilot.press(*"my bill is wrong", "enter")
        await wait_for(lambda: "not a valid id" in error("call"))
        assert isinstance(app.screen, FormScreen)
        assert (field("call").value, field("text").value) == ("bad id!", "my bill is wrong")
        assert app.screen.focused is field("call") and not error("text")
        field("call").value = "call-42"
        field("text").value = "   "
        field("text").focus()
        await pilot.press("enter")
        await wait_for(lambda: "empty" in error("text"))
        assert not error("call") and field("call").value == "call-42"
        assert sum(p.kind == "voice" for p in engine.processes.values()) == voices  # nothing was written
        field("text").value = "my bill is wrong"
        await pilot.press("enter")
        await wait_for(lambda: not isinstance(app.screen, FormScreen))
        await wait_for(lambda: any(p.kind == "voice" and p.spec["call_id"] == "call-42"
                                   for p in engine.processes.values()))
        # the transfer form too: the same agent twice is refused beside "To agent"
        app.selected_call = "call-42"
        await pilot.press("t")
        await wait_for(lambda: isinstance(app.screen, FormScreen))
        await pilot.press(*"alice", "enter", *"alice", "enter")
        await wait_for(lambda: "two different agents" in error("to"))
        assert (field("from").value, field("to").value) == ("alice", "alice")
        await pilot.press("escape", "q")
