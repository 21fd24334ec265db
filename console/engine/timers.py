"""Times at which a waiting process is placed again: a retry time, a dependency's time-out."""

from __future__ import annotations

import asyncio
import heapq
import time

from console.model import Process, ResumeRequest, State


class WakeTimers:
    """A heap of (time, process) and one loop timer, for the earliest, that wakes the
    dispatcher. An entry counts while its process still waits with a request."""

    def __init__(self, processes: dict[str, Process], requests: dict[str, ResumeRequest], wake: asyncio.Event):
        self._processes = processes
        self._requests = requests
        self._wake = wake
        self._heap: list[tuple[float, int, str]] = []  # (when, n, process id)
        self._n = 0
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None

    def add(self, when: float, pid: str) -> None:
        self._n += 1
        heapq.heappush(self._heap, (when, self._n, pid))

    def _valid(self, pid: str) -> bool:
        p = self._processes.get(pid)
        return p is not None and p.state is State.WAITING and pid in self._requests

    def pending(self) -> bool:
        """Whether a process still waits on a timer."""
        return any(self._valid(pid) for _, _, pid in self._heap)

    def due(self) -> list[str]:
        """The waiting processes whose time has come, taken off the heap."""
        now = time.time()
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, pid = heapq.heappop(self._heap)
            if self._valid(pid):
                due.append(pid)
        return due

    def arm(self) -> None:
        """The loop timer set for the earliest entry that still counts."""
        while self._heap and not self._valid(self._heap[0][2]):
            heapq.heappop(self._heap)
        when = self._heap[0][0] if self._heap else None
        if when == self._when:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = when
        if when is not None:
            self._handle = asyncio.get_running_loop().call_later(max(0.0, when - time.time()), self._fired)

    def _fired(self) -> None:
        self._handle = None
        self._when = None
        self._wake.set()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
