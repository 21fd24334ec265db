"""Snapshot tests of the console (pytest-textual-snapshot): the main screen under each theme,
the modal screens, the filter box. Update with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the SVGs under tests/__snapshots__/test_tui_snapshots/ before committing them.

What would otherwise change from run to run is pinned here, from the test side:
- the database: `tui_data.build` (fixed ids and timestamps); the checkout's path and the
  orchestrator's line numbers, which reach the logs and specs, are replaced by fixed text;
- the clock the AGE/ELAPSED columns use (`clock=`), and the time zone (`TZ=UTC`) the TIME
  columns and the details screen format with;
- the loop lateness in the status bar and the sparklines (the measuring task is cancelled,
  the values zeroed, the minute counter parked so no new point is added while a test runs);
- the text cursor's blink in inputs (stopped, visible).

The app is read-only, so it observes the database and never runs the engine."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from pathlib import Path

import pytest
import tui_data
from conftest import ROOT, wait_for

from console.settings import load_settings
from console.tui.app import SwitchboardApp
from console.tui.screens import ConfirmScreen, DetailsScreen, FormScreen, HelpScreen
from console.tui.trends import Trends
from console.tui.widgets import RowList, clean

SIZE = (120, 36)
NOW = tui_data.FIXED_TS + 30
ALL_PANES = {"queue", "active", "graph", "calls", "events", "header"}


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    """Times are shown with time.localtime: pin the zone."""
    old = os.environ.get("TZ")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    if old is None:
        monkeypatch.delenv("TZ")
    else:
        monkeypatch.setenv("TZ", old)
    time.tzset()


@pytest.fixture(autouse=True)
def _database(_utc):
    """The deterministic database in the test's directory (conftest chdirs into tmp_path)."""
    tui_data.build(Path("t.db"), Path("data"))
    _scrub_paths(Path("t.db"))


def _scrub_paths(db: Path) -> None:
    """Tracebacks and specs carry this checkout's path and the source's line numbers; fix them
    so the snapshots do not depend on where the repository lives or on unrelated edits.
    Run times (the details' "average") depend on the machine: each finished run counts 10 ms."""
    root = str(ROOT)
    line_no = re.compile(r", line \d+")
    con = sqlite3.connect(db)
    with con:
        for row_id, line in con.execute("SELECT id, line FROM logs").fetchall():
            fixed = line_no.sub(", line N", line.replace(root, "/repo"))
            if fixed != line:
                con.execute("UPDATE logs SET line = ? WHERE id = ?", (fixed, row_id))
        con.execute("UPDATE processes SET spec = replace(spec, ?, '/repo')", (root,))
        con.execute("UPDATE processes SET resume_seconds = 0.01 * (resumes_succeeded + resumes_failed)")
    con.close()


def make_app(theme: str | None = None) -> SwitchboardApp:
    app = SwitchboardApp(load_settings(db=Path("t.db"), data_dir=Path("data")), read_only=True,
                         theme=theme, clock=lambda: NOW)
    return app


async def settle(pilot) -> SwitchboardApp:
    """Wait until the panes are loaded, then pin what varies by itself (see the module doc)."""
    app = pilot.app
    await wait_for(lambda: app.source is not None, timeout=10)
    await app.workers.wait_for_complete()
    await pilot.pause()
    for task in app._tasks:  # the loop-lateness probe
        task.cancel()
    await asyncio.gather(*app._tasks, return_exceptions=True)
    app.trends = Trends()  # no lateness, no completions
    app.trends.minute = 1 << 40  # the once-a-second tick never starts a new done/min point
    app._tick()
    app._dirty.update(ALL_PANES)
    app._refresh()
    await quiet(pilot)
    return app


async def quiet(pilot, passes: int = 3) -> None:
    """Until nothing is left to repaint for a few turns in a row: a pass can post messages (a
    list's highlight selects a process, which dirties the graph) that schedule another pass,
    so one empty check is not enough on a slow machine."""
    app = pilot.app
    calm = 0
    deadline = time.monotonic() + 60
    while calm < passes:
        await app.workers.wait_for_complete()
        await pilot.pause(0.02)
        busy = app._refresh_timer is not None or bool(app._dirty) or any(
            w.is_running for w in app.workers)
        calm = 0 if busy else calm + 1
        assert time.monotonic() < deadline, "the console did not settle"
    await pilot.pause()


def still_inputs(app: SwitchboardApp) -> None:
    from textual.widgets import Input

    for screen in app.screen_stack:
        for box in screen.query(Input):
            box.cursor_blink = False  # the cursor stays shown, it does not blink


