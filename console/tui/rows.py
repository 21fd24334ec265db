"""What each pane's rows show: the cells of a process, an event, a dependency, a call, made
from the console's Source, in the theme's state colours."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.style import Style

from console.model import Event, Process, State
from console.tui.source import GraphLayout, Source
from console.tui.widgets import Row, progress_cell

KIND_LABELS = {"python": "py", "shell": "sh", "voice": "voice", "transfer": "xfer"}  # the queue's KIND column
PRIORITY_LABELS = {"critical": "crit", "high": "high", "medium": "med", "low": "low"}  # the queue's PRI column
ACTIVE_BAR_WIDTH = 14
STATE_COLOUR_KEYS = {  # a state's colour: the theme's variable, else one of its base colours
    "running": "primary", "queued": "foreground", "waiting": "secondary", "completed": "success",
    "failed": "error", "interrupted": "warning", "cancelled": "foreground", "blocked": "error",
    "pending": "foreground",
}
CALLS_SHOWN, TRANSFERS_READ, VOICE_LINES_READ = 100, 200, 300
GraphRow = tuple[str, str, str]  # (indent, process id, edge)
CallRow = tuple[str, str, str, str]  # (label, key, status, latest)


def process_text(p: Process) -> str:
    """What a filter matches in a process's row."""
    return f"{p.id} {p.kind} {p.state.value} {p.reason or ''}"


def age(ts: float | None, now: float) -> str:
    if not ts:
        return "—"
    s = max(0, int(now - ts))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def edge_label(d: Any) -> str:
    return d.type.value + (f" ≥{d.required_completion_percent:g}%" if d.required_completion_percent < 100 else "")


