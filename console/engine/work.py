"""One piece of work in flight."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from console.model import Process


@dataclass
class Work:
    """A started run of a process: its task, why it is being stopped, and what it waits for
    before it begins."""

    process: Process
    ctx: Any  # its RunContext, made by Orchestrator._run_context
    started: float
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # "cancel" | "shutdown"
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # outcome committed
    # writes that must be committed before the work starts (its registration, the
    # completion of what it depends on), but not its own `running` row
    barrier: Any = None
    begun: Any = None  # what the kind's `begin` returned: the run awaits it instead of `run`
    # its task has taken its first step: cancelling a task before that skips its body (no
    # outcome, no slot released), so a cancel before then is left to the run (stop_reason)
    entered: bool = False