async def wait_refreshed(pilot) -> None:
    await pilot.pause()
    await quiet(pilot)


def rows(app: SwitchboardApp, list_id: str) -> RowList:
    return app.screen.query_one(f"#{list_id}", RowList)


# -- the main screen -----------------------------------------------------------------------------


def test_main_screen(snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settle)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
def test_main_screen_size(snap_compare, size):
    """Narrow: the lower panes one at a time, the keys and status closer; wide: ids as wide
    as the ids, the rest to the reasons and messages."""
    assert snap_compare(make_app(), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("theme", ["switchboard-dark", "switchboard-light", "switchboard-high-contrast",
                                   "textual-dark", "ansi-dark"])
def test_main_screen_theme(snap_compare, theme):
    assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=settle)


def test_filter_box(snap_compare):
    async def run_before(pilot):
        app = await settle(pilot)
        assert app.focused is rows(app, "queue")
        await pilot.press("slash")
        still_inputs(app)
        await pilot.press("v", "r")
        await wait_refreshed(pilot)
        assert app.panes.filters["queue"] == "vr"
        assert [p.id for p in rows(app, "queue").items] == ["vr-0001", "vr-0002"]

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


# -- modal screens ---------------------------------------------------------------------------------


def test_details_screen(snap_compare):
    async def run_before(pilot):
        app = await settle(pilot)
        queue = rows(app, "queue")
        queue.focus()
        queue.cursor = next(i for i, p in enumerate(queue.items) if p.id == "train")
        await wait_refreshed(pilot)
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, DetailsScreen))
        history = app.screen.query_one("#details-history")
        await wait_for(lambda: str(history.content) != "loading…")
        await pilot.pause()
        assert app.screen.process.id == "train"

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare):
    async def run_before(pilot):
        app = await settle(pilot)
        await pilot.press("question_mark")
        await wait_for(lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_new_voice_request_form(snap_compare):
    # the app refuses `n` when read-only, so the form is pushed as action_new_voice pushes it;
    # with no call selected the app proposes call-<HHMMSS> of now: pinned to the fixed time
    async def run_before(pilot):
        app = await settle(pilot)
        call = app.selected_call or f"call-{time.strftime('%H%M%S', time.localtime(tui_data.FIXED_TS))}"
        await app.push_screen(FormScreen("New voice request", [("call", "Call", call),
                                                               ("text", "What the caller said", "")], ok="Send"))
        await pilot.pause()
        still_inputs(app)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_transfer_form(snap_compare):
    # as action_transfer pushes it, for the call selected in the Calls & transfers pane
    async def run_before(pilot):
        app = await settle(pilot)
        calls = rows(app, "calls")
        calls.focus()
        calls.cursor = next(i for i, r in enumerate(calls.items) if r[1] == "call:call-7")
        await wait_refreshed(pilot)
        assert app.selected_call == "call-7"
        call = app.selected_call
        await app.push_screen(FormScreen(f"Warm transfer of call {call}",
                                         [("from", "From agent", ""), ("to", "To agent", "")], ok="Transfer"))
        await pilot.pause()
        still_inputs(app)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_cancel_confirmation(snap_compare):
    # as action_cancel pushes it, for the focused process (the first in the queue)
    async def run_before(pilot):
        app = await settle(pilot)
        p = app._focused_process()
        assert p is not None and p.id == "nightly-backup"
        await app.push_screen(ConfirmScreen(f"Cancel {p.id} ({p.state.value})?", f"Cancel {p.id}"))
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


# -- text from outside is shown literally ------------------------------------------------------------


def pane_lines(app: SwitchboardApp, list_id: str) -> list[str]:
    widget = rows(app, list_id)
    return [widget.render_line(y).text for y in range(widget.size.height)]


async def test_outside_text_is_shown_literally():
    # wide enough that the calls pane's LATEST column holds the whole caller text
    app = make_app()
    async with app.run_test(size=(240, 36)) as pilot:
        await settle(pilot)
        lines = pane_lines(app, "calls")
        assert any("[red]Ann[/red]" in line for line in lines), lines
        assert any("\\x1b[31mLee\\x1b[0m" in line for line in lines), lines
        screen_lines = [line for list_id in ("queue", "active", "graph", "calls", "events")
                        for line in pane_lines(app, list_id)]
        assert not any("\x1b" in line for line in screen_lines)


def test_text_from_outside_shows_what_would_act_on_the_terminal():
    # as the command line shows it: a bidirectional override reorders the row around it
    assert clean("pay\u202eevil\x1b]0;t\x07\r\nnext") == "pay\\u202eevil\\x1b]0;t\\x07⏎next"
