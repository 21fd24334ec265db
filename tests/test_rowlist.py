"""The console's list widget on its own (console/tui/widgets.py): its lines are drawn whole and
kept (LineFrame), exactly as Textual would draw them, and what it shows follows the list."""

from __future__ import annotations

import re

from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widget import Widget

from console.tui.widgets import Column, RowList


class ListApp(App[None]):
    CSS = """
    .pane { border: round $border-blurred; border-title-color: $text-muted; }
    .pane:focus { border: round $border; border-title-style: bold; }
    RowList { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield RowList([Column("N", 4), Column("TEXT", 0)], lambda i: (str(i), (f"item {i}", "bold")),
                      key=lambda i: i, follow_end=True, classes="pane", id="a")
        yield RowList([Column("N", 4)], lambda i: (str(i),), key=lambda i: i, id="b")  # no border: Textual's way

    def on_mount(self) -> None:
        self.query_one("#a").border_title = "Items"


def screen_lines(app: App) -> list[str]:
    """The screen's text, line by line, from the SVG Textual exports (what a user sees)."""
    svg = app.export_screenshot()
    lines: dict[float, list[tuple[float, str]]] = {}
    for x, y, text in re.findall(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        lines.setdefault(float(y), []).append((float(x), text.replace("&#160;", " ").replace("&amp;", "&")))
    return ["".join(t for _, t in sorted(parts)) for _, parts in sorted(lines.items())]


def textual_lines(widget: Widget) -> list:
    """The widget's lines as Textual's own styles cache draws them."""
    widget._styles_cache.clear()
    return Widget.render_lines(widget, Region(0, 0, *widget.outer_size))


async def test_lines_are_drawn_as_textual_draws_them_focused_or_not_scrolled_or_not():
    app = ListApp()
    async with app.run_test(size=(40, 14)) as pilot:
        rows = app.query_one("#a", RowList)
        for count, focus in ((3, False), (40, False), (40, True)):  # 40: a scrollbar
            rows.set_items(list(range(count)))
            if focus:
                rows.focus()
            await pilot.pause()
            ours = rows.render_lines(Region(0, 0, *rows.outer_size))
            assert [list(line) for line in ours] == [list(line) for line in textual_lines(rows)]
        # a crop of the pane, as when another widget covers part of it
        crop = Region(3, 2, 10, 4)
        assert ([list(line) for line in rows.render_lines(crop)]
                == [list(line) for line in Widget.render_lines(rows, crop)])


async def test_a_line_that_moves_up_the_pane_is_not_drawn_again():
    app = ListApp()
    async with app.run_test(size=(40, 14)) as pilot:
        rows = app.query_one("#a", RowList)
        rows.set_items(list(range(30)))
        await pilot.pause()
        made: list[tuple] = []  # rows whose content was made
        row_parts = rows._row_parts
        rows._row_parts = lambda row, plain=False: (made.append(row), row_parts(row, plain))[1]
        by_textual: list[int] = []  # lines Textual's styles cache drew (border, background, filters)
        cache = rows._styles_cache
        render_line = cache.render_line
        cache.render_line = lambda styles, y, *rest: (by_textual.append(y), render_line(styles, y, *rest))[1]
        rows.set_items(list(range(31)))  # one more at the end: the list follows it, every row moves up
        await pilot.pause()
        assert screen_lines(app)[rows.outer_size.height - 2].startswith("│30")  # the last row inside
        # made: the new row (under the cursor) and the row the cursor left; the rest were kept,
        # whole: no line inside the border went through Textual's drawing again
        assert sorted(row[0] for row in made) == ["29", "30"]
        assert [y for y in by_textual if 0 < y < rows.outer_size.height - 1] == []


async def test_a_list_that_follows_its_end_shows_it_after_shrinking():
    """A shorter pane scrolls to keep the newest row (the cursor) in sight; the screen shows
    the rows from that scroll position, not the lines drawn for the size before it."""
    app = ListApp()
    async with app.run_test(size=(40, 14)) as pilot:
        rows = app.query_one("#a", RowList)
        rows.set_items(list(range(30)))
        await pilot.pause()
        assert screen_lines(app)[rows.outer_size.height - 2].startswith("│29")
        before = rows.outer_size.height
        app.query_one("#b").styles.height = 8  # the other widget takes more room
        await pilot.pause()
        await pilot.pause()
        height = rows.outer_size.height
        assert height < before
        shown = screen_lines(app)[2:height - 1]  # inside the border, under the column titles
        assert shown[-1].startswith("│29")
        assert len(shown) >= 2
        assert [re.match(r"│(\d+)", line).group(1) for line in shown] == [str(i) for i in range(30 - len(shown), 30)]
