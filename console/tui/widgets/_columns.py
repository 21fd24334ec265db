"""A list's columns and cells: how wide each column is, what a row's cells are made of."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.style import Style


@dataclass
class Column:
    """A list's column. `width` is fixed; 0 takes the room left, at least `least` before
    columns are dropped. With `fit`, the column is as wide as the widest `fit(item)` on
    screen (at most `width` when given, else a third of the line) and is cut, down to `least`,
    only after every flexible column. `drop`: shown only while there is room, the lowest
    `drop` given up first (0: always shown)."""

    title: str
    width: int
    fit: Callable[[Any], str] | None = None
    least: int = 0
    drop: int = 0


FLEX_LEAST = 16  # a flexible column narrower than this gives way: columns are dropped first
FLEX_FLOOR = 6  # the narrowest a flexible column is cut to before fitted ones (ids) are cut


def column_layout(columns: Sequence[Column], total: int, fitted: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """(column index, width) of the columns shown in `total` cells (one space between two),
    `fitted[i]` being column i's widest value on screen. Made when the size or the widest
    values change, never per line."""
    widths: list[int] = []
    for c, widest in zip(columns, fitted):
        title = cell_len(c.title)
        if c.fit is not None:
            widths.append(max(title, min(widest, c.width or max(title, total // 3))))
        else:
            widths.append(c.width or max(c.least or FLEX_LEAST, title))
    shown = list(range(len(columns)))

    def excess() -> int:
        return sum(widths[i] for i in shown) + len(shown) - 1 - total

    for i in sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: columns[i].drop):
        if excess() <= 0:
            break
        shown.remove(i)
    flexible = [i for i in shown if not columns[i].width and columns[i].fit is None]
    over = excess()
    if flexible:
        # the flexible columns hold their least: what is left over is theirs, what is missing
        # is taken from them first
        room = sum(widths[i] for i in flexible) - over
        for n, i in enumerate(flexible):
            widths[i] = room // len(flexible) + (1 if n < room % len(flexible) else 0)
        over = sum(max(0, FLEX_FLOOR - widths[i]) for i in flexible)
        for i in flexible:
            widths[i] = max(FLEX_FLOOR, widths[i])
    for i in shown:  # still too wide: ids are cut last
        c = columns[i]
        if over <= 0:
            break
        if c.fit is not None:
            cut = min(over, widths[i] - max(1, c.least or cell_len(c.title)))
            if cut > 0:
                widths[i] -= cut
                over -= cut
    return tuple((i, widths[i]) for i in shown)


# A row is a tuple with one entry per column: plain text, or (text, style) parts. Rows are
# plain values, so a rendered line is cached by the row itself and re-rendered only when
# what it shows changes (making a line is costly, a lookup is not).
Part = tuple[str, str | Style]
CellValue = "str | Part | tuple[Part, ...]"
Row = tuple[Any, ...]


def cell_parts(value: Any) -> tuple[Part, ...]:
    if isinstance(value, str):
        return ((value, ""),)
    if len(value) == 2 and isinstance(value[0], str) and not isinstance(value[1], tuple):
        return (value,)
    return value


def progress_cell(percent: float, width: int) -> tuple[Part, ...]:
    """A progress bar with its percentage, as the parts of one cell."""
    width = max(4, width - 5)
    filled = int(round(percent / 100 * width))
    return (("█" * filled, "bold"), ("░" * (width - filled), "dim"), (f" {percent:3.0f}%", ""))
