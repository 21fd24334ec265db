"""The console's widgets. Lists that grow large or change often are `RowList`s: a virtual
list on Textual's Line API that renders only the visible lines, from a sequence it is
handed by reference (measured: the stock DataTable blocks the loop for ~1.6 s at 10,000
rows, and each `update_cell` repaints the whole table)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(value: Any) -> str:
    """Text from outside (process names, logs, transcripts, LLM output) shown as text:
    control characters, escape sequences included, become visible `\\xNN`."""
    text = "" if value is None else str(value)
    text = text.replace("\r\n", "⏎").replace("\n", "⏎")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def literal(value: Any, style: str | Style = "") -> Text:
    """A Text that is never parsed for markup."""
    return Text(clean(value), style=style, no_wrap=True, overflow="ellipsis")


@dataclass
class Column:
    title: str
    width: int  # 0: takes the room left


class RowList(ScrollView, can_focus=True):
    """A list of rows with a cursor. The owner hands it `items` and a `render_row(item,
    widths) -> Text`; only rows on screen are rendered, so 10,000 items cost nothing until
    they scroll into view."""

    COMPONENT_CLASSES = {"rowlist--cursor", "rowlist--header", "rowlist--empty"}
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]
    DEFAULT_CSS = """
    RowList { height: 1fr; overflow-x: hidden; background: $surface; }
    RowList > .rowlist--cursor { background: $block-cursor-blurred-background; }
    RowList:focus > .rowlist--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    RowList > .rowlist--header { color: $text-muted; text-style: bold; }
    RowList > .rowlist--empty { color: $text-muted; }
    """

    cursor: reactive[int] = reactive(0, repaint=False, always_update=True)

    class Highlighted(Message):
        def __init__(self, rowlist: RowList, item: Any) -> None:
            super().__init__()
            self.rowlist = rowlist
            self.item = item

        @property
        def control(self) -> RowList:
            return self.rowlist

    class Chosen(Message):
        """Enter or a double click on a row."""

        def __init__(self, rowlist: RowList, item: Any) -> None:
            super().__init__()
            self.rowlist = rowlist
            self.item = item

        @property
        def control(self) -> RowList:
            return self.rowlist

    def __init__(self, columns: list[Column], render_row: Callable[[Any, list[int]], Text],
                 key: Callable[[Any], Any] = id, empty: str = "nothing here",
                 follow_end: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns = columns
        self.render_row = render_row
        self.key = key
        self.empty = empty
        self.follow_end = follow_end  # stay at the newest row while the user is there
        self.items: Sequence[Any] = ()
        self._widths: list[int] = []

    # -- data -----------------------------------------------------------------------------

    def set_items(self, items: Sequence[Any]) -> None:
        previous = self.selected
        at_end = self.follow_end and (not self.items or self.cursor >= len(self.items) - 1)
        self.items = items
        self.virtual_size = Size(self.size.width, len(items) + 1)  # + the header line
        if at_end and items:
            self.cursor = len(items) - 1
        elif previous is not None:
            wanted = self.key(previous)
            # keep the cursor on the same item when it is still near where it was
            lo, hi = max(0, self.cursor - 50), min(len(items), self.cursor + 50)
            for i in range(lo, hi):
                if self.key(items[i]) == wanted:
                    self.cursor = i
                    break
            else:
                self.cursor = min(self.cursor, max(0, len(items) - 1))
        else:
            self.cursor = min(self.cursor, max(0, len(items) - 1))
        self._scroll_to_cursor()
        self.refresh()

    @property
    def selected(self) -> Any:
        if 0 <= self.cursor < len(self.items):
            return self.items[self.cursor]
        return None

    # -- rendering -------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(self.size.width, len(self.items) + 1)
        self._widths = []

    def widths(self) -> list[int]:
        if not self._widths or sum(self._widths) + len(self._widths) - 1 != max(1, self.size.width - 1):
            total = max(1, self.size.width - 1)
            fixed = sum(c.width for c in self.columns) + len(self.columns) - 1
            flexible = [c for c in self.columns if c.width == 0]
            room = max(4, total - fixed)
            self._widths = [c.width or max(4, room // max(1, len(flexible))) for c in self.columns]
        return self._widths

    def _line(self, text: Text, width: int, style: Style) -> Strip:
        text.truncate(width, overflow="ellipsis", pad=True)
        # the line's style (background, cursor) under the text's own colours
        return Strip(list(Segment.apply_style(text.render(self.app.console), style)), width)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            header = Text(no_wrap=True)
            for column, w in zip(self.columns, self.widths()):
                header.append(column.title[:w].ljust(w) + " ")
            return self._line(header, width, base + self.get_component_rich_style("rowlist--header"))
        index = self.scroll_offset.y + y - 1
        if not self.items and y == 1:
            return self._line(Text(self.empty), width, base + self.get_component_rich_style("rowlist--empty"))
        if index >= len(self.items):
            return Strip.blank(width, base)
        text = self.render_row(self.items[index], self.widths())
        style = base
        if index == self.cursor:
            style = base + self.get_component_rich_style("rowlist--cursor")
        return self._line(text, width, style)

    # -- the cursor -------------------------------------------------------------------------

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()
        if old != new and self.selected is not None:
            self.post_message(self.Highlighted(self, self.selected))

    def action_cursor(self, delta: int) -> None:
        if self.items:
            self.cursor = max(0, min(len(self.items) - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.size.height - 2))

    def action_jump(self, where: int) -> None:
        if self.items:
            self.cursor = where if where >= 0 else len(self.items) - 1

    def on_click(self, event: events.Click) -> None:
        row = event.y + self.scroll_offset.y - 1
        if event.y >= 1 and 0 <= row < len(self.items):
            self.cursor = row
            if event.chain >= 2:
                self.post_message(self.Chosen(self, self.selected))

    def on_focus(self) -> None:
        if self.selected is not None:
            self.post_message(self.Highlighted(self, self.selected))


def cell(text: str | Text, width: int, style: str | Style = "") -> Text:
    """A fixed-width cell followed by one space."""
    t = text if isinstance(text, Text) else literal(text, style)
    t = t.copy()
    t.truncate(width, overflow="ellipsis", pad=True)
    t.append(" ")
    return t


def progress_bar(percent: float, width: int) -> Text:
    width = max(4, width)
    filled = int(round(percent / 100 * width))
    bar = Text("█" * filled, style="bold") + Text("░" * (width - filled), style="dim")
    return bar


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """


def visible_width(text: str) -> int:
    return cell_len(text)
