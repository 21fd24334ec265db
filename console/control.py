"""Operator actions from outside the owning process (the CLI, observer consoles).

If an orchestrator owns the database, the action goes into the store's inbox and the owner
carries it out (it looks within `external_poll_s`); the caller waits for its answer. If no
one owns it, the caller becomes the owner for a moment and carries out the action itself
through the same engine code — and, with `wait`, runs the work too until it settles."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from console.engine.orchestrator import Orchestrator, OwnedElsewhere
from console.model import State
from console.settings import Settings
from console.store import Command, Inbox, ProcessReads, Store

ANSWER_TIMEOUT_S = 10.0
# A process has settled, for someone waiting on it, in these states — or when interrupted
# with no resume request pending (it waits for an operator, e.g. no API key).
SETTLED = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED, State.BLOCKED})


async def act(store: Store, settings: Settings, kind: str, payload: dict[str, Any],
              timeout: float = ANSWER_TIMEOUT_S) -> tuple[str, str]:
    """Returns (status, message): status is "done", "error" or "timeout"."""
    status, message, _ = await act_and_wait(store, settings, kind, payload, wait=False, timeout=timeout)
    return status, message


async def act_and_wait(store: Store, settings: Settings, kind: str, payload: dict[str, Any], *,
                       wait: bool, timeout: float = ANSWER_TIMEOUT_S,
                       wait_timeout: float | None = None) -> tuple[str, str, State | None]:
    """Carry out an action whose answer is JSON with a `process_id`; with `wait`, also wait
    until that process settles. Returns (status, message, the process's final state)."""
    from console.app import make_engine

    engine = make_engine(store, settings, role="cli --wait" if wait else "cli")
    try:
        await engine.start(dispatch=wait)
    except OwnedElsewhere as owned:
        status, message = await _through_owner(store, kind, payload, timeout, owned.holder.pid)
        if not wait or status != "done":
            return status, message, None
        state = await _poll_settled(store, json.loads(message)["process_id"], wait_timeout)
        return status, message, state
    try:
        status, message = await engine.execute(Command(0, kind, payload, time.time()))
        if not wait or status != "done":
            return status, message, None
        state = await _run_until_settled(engine, json.loads(message)["process_id"], wait_timeout)
        return status, message, state
    finally:
        await engine.stop()


def settled(state: State, has_request: bool) -> bool:
    return state in SETTLED or (state is State.INTERRUPTED and not has_request)


class Settling:
    """Who waits for which process to settle, on the owner's engine. One bus subscriber
    however many wait (the intake may hold hundreds of waiting requests): an event wakes
    only the waiters of its own process."""

    def __init__(self, engine: Orchestrator):
        self.engine = engine
        self._waiters: dict[str, list[tuple[asyncio.Event, float | None]]] = {}
        engine.bus.subscribe(self._on_event)

    def _on_event(self, event: Any) -> None:
        waiters = self._waiters.get(event.process_id)
        if waiters:
            for done, give_up_at in waiters:
                if self._done(event.process_id, give_up_at):
                    done.set()

    def _done(self, process_id: str, give_up_at: float | None) -> bool:
        p = self.engine.processes.get(process_id)
        if p is None:
            return False
        if settled(p.state, process_id in self.engine.requests):
            return True
        # a retry set for after the waiter gives up (a long retry-after): waiting cannot help
        retry_at = p.interruption.retry_at if p.interruption else None
        return (p.state is State.WAITING and give_up_at is not None and retry_at is not None
                and retry_at > give_up_at)

    def has_settled(self, process_id: str) -> bool:
        """Whether the process has settled by now (see `settled`)."""
        return self._done(process_id, None)

    async def wait(self, process_id: str, timeout: float | None, stop: asyncio.Event | None = None) -> bool:
        """Wait until the process settles or will not retry before `timeout` (True), or until
        `timeout` passes or `stop` is set (False)."""
        give_up_at = None if timeout is None else time.time() + timeout
        if self._done(process_id, give_up_at):
            return True
        entry = (asyncio.Event(), give_up_at)
        self._waiters.setdefault(process_id, []).append(entry)
        waits = [asyncio.ensure_future(entry[0].wait())]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            waiters = self._waiters[process_id]
            waiters.remove(entry)
            if not waiters:
                del self._waiters[process_id]
        return entry[0].is_set()


def settling(engine: Orchestrator) -> Settling:
    return engine.service("settling", lambda: Settling(engine))


async def _run_until_settled(engine: Orchestrator, process_id: str, timeout: float | None) -> State | None:
    await settling(engine).wait(process_id, timeout)
    p = engine.processes.get(process_id)
    return p.state if p else None


async def _poll_settled(store: ProcessReads, process_id: str, timeout: float | None) -> State | None:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        p = await store.get_process(process_id)
        if p is not None and settled(p.state, await store.get_request(process_id) is not None):
            return p.state
        if deadline is not None and time.monotonic() > deadline:
            return p.state if p else None
        await asyncio.sleep(0.1)


async def _through_owner(store: Inbox, kind: str, payload: dict[str, Any], timeout: float,
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
