"""How much outside input may be: how deeply a TOML file nests, how long a text that goes into
an event, a reason or an interruption is. Past a limit, TOML is refused (one line, UserError)
and a text is cut with a marker saying how long it was."""

from __future__ import annotations

import tomllib
from typing import Any

from console.errors import UserError

# Far deeper than any workflow or settings file needs; a parser's recursion runs out long before
# a hostile file (`a = [[[[…` 100,000 deep) ends.
NESTING_MAX = 64
# An event's message, a process's reason, an interruption's message: enough for any error's
# words, not for a command line of megabytes repeated in every retry's event.
TEXT_MAX = 4096


def loads_toml(text: str, source: str) -> dict[str, Any]:
    """`text` as TOML, or UserError naming `source` (the file, or what holds the text)."""
    too_deep = f"{source}: not valid TOML: nested more than {NESTING_MAX} levels deep"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{source}: not valid TOML: {e}") from None
    except RecursionError:
        raise UserError(too_deep) from None
    if nesting_depth(data) > NESTING_MAX:
        raise UserError(too_deep)
    return data


def nesting_depth(value: Any) -> int:
    """How many tables and arrays deep `value` goes (a scalar: 0), level by level, without
    recursion; it stops counting past NESTING_MAX."""
    depth = 0
    level = [value] if isinstance(value, (dict, list)) else []
    while level and depth <= NESTING_MAX:
        depth += 1
        below = []
        for item in level:
            for child in (item.values() if isinstance(item, dict) else item):
                if isinstance(child, (dict, list)):
                    below.append(child)
        level = below
    return depth


def capped(text: str, limit: int = TEXT_MAX) -> str:
    """`text`, or its first `limit` characters and a marker of how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [cut: {len(text):,} characters in all]"
