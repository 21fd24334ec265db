"""What the program does beside its dependencies' public APIs, each kept because, measured on
a user-visible figure (`switchboard bench`, a command's start-up), it is worth at least a fifth
of it: a dependency's private part, or a fast path beside a library that gives the same
answers. Nothing else may do either. tests/test_compat.py fails loudly when an upgrade changes
what is relied on here; the version pin in pyproject.toml gives each one's figure.

- `on_connection_thread`: aiosqlite's `Connection._execute` (the store's group commit).
- `plain_process_entry`, `plain_dependency_entry`: workflow entries taken as they are when
  the pydantic models would take them unchanged (`switchboard run --workflow` does not import
  pydantic for a plain file).
- `plain_environment`, `plain_settings`: the settings checked against console.settings' own
  tables when pydantic-settings would take them unchanged (no SWITCHBOARD_* variable beyond
  the database's and data folder's, no .env file, every value of its type and valid): a
  command's start-up then does not import pydantic."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


# -- settings without pydantic-settings ---------------------------------------------------------------

class _Refer(Exception):
    """Not a value this path takes as it is: pydantic decides (converts it or words the error)."""


def _plain(f: Any, v: Any, secret: type) -> Any:
    """`v` as the pydantic model would give it, if it needs no conversion and is valid. `f`: a
    console.settings._Field; `secret`: the SecretStr a secret becomes."""
    if f.before is not None:
        v = f.before(v)
    kind = f.kind
    t = type(v)
    if kind == "int":
        if t is not int:
            raise _Refer
    elif kind == "float":
        if t is float:
            pass
        elif t is int and -(2**53) <= v <= 2**53:
            v = float(v)
        else:
            raise _Refer
    elif kind == "str" or kind == "str?":
        if t is not str and not (v is None and kind == "str?"):
            raise _Refer
    elif kind == "bool":
        if t is not bool:
            raise _Refer
    elif kind == "choice":
        if t is not str or v not in f.choices:
            raise _Refer
    elif kind == "pools" or kind == "keymap":
        value_type = int if kind == "pools" else str
        if t is not dict or not all(type(k) is str and type(x) is value_type for k, x in v.items()):
            raise _Refer
        v = dict(v)
    elif kind == "path?":
        if v is not None:
            if t is str and v:
                v = Path(v)
            elif not isinstance(v, Path):
                raise _Refer
    elif kind == "db?":
        if v is not None:
            if t is str and v and not v.startswith(("postgresql://", "postgres://")):
                v = Path(v)
            elif t is str and v:  # a server's URL: pydantic-settings' path keeps it as written
                raise _Refer
            elif not isinstance(v, Path):
                raise _Refer
    elif kind == "secret?":
        if v is not None:
            if t is not str:
                raise _Refer
            v = secret(v)
    else:  # pragma: no cover
        raise _Refer
    if (f.ge is not None and not v >= f.ge) or (f.gt is not None and not v > f.gt) \
            or (f.le is not None and not v <= f.le):
        raise _Refer
    if f.check is not None:
        try:
            f.check(v)
        except ValueError:
            raise _Refer from None
    return v


def _plain_section(cls: Any, data: Any, secret: type) -> Any:
    if type(data) is not dict or not set(data) <= cls._fields.keys():
        raise _Refer
    return cls(**{name: _plain(f, data[name] if name in data else f.make_default(), secret)
                  for name, f in cls._fields.items()})


def deep_update(mapping: dict[str, Any], *updates: dict[str, Any]) -> dict[str, Any]:
    """How pydantic-settings merges its sources."""
    merged = mapping.copy()
    for update in updates:
        for k, v in update.items():
            if k in merged and isinstance(merged[k], dict) and isinstance(v, dict):
                merged[k] = deep_update(merged[k], v)
            else:
                merged[k] = v
    return merged


def plain_environment(plain_env: dict[str, str]) -> dict[str, Any] | None:
    """What the environment sets, if it is only the variables `plain_env` names (lower-case
    variable -> setting: the Groq variables, SWITCHBOARD_DB, SWITCHBOARD_DATA_DIR); None when
    pydantic-settings must read it (other SWITCHBOARD_* variables, a .env file, one name spelt
    in two cases)."""
    found: dict[str, Any] = {}
    for key, value in os.environ.items():
        low = key.lower()
        name = plain_env.get(low)
        if name is None and low.startswith("switchboard_") and low != "switchboard_config":
            return None
        if name is not None:
            if name in found:
                return None
            found[name] = value
    if Path(".env").is_file():
        return None
    return found


def plain_settings(data: dict[str, Any], fields: dict[str, Any], sections: dict[str, Any],
                   secret: type) -> dict[str, Any] | None:
    """The values of console.settings.Settings for `data` (defaults < TOML < environment <
    flags, merged as pydantic-settings merges them) if every one is already of its type and
    valid, as pydantic-settings would give them; None to let it convert or refuse them."""
    try:
        values: dict[str, Any] = {}
        for name, f in fields.items():
            if f.kind == "section":
                values[name] = _plain_section(sections[name], data.get(name, {}), secret)
            else:
                values[name] = _plain(f, data.get(name), secret)
    except _Refer:
        return None
    return values
