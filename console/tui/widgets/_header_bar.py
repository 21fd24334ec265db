"""The top line: the state counts and the trends."""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from console.tui.widgets._line_frame import LineFrame

_BOLD = Style(bold=True)


class HeaderBar(Widget):
    """The top line: the state counts, then the trends (completions a minute, the loop's
    lateness) on the right. One widget on Textual's line API draws it all. As six widgets (a
    container, two labels, three lines), every frame that touched the top of the screen
    walked six through Textual's compositor; as a `render()` returning Text, each change cost
    ~1.3 ms of a frame turning the Text into Textual's content and back into segments (the
    counts change with nearly every refresh under load); made as segments, ~0.1 ms.

    A narrow line gives up what matters least first: the sparklines (their figures stay),
    then the double spaces between the counts, then the completions, then the lateness; the
    counts are cut only when nothing else is left."""

    DEFAULT_CSS = """
    HeaderBar { height: 1; dock: top; background: $panel; padding: 0 1; }
    HeaderBar > .headerbar--label { color: $text-muted; }
    HeaderBar > .headerbar--spark { color: $accent; }
    """
    COMPONENT_CLASSES = {"headerbar--label", "headerbar--spark"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.counts: list[tuple[int, str, Style]] = []  # (how many, state, the state's style)
        self.done = ("", "")  # (sparkline, figure), each of a fixed width: a change never moves the rest
        self.lag = ("", "")
        self._line: Strip | None = None  # made once per change (and per width, per theme)
        self._version = 0  # of what the line shows: the key of the whole line (LineFrame)
        self._frame_lines: LineFrame | None = None
        self._style_parts: tuple[Style, Style, Style] | None = None  # base, label, spark

    def set_counts(self, counts: list[tuple[int, str, Style]]) -> None:
        if counts != self.counts:
            self.counts = counts
            self._changed()

    def set_trends(self, done: tuple[str, str], lag: tuple[str, str]) -> None:
        if (done, lag) != (self.done, self.lag):
            self.done, self.lag = done, lag
            self._changed()

    def _changed(self) -> None:
        self._line = None
        self._version += 1
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()  # a new theme: new colours
        self._line = None
        self._frame_lines = None
        self._style_parts = None

    def on_resize(self) -> None:
        self._line = None
        self._frame_lines = None

    def render_lines(self, crop: Region) -> list[Strip]:
        # drawn with its padding as one line (LineFrame): the counts change at nearly every refresh
        if self._frame_lines is None or self._frame_lines.size != self.outer_size:
            self._frame_lines = LineFrame(self, lambda region: super(HeaderBar, self).render_lines(region), limit=2)
        if not self._frame_lines.plain:
            return super().render_lines(crop)
        return self._frame_lines.render(self, crop, lambda y: ((self._version, y), lambda: self.render_line(y)))

    def _fitted(self, width: int, base: Style, label: Style, spark: Style) -> Strip:
        """The line, as much of it as `width` holds (see the class's doc). The layout is
        chosen by the texts' lengths; only its segments are made."""
        names = (" done/min ", " lag ")
        trends = (self.done, self.lag)
        full = [len(name) + cell_len(line) + 1 + len(figure) for name, (line, figure) in zip(names, trends)]
        short = [len(name) + len(figure) for name, (_, figure) in zip(names, trends)]
        counted = sum(len(str(n)) + 1 + len(state) for n, state, _ in self.counts)
        wide, tight = counted + 2 * len(self.counts), counted + len(self.counts)
        # (gap between counts, the trends shown: 2 with sparklines, 1 figures only, the lag's alone, none)
        for gap, shown, right in (("  ", 2, sum(full)), ("  ", 1, sum(short)), (" ", 1, sum(short)),
                                  (" ", 0, short[1]), (" ", -1, 0)):
            if (wide if gap == "  " else tight) <= width - right:
                break
        else:
            gap, shown, right = " ", -1, 0
        segments = [part for n, state, style in self.counts
                    for part in (Segment(f"{n} ", base + _BOLD), Segment(f"{state}{gap}", base + style))]
        room = width - right
        if (wide if gap == "  " else tight) > room:  # the counts alone do not fit: cut, and say so
            segments = list(Strip(segments).crop(0, max(0, room - 1)))
            while segments and not segments[-1].text.strip():
                segments.pop()
            if segments:
                segments[-1] = Segment(segments[-1].text.rstrip(), segments[-1].style)
            segments.append(Segment("…", base))
        line = list(Strip(segments).adjust_cell_length(room, base))
        for index, (name, (spark_text, figure)) in enumerate(zip(names, trends)):
            if shown == 2:
                line += [Segment(name, label), Segment(f"{spark_text} {figure}", spark)]
            elif shown == 1 or (shown == 0 and index == 1):
                line += [Segment(name, label), Segment(figure.strip().ljust(len(figure)), spark)]
        return Strip(line).adjust_cell_length(width, base)

    def _styles(self) -> tuple[Style, Style, Style]:
        # kept until the style changes: Textual's refresh() forgets its own, and working them
        # out again on each change is not free
        if self._style_parts is None:
            base = self.rich_style
            self._style_parts = (base, base + self.get_component_rich_style("headerbar--label", partial=True),
                                 base + self.get_component_rich_style("headerbar--spark", partial=True))
        return self._style_parts

    def render_line(self, y: int) -> Strip:
        base, label, spark = self._styles()
        width = self.size.width
        if y:
            return Strip.blank(width, base)
        if self._line is None:
            self._line = self._fitted(width, base, label, spark)
        return self._line
