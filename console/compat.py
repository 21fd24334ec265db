"""What the program does beside its dependencies' public APIs, each kept because, measured on
a user-visible figure (`switchboard bench`, a command's start-up), it is worth at least a fifth
of it: a dependency's private part, or a fast path beside a library that gives the same
answers. Nothing else may do either. tests/test_compat.py fails loudly when an upgrade changes
what is relied on here; the version pin in pyproject.toml gives each one's figure.

- `on_connection_thread`: aiosqlite's `Connection._execute` (the store's group commit).
- `plain_process_entry`, `plain_dependency_entry`: workflow entries taken as they are when
  the pydantic models would take them unchanged (`switchboard run --workflow` does not import
  pydantic for a plain file)."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from console.model import DependencyType, Priority

if TYPE_CHECKING:
    import aiosqlite


def on_connection_thread(db: aiosqlite.Connection, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    """`fn(connection, *args)` run as one job on aiosqlite's own thread, in turn with the
    connection's other calls, with the `sqlite3.Connection` itself: a whole transaction is one
    hop between the loop and that thread instead of one per statement (through the public
    `execute`/`executemany`, each statement waits for a turn of a busy loop, and the dispatch
    latency figure grows with it: the figure is at the pin in pyproject.toml)."""
    return db._execute(fn, db._conn, *args)  # noqa: SLF001 - see the module's docstring


# -- workflow entries without pydantic ------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _id_re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.removeprefix("^").removesuffix("$"))  # fullmatch: `$` also takes a final newline


_PRIORITIES = {p.value: p for p in Priority}
_DEPENDENCY_TYPES = {t.value: t for t in DependencyType}
PROCESS_ENTRY_FIELDS = frozenset({"id", "kind", "priority", "resources", "max_attempts", "hold"})
_DEPENDENCY_FIELDS = frozenset({"dependent", "dependency", "type", "required_completion_percent",
                                "timeout_minutes"})
_MISSING: Any = object()
_EXACT_FLOAT = 2**53  # ints up to here become floats exactly


def plain_process_entry(raw: dict[str, Any], id_pattern: str) -> tuple[str, str, Priority, dict[str, int], int, bool] | None:
    """A workflow's [[process]] entry's fields if each is already of its type and valid, as
    the pydantic model (console.engine.workflow) would give them; None to let the model convert
    or refuse it. `id_pattern`: the model's pattern for the id."""
    pid = raw.get("id")
    kind = raw.get("kind")
    if type(pid) is not str or type(kind) is not str or _id_re(id_pattern).fullmatch(pid) is None:
        return None
    priority = _plain_choice(raw, "priority", _PRIORITIES, Priority.MEDIUM)
    if priority is None:
        return None
    resources = raw.get("resources", _MISSING)
    if resources is _MISSING:
        resources = {}
    elif type(resources) is dict and all(type(k) is str and type(v) is int for k, v in resources.items()):
        resources = dict(resources)
    else:
        return None
    attempts = raw.get("max_attempts", 3)
    if type(attempts) is not int or not 1 <= attempts <= 1000:
        return None
    hold = raw.get("hold", False)
    if type(hold) is not bool:
        return None
    return pid, kind, priority, resources, attempts, hold


def _plain_choice(raw: dict[str, Any], key: str, members: dict[str, Any], default: Any) -> Any:
    """The member `raw[key]` names (`default` when the key is absent); None when it names none."""
    value = raw.get(key, _MISSING)
    if value is _MISSING:
        return default
    return members.get(value) if type(value) is str else None


def _plain_number(value: Any) -> float | None:
    if type(value) is float:
        return value
    if type(value) is int and -_EXACT_FLOAT <= value <= _EXACT_FLOAT:
        return float(value)
    return None


def plain_dependency_entry(raw: Any) -> tuple[str, str, DependencyType, float, float | None] | None:
    """A [[dependency]] entry's fields, as plain_process_entry does for a process."""
    if type(raw) is not dict or not _DEPENDENCY_FIELDS.issuperset(raw):
        return None
    dependent = raw.get("dependent")
    dependency = raw.get("dependency")
    if type(dependent) is not str or type(dependency) is not str:
        return None
    dtype = _plain_choice(raw, "type", _DEPENDENCY_TYPES, DependencyType.SEQUENTIAL)
    if dtype is None:
        return None
    percent = _plain_number(raw.get("required_completion_percent", 100.0))
    if percent is None or not 0 < percent <= 100:
        return None
    timeout = raw.get("timeout_minutes", _MISSING)
    if timeout is _MISSING:
        timeout = None
    else:
        timeout = _plain_number(timeout)
        if timeout is None or not timeout > 0:
            return None
    return dependent, dependency, dtype, percent, timeout
