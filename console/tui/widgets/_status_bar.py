"""What the console runs on: the status line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len

from console.tui.widgets._text import clean, literal
from console.tui.widgets._text_line import TextLine


class StatusBar(TextLine):
    """What the console runs on, one line of parts. A short line takes the parts' short
    forms and closer separators, then gives up parts, the least important first."""

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._parts: list[tuple[str, str, int]] = []

    def set_parts(self, parts: list[tuple[str, str, int]]) -> None:
        """(text, short form, rank) in the order shown: rank 0 is given up last."""
        if parts != self._parts:
            self._parts = parts
            self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        self.set_text(literal(fit_parts(self._parts, self.content_size.width)))


def fit_parts(parts: Sequence[tuple[str, str, int]], width: int) -> str:
    """The status line's text in `width` cells (see StatusBar): closer separators first,
    then short forms, then fewer parts, the highest rank first each time."""
    by_rank = sorted(range(len(parts)), key=lambda i: -parts[i][2])
    texts = [text for text, _, _ in parts]
    candidates = [("  │  ", list(texts)), (" │ ", list(texts))]
    for i in by_rank:
        if parts[i][1]:
            texts[i] = parts[i][1]
            candidates.append((" │ ", list(texts)))
    for i in by_rank[:-1]:
        texts[i] = ""
        candidates.append((" │ ", [text for text in texts if text]))
    for separator, shown in candidates:
        line = separator.join(shown)
        if cell_len(clean(line)) <= width:
            return line
    return candidates[-1][1][0] if parts else ""  # the most important alone, cut where the line ends
