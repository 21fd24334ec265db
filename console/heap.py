"""The garbage collector and a long-running loop.

A full collection walks every object the collector tracks. With Textual, pydantic, the Groq
SDK and the web stack loaded that is most of the heap, and each full collection froze the
loop for 30-100 ms (measured in the load benchmark). Once a process has started, what
exists is moved to the permanent generation (`gc.freeze`), so a full collection walks only
what was made since: the worst lateness there went from ~95 ms to ~50 ms.

Only the product's entry points opt in (the runner, the console): tests start engines by
the hundred in one process, and freezing there would keep their garbage."""

from __future__ import annotations

import gc

_settled = False


def settle() -> None:
    """Call once the process has started: modules imported, state loaded."""
    global _settled
    _settled = True
    gc.freeze()


def resettle() -> None:
    """After a one-time heavy import later on (the Groq SDK, the web stack), in a process
    that settled."""
    if _settled:
        gc.freeze()
