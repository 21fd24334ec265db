"""Text from outside (process ids and output, reasons, transcripts, LLM replies, names a client
sent) as the command line prints it for a person: characters that would act on the terminal
instead of being shown — C0/C1 controls (an escape sequence's ESC, OSC 52's BEL, a carriage
return that overwrites the line), bidirectional overrides, line separators — are shown as
visible escapes (`\\x1b`, `\\u202e`). JSON output needs none of this: JSON escapes them."""

from __future__ import annotations

import re
from typing import Any

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 and C1 controls, DEL
    "\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional marks and overrides, zero-width
    "\u2028\u2029\u2060-\u2065\ufeff\ufff9-\ufffb"  # line and paragraph separators, invisible operators
    "\ud800-\udfff]"  # lone surrogates (undecodable bytes kept by surrogateescape)
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any) -> str:
    """`value` as one line of text that only shows, never acts: see the module's docstring."""
    text = "" if value is None else str(value)
    return _UNSAFE.sub(_escape, text)
