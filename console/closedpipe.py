"""A reader that went away (`switchboard status | head`): the rest of the output goes nowhere."""

from __future__ import annotations

import os
from typing import TextIO


def discard_output(stream: TextIO) -> bool:
    """Point `stream`'s file descriptor at the null device, so that what it still buffers and
    whatever is written to it later (Python flushes standard output at exit) goes nowhere,
    quietly. The way the Python documentation gives for SIGPIPE (Note on SIGPIPE, in the
    signal module's). False if the stream has no descriptor of its own (a StringIO)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a file, or closed
        return False
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
    return True
