"""Group commit, shared by the SQL adapters: the writes of a loop turn go to the database as one
transaction, committed in the order they were submitted.

`GroupCommit` keeps the batch gathering, the one being committed and their waiters; the adapter
supplies how a batch is committed (`commit`), so its driver, thread or pool stay its own.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from console.errors import WriteRejected
from console.store.ports import WriteBatch

Settle = Callable[[], None]
"""Marks the batch being committed as committed: wakes its writers and `barrier` waiters.
Idempotent; call it on the loop's thread."""


class _Commit(asyncio.Future):
    """A group commit's completion, shared by every write in the batch and by the work waiting
    for it (`barrier`). It cannot be cancelled: a waiter being cancelled must not cancel what
    the others wait for (the waiter's cancellation arrives once the commit is done). So it is
    awaited directly: through `asyncio.shield` each waiter woke one turn of the loop later
    (a few ms under load)."""

    def cancel(self, msg: Any = None) -> bool:
        return False


class GroupCommit:
    """Writes merged into the batch gathering; one flusher commits batches one after another.

    `commit(batch, settle)` writes one batch in one transaction and returns once it is
    committed; it may call `settle` earlier, as soon as the transaction is durable, so that
    waiters wake without waiting for the rest of its work. An exception of `integrity_error`
    becomes WriteRejected (its text through `detail`); `translate` may name the port's error
    for another (None: the driver's own); any exception fails every write of
    that batch, not those gathering behind it. `on_committed` runs once per committed batch.
    A writer waits until its batch is committed: that is the back-pressure on the loop."""

    def __init__(
        self,
        commit: Callable[[WriteBatch, Settle], Awaitable[None]],
        integrity_error: type[BaseException],
        detail: Callable[[BaseException], str] = str,
        on_committed: Callable[[], None] | None = None,
        translate: Callable[[BaseException], BaseException | None] | None = None,
    ) -> None:
        self._commit = commit
        self._integrity_error = integrity_error
        self._detail = detail
        self._on_committed = on_committed
        self._translate = translate
        self._pending = WriteBatch()
        self._pending_done: asyncio.Future[None] | None = None
        self._inflight_done: asyncio.Future[None] | None = None
        self.submitted = 0  # write() calls merged so far: a write's number, for barrier(upto=)
        self._inflight_upto = 0  # the last write in the batch being committed
        self._committed_upto = 0  # every write up to this one is committed
        self._flusher: asyncio.Task[None] | None = None
        self.commits = 0  # transactions written (for tests and benchmarks)

    async def write(self, batch: WriteBatch) -> None:
        if batch.empty():
            return
        self._pending.merge(batch)
        if self._pending_done is None:
            self._pending_done = _Commit(loop=asyncio.get_running_loop())
        done = self._pending_done
        self.submitted += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="store-flush")
        await done

    def barrier(self, upto: int | None = None) -> asyncio.Future[None] | None:
        """A future done once every write submitted so far (or the first `upto`) is committed;
        None if they are. (Batches commit in order, so a later one stands for all before it.)
        With `upto`, work placed by a write in the batch being committed need not also wait
        for the batch that gathers meanwhile: under load that halves its wait."""
        if upto is not None and upto <= self._committed_upto:
            return None
        if upto is not None and upto <= self._inflight_upto:
            future = self._inflight_done
        else:
            future = self._pending_done or self._inflight_done
        return None if future is None or future.done() else future

    async def drain(self) -> None:
        """Returns once every write submitted so far has been committed or has failed."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush_loop(self) -> None:
        while not self._pending.empty():
            batch, done = self._pending, self._pending_done
            self._pending, self._pending_done = WriteBatch(), None
            self._inflight_done, self._inflight_upto = done, self.submitted
            settle = functools.partial(self._settle, self._inflight_upto, done)
            try:
                await self._commit(batch, settle)
            except BaseException as e:  # noqa: BLE001 - handed to every waiter
                if isinstance(e, self._integrity_error):  # the port's error, not the driver's
                    rejected = WriteRejected(
                        f"the write broke an integrity rule ({self._detail(e)}); none of it was committed")
                    rejected.__cause__ = e
                    e = rejected
                elif self._translate is not None:
                    e = self._translate(e) or e
                if done is not None and not done.done():
                    done.set_exception(e)
                    done.exception()  # mark retrieved: a waiter may have gone
                if isinstance(e, asyncio.CancelledError):
                    raise
            else:
                settle()

    def _settle(self, upto: int, done: asyncio.Future[None] | None) -> None:
        self._committed_upto = max(self._committed_upto, upto)
        if done is not None and not done.done():
            self.commits += 1
            done.set_result(None)
            if self._on_committed is not None:
                self._on_committed()


class GroupCommitted:
    """The ports' write path (`write`, `barrier`, `submitted`) for an adapter whose writes go
    through a GroupCommit: the adapter makes it, as `_group`, in its __init__."""

    _group: GroupCommit

    @property
    def submitted(self) -> int:
        return self._group.submitted

    @property
    def commits(self) -> int:
        """Transactions written by the group commit (for tests and benchmarks)."""
        return self._group.commits

    async def write(self, batch: WriteBatch) -> None:
        await self._group.write(batch)

    def barrier(self, upto: int | None = None) -> asyncio.Future[None] | None:
        return self._group.barrier(upto)
