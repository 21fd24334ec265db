"""Sharing turns of the loop among bursts of the engine's work that arrive together (loads,
commits, wake-ups)."""

from __future__ import annotations

import asyncio
import time
from collections import deque


class TurnShare:
    """Shares turns of the loop among many short synchronous sections that arrive together.

    Measured: 200 voice requests created at once (a burst of callers, `asyncio.gather` of
    their creation) registered one after another in a single turn, ~25 ms with the loop
    frozen. Through a TurnShare, once the sections of one turn have used `budget` seconds, the
    next ones wait for later turns, about as many per turn as fit (from their average cost),
    in the order they came; everything else runs in between. A lone section never waits.

    Use: `await share.enter()`, the synchronous section, `share.leave()`; the section must not
    await in between. `block()` holds every section back (in order) until `unblock()`."""

    def __init__(self, budget: float = 0.004) -> None:
        self.budget = budget
        self._spent = 0.0  # in this turn
        self._cost = 0.0  # a section's average cost
        self._began: float | None = None  # when the current section entered
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._turn_scheduled = False
        self.blocked = False

    def block(self) -> None:
        self.blocked = True

    def unblock(self) -> None:
        self.blocked = False
        self._schedule()

    async def enter(self) -> None:
        if self.blocked or self._waiters or self._spent >= self.budget:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            self._schedule()
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._schedule()  # its place goes to the next one
                raise
        self._began = time.perf_counter()

    def leave(self) -> None:
        if self._began is None:  # not entered: nothing to count
            return
        seconds = time.perf_counter() - self._began
        self._began = None
        self._spent += seconds
        self._cost = seconds if self._cost == 0.0 else 0.8 * self._cost + 0.2 * seconds
        self._schedule()

    def _schedule(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._turn_scheduled = False
        self._spent = 0.0
        if self.blocked:
            return
        room = max(1, int(self.budget / self._cost)) if self._cost > 0 else 1
        while self._waiters and room > 0:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                room -= 1
                self._spent += self._cost  # counted now: they run in the next turn
        if self._waiters:
            self._schedule()


class Herd(TurnShare):
    """Tasks that one event wakes together go on a few per turn of the loop.

    Measured: 200 voice requests created at once share one group commit; when it lands, the
    200 loads' continuations (their events published, their callers answered) and then the
    200 runs waiting for it ran back to back, ~9 ms with the loop frozen. A task that calls
    `through()` right after such a wait goes on at once while fewer than `per_turn` have gone
    through in this turn, and otherwise waits for a later turn, in order: a TurnShare whose
    sections count one each, whatever they take (what follows the wait is the caller's, not
    a section this can time). Alone or in small numbers nothing waits."""

    def __init__(self, per_turn: int = 16) -> None:
        super().__init__(budget=per_turn)
        self.per_turn = per_turn
        self._cost = 1.0

    async def through(self) -> None:
        await self.enter()
        self._began = None
        self._spent += 1
        self._schedule()
