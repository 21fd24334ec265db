"""The console's layout follows the terminal's size: ids whole, the lower panes one at a time on
a narrow screen, the header, status line and keys giving up what matters least first, and
the queue's AGE counting up with the clock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tui_data
from conftest import dep, py, wait_for, workflow
from textual.geometry import Region

from console.model import State
from console.settings import load_settings
from console.tui.app import SwitchboardApp
from console.tui.widgets import Column, RowList, column_layout

NARROW = (80, 24)
WIDE = (120, 36)
LOWER = ("active", "graph", "calls", "events")


def settings(tmp_path: Path):
    return load_settings(db=tmp_path / "t.db", data_dir=tmp_path / "data", groq_api_key=None,
                         groq_base_url="http://127.0.0.1:9", engine={"retry_base_s": 0.05})


def drawn(widget) -> list[str]:
    """The widget's lines as it draws them, its border included."""
    return [strip.text for strip in widget.render_lines(Region(0, 0, *widget.outer_size))]


def pane_text(app: SwitchboardApp, pane_id: str) -> list[str]:
    return drawn(app.screen.query_one(f"#{pane_id}"))


async def started(pilot) -> SwitchboardApp:
    app = pilot.app
    await wait_for(lambda: app.source is not None, timeout=10)
    await pilot.pause()
    return app


async def test_ids_are_shown_whole_at_80_columns(tmp_path):
    from console.voice.center import call_center

    long_id = "transcript-backup-eu1"
    app = SwitchboardApp(settings(tmp_path))
    async with app.run_test(size=NARROW) as pilot:
        await started(pilot)
        engine = app.engine
        await engine.load(workflow(py("transcribe", "wait_gate", gate="never") + py(long_id, "noop")
                                   + dep(long_id, "transcribe")))
        vr = await call_center(engine).create_voice_request("call-1", text="Is my payment through yet?")
        await wait_for(lambda: engine.processes["transcribe"].state is State.RUNNING
                       and engine.processes[vr.process_id].state is State.INTERRUPTED, timeout=10)
        queue = app.screen.query_one("#queue", RowList)
        await wait_for(lambda: {long_id, vr.process_id} <= {p.id for p in queue.items})
        await pilot.pause(0.3)
        await pilot.pause()
        shown = "\n".join(pane_text(app, "queue"))
        assert re.search(rf"\b{long_id}\b", shown), shown
        assert re.search(rf"\b{vr.process_id}\b", shown), shown
        assert "…" not in "".join(line[:30] for line in pane_text(app, "queue")), shown  # no id cut
        active = "\n".join(pane_text(app, "active"))
        assert re.search(r"│transcribe\s", active), active
        await pilot.press("q")


async def test_the_lower_panes_take_turns_below_120_columns_and_tab_visits_each(tmp_path):
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path), read_only=True)
    async with app.run_test(size=NARROW) as pilot:
        await started(pilot)
        panes = {pane_id: app.screen.query_one(f"#{pane_id}", RowList) for pane_id in ("queue", *LOWER)}
        assert [p for p in LOWER if panes[p].display] == ["active"]
        assert panes["active"].region.width == NARROW[0]  # one pane, the screen's width
        seen = []
        for _ in range(5):
            await pilot.press("tab")
            await pilot.pause()
            seen.append(app.focused.id)
            if app.focused.id in LOWER:
                assert [p for p in LOWER if panes[p].display] == [app.focused.id]
                top = drawn(app.focused)[0]
                assert " Active  Dependencies  Calls  Events " in top and "[" not in top, top
                assert app.focused.border_subtitle.endswith("tab: next pane")
        assert seen == ["active", "graph", "calls", "events", "queue"]
        await pilot.press("shift+tab")
        await pilot.pause()
        assert app.focused.id == "events" and panes["events"].display
        # wider: the four side by side again, each with its own title
        await pilot.resize_terminal(*WIDE)
        await pilot.pause()
        await pilot.pause()
        assert all(panes[p].display and panes[p].region.width < WIDE[0] // 2 + 1 for p in LOWER)
        assert panes["events"].border_title == "Events" and panes["events"].border_subtitle == ""
        await pilot.press("q")


@pytest.mark.parametrize("size", [NARROW, WIDE])
async def test_the_footer_keeps_help_quit_and_the_palette(tmp_path, size):
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path), read_only=True)
    async with app.run_test(size=size) as pilot:
        await started(pilot)
        footer = drawn(app.screen.query_one("#keys"))[0]
        assert "? Help" in footer and "q Quit" in footer and "^p palette" in footer, footer
        assert "r Resume" in footer and "/ Filter" in footer, footer  # the keys that give way last
        await pilot.press("q")


