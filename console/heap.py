"""The garbage collector and a long-running loop.

A full collection walks every object the collector tracks. With Textual, pydantic, the Groq
SDK and the web stack loaded that is most of the heap, and each full collection froze the
loop for a long time. Once a process has started, what
exists is moved to the permanent generation (`gc.freeze`), so a full collection walks only
what was made since, and the worst lateness of the loop drops.

What was made since still made a full collection costly under load (the engine's processes,
events, a thousand voice requests' objects), and the collector ran one whenever enough young
objects had survived: in the middle of the work. So full collections are paced by the loop:
the collector's own are off (generation 2's threshold out of reach; generations 0 and 1, cheap,
stay as they are) and `_pace` runs one once the process has been quiet
(under QUIET_CPU of a core, all its threads together) for QUIET_CHECKS checks in a row, or at
the latest FULL_EVERY_S after the last one, so a process that is never quiet still pays one at
most that often and the garbage it holds stays bounded. (The loop's lateness is no sign of
quiet: under the load benchmark most of its turns are on time.)
Only objects that survived two young collections and then became garbage in a cycle wait.

The middle generation (1) is collected every MIDDLE_EVERY young collections rather than every
10: it holds what survived since its last collection, so its pauses shrink with the interval,
for the same work in all;
what survives goes to the permanent side sooner, where only the paced full collections look.

Only the product's entry points opt in (the runner, the console): tests start engines by
the hundred in one process, and freezing there would keep their garbage."""

from __future__ import annotations

import asyncio
import gc
import time

CHECK_S = 0.25  # how often the pacer looks
QUIET_CPU = 0.1  # CPU time over wall time between two checks, at most, for a quiet one
QUIET_CHECKS = 2
FULL_EVERY_S = 30.0
MIDDLE_EVERY = 2  # young collections per middle one (Python's default: 10), see the module doc
_NEVER = 1 << 30  # generation 2's threshold: the collector never starts a full collection itself

_settled = False
_pacer: asyncio.Task[None] | None = None
full_collections = 0  # run by the pacer (for tests)


def settle() -> None:
    """Call once the process has started (modules imported, state loaded), on its loop."""
    global _settled, _pacer
    _settled = True
    gc.freeze()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop: nobody to pace full collections, so keep the collector's
        return
    if _pacer is None or _pacer.done() or _pacer.get_loop() is not loop:
        young, _, _ = gc.get_threshold()
        gc.set_threshold(young, MIDDLE_EVERY, _NEVER)
        _pacer = loop.create_task(_pace(), name="heap-pacer")


def resettle() -> None:
    """After a one-time heavy import later on (the Groq SDK, the web stack), in a process
    that settled."""
    if _settled:
        gc.freeze()


async def _pace() -> None:
    global full_collections
    last_full = time.monotonic()
    quiet = 0
    while True:
        wall, cpu = time.monotonic(), time.process_time()
        await asyncio.sleep(CHECK_S)
        busy = (time.process_time() - cpu) / max(1e-6, time.monotonic() - wall)
        quiet = quiet + 1 if busy <= QUIET_CPU else 0
        if gc.get_count()[2] == 0:  # no young collection since the last full one: nothing new to walk
            continue
        since = time.monotonic() - last_full
        if quiet >= QUIET_CHECKS or since >= FULL_EVERY_S:
            gc.collect()
            full_collections += 1
            last_full = time.monotonic()
            quiet = 0
