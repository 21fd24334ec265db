"""The keys, after the keymap from the settings."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", show=False)]

    def __init__(self, rows: list[tuple[str, str, str]]):
        super().__init__()
        self.rows = rows  # (keys, description, binding id)

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("Keys\n\n", style="bold")
        for keys, description, binding_id in self.rows:
            text.append(f"{keys:>14}  ", style="bold")
            text.append(f"{description}")
            text.append(f"   ({binding_id})\n", style="dim")
        text.append("\nRebind any key by id in the config file: [tui.keymap] resume = \"ctrl+r\".\n", style="dim")
        text.append("ctrl+p opens the command palette; the mouse works too. esc closes this.", style="dim")
        with VerticalScroll(id="dialog"):
            yield Static(text)
