"""One line of text that owns its rendering."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget


class TextLine(Widget):
    """One line of text that owns its rendering. `Static.update` asks for a layout pass
    (its size may change); a line of fixed height only needs a repaint."""

    DEFAULT_CSS = "TextLine { height: 1; }"

    def __init__(self, text: Text | str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._text = Text(text) if isinstance(text, str) else text

    def set_text(self, text: Text) -> None:
        if text.plain != self._text.plain or text.spans != self._text.spans:
            self._text = text
            self.refresh()

    @property
    def text(self) -> Text:
        return self._text

    def render(self) -> Text:
        return self._text
