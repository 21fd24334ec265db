"""Commands from other processes, read from the store's inbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from console.model import UserError
from console.store import Command, Store, WriteBatch

log = logging.getLogger(__name__)

CommandHandler = Callable[[dict[str, Any]], Awaitable[str]]


class CommandInbox:
    """Executes the commands other processes leave in the store (the CLI's `resume`, `cancel`,
    `load`; what kinds add to `handlers`), one at a time, and writes each one's result back."""

    def __init__(self, store: Store):
        self._store = store
        self.handlers: dict[str, CommandHandler] = {}  # command kind -> handler
        self._lock = asyncio.Lock()

    async def watch(self, poll_s: float) -> None:
        """Reads new commands at start, then whenever the database has changed."""
        version = await self._store.change_marker()
        await self.process()
        while True:
            await asyncio.sleep(poll_s)
            try:
                current = await self._store.change_marker()
                if current != version:
                    version = current
                    await self.process()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("reading commands failed")

    async def process(self) -> int:
        async with self._lock:
            commands = await self._store.new_commands()
            for c in commands:
                status, result = await self.execute(c)
                await self._store.write(WriteBatch(commands_done={c.id: (status, result)}))
            return len(commands)

    async def execute(self, c: Command) -> tuple[str, str]:
        handler = self.handlers.get(c.kind)
        if handler is None:
            return "error", f"unknown command {c.kind!r}"
        try:
            return "done", await handler(c.payload)
        except UserError as e:
            return "error", str(e)
        except Exception as e:  # noqa: BLE001 - reported back to whoever asked
            log.exception("command %s failed", c.kind)
            return "error", f"{type(e).__name__}: {e}"
