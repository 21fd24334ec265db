"""The ready queue: requests whose dependencies and retry time are met, in dispatch order
(force_immediate, then priority, then FIFO).

One heap per resource signature, so a pass that finds a pool full skips every request
needing that pool at once instead of popping them one by one."""

from __future__ import annotations

import heapq
from typing import Callable, Hashable

from console.model import ResumeRequest

Entry = tuple[tuple[int, int, int], str]


class ReadyQueue:
    def __init__(self) -> None:
        self._heaps: dict[Hashable, list[Entry]] = {}
        self._where: dict[str, tuple[Hashable, tuple[int, int, int]]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, process_id: str) -> bool:
        return process_id in self._where

    def push(self, request: ResumeRequest, signature: Hashable) -> None:
        key = request.sort_key()
        self._where[request.process_id] = (signature, key)
        heapq.heappush(self._heaps.setdefault(signature, []), (key, request.process_id))

    def remove(self, process_id: str) -> None:
        # lazy: stale heap entries are skipped when they reach the top
        self._where.pop(process_id, None)

    def _top(self, signature: Hashable) -> Entry | None:
        heap = self._heaps[signature]
        while heap:
            key, pid = heap[0]
            if self._where.get(pid) == (signature, key):
                return heap[0]
            heapq.heappop(heap)
        del self._heaps[signature]
        return None

    def pop_best(self, fits: Callable[[Hashable], bool]) -> tuple[str, Hashable] | None:
        """Remove and return the first process in dispatch order whose signature fits now,
        with that signature."""
        best: tuple[Entry, Hashable] | None = None
        for signature in list(self._heaps):
            top = self._top(signature)
            if top is None or (best is not None and top >= best[0]):
                continue
            if fits(signature):
                best = (top, signature)
        if best is None:
            return None
        (_, pid), signature = best
        heapq.heappop(self._heaps[signature])
        del self._where[pid]
        return pid, signature
