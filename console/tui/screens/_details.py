"""Everything about one process."""

from __future__ import annotations

import json

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.model import Process
from console.tui.source import Source
from console.tui.widgets import clean, time_of_day


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
            t.append(f"last interruption: {p.interruption.type.value} at {time_of_day(p.interruption.occurred_at)}: ")
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
            t.append(f"  #{c.seq} {time_of_day(c.created_at)} {c.progress:.0f}%  ")
            t.append(clean(json.dumps(c.data))[:200])
            t.append("\n")
        if not checkpoints:
            t.append("  —\n")
        t.append("history\n", style="bold")
        for e in events:
            t.append(f"  {time_of_day(e.ts)} {e.type:<12} ")
            t.append(clean(e.message))
            t.append("\n")
        t.append("log (newest last)\n", style="bold")
        for ts, line in logs:
            t.append(f"  {time_of_day(ts)} ")
            t.append(clean(line))
            t.append("\n")
        if not logs:
            t.append("  —\n")
        self.query_one("#details-history", Static).update(t)
