"""Modal screens: confirm, details (of a process, of a transfer), help, new voice request, new
transfer, load workflow."""

from __future__ import annotations

import json
import time
from typing import Any, Awaitable, Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from console.model import TRANSFER_FINAL, Process, Transfer, TransferStatus, Turn
from console.tui.source import Source
from console.tui.widgets import clean, literal


def _when(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "—"


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


class DetailsScreen(ModalScreen[None]):
    """Everything about one process: state, metrics, dependencies, checkpoints, history, log."""

    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close", show=False)]

    def __init__(self, process: Process, upstream: list[str], downstream: list[str], source: Source):
        super().__init__()
        self.process = process
        self.upstream = upstream
        self.downstream = downstream
        self.source = source

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="details"):
            yield Static(self._summary(), id="details-summary")
            yield Static("loading…", id="details-history")

    def _summary(self) -> Text:
        p = self.process
        t = Text()
        t.append(clean(p.id), style="bold")
        t.append(f"  {p.kind} · {p.priority.value} · {p.state.value}")
        if p.reason:
            t.append(" · ")
            t.append(clean(p.reason))
        t.append(f"\nprogress {p.progress:.0f}%   failed attempts {p.tries}   runs {p.attempt}   "
                 f"resources {json.dumps(p.resources) if p.resources else '—'}\n")
        if p.interruption:
            t.append(f"last interruption: {p.interruption.type.value} at {_when(p.interruption.occurred_at)}: ")
            t.append(clean(p.interruption.message))
            t.append("\n")
        m = p.metrics
        avg = f"{m.average_resume_s:.2f} s" if m.average_resume_s is not None else "—"
        rel = f"{m.reliability:.0%}" if m.reliability is not None else "—"
        rate = f"{m.interruption_rate:.2f}" if m.interruption_rate is not None else "—"
        t.append(f"runs {m.resumes_total} (ok {m.resumes_succeeded}, failed {m.resumes_failed})   "
                 f"average {avg}   reliability {rel}   interruptions per run {rate}\n")
        t.append("depends on: ", style="bold")
        t.append(clean(", ".join(self.upstream) or "—"))
        t.append("\nneeded by:  ", style="bold")
        t.append(clean(", ".join(self.downstream) or "—"))
        t.append("\nspec: ", style="bold")
        t.append(clean(json.dumps(p.spec)))
        return t

    async def on_mount(self) -> None:
        p = self.process
        checkpoints = await self.source.checkpoints(p.id, limit=10)
        events = await self.source.process_history(p.id, limit=30)
        logs = await self.source.logs(p.id, limit=30)
        t = Text()
        t.append("\ncheckpoints\n", style="bold")
        for c in checkpoints or []:
            t.append(f"  #{c.seq} {_when(c.created_at)} {c.progress:.0f}%  ")
            t.append(clean(json.dumps(c.data))[:200])
            t.append("\n")
        if not checkpoints:
            t.append("  —\n")
        t.append("history\n", style="bold")
        for e in events:
            t.append(f"  {_when(e.ts)} {e.type:<12} ")
            t.append(clean(e.message))
            t.append("\n")
        t.append("log (newest last)\n", style="bold")
        for ts, line in logs:
            t.append(f"  {_when(ts)} ")
            t.append(clean(line))
            t.append("\n")
        if not logs:
            t.append("  —\n")
        self.query_one("#details-history", Static).update(t)


class TransferScreen(ModalScreen[str | None]):
    """A warm transfer in full: who hands the call to whom, its whole summary, the call's latest
    turns. Its keys (the app's binding ids, so [tui.keymap] rebinds them here too) close it
    with what the user asked for: "complete" or "cancel"."""

    DEFAULT_CSS = "TransferScreen { align: center middle; }"

    BINDINGS = [
        Binding("y", "finish('complete')", "Complete", id="complete_transfer"),
        Binding("x", "finish('cancel')", "Cancel transfer", id="cancel_transfer"),
        Binding("escape,enter,q", "dismiss(None)", "Close", show=False),
    ]

    def __init__(self, transfer_id: str, source: Source, keys: dict[str, str] | None = None):
        super().__init__()
        self.transfer_id = transfer_id
        self.source = source
        self.keys = keys or {}  # binding id -> the keys as shown, after the keymap
        self.transfer: Transfer | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="details"):
            yield Static(literal(f"{self.transfer_id}  loading…"), id="transfer-summary")
            yield Static("", id="transfer-keys")

    async def on_mount(self) -> None:
        t = self.transfer = await self.source.transfer(self.transfer_id)
        if t is None:
            self.query_one("#transfer-summary", Static).update(literal(f"no transfer {self.transfer_id}"))
            return
        call = await self.source.call(t.call_id, turns=10)
        self.query_one("#transfer-summary", Static).update(transfer_text(t, call.turns if call else []))
        self.query_one("#transfer-keys", Static).update(self._keys())

    def _keys(self) -> Text:
        keys = {b.id: b.key for b in self.BINDINGS if b.id} | self.keys
        shown = Text("\n")
        if self.transfer is not None and self.transfer.status is TransferStatus.READY:
            shown.append(keys["complete_transfer"], style="bold")
            shown.append(" complete (hand the call over)   ")
        if self.transfer is not None and self.transfer.status not in TRANSFER_FINAL:
            shown.append(keys["cancel_transfer"], style="bold")
            shown.append(" cancel the transfer   ")
        shown.append("esc", style="bold")
        shown.append(" close")
        return shown

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "finish":
            t = self.transfer
            if t is None:
                return False
            return t.status is TransferStatus.READY if parameters == ("complete",) else t.status not in TRANSFER_FINAL
        return True

    def action_finish(self, what: str) -> None:
        self.dismiss(what)


def transfer_text(t: Transfer, turns: list[Turn]) -> Text:
    text = Text()
    text.append(clean(t.id), style="bold")
    text.append(f"  call {clean(t.call_id)} · {clean(t.from_agent)} → {clean(t.to_agent)} · {t.status.value}\n")
    text.append(f"started {_when(t.created_at)}   updated {_when(t.updated_at)}"
                + (f"   completed {_when(t.completed_at)}" if t.completed_at else "") + "\n")
    if t.reason:
        text.append("reason: ", style="bold")
        text.append(clean(t.reason) + "\n")
    source = {"extractive": "computed locally (no model)", "llm": "by the model",
              "llm-unstructured": "by the model, unstructured"}.get(t.summary_source or "", t.summary_source or "—")
    text.append(f"\nsummary ({source})\n", style="bold")
    for key, value in (t.summary or {}).items():
        text.append(f"  {key.replace('_', ' ')}: ", style="bold")
        shown = "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        text.append(clean(shown or "—") + "\n")
    if not t.summary:
        text.append("  — (not ready yet)\n")
    text.append("\nthe call's latest turns\n", style="bold")
    for turn in turns:
        text.append(f"  {_when(turn.created_at)} {turn.role:<9} ")
        text.append(clean(turn.text) + "\n")
    if not turns:
        text.append("  —\n")
    return text
