"""What a running handler reports: progress and checkpoints."""

from __future__ import annotations

import time
from typing import Any

from console.engine.journal import Journal, new_event
from console.engine.placement import Placement
from console.model import Checkpoint, Process, State
from console.store import WriteBatch


class ProgressReports:
    """Records a run's progress and checkpoint, and places the dependents that waited for the
    percent it now reaches, in the same transaction."""

    def __init__(self, placement: Placement, journal: Journal):
        self._placement = placement
        self._journal = journal

    async def report(self, p: Process, progress: float | None, checkpoint: Any, has_checkpoint: bool,
                     extra: WriteBatch | None = None) -> None:
        """`checkpoint` counts only with `has_checkpoint` (None is a checkpoint's value too)."""
        b = extra or WriteBatch()
        before = p.progress
        if progress is not None:
            p.progress = min(100.0, max(0.0, float(progress)))
        if has_checkpoint:
            p.checkpoint_seq += 1
            p.checkpoint = checkpoint
            b.checkpoints.append(Checkpoint(p.id, p.checkpoint_seq, p.progress, checkpoint, time.time()))
        p.updated_at = time.time()
        b.processes[p.id] = p
        notice = new_event(p.id, "progress", "", {"progress": round(p.progress, 1),
                                                  "checkpoint": has_checkpoint})
        own = len(b.events)
        if p.progress > before:
            placement = self._placement
            crossed = [
                d.dependent for d in placement.graph.downstream(p.id)
                if d.type.orders and before < d.required_completion_percent <= p.progress
                and placement.processes[d.dependent].state is State.WAITING
            ]
            # placed in the same transaction as the progress that frees them (they start once it
            # is committed): one commit between the report and the dependent's start, not two
            placement.reconsider(crossed, b)
        await self._journal.write(b, [*b.events[:own], notice, *b.events[own:]])  # the order a reader expects
