"""A few labelled inputs: a new voice request, a transfer, a workflow to load, the API key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from console.tui.widgets import clean

# What a form's check answers when the values are refused: the field at fault (None: the
# form as a whole) and why.
FieldError = tuple["str | None", str]


class FormScreen(ModalScreen[dict[str, str] | None]):
    """A few labelled inputs; enter in the last one (or the OK button) submits. With `submit`
    (async, values -> FieldError or None) the form stays open when the values are refused:
    what was typed is kept, the error shows under its field, which gets the focus."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Back", show=False)]
    DEFAULT_CSS = """
    FormScreen .field-error { width: 100%; color: $text-error; text-style: bold; }
    """

    def __init__(self, title: str, fields: list[tuple[str, str, str]], ok: str = "OK",
                 submit: Callable[[dict[str, str]], Awaitable[FieldError | None]] | None = None):
        super().__init__()
        self.form_title = title
        self.fields = fields  # (name, label, initial value)
        self.ok = ok
        self.submit = submit
        self._busy = False  # a submission is being checked: enter again does nothing

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.form_title, id="form-title")
            for name, label, value in self.fields:
                yield Label(label)
                yield Input(value=value, id=f"field-{name}")
                error = Label("", id=f"error-{name}", classes="field-error")
                error.display = False
                yield error
            yield Label("", id="form-error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self.ok, id="ok", variant="primary")

    def on_mount(self) -> None:
        empty = [i for i in self.query(Input) if not i.value]
        (empty[0] if empty else self.query(Input).first()).focus()

    def values(self) -> dict[str, str]:
        return {name: self.query_one(f"#field-{name}", Input).value for name, _, _ in self.fields}

    def show_error(self, message: str, field: str | None = None) -> None:
        """The error under its field (or under the form), the others cleared."""
        for name, _, _ in self.fields:
            label = self.query_one(f"#error-{name}", Label)
            label.update(Text(clean(message)) if name == field else "")  # wrapped: all of it is read
            label.display = name == field
        self.query_one("#form-error", Label).update(Text(clean(message), style="bold red") if field is None else "")
        if field is not None:
            self.query_one(f"#field-{field}", Input).focus()

    async def _try_submit(self) -> None:
        if self._busy:
            return
        values = self.values()
        if self.submit is None:
            self.dismiss(values)
            return
        self._busy = True
        try:
            error = await self.submit(values)
        finally:
            self._busy = False
        if error is None:
            self.dismiss(values)
        else:
            field, message = error
            self.show_error(message, field if field in values else None)

    @on(Input.Submitted)
    async def _submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        if event.input is inputs[-1]:
            await self._try_submit()
        else:
            inputs[inputs.index(event.input) + 1].focus()

    @on(Button.Pressed)
    async def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            await self._try_submit()
        else:
            self.dismiss(None)
