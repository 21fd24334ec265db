"""What a running handler sees of the engine: the contract between the engine and the kinds.

It lives with the kinds so they need not import the engine; the engine builds one per run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from console.kinds.calls import SERVICE as CALLS
from console.kinds.calls import CallDesk
from console.model import Process
from console.settings import Settings
from console.store import Store, WriteBatch

_UNSET: Any = object()


class Host(Protocol):
    """What a RunContext uses of the engine running it (console.engine's Orchestrator)."""

    settings: Settings
    store: Store
    services: dict[str, Any]

    def workdir(self, process_id: str) -> Path: ...

    def service(self, name: str, factory: Callable[[], Any]) -> Any: ...

    async def report(self, process: Process, progress: float | None, checkpoint: Any,
                     extra: WriteBatch | None) -> None: ...

    def log(self, process: Process, text: str) -> None: ...


class RunContext:
    """Handed to a kind's `run` (and to a python-kind entry point as `ctx`).

    `checkpoint` is the latest checkpoint data (None on a first run), `attempt` the run's
    number (1 on the first). `stopping` is set when the engine shuts down: finish or
    checkpoint quickly, the engine cancels the run after its grace period."""

    def __init__(self, engine: Host, process: Process, settings_grace_s: float):
        self._engine = engine
        self._process = process
        self.process_id = process.id
        self.spec: dict[str, Any] = process.spec
        self.args: dict[str, Any] = process.spec.get("args") or {}
        self.checkpoint: Any = process.checkpoint
        self.attempt: int = process.attempt
        self.stopping = asyncio.Event()
        self.cancel_grace_s = settings_grace_s

    @property
    def progress(self) -> float:
        return self._process.progress

    @property
    def workdir(self) -> Path:
        """A folder of this process's own under the data dir, created on first use."""
        return self._engine.workdir(self.process_id)

    @property
    def engine(self) -> Host:
        return self._engine

    @property
    def settings(self) -> Settings:
        return self._engine.settings

    @property
    def store(self) -> Store:
        """For reading; write through `report(extra=...)` so it commits with the checkpoint."""
        return self._engine.store

    @property
    def calls(self) -> CallDesk:
        """The call centre (its records and the Groq gateway), for the voice and transfer
        kinds: console.app's make_engine installs it on the engine."""
        desk = self._engine.services.get(CALLS)
        if desk is None:
            raise RuntimeError("the call centre is not installed on this engine")
        return desk

    def service(self, name: str, factory: Callable[[], Any]) -> Any:
        """A shared object (one per engine), made by `factory` on first use."""
        return self._engine.service(name, factory)

    async def report(self, progress: float | None = None, checkpoint: Any = _UNSET,
                     extra: WriteBatch | None = None) -> None:
        """Record progress (0-100) and/or a checkpoint, with `extra` changes in the same
        transaction; returns once it is committed."""
        await self._engine.report(self._process, progress, checkpoint, extra)

    def log(self, text: str) -> None:
        self._engine.log(self._process, text)
