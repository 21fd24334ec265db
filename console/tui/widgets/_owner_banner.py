"""The observer's banner: a line above the status bar that says no engine runs the database
it observes, and offers to run the engine here instead (take over: the button, or T)."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Static

from console.store.ports import LeaseHolder


class OwnerBanner(Horizontal):
    DEFAULT_CSS = """
    OwnerBanner { height: 1; background: $error; color: $text; display: none; }
    OwnerBanner > #owner-gone { width: 1fr; padding: 0 1; text-style: bold; }
    OwnerBanner > Button { width: auto; min-width: 0; margin: 0 1 0 0; }
    """

    def __init__(self, can_take_over: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.can_take_over = can_take_over
        self._message = ""

    def compose(self) -> ComposeResult:
        yield Static(self._message, id="owner-gone", markup=False)
        if self.can_take_over:
            yield Button("Take over (T)", id="take-over", compact=True, action="app.take_over")

    def show(self, gone: LeaseHolder | None) -> None:
        """Say no engine runs the database; `gone` is the owner last seen, if any."""
        who = f"No engine: {gone.role} pid {gone.pid} has stopped" if gone is not None else "No engine runs"
        # the button says what taking over does and its key
        message = f"{who}; queued work waits" + ("" if self.can_take_over else " (read-only: no taking over)")
        if message != self._message:
            self._message = message
            for line in self.query("#owner-gone").results(Static):  # none until composed
                line.update(message)
        self.display = True

    def hide(self) -> None:
        self.display = False