async def test_the_header_and_status_line_keep_what_matters_at_80_columns(tmp_path):
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path), read_only=True)
    async with app.run_test(size=NARROW) as pilot:
        await started(pilot)
        await wait_for(lambda: app._counts is not None and app._counts.counts)
        app._tick()
        await pilot.pause(0.3)
        header = drawn(app.screen.query_one("HeaderBar"))[0]
        status = drawn(app.screen.query_one("#status"))[0]
        counts = {state.value: n for state, n in app._counts.counts.items() if n}
        for state, n in counts.items():
            assert f"{n} {state}" in header, header
        assert "…" not in header, header  # the trends gave way to the counts
        # the database's path is long here (pytest's tmp dir): its name stays, the rest goes
        assert str(tmp_path) not in status and "db t.db" in status, status
        assert status.strip().startswith("read-only, ") and "│ loop " in status and "Groq: not running" in status and "read-only" in status, status
        assert "…" not in status, status
        await pilot.press("q")


async def test_priorities_read_as_words(tmp_path):
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    app = SwitchboardApp(settings(tmp_path), read_only=True)
    async with app.run_test(size=WIDE) as pilot:
        await started(pilot)
        queue = app.screen.query_one("#queue", RowList)
        await wait_for(lambda: len(queue.items) >= 5)
        await pilot.pause()
        shown = pane_text(app, "queue")[2:2 + len(queue.items)]  # under the border and the titles
        priorities = {line[1:].split()[0] for line in shown}
        assert priorities == {"crit", "high", "med", "low"}, shown
        by_id = {line[1:].split()[1]: line[1:].split()[0] for line in shown}
        assert by_id["nightly-backup"] == "crit" and by_id["report"] == "low" and by_id["train"] == "med"
        await pilot.press("q")


async def test_age_counts_up_with_the_clock_alone(tmp_path):
    """Nothing in the database changes, only the time: the queue asks Textual to draw its
    lines again (Textual draws only what a widget asks for), and they show the new ages."""
    await tui_data.build_async(tmp_path / "t.db", tmp_path / "data")
    now = [tui_data.FIXED_TS + 30]
    app = SwitchboardApp(settings(tmp_path), read_only=True, clock=lambda: now[0])
    async with app.run_test(size=WIDE) as pilot:
        await started(pilot)
        queue = app.screen.query_one("#queue", RowList)
        await wait_for(lambda: len(queue.items) >= 5)

        def age_of(pid: str) -> str:
            line = next(line for line in pane_text(app, "queue") if re.search(rf"\s{pid}\s", line))
            return line.rstrip("│ ").split()[-1]

        await wait_for(lambda: age_of("report") == "30s")
        await pilot.pause(1.2)  # a tick with nothing new: no repaint asked for
        painted = app._painted.get("queue")
        asked: list[tuple] = []
        refresh = queue.refresh
        queue.refresh = lambda *regions, **kwargs: (asked.append(regions), refresh(*regions, **kwargs))[1]
        now[0] += 75
        await wait_for(lambda: bool(asked), timeout=5)
        assert age_of("report") == "1m45s" and age_of("nightly-backup") == "1m45s"
        assert app._painted.get("queue") == painted  # the rows were not handed again: the clock alone
        await pilot.press("q")


# -- the columns, on their own --------------------------------------------------------------------

QUEUE = [Column("PRI", 4), Column("PROCESS", 0, fit=str), Column("KIND", 5, drop=1), Column("STATE", 11),
         Column("WHY", 0), Column("TRY", 4, drop=2), Column("AGE", 6)]


def widths(total: int, widest_id: int) -> dict[str, int]:
    layout = column_layout(QUEUE, total, [0, widest_id, 0, 0, 0, 0, 0])
    assert sum(w for _, w in layout) + len(layout) - 1 <= total
    return {QUEUE[i].title: w for i, w in layout}


def test_a_fitted_column_is_as_wide_as_its_widest_value_and_the_flexible_one_takes_the_rest():
    assert widths(150, 13) == {"PRI": 4, "PROCESS": 13, "KIND": 5, "STATE": 11, "WHY": 150 - 49, "TRY": 4, "AGE": 6}
    assert widths(150, 3)["PROCESS"] == len("PROCESS")  # never narrower than its title


def test_columns_give_way_least_important_first_then_the_reason_then_ids():
    assert set(widths(66, 13)) == set(t.title for t in QUEUE)  # WHY keeps its least (16)
    assert "KIND" not in widths(60, 13) and "TRY" in widths(60, 13)  # KIND goes first
    assert set(widths(54, 13)) == {"PRI", "PROCESS", "STATE", "WHY", "AGE"}  # then TRY
    assert widths(54, 13)["PROCESS"] == 13 and widths(54, 13)["WHY"] == 16
    narrow = widths(44, 13)
    assert narrow["PROCESS"] == 13 and narrow["WHY"] == 44 - 4 - 13 - 11 - 6 - 4  # the reason is cut, the id whole
    assert widths(43, 13)["PROCESS"] == 12 and widths(43, 13)["WHY"] == 6  # ids are cut last
    assert widths(40, 13)["PROCESS"] == 9
