"""Crash recovery at start: the work the previous owner left behind."""

from __future__ import annotations

from console.engine.placement import Placement
from console.engine.transitions import StateChanges
from console.model import IN_QUEUE, Interruption, InterruptionType, RequestSource, State
from console.store import WriteBatch


def recover(placement: Placement, states: StateChanges) -> WriteBatch:
    """The write that puts a freshly loaded database back in order: work that was running
    when its previous owner stopped is interrupted(crash) and requested again, queued work
    without a request gets one, requests of processes no longer queued are dropped, and every
    request is placed again."""
    b = WriteBatch()
    requests = placement.requests
    for p in placement.processes.values():
        if p.state is State.RUNNING:
            p.metrics.interruptions += 1
            p.interruption = Interruption(
                InterruptionType.CRASH, "the previous owner stopped while this was running"
            )
            states.set(p, State.INTERRUPTED, None, b)
            placement.request(p, RequestSource.RECOVERY, b)
        elif p.state in IN_QUEUE and p.id not in requests:
            placement.request(p, RequestSource.RECOVERY, b)
    for pid in list(requests):
        q = placement.processes.get(pid)
        if q is None or q.state not in IN_QUEUE | {State.INTERRUPTED, State.PENDING}:
            del requests[pid]
            b.requests[pid] = None
    placement.reconsider(list(requests), b)
    return b
