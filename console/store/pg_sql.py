"""The PostgreSQL adapter's SQL, kept in files (sql/postgres/): migrations and named statements.

Migrations are `NNN_name.sql`, applied once each in the order of their number; add a new file,
never edit one that has shipped. `statements.sql` holds the statements as `-- name: NAME` blocks.
"""

from __future__ import annotations

import functools
import re
from importlib.resources import files

_FOLDER = files("console.store") / "sql" / "postgres"
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@functools.cache
def migrations() -> tuple[str, ...]:
    """The migration scripts, in order (migration n is the n-th, counting from 1)."""
    names = sorted(p.name for p in _FOLDER.iterdir() if re.fullmatch(r"\d{3}_\w+\.sql", p.name))
    for number, name in enumerate(names, start=1):
        if int(name[:3]) != number:
            raise RuntimeError(f"PostgreSQL migrations: {name} is not number {number}")
    return tuple((_FOLDER / name).read_text(encoding="utf-8") for name in names)


@functools.cache
def statements() -> dict[str, str]:
    """Each named statement's SQL, comments and the final semicolon removed."""
    text = (_FOLDER / "statements.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("--")]
        named[name] = "\n".join(lines).strip().rstrip(";")
    return named
