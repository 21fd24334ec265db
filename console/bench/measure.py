"""Helpers every benchmark shares: the loop's lateness and percentiles."""

from __future__ import annotations

import asyncio
import time
from typing import Any


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values) or [0.0]
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"p50": round(pick(0.5), 3), "p99": round(pick(0.99), 3), "max": round(values[-1], 3)}


class Heartbeat:
    """How late a 10 ms sleep wakes up, in ms: the loop's lateness."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lags.append((time.perf_counter() - t - 0.01) * 1000)

    def __enter__(self) -> Heartbeat:
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
