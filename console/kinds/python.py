"""`python`: an `async def fn(ctx)` named by `entry = "module:function"`.

The function gets a RunContext: `ctx.checkpoint`, `ctx.attempt`, `ctx.args` (the
workflow's `args` table), `await ctx.report(progress, checkpoint=...)`, `ctx.log(text)`.
Raising `console.model.Interrupted` marks it interrupted; other exceptions are errors.
It runs on the engine's loop: CPU-heavy work must yield (`await asyncio.sleep(0)`) or
go to a subprocess (`shell` kind)."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from console.kinds import SpecError
from console.kinds.context import RunContext
from console.model import PermanentFailure

_ENTRY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")  # with fullmatch: `match` and `$` would also take a trailing newline


class PythonKind:
    name = "python"

    def validate_spec(self, raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        allowed = {"entry", "args", "path"}
        for key in raw:
            if key not in allowed:
                raise SpecError(key, f"unknown field for kind python (expected {', '.join(sorted(allowed))})")
        entry = raw.get("entry")
        if not isinstance(entry, str) or not _ENTRY.fullmatch(entry):
            raise SpecError("entry", "must be \"module:function\"")
        args = raw.get("args", {})
        if not isinstance(args, dict):
            raise SpecError("args", "must be a table")
        spec: dict[str, Any] = {"entry": entry, "args": args}
        if "path" in raw:
            if not isinstance(raw["path"], str):
                raise SpecError("path", "must be a string (a folder to import the module from)")
            folder = (base_dir / raw["path"]).resolve()
            if not folder.is_dir():
                raise SpecError("path", f"{folder} is not a folder")
            spec["path"] = str(folder)
        return spec

    async def run(self, ctx: RunContext) -> None:
        fn = resolve(ctx.spec["entry"], ctx.spec.get("path"))
        await fn(ctx)


def resolve(entry: str, path: str | None = None) -> Callable[[RunContext], Awaitable[Any]]:
    module_name, _, attr = entry.partition(":")
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PermanentFailure(f"cannot import {module_name!r}: {e}") from None
    fn = getattr(module, attr, None)
    if fn is None or not inspect.iscoroutinefunction(fn):
        raise PermanentFailure(f"{entry} is not an async function")
    return fn


KIND = PythonKind()
