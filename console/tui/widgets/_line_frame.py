"""Whole lines of a framed widget, drawn once and kept by what they show."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

CACHE_LIMIT = 4096


class LineFrame:
    """A widget's lines drawn whole, and kept, by what they show. Textual draws each line of a
    widget through its styles cache (border, padding, background, filters), which keeps one
    line per row: when a list scrolls or fills with new rows, or a bar's text changes, each
    line is drawn again, ~65 µs here on top of the widget's own content (under load the event
    log renews its whole pane several times a second, the header its counts at every refresh,
    ~0.5 ms a frame). For a widget framed by one cell on each side (a pane's border, a bar's
    padding) a line is that cell, the content, that cell: the two cells are taken from a line
    Textual drew, so they are the theme's exactly, and the rows above and below the content
    (a border's top and bottom) are Textual's own, kept until the title changes. Anything else
    (tint, opacity, an outline, a wider gutter) is left to Textual. Made again when the style
    (focus, theme) or the size changes."""

    def __init__(self, widget: Widget, textual_lines: Callable[[Region], list[Strip]], limit: int = CACHE_LIMIT):
        self.size = widget.outer_size
        self.width, self.height = self.size
        styles = widget.styles
        gutter = styles.gutter
        self.top, self.bottom = gutter.top, gutter.bottom
        self.limit = limit
        self.lines: dict[Any, Strip] = {}  # whole lines by what they show
        self._rows: dict[int, tuple[Any, Strip]] = {}  # rows above and below the content: (title, line)
        self._textual_lines = textual_lines
        self.plain = (gutter.left == gutter.right == 1 and self.height > self.top + self.bottom
                      and self.width > 2 and not styles.tint.a and styles.text_opacity == 1.0
                      and widget.opacity == 1.0 and not any(kind for kind, _ in styles.outline))
        if self.plain:
            drawn = list(textual_lines(Region(0, self.top, self.width, 1))[0])  # a content line
            self.plain = len(drawn) >= 2 and drawn[0].cell_length == 1 and drawn[-1].cell_length == 1
        if self.plain:
            self.left, self.right = drawn[0], drawn[-1]
            self.filters = list(widget.get_line_filters())
            self.background = widget.background_colors[1]

    def render(self, widget: Widget, crop: Region, content: Callable[[int], tuple[Any, Callable[[], Strip]]]) -> list[Strip]:
        """The lines in `crop`; `content(y)` says what content line y shows (a key) and how to
        make it (a Strip as wide as the content)."""
        strips: list[Strip] = []
        x1, x2 = crop.column_span
        last = self.height - self.bottom
        for y in crop.line_range:
            if y < self.top or y >= last:
                title = (widget.border_title, widget.border_subtitle)
                kept = self._rows.get(y)
                if kept is None or kept[0] != title:
                    kept = self._rows[y] = (title, self._textual_lines(Region(0, y, self.width, 1))[0])
                strip = kept[1]
            else:
                key, make = content(y - self.top)
                strip = self.lines.get(key)
                if strip is None:
                    inner = make()
                    for line_filter in self.filters:  # as Textual filters its lines (by segment)
                        inner = inner.apply_filter(line_filter, self.background)
                    strip = Strip([self.left, *inner, self.right], self.width)
                    if len(self.lines) >= self.limit:
                        self.lines.clear()
                    self.lines[key] = strip
            strips.append(strip if (x1, x2) == (0, self.width) else strip.crop(x1, x2))
        return strips
