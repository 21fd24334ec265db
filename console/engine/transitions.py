"""A process's change of state, recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from console.engine.journal import new_event
from console.limits import capped
from console.model import Process, State
from console.store import WriteBatch

StateHook = Callable[[Process, State, WriteBatch], None]


class StateChanges:
    """Moves a process to a state: in memory, in the write's batch, in its kind's own records
    (a state hook) and as an event."""

    def __init__(self) -> None:
        # kind name -> fn(process, previous state, batch): lets a kind keep its own records
        # (e.g. a transfer's status) in step with its process, in the same transaction
        self.hooks: dict[str, StateHook] = {}

    def set(
        self, p: Process, state: State, reason: str | None, b: WriteBatch,
        message: str = "", data: dict[str, Any] | None = None,
    ) -> None:
        if p.state is state and p.reason == reason and not message:
            return
        previous = p.state
        p.state = state
        p.reason = None if reason is None else capped(reason)
        p.updated_at = time.time()
        b.processes[p.id] = p
        hook = self.hooks.get(p.kind)
        if hook is not None and previous is not state:
            hook(p, previous, b)
        progress = p.progress
        info: dict[str, Any] = {"from": previous.value, "attempt": p.attempt,
                "progress": progress if progress == 0.0 or progress == 100.0 else round(progress, 1)}
        if state is State.INTERRUPTED and p.interruption is not None:
            info["interruption"] = p.interruption.to_json()
        if data:
            info.update(data)
        b.events.append(new_event(p.id, state.value, message or reason or "", info))
