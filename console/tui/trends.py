"""The header's trends: completions a minute, and how late the console's loop runs."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from console.tui.widgets import sparkline

SPARK_POINTS = 10  # the header's trends: 10 minutes of completions, 100 s of loop lateness


class Trends:
    """Counts completions per minute and measures the loop's lateness; `tick()` once a second
    makes the header's two trends from them."""

    def __init__(self) -> None:
        self.lag_now = 0.0
        self.lag_peak = 0.0  # the worst since the last tick
        self.lag_window: list[float] = []
        self.lag_history: deque[float] = deque(maxlen=SPARK_POINTS)  # one point per 10 s
        self.done_minutes: deque[int] = deque([0], maxlen=SPARK_POINTS)  # completions per minute
        self.minute = int(time.time() // 60)

    def count_completion(self) -> None:
        self.roll_minutes()
        self.done_minutes[-1] += 1

    def roll_minutes(self) -> None:
        """A new point for each minute begun since the last one (none when nothing happened)."""
        minute = int(time.time() // 60)
        while self.minute < minute:
            self.minute += 1
            self.done_minutes.append(0)

    async def measure_lag(self) -> None:
        """The loop's lateness, as the status bar shows it: how late a 100 ms sleep wakes."""
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.1)
            self.lag_now = max(0.0, (time.perf_counter() - t - 0.1) * 1000)
            self.lag_peak = max(self.lag_peak, self.lag_now)

    def tick(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """The header's trends now, (sparkline, figure) each: completions, then lateness."""
        self.lag_window.append(self.lag_peak)
        self.lag_peak = self.lag_now
        if len(self.lag_window) >= 10:
            self.lag_history.append(max(self.lag_window))
            self.lag_window = []
        self.roll_minutes()
        done = self.done_minutes
        lags = [*self.lag_history, max(self.lag_window, default=0.0)]  # the worst of each 10 s
        return ((sparkline(done, SPARK_POINTS, 10), f"{done[-1]:>4}"),
                (sparkline(lags, SPARK_POINTS, 20), f"{lags[-1]:4.0f}ms"))
