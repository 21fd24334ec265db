"""GroupCommit (console/store/group_commit.py) on its own: what it promises the adapter that
hands it a `commit` function. The adapters' whole write path, on real databases, is in
tests/test_store_conformance.py; here the commit function is the test's, so the test decides
when a transaction ends and whether it fails."""

from __future__ import annotations

import asyncio

import pytest

from console.errors import WriteRejected
from console.model import Event
from console.store.group_commit import GroupCommit, Settle
from console.store.ports import WriteBatch


class Broken(Exception):
    """Stands for a driver's integrity error."""


def batch(*seqs: int) -> WriteBatch:
    return WriteBatch(events=[Event(seq, float(seq), None, "t", f"event {seq}") for seq in seqs])


class Transactions:
    """The adapter's side: records each batch committed; a transaction ends when the test
    opens its gate; a batch holding `failing` fails with Broken."""

    def __init__(self, failing: int | None = None) -> None:
        self.committed: list[list[int]] = []
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.failing = failing
        self.settle_early = False

    async def commit(self, b: WriteBatch, settle: Settle) -> None:
        self.started.set()
        seqs = [e.seq for e in b.events]
        if self.settle_early:
            self.committed.append(seqs)
            settle()
        await self.gate.wait()
        if self.failing in seqs:
            raise Broken(f"event {self.failing} again\nsecond line")
        if not self.settle_early:
            self.committed.append(seqs)


async def test_writes_of_one_loop_turn_share_one_transaction_and_batches_commit_in_order():
    tx = Transactions()
    group = GroupCommit(tx.commit, Broken)
    first = [asyncio.create_task(group.write(batch(n))) for n in (1, 2, 3)]
    await tx.started.wait()  # the first transaction has begun: what comes now gathers behind it
    later = [asyncio.create_task(group.write(batch(n))) for n in (4, 5)]
    await asyncio.sleep(0)
    assert group.submitted == 5 and not any(t.done() for t in first + later)  # writers wait for their commit
    tx.gate.set()
    await asyncio.gather(*first, *later)
    assert tx.committed == [[1, 2, 3], [4, 5]] and group.commits == 2
    assert group.barrier() is None


async def test_a_failed_transaction_fails_its_writers_only_and_an_integrity_error_becomes_write_rejected():
    tx = Transactions(failing=2)
    group = GroupCommit(tx.commit, Broken, detail=lambda e: str(e).splitlines()[0])
    doomed = [asyncio.create_task(group.write(batch(n))) for n in (1, 2)]
    await tx.started.wait()
    behind = asyncio.create_task(group.write(batch(3)))
    await asyncio.sleep(0)
    tx.gate.set()
    for task in doomed:
        with pytest.raises(WriteRejected, match=r"integrity rule \(event 2 again\); none of it was committed"):
            await task
    await behind
    assert tx.committed == [[3]] and group.commits == 1
    assert isinstance(doomed[0].exception().__cause__, Broken)


async def test_a_barrier_follows_the_writes_up_to_its_number_and_settling_early_wakes_them():
    tx = Transactions()
    tx.settle_early = True
    group = GroupCommit(tx.commit, Broken)
    inflight = asyncio.create_task(group.write(batch(1)))
    await tx.started.wait()
    gathering = asyncio.create_task(group.write(batch(2)))
    await asyncio.sleep(0)
    assert group.barrier(upto=1) is None  # settled before the transaction's function returned
    waiter = group.barrier()
    assert waiter is not None and not waiter.done()  # write 2 gathers behind the one running
    await inflight
    tx.gate.set()
    await gathering
    await group.drain()
    assert waiter.done() and group.barrier() is None and tx.committed == [[1], [2]]


async def test_a_cancelled_waiter_leaves_the_commit_to_the_others():
    tx = Transactions()
    group = GroupCommit(tx.commit, Broken)
    writers = [asyncio.create_task(group.write(batch(n))) for n in (1, 2)]
    await tx.started.wait()
    writers[0].cancel()
    await asyncio.sleep(0)
    tx.gate.set()
    await writers[1]
    assert tx.committed == [[1, 2]] and group.barrier() is None


async def test_an_empty_batch_returns_at_once_and_takes_no_number():
    tx = Transactions()
    group = GroupCommit(tx.commit, Broken)
    await group.write(WriteBatch())
    assert group.submitted == 0 and not tx.started.is_set() and group.barrier() is None
