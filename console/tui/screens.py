"""Modal screens: confirm, details, help, new voice request, new transfer, load workflow."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from console.model import Process
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


class FormScreen(ModalScreen[dict[str, str] | None]):
    """A few labelled inputs; enter in the last one (or the OK button) submits."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Back", show=False)]

    def __init__(self, title: str, fields: list[tuple[str, str, str]], ok: str = "OK"):
        super().__init__()
        self.form_title = title
        self.fields = fields  # (name, label, initial value)
        self.ok = ok

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.form_title, id="form-title")
            for name, label, value in self.fields:
                yield Label(label)
                yield Input(value=value, id=f"field-{name}")
            yield Label("", id="form-error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self.ok, id="ok", variant="primary")

    def on_mount(self) -> None:
        empty = [i for i in self.query(Input) if not i.value]
        (empty[0] if empty else self.query(Input).first()).focus()

    def values(self) -> dict[str, str]:
        return {name: self.query_one(f"#field-{name}", Input).value for name, _, _ in self.fields}

    def show_error(self, message: str) -> None:
        self.query_one("#form-error", Label).update(literal(message, "bold red"))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        if event.input is inputs[-1]:
            self.dismiss(self.values())
        else:
            inputs[inputs.index(event.input) + 1].focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.values() if event.button.id == "ok" else None)


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

    def __init__(self, process: Process, upstream: list[str], downstream: list[str], store: Any):
        super().__init__()
        self.process = process
        self.upstream = upstream
        self.downstream = downstream
        self.store = store

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
        checkpoints = await self.store.checkpoints(p.id, limit=10)
        events = await self.store.events(process_id=p.id, limit=30)
        logs = await self.store.logs(p.id, limit=30)
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
