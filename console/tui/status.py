"""The status line's parts: who runs the engine, the loop, Groq, the intake, the database, the log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.tui.source import StoreSource


def status_parts(*, lag_ms: float, provider: str, db: Path, intake: Any, log_path: Path | None,
                 observed: StoreSource | None, read_only: bool) -> list[tuple[str, str, int]]:
    """(text, short form, rank) in the order shown: a short line gives up the highest ranks first."""
    parts = [(f"loop {lag_ms:.1f} ms", "", 0), (f"Groq: {provider}", "", 1),
             (f"db {short_path(db)}", f"db {db.name}", 5)]
    if intake is not None:
        parts.append((f"intake {intake.address}", "", 4))
    if log_path:
        same = log_path.parent == db.parent
        parts.append((f"log {log_path.name if same else short_path(log_path)}", f"log {log_path.name}", 6))
    if observed is not None:  # who runs the engine comes first (Groq is theirs)
        owner = observed.owner
        short = f"{'read-only' if read_only else 'observer'}" + (f", pid {owner.pid}" if owner else ", no engine")
        parts.insert(0, (observer_status(observed, read_only), short, 0))
    return parts


def observer_status(source: StoreSource, read_only: bool) -> str:
    """An observer's first part of the status bar: who runs the engine (Groq is theirs)."""
    mode = "read-only" if read_only else "observer"
    owner = source.owner
    return f"{mode}, dispatched by {owner.role} pid {owner.pid}" if owner else f"{mode}, no engine running"


def short_path(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if text.startswith(home + "/") else text
