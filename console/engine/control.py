"""Operator actions from outside the owning process (the CLI, observer consoles).

If an orchestrator owns the database, the action goes into the store's inbox and the owner
carries it out (it looks within `external_poll_s`); the caller waits for its answer. If no
one owns it, the caller becomes the owner for a moment, without dispatching, and carries
out the action itself through the same engine code."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from console.engine.orchestrator import Orchestrator, OwnedElsewhere
from console.settings import Settings
from console.store import Command, Store

ANSWER_TIMEOUT_S = 10.0


async def act(store: Store, settings: Settings, kind: str, payload: dict[str, Any],
              timeout: float = ANSWER_TIMEOUT_S) -> tuple[str, str]:
    """Returns (status, message): status is "done", "error" or "timeout"."""
    orchestrator = Orchestrator(store, settings, role="cli")
    try:
        await orchestrator.start(dispatch=False)
    except OwnedElsewhere as owned:
        return await _through_owner(store, kind, payload, timeout, owned.holder.pid)
    try:
        return await orchestrator.execute(Command(0, kind, payload, time.time()))
    finally:
        await orchestrator.stop()


async def _through_owner(store: Store, kind: str, payload: dict[str, Any], timeout: float,
                         owner_pid: int) -> tuple[str, str]:
    command_id = await store.post_command(kind, payload)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        command = await store.get_command(command_id)
        if command is not None and command.status != "new":
            return command.status, command.result or ""
        await asyncio.sleep(0.05)
    return "timeout", (f"the owner (pid {owner_pid}) has not answered within {timeout:g}s; "
                       "the request stays in its inbox")
