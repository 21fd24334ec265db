"""The keys at the bottom of the screen."""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.widget import Widget


class KeyBar(Widget):
    """The keys at the bottom, on one line that owns its rendering. Textual's Footer mounts a
    widget per key and recomposes them on every focus change: ~60 ms of loop time per `tab`
    here. Keys whose action is off (an input has the focus, a dialog is open) are left out;
    a click on a key runs its action. When the line is short the keys are closer together,
    then the last keys give way; help, quit and the palette's key always stay (help lists
    the keys left out)."""

    DEFAULT_CSS = """
    KeyBar { height: 1; dock: bottom; background: $footer-background; color: $footer-description-foreground; }
    KeyBar > .keybar--key { color: $footer-key-foreground; text-style: bold; }
    """
    COMPONENT_CLASSES = {"keybar--key"}
    PALETTE = ("ctrl+p", "palette", "command_palette")
    PINNED = frozenset({"help", "quit"})  # binding ids always shown
    # binding ids left out first, in this order, when the line is short; then the others, last first
    GIVE_WAY = ("toggle_graph", "export", "force_resume", "new_voice")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._text = Text()
        self._spans: list[tuple[int, int, str]] = []  # (start, end, action) of each key's label

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)  # focus moved
        self.update_keys()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self.is_mounted:
            self.update_keys()

    def _bindings_changed(self, _: Any = None) -> None:
        self.update_keys()

    def update_keys(self) -> None:
        app = self.app
        key_style = self.get_component_rich_style("keybar--key", partial=True)
        text, spans = Text(" "), []
        hints = [(keys, description, b.action, binding_id)
                 for keys, description, binding_id, b in app.key_hints()  # type: ignore[attr-defined]
                 if b.show and app.check_action(b.action, ())]
        keys, description, action = self.PALETTE
        palette = Text.assemble((keys.replace("ctrl+", "^"), key_style), f" {description} ")
        gap, hints = self._fit(hints, self.size.width - 1 - len(palette))
        for keys, description, action in hints:
            start = len(text)
            text.append(keys, key_style)
            text.append(f" {description}{gap}")
            spans.append((start, len(text) - len(gap), action))
        keys, description, action = self.PALETTE
        room = self.size.width - len(text) - len(palette)
        if room >= 0:  # the last key's gap is before it
            text.append(" " * room)
            spans.append((len(text), len(text) + len(palette), action))
            text.append_text(palette)
        if text.plain != self._text.plain or text.spans != self._text.spans:
            self._text, self._spans = text, spans
            self.refresh()

    def _fit(self, hints: list[tuple[str, str, str, str]], room: int) -> tuple[str, list[tuple[str, str, str]]]:
        """The gap between keys and the keys shown in `room` cells: two spaces apart, else
        one, else without the keys that give way first (none of the pinned ones)."""
        def width(shown: list[tuple[str, str, str]], gap: str) -> int:
            return sum(cell_len(keys) + 1 + cell_len(text) + len(gap) for keys, text, _ in shown)

        shown = [(keys, text, action) for keys, text, action, _ in hints]
        if width(shown, "  ") <= room:
            return "  ", shown
        order = {binding_id: n for n, binding_id in enumerate(self.GIVE_WAY)}
        give_way = sorted((i for i, hint in enumerate(hints) if hint[3] not in self.PINNED),
                          key=lambda i: (order.get(hints[i][3], len(order)), -i))
        for dropped in range(len(give_way) + 1):
            left_out = set(give_way[:dropped])
            shown = [(keys, text, action) for i, (keys, text, action, _) in enumerate(hints) if i not in left_out]
            if width(shown, " ") <= room:
                break
        return " ", shown

    def on_resize(self) -> None:
        self.update_keys()

    def render(self) -> Text:
        return self._text

    async def on_click(self, event: events.Click) -> None:
        for start, end, action in self._spans:
            if start <= event.x < end:
                await self.app.run_action(action)
                return
