"""Running one piece of work to its outcome."""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from collections.abc import Callable
from typing import Any

from console import kinds
from console.engine.journal import Journal
from console.engine.outcomes import Outcomes
from console.engine.pools import ResourcePools
from console.engine.ready import ReadyQueue
from console.engine.work import Work
from console.model import Interrupted, PermanentFailure, Process
from console.store import WriteBatch

log = logging.getLogger(__name__)


async def raise_later(e: BaseException) -> None:
    """An awaitable that raises `e`: a kind's `begin` that failed, raised where its run is awaited."""
    raise e


_ENGINE_DIR = os.path.dirname(os.path.dirname(kinds.__file__)) + os.sep


def _engine_code(filename: str) -> bool:
    """A traceback frame of this program's own code (not a handler's)."""
    return filename.startswith(_ENGINE_DIR) or filename.startswith("<frozen ")


class WorkRunner:
    """A run's task: waits for what its start depends on, runs the kind, turns the way it
    ended into an outcome, returns its slots and commits the outcome. Also stops every run
    at shutdown."""

    def __init__(self, running: dict[str, Work], pools: ResourcePools, ready: ReadyQueue, outcomes: Outcomes,
                 journal: Journal, wake: asyncio.Event, stopping: Callable[[], bool]):
        self._running = running
        self._pools = pools
        self._ready = ready
        self._outcomes = outcomes
        self._journal = journal
        self._wake = wake
        self._stopping = stopping  # whether the engine is stopping

    async def run(self, w: Work) -> None:
        p = w.process
        w.entered = True
        outcome: str
        detail: Any = None
        try:
            if w.begun is not None:
                if w.stop_reason is not None:  # cancelled before this task began: stop what began
                    inner = asyncio.ensure_future(w.begun)
                    await asyncio.sleep(0)  # its first step: it is watching the command now
                    inner.cancel()
                    await inner
                else:
                    await w.begun
            else:
                if w.barrier is not None:
                    await w.barrier  # not cancelled by this run's cancellation (Store.barrier)
                    await self._journal.herd.through()
                if w.stop_reason is not None:  # cancelled or stopped before it began
                    raise asyncio.CancelledError
                kind = kinds.get(p.kind)
                await kind.run(w.ctx)
            outcome = "completed"
        except asyncio.CancelledError:
            outcome = "stopped"
            if w.stop_reason is None:  # cancelled from outside (the loop is going away)
                w.stop_reason = "shutdown"
        except Interrupted as e:
            outcome, detail = "interrupted", e
        except PermanentFailure as e:
            outcome, detail = "failed", str(e) or type(e).__name__
        except KeyError as e:
            outcome, detail = "error", f"unknown kind {p.kind!r}" if str(e).strip("'") == p.kind else repr(e)
        except Exception as e:  # noqa: BLE001 - a handler's exception never stops the engine
            outcome, detail = "error", f"{type(e).__name__}: {e}"
            self._log_exception(p, e)
        finally:
            # Slots are returned on every path, before anything else can await.
            self._pools.release(p.resources)
            self._running.pop(p.id, None)
        b = WriteBatch()
        self._outcomes.finish(w, outcome, detail, b)
        if len(self._ready):
            # the freed slot goes to ready work now, not after this commit (what this commit
            # makes ready waits for it: its barrier); with nothing ready, the wake after the
            # commit finds the engine idle only once the outcome is committed
            self._wake.set()
        try:
            await self._journal.commit(b)
        finally:
            w.finished.set()
            self._wake.set()
        if outcome == "stopped" and w.stop_reason == "shutdown" and not self._stopping():
            raise asyncio.CancelledError

    def _log_exception(self, p: Process, e: Exception) -> None:
        """A run's unexpected exception: the frames of the handler's own code (a python-kind
        entry point) go to the process's log, for its author, without the engine's; one
        raised by the engine or a kind has no such frames and goes, whole, to the program's
        log only (the process's reason says what it was)."""
        own = [f for f in traceback.extract_tb(e.__traceback__) if not _engine_code(f.filename)]
        if not own:
            log.error("%s: its run raised an unexpected exception", p.id, exc_info=e)
            return
        lines = ["Traceback (most recent call last):\n", *traceback.StackSummary.from_list(own).format(),
                 *traceback.format_exception_only(type(e), e)]
        self._journal.log(p.id, "".join(lines).rstrip())

    async def stop_all(self, grace_s: float) -> None:
        """Shutdown: every run is told to stop (`ctx.stopping`), given `grace_s` to finish or
        checkpoint, then cancelled; returns once their outcomes are committed."""
        works = list(self._running.values())
        for w in works:
            w.stop_reason = "shutdown"
            w.ctx.stopping.set()
        tasks = [w.task for w in works if w.task is not None]
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=grace_s)
            for t in still:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
