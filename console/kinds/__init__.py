"""Process kinds: one module each, registered by name.

A kind module defines `KIND`, an object with:
  name: str
  validate_spec(raw: dict, base_dir: Path) -> dict   # raise SpecError(field, message)
  async run(ctx: RunContext) -> None                 # return = completed
and may define
  begin(ctx: RunContext) -> Awaitable[None] | None   # start now; the run awaits what it returns

`begin` is called by the dispatcher, in its own pass, for work that may start at once: the
work begins a turn of the loop sooner than its run task would begin it (the shell kind's
command is asked for there). What it returns stands for `run(ctx)`, and what it raises is the
run's outcome; None means `run` after all.

Modules are imported on first use, so the headless path never imports what it does not run
(the voice kinds pull in groq)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from console.kinds.context import RunContext

_MODULES: dict[str, str] = {
    "shell": "console.kinds.shell",
    "python": "console.kinds.python",
    "voice": "console.kinds.voice",
    "transfer": "console.kinds.transfer",
}
_LOADED: dict[str, Kind] = {}


class SpecError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Kind(Protocol):
    name: str

    def validate_spec(self, raw: dict[str, Any], base_dir: Path) -> dict[str, Any]: ...

    async def run(self, ctx: RunContext) -> None: ...


def register(name: str, module: str) -> None:
    """Make a kind available by name; `module` is imported when first needed."""
    _MODULES[name] = module
    _LOADED.pop(name, None)


def names() -> list[str]:
    return sorted(_MODULES)


def known(name: str) -> bool:
    return name in _MODULES


def get(name: str) -> Kind:
    if name in _LOADED:
        return _LOADED[name]
    module = _MODULES[name]  # KeyError: unknown kind
    kind = importlib.import_module(module).KIND
    _LOADED[name] = kind
    return kind
