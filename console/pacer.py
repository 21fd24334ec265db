"""Pacing bursts of work that start with a slice of CPU: one waiter per turn of the loop.

Neutral on purpose (no imports from console): the voice kind paces its Groq requests with it
and the Groq gateway its responses, neither through the engine."""

from __future__ import annotations

import asyncio
from collections import deque


class Pacer:
    """Lets one waiter through per turn of the loop.

    Measured: the Groq SDK spends ~5 ms of CPU building and sending a request before its first
    real wait. 200 voice requests woken by the same commit ran those slices back to back and
    froze the loop for ~1 s; through a pacer they start one per turn, with everything else
    (the console, the heartbeat, other work) running in between."""

    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._scheduled = False

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._release)
        await future

    def _release(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():  # a cancelled waiter gives its turn away
                future.set_result(None)
                break
        if self._waiters:
            asyncio.get_running_loop().call_soon(self._release)
        else:
            self._scheduled = False
