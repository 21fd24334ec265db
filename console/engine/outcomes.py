"""What the end of an attempt does to its process and its dependents."""

from __future__ import annotations

import random
import time
from typing import Any

from console.engine.placement import Placement
from console.engine.transitions import StateChanges
from console.engine.work import Work
from console.model import AUTO_RETRY, Interrupted, Interruption, InterruptionType, Process, RequestSource, State
from console.store import WriteBatch


class Outcomes:
    """Turns the way an attempt ended into the process's next state: completed, cancelled,
    interrupted by a shutdown (resumed at the next start), failed, or interrupted and, for an
    error with attempts left or an automatic retry, requested again after a backoff."""

    def __init__(self, config: Any, placement: Placement, states: StateChanges):
        self._config = config  # the engine's settings: retry_base_s, retry_max_s
        self._placement = placement
        self._states = states

    def finish(self, w: Work, outcome: str, detail: Any, b: WriteBatch) -> None:
        p = w.process
        placement = self._placement
        now = time.time()
        elapsed = time.monotonic() - w.started
        if outcome == "completed":
            p.progress = 100.0
            p.finished_at = now
            p.interruption = None
            p.metrics.resumes_succeeded += 1
            p.metrics.resume_seconds_total += elapsed
            self._states.set(p, State.COMPLETED, None, b, data={"elapsed_s": round(elapsed, 4)})
            placement.reconsider(placement.dependents(p, lambda q: q.state is State.WAITING), b)
            return
        if w.stop_reason == "cancel":
            p.interruption = Interruption(InterruptionType.OPERATOR, "cancelled by an operator")
            self._states.set(p, State.CANCELLED, "cancelled while running", b)
            placement.reconsider(placement.dependents(p, lambda q: q.id in placement.requests), b)
            return
        if w.stop_reason == "shutdown":
            p.metrics.interruptions += 1
            p.interruption = Interruption(InterruptionType.SHUTDOWN, "stopped by a shutdown; resumes at next start")
            self._states.set(p, State.INTERRUPTED, None, b)
            placement.request(p, RequestSource.SHUTDOWN, b)
            return
        if outcome == "interrupted" and detail.type is InterruptionType.ERROR:
            outcome, detail = "error", detail.message  # an error, whoever reports it, uses up attempts
        if outcome == "failed":
            p.failures += 1  # a failed attempt, if the last one (TRY shows it)
            p.metrics.resumes_failed += 1
            p.metrics.resume_seconds_total += elapsed
            self.fail(p, str(detail), b)
            return
        if outcome == "error":
            p.failures += 1
            p.metrics.resumes_failed += 1
            p.metrics.resume_seconds_total += elapsed
            if p.failures >= p.max_attempts:
                self.fail(p, f"attempts used up ({p.failures}/{p.max_attempts}): {detail}", b)
                return
            interruption = Interrupted(str(detail), InterruptionType.ERROR)
        else:
            interruption = detail
        self.interrupt(p, interruption, b)

    def fail(self, p: Process, reason: str, b: WriteBatch) -> None:
        p.finished_at = time.time()
        self._states.set(p, State.FAILED, reason, b)
        placement = self._placement
        placement.reconsider(placement.dependents(p, lambda q: q.id in placement.requests), b)

    def interrupt(self, p: Process, e: Interrupted, b: WriteBatch) -> None:
        p.metrics.interruptions += 1
        p.interruption = Interruption(e.type, e.message, retry_at=e.retry_at)
        self._states.set(p, State.INTERRUPTED, None, b, message=f"{e.type.value}: {e.message}".rstrip(": "))
        if e.type in AUTO_RETRY:
            if e.retry_at is not None:
                not_before = max(e.retry_at, time.time())
            else:
                exponent = max(0, p.attempt - 1)
                delay = min(self._config.retry_max_s, self._config.retry_base_s * 2**exponent)
                not_before = time.time() + delay * random.uniform(0.5, 1.0)  # jitter
            self._placement.request(p, RequestSource.RETRY, b, not_before=not_before)
            self._placement.reconsider([p.id], b)