class PaneRows:
    """Makes the panes' rows. The app hands it the Source (`source`) once there is one, and
    says when the theme changed; `theme_values()` is the theme's variables, defaults included."""

    def __init__(self, clock: Callable[[], float], theme_values: Callable[[], dict[str, str]]) -> None:
        self.clock = clock
        self.source: Source | None = None
        self._theme_values = theme_values
        self._styles: dict[str, Style] = {}

    def theme_changed(self) -> None:
        self._styles = {}

    def state_style(self, state: str) -> Style:
        """A state's colour from the theme's `state-*` variable (or its fallback)."""
        if not self._styles:
            from textual.color import Color

            values = self._theme_values()
            for name in STATE_COLOUR_KEYS:
                try:
                    colour = Color.parse(values.get(f"state-{name}", "")).rich_color
                except Exception:  # noqa: BLE001 - an odd value falls back to the text colour
                    colour = None
                self._styles[name] = Style(color=colour, bold=name in ("failed", "running"),
                                           dim=name in ("cancelled", "pending"))
        return self._styles[state]

    def state_of(self, pid: str) -> str:
        p = self.source.processes.get(pid) if self.source else None
        return p.state.value if p is not None else "?"

    # -- one row each ------------------------------------------------------------------------------

    def queue(self, p: Process) -> Row:
        now = self.clock()
        req = self.source.requests.get(p.id) if self.source else None
        why = p.reason or ""
        if not why and p.interruption and p.state.value == "interrupted":
            why = f"{p.interruption.type.value}: {p.interruption.message}"
        if not why and p.state is State.QUEUED:
            why = "next free slot"
        if req is not None and req.force_immediate:
            why = "forced · " + why
        waited = age(req.requested_at if req else p.updated_at, now)
        return (PRIORITY_LABELS.get(p.priority.value, p.priority.value), p.id, KIND_LABELS.get(p.kind, p.kind),
                (p.state.value, self.state_style(p.state.value)), why, p.tries, waited)

    def active(self, p: Process) -> Row:
        stage = ""
        if p.kind in ("voice", "transfer"):
            stage = {50: "replying", 10: "summarizing"}.get(int(p.progress), "transcribing" if p.kind == "voice" else "")
        resources = ",".join(f"{k.split('_')[0]}:{v}" for k, v in p.resources.items()) or "—"
        return ((p.id, self.state_style("running")), progress_cell(p.progress, ACTIVE_BAR_WIDTH), stage,
                age(p.started_at, self.clock()), resources)

    def graph(self, row: GraphRow) -> Row:
        indent, pid, edge = row
        state = self.state_of(pid)
        return (indent + pid, edge, (state, self.state_style(state) if state != "?" else ""))

    def call(self, row: CallRow) -> Row:
        label, _key, status, latest = row
        style = {"ready": "bold", "failed": self.state_style("failed"), "completed": "dim",
                 "cancelled": "dim"}.get(status, "")
        return (label, (status, style), latest)

    def event(self, e: Event) -> Row:
        style = self.state_style(e.type) if e.type in STATE_COLOUR_KEYS else ("dim" if e.type == "log" else "")
        stamp = time.strftime("%H:%M:%S", time.localtime(e.ts))
        message = e.message
        if e.type == "progress" and e.data:
            message = f"{e.data.get('progress', 0):.0f}%" + (" + checkpoint" if e.data.get("checkpoint") else "")
        return (stamp, e.process_id or "", (e.type, style), message)

    # -- a pane's rows ---------------------------------------------------------------------------------

    def graph_rows(self, whole: bool, selected_id: str | None, layout: GraphLayout) -> Sequence[GraphRow]:
        """The whole graph, or the selection with what it depends on and what needs it."""
        src = self.source
        if src is None:
            return []
        if whole:
            return list(layout.sync(src.processes, src.graph))
        if selected_id and selected_id in src.processes:
            pid = selected_id
            return ([("↑ ", d.dependency, edge_label(d)) for d in src.graph.upstream(pid)] + [("● ", pid, "selected")]
                    + [("↓ ", d.dependent, edge_label(d)) for d in src.graph.downstream(pid)])
        return []

    async def call_rows(self) -> list[CallRow]:
        """Each call, its voice requests (the latest five) and its transfers, read through the Source."""
        source = self.source
        if source is None:
            return []
        calls = await source.calls(limit=CALLS_SHOWN)
        transfers = await source.transfers(limit=TRANSFERS_READ)
        requests = await source.voice_lines(limit=VOICE_LINES_READ)
        by_call_t: dict[str, list[Any]] = {}
        for t in transfers:
            by_call_t.setdefault(t.call_id, []).append(t)
        by_call_v: dict[str, list[Any]] = {}
        for v in requests:
            by_call_v.setdefault(v.call_id, []).append(v)
        rows: list[CallRow] = []
        for c in calls:
            last = f"{c.last_turn.role}: {c.last_turn.text}" if c.last_turn else ""
            turns = f"{c.turn_count} turn" + ("s" if c.turn_count != 1 else "")
            rows.append((f"call {c.id}", f"call:{c.id}", turns, last))
            for v in by_call_v.get(c.id, [])[:5]:
                p = source.processes.get(v.process_id) if v.process_id else None
                status = p.state.value if p else v.stage
                said = v.transcript or v.input_text or ""
                detail = f"→ {v.reply}" if v.reply else f"“{said}”"
                if p is not None and p.state is State.INTERRUPTED and p.interruption:
                    status = "no key" if p.interruption.type.value == "no_provider" else "interrupted"
                elif p is not None and p.state is State.RUNNING:
                    status = v.stage
                rows.append((f"  ↳ {v.id}", f"vr:{v.id}", status, detail))
            for t in by_call_t.get(c.id, []):
                summary = (t.summary or {}).get("issue", "") if t.summary else (t.reason or "")
                origin = " (local summary)" if t.summary_source == "extractive" else ""
                rows.append((f"  ⇄ {t.id}", f"tr:{t.id}", t.status.value,
                             f"{t.from_agent}→{t.to_agent}: {summary}{origin}"))
        return rows
