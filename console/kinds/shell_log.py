"""A command's log, capped per run: a command that prints without end must not fill the disk.

The first half of `max_log_lines` (engine setting) goes to the process log as it comes. After
that the log holds only a window of the latest lines, written when the run ends after a
marker saying how many lines before them were dropped: the start and the end of the output
are kept, the oldest of the rest dropped."""

from __future__ import annotations

from collections import deque
from typing import Callable

LINE_KEPT_MAX = 2000  # the engine keeps this much of a log line: no more is held here


class CappedLog:
    def __init__(self, write: Callable[[str], None], max_lines: int):
        self._write = write
        self._head_left = max_lines - max_lines // 2
        self._window: deque[str] = deque(maxlen=max_lines // 2)
        self.dropped = 0

    def __call__(self, line: str) -> None:
        if self._head_left > 0:
            self._head_left -= 1
            self._write(line)
            return
        if len(self._window) == self._window.maxlen:
            self.dropped += 1
        if self._window.maxlen:
            self._window.append(line[:LINE_KEPT_MAX])
        else:
            self.dropped += 1

    def close(self) -> None:
        """The run has ended: the marker, then the latest lines held back."""
        if self.dropped:
            self._write(f"({self.dropped} lines dropped here: a run keeps at most the first and the "
                        "last lines of its log, see engine.max_log_lines)")
            self.dropped = 0
        while self._window:
            self._write(self._window.popleft())
