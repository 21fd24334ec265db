"""A virtual list on Textual's Line API that renders only the visible lines, from a sequence
it is handed by reference (the stock DataTable blocks the loop for long at tens of thousands of
rows, and each `update_cell` repaints the whole table)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from console.tui.widgets._columns import Column, Part, Row, cell_parts, column_layout
from console.tui.widgets._line_frame import CACHE_LIMIT, LineFrame
from console.tui.widgets._text import clean

_FRAME_LINES_KEPT = 1024  # whole lines a list keeps (LineFrame): some 25 screens of rows


@lru_cache(maxsize=256)
def _style(value: str | Style) -> Style:
    return value if isinstance(value, Style) else Style.parse(value)


class RowList(Widget, can_focus=True):
    """A list of rows with a cursor and a scrollbar of its own. The owner hands it `items`
    and a `render_row(item) -> Row`; only the rows on screen are rendered.

    It is a plain Widget that scrolls itself rather than a ScrollView: a ScrollView's
    `virtual_size` is a layout reactive, so every change in the number of rows (the event
    log grows with each burst) reflowed the whole screen, ~15-45 ms here."""

    COMPONENT_CLASSES = {"rowlist--cursor", "rowlist--header", "rowlist--empty", "rowlist--scrollbar",
                         "rowlist--scrollbar-thumb"}
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]
    DEFAULT_CSS = """
    RowList { height: 1fr; background: $surface; }
    RowList > .rowlist--cursor { background: $block-cursor-blurred-background; }
    RowList:focus > .rowlist--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    RowList > .rowlist--header { color: $text-muted; text-style: bold; }
    RowList > .rowlist--empty { color: $text-muted; }
    RowList > .rowlist--scrollbar { color: $scrollbar-background; background: $scrollbar-background; }
    RowList > .rowlist--scrollbar-thumb { color: $scrollbar; background: $scrollbar; }
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

    def __init__(self, columns: list[Column], render_row: Callable[[Any], Row],
                 key: Callable[[Any], Any] = id, empty: str = "nothing here",
                 follow_end: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns = columns
        self.render_row = render_row
        self.key = key
        self.empty = empty
        self.follow_end = follow_end  # stay at the newest row while the user is there
        self.items: Sequence[Any] = ()
        self.top = 0  # the first item on screen
        self._fits = [(i, c.fit) for i, c in enumerate(columns) if c.fit is not None]
        self._fitted = [0] * len(columns)  # each fitted column's widest value on screen since the last resize
        self._layout: tuple[tuple[int, int], ...] = ()  # (column, width) of the columns shown
        self._layout_for: tuple[Any, ...] = ()  # the room and widest values it was made for
        self._layout_version = 0  # part of each line's key: a new layout draws every line again
        self._strips: dict[tuple[Any, ...], Strip] = {}
        self._styles: dict[str, Style] = {}
        self._frame_lines: LineFrame | None = None  # see render_lines
        self._frame: tuple[bool, int, tuple[tuple[int, int], ...], tuple[int, int]] = (False, 1, (), (0, 0))
        self._drawn: list[Any] = []  # what each line on screen shows, to repaint only changes
        # The cursor stays on an item, not on a line: `chosen` is the key of the item it is on,
        # `_neighbours` the keys of the items after and before it, where it goes if that item
        # leaves the list. `unconfirmed` says it went there by itself: nothing should act on
        # that row until the user moves the cursor.
        self.chosen: Any = None  # (keys are never None)
        self._neighbours: tuple[Any, ...] = ()
        self.unconfirmed = False
        self.left: Any = None  # the key of the item that left while chosen, until the user moves

    # -- data -----------------------------------------------------------------------------

    def set_items(self, items: Sequence[Any]) -> None:
        """Show `items`. The sequence must not change afterwards (hand over a copy or a
        snapshot): the cursor is placed by what the list held, and lines are drawn from it."""
        previous = self.chosen
        at_end = self.follow_end and (not self.items or self.cursor >= len(self.items) - 1)
        self.items = items
        found = None if previous is None or not items else self._index_of(previous)
        if previous is not None and found is None:  # it left: the user must confirm what is there now
            if not self.unconfirmed:
                self.left = previous
            self.unconfirmed = True
        if not items:
            cursor = 0
        elif at_end:
            cursor = len(items) - 1
        elif found is not None:
            cursor = found
        elif previous is not None:  # the neighbour that takes its place, else the one before it
            cursor = next((i for i in map(self._index_of, self._neighbours) if i is not None),
                          min(self.cursor, len(items) - 1))
        else:
            cursor = min(self.cursor, len(items) - 1)
        self.set_reactive(RowList.cursor, cursor)
        self._note_choice()
        self._scroll_to_cursor()
        self._repaint()
        now = self.selected
        if now is not None and self.chosen != previous:
            self.post_message(self.Highlighted(self, now))  # the row under the cursor changed

    def start_over(self) -> None:
        """The next items are another list, not this one changed (a pane that shows the
        relations of another pane's selection, once that selection moved): the cursor starts
        at the top and no row counts as having left."""
        self.chosen, self._neighbours = None, ()
        self.unconfirmed = False
        self.left = None
        self.set_reactive(RowList.cursor, 0)
        self.top = 0

    def _index_of(self, key: Any) -> int | None:
        """Where the item with this key is: looked for near the cursor first, then by the
        sequence's own `index_of(key)` when it has one, else through the whole list."""
        items = self.items
        lo, hi = max(0, self.cursor - 50), min(len(items), self.cursor + 50)
        for i in range(lo, hi):
            if self.key(items[i]) == key:
                return i
        index_of = getattr(items, "index_of", None)
        if index_of is not None:
            return index_of(key)
        return next((i for i in range(len(items)) if (i < lo or i >= hi) and self.key(items[i]) == key), None)

    def _note_choice(self) -> None:
        items, cursor = self.items, self.cursor
        if not 0 <= cursor < len(items):
            self.chosen, self._neighbours = None, ()
            return
        self.chosen = self.key(items[cursor])
        self._neighbours = tuple(self.key(items[i]) for i in (cursor + 1, cursor - 1) if 0 <= i < len(items))

    @property
    def selected(self) -> Any:
        if 0 <= self.cursor < len(self.items):
            return self.items[self.cursor]
        return None

    def refresh_rows(self) -> None:
        """The rows on screen made again from their items, for what changes with time alone
        (an age): only the lines whose text changed are drawn again."""
        self._repaint()

    @property
    def visible_rows(self) -> int:
        return max(1, self.size.height - 1)  # less the header line

    # -- rendering -------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()  # focus, theme: colours change, so do the lines
        self._styles = {}
        self._strips = {}
        self._frame_lines = None
        self._drawn = []

    def on_resize(self, event: events.Resize) -> None:
        self._strips = {}
        self._frame_lines = None
        self._drawn = []
        self._scroll_to_cursor()
        self._fitted = [0] * len(self.columns)  # fitted afresh to what the new size shows
        self._fit_visible()
        # The lines Textual drew for the new size came before this handler and may show the
        # rows from before the scroll just made (a list that follows its newest row, shorter).
        self.refresh()

    def _style(self, component: str) -> Style:
        style = self._styles.get(component)
        if style is None:
            base = self.rich_style
            style = base if component == "" else base + self.get_component_rich_style(component)
            self._styles[component] = style
        return style

    def layout(self, total: int) -> tuple[tuple[int, int], ...]:
        """(column, width) of the columns shown in `total` cells, made again only when the
        room or the widest fitted values change."""
        wanted = (total, *self._fitted)
        if wanted != self._layout_for:
            layout = column_layout(self.columns, total, self._fitted)
            self._layout_for = wanted
            if layout != self._layout:
                self._layout = layout
                self._layout_version += 1
        return self._layout

    def _fit_visible(self) -> None:
        """Widen the fitted columns to the widest value among the rows on screen; they do not
        narrow again until the list is resized, so scrolling never makes the columns jump.
        Only the rows on screen are measured: a list of 10,000 costs what a screenful does."""
        items, fitted = self.items, self._fitted
        start = self.top
        end = min(len(items), start + self.visible_rows)
        for column, fit in self._fits:
            widest = fitted[column]
            for index in range(start, end):
                widest = max(widest, cell_len(fit(items[index])))
            fitted[column] = widest

    def _strip(self, key: tuple[Any, ...], make: Callable[[], list[Part]], style: Style, bar: str | None) -> Strip:
        """A line from the cache, or made once (for a pane that Textual draws whole: see
        render_lines)."""
        strip = self._strips.get((key, bar))
        if strip is None:
            if len(self._strips) > CACHE_LIMIT:
                self._strips = {}
            strip = self._strips[(key, bar)] = self._make_strip(make, style, bar)
        return strip

    def _make_strip(self, make: Callable[[], list[Part]], style: Style, bar: str | None) -> Strip:
        """A content line: `bar` is the scrollbar's cell on the right (None: no scrollbar).
        Lines are made as segments directly: through rich's Text a line took ~2.5x as long
        (166 vs 63 µs)."""
        room = self._frame[1]
        # the line's style (background, cursor) under the parts' own colours
        segments = [Segment(text, style + _style(part_style) if part_style else style)
                    for text, part_style in make()]
        strip = Strip(segments).adjust_cell_length(room, style)
        if bar is not None:
            strip = Strip([*strip, Segment(" ", self._style(bar))], room + 1)
        return strip

    def _row_parts(self, row: Row, plain: bool = False) -> list[Part]:
        """The row's cells fitted to their widths (an ellipsis where one is cut), a space
        after each; `plain` drops the cells' own colours (the cursor's line: a state's colour
        on the cursor's background can be unreadable)."""
        parts: list[Part] = []
        for column, width in self._frame[2]:
            value = row[column]
            used = 0
            for text, part_style in cell_parts(value):
                text = clean(text)
                size = cell_len(text)
                if used + size > width:
                    parts.append((set_cell_size(text, max(0, width - used - 1)) + "…" if width > used else "",
                                  "" if plain else part_style))
                    used = width
                    break
                parts.append((text, "" if plain else part_style))
                used += size
            parts.append((" " * (width - used + 1), ""))
        return parts

    def _measure(self) -> None:
        # what every line of a frame shares, measured once (Textual's size lookups are not free)
        width, shown = self.size.width, self.visible_rows
        scrollable = len(self.items) > shown
        room = width - 1 if scrollable else width
        thumb = (0, 0)
        if scrollable:
            size = max(1, round(shown * shown / len(self.items)))
            start = round(self.top / max(1, len(self.items) - shown) * (shown - size)) + 1
            thumb = (start, start + size)
        self._frame = (scrollable, room, self.layout(max(1, room - 1)), thumb)

    def _line(self, y: int) -> tuple[tuple[Any, ...], Callable[[], list[Part]], str, str | None]:
        """Line y as (what it shows, how to make its text, its component style, its scrollbar cell)."""
        scrollable, room, _, (thumb_start, thumb_end) = self._frame
        shape = (room, self._layout_version)  # what every line's look depends on
        bar = None
        if scrollable:
            bar = "rowlist--scrollbar-thumb" if thumb_start <= y < thumb_end else "rowlist--scrollbar"
        if y == 0:
            titles = tuple(c.title for c in self.columns)
            return ("header", titles, shape), lambda: self._row_parts(titles), "rowlist--header", bar
        index = self.top + y - 1
        if not self.items and y == 1:
            return ("empty", self.empty, shape), lambda: [(self.empty, "")], "rowlist--empty", bar
        if index >= len(self.items):
            return ("blank", shape), list, "", bar
        row = self.render_row(self.items[index])
        chosen = index == self.cursor
        return (row, shape, chosen), lambda: self._row_parts(row, chosen), "rowlist--cursor" if chosen else "", bar

    def render_line(self, y: int) -> Strip:
        key, make, component, bar = self._drawn_line(y)
        return self._strip(key, make, self._style(component), bar)

    def render_lines(self, crop: Region) -> list[Strip]:
        self._measure()
        if self._frame_lines is None or self._frame_lines.size != self.outer_size:
            self._frame_lines = LineFrame(self, lambda region: super(RowList, self).render_lines(region),
                                          limit=_FRAME_LINES_KEPT)
        if not self._frame_lines.plain:
            return super().render_lines(crop)
        return self._frame_lines.render(self, crop, self._whole_line)

    def _whole_line(self, y: int) -> tuple[Any, Callable[[], Strip]]:
        """Content line y: what it shows, and how to make it. The whole line is what
        LineFrame keeps: the content alone is not kept as well."""
        key, make, component, bar = self._drawn_line(y)
        return (key, bar), lambda: self._make_strip(make, self._style(component), bar)

    def _drawn_line(self, y: int) -> tuple[tuple[Any, ...], Callable[[], list[Part]], str, str | None]:
        """_line(y), noted as what the screen shows there (see _repaint)."""
        line = self._line(y)
        if y < len(self._drawn):
            self._drawn[y] = (line[0], line[3])
        return line

    def _repaint(self) -> None:
        """Repaint only the lines whose content changed: a new event at the end of a full log
        or a progress tick on one row costs a line or two, not the whole list."""
        height = self.size.height
        if not height:
            return
        self._fit_visible()
        self._measure()
        lines = [self._line(y) for y in range(height)]
        now = [(key, bar) for key, _, _, bar in lines]
        before, self._drawn = self._drawn, now
        if len(before) != height:
            self.refresh()
            return
        changed = [y for y in range(height) if before[y] != now[y]]
        if len(changed) > height // 2:
            self.refresh()
        elif changed:
            width = self.size.width
            self.refresh(*(Region(0, y, width, 1) for y in changed))

    # -- scrolling and the cursor -------------------------------------------------------------

    def scroll_rows(self, delta: int) -> None:
        top = max(0, min(len(self.items) - self.visible_rows, self.top + delta))
        if top != self.top:
            self.top = max(0, top)
            self._repaint()

    def _scroll_to_cursor(self) -> None:
        shown = self.visible_rows
        top = self.top
        if self.cursor < top:
            top = self.cursor
        elif self.cursor >= top + shown:
            top = self.cursor - shown + 1
        self.top = max(0, min(top, len(self.items) - shown))  # the caller repaints

    def watch_cursor(self, old: int, new: int) -> None:
        # the cursor set by the user (a key, a click, the owner): what it is on is chosen
        self.unconfirmed = False
        self.left = None
        self._note_choice()
        self._scroll_to_cursor()
        self._repaint()
        if old != new and self.selected is not None:
            self.post_message(self.Highlighted(self, self.selected))

    def action_cursor(self, delta: int) -> None:
        if self.items:
            self.cursor = max(0, min(len(self.items) - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.visible_rows - 1))

    def action_jump(self, where: int) -> None:
        if self.items:
            self.cursor = where if where >= 0 else len(self.items) - 1

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self.scroll_rows(3)
        event.stop()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.scroll_rows(-3)
        event.stop()

    def on_click(self, event: events.Click) -> None:
        if len(self.items) > self.visible_rows and event.x == self.size.width - 1 and event.y >= 1:
            # on the scrollbar: jump there
            fraction = (event.y - 1) / max(1, self.visible_rows - 1)
            self.scroll_rows(round(fraction * (len(self.items) - self.visible_rows)) - self.top)
            return
        row = event.y + self.top - 1
        if event.y >= 1 and 0 <= row < len(self.items):
            self.cursor = row
            if event.chain >= 2:
                self.post_message(self.Chosen(self, self.selected))

    def on_focus(self) -> None:
        if self.selected is not None:
            self.post_message(self.Highlighted(self, self.selected))
