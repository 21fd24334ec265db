"""What an operator asks of a process: resume it, cancel it."""

from __future__ import annotations

from console.engine.journal import Journal
from console.engine.placement import Placement
from console.engine.staging import Staging
from console.engine.transitions import StateChanges
from console.engine.work import Work
from console.model import IN_QUEUE, RESUMABLE, Interruption, InterruptionType, Process, RequestSource, State, UserError
from console.store import WriteBatch


class OperatorActions:
    """An operator's resume and cancel (from the console, the CLI through the inbox, the
    intake): checked against the process's state, a UserError saying why not otherwise."""

    def __init__(self, placement: Placement, staging: Staging, states: StateChanges,
                 running: dict[str, Work], journal: Journal):
        self._placement = placement
        self._staging = staging
        self._states = states
        self._running = running
        self._journal = journal

    def get(self, process_id: str) -> Process:
        p = self._placement.processes.get(process_id)
        if p is None or process_id in self._staging.loading:  # not registered until its load is submitted
            raise UserError(f"no process {process_id!r}")
        return p

    async def resume(self, process_id: str, force: bool = False) -> str:
        p = self.get(process_id)
        placement = self._placement
        b = WriteBatch()
        if p.state in IN_QUEUE:
            if not force:
                raise UserError(f"{p.id} is already {p.state.value}" + (f" ({p.reason})" if p.reason else ""))
            req = placement.requests[p.id]
            placement.request(p, RequestSource.OPERATOR, b, force=True)
            placement.requests[p.id].requested_at = req.requested_at  # keep its dependency time-outs
        elif p.state in RESUMABLE:
            if p.state is State.FAILED:
                p.failures = 0  # a fresh set of attempts
            placement.request(p, RequestSource.OPERATOR, b, force=force)
        else:
            raise UserError(f"{p.id} is {p.state.value}; only interrupted, cancelled, failed, blocked "
                            "or pending processes can be resumed")
        placement.reconsider([p.id], b)
        placement.reconsider(placement.dependents(p, lambda q: q.state is State.BLOCKED), b)
        await self._journal.commit(b)
        return f"{p.id}: {p.state.value}" + (f" ({p.reason})" if p.reason else "")

    async def cancel(self, process_id: str) -> str:
        p = self.get(process_id)
        placement = self._placement
        if p.state is State.RUNNING:
            w = self._running[p.id]
            w.stop_reason = "cancel"
            if w.task is not None and w.entered:  # else its run sees stop_reason when it begins
                w.task.cancel()
            await w.finished.wait()
            return f"{p.id}: {p.state.value}"
        if p.state in (State.COMPLETED, State.CANCELLED):
            raise UserError(f"{p.id} is already {p.state.value}")
        b = WriteBatch()
        placement.requests.pop(p.id, None)
        b.requests[p.id] = None
        placement.unready(p.id)
        p.interruption = Interruption(InterruptionType.OPERATOR, "cancelled by an operator")
        self._states.set(p, State.CANCELLED, "cancelled by an operator", b)
        placement.reconsider(placement.dependents(p, lambda q: q.id in placement.requests), b)
        await self._journal.commit(b)
        return f"{p.id}: cancelled"
