"""Text for the screen: text from outside shown as text, times of day, the header's sparklines."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.style import Style
from rich.text import Text

from console.printable import printable


def clean(value: Any) -> str:
    """Text from outside (process names, logs, transcripts, LLM output) shown as text:
    line breaks show as ⏎, and what would act on the terminal (escape sequences, bidirectional
    overrides) as the command line shows it: visible `\\x1b`, `\\u202e`."""
    text = "" if value is None else str(value)
    return printable(text.replace("\r\n", "⏎").replace("\n", "⏎"))


def literal(value: Any, style: str | Style = "") -> Text:
    """A Text that is never parsed for markup."""
    return Text(clean(value), style=style, no_wrap=True, overflow="ellipsis")


def time_of_day(ts: float | None) -> str:
    """A moment as the dialogs show it: the local time of day, or a dash."""
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "—"


_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int, floor: float) -> str:
    """The last `width` values as bars scaled from 0 to max(values, floor), oldest left and
    padded with blanks, so a quiet minute reads as low bars and the scale never exaggerates
    noise (Textual's Sparkline scales min..max and fills a single value to the top)."""
    shown = list(values)[-width:]
    top = max([floor, *shown])
    bars = "".join(_BARS[min(8, int(round(v / top * 8)))] if v > 0 else "▁" for v in shown)
    return bars.rjust(width, " ")
