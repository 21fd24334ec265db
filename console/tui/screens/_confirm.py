"""Asks before a destructive action."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from console.tui.widgets import literal


class ConfirmScreen(ModalScreen[bool]):
    """Asks before a destructive action; the safe button has the focus."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Back", show=False)]

    def __init__(self, question: str, yes: str):
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(literal(self.question), id="question")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="no", variant="primary")
                yield Button(self.yes, id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
