"""uvicorn on the host's loop, as a guest: no signal handlers of its own, no logging set-up,
stopped by its host through `aclose()`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from console.engine.orchestrator import Orchestrator
from console.intake.app import create_app
from console.intake.guard import Guard
from console.intake.listen import bound_address
from console.intake.routes_voice import FORM_FIELD_LIMIT
from console.settings import Settings


def build_asgi(engine: Orchestrator, settings: Settings, closing: asyncio.Event) -> Guard:
    """The application with its token and body-size guard (what the server serves; tests may
    call it through an ASGI transport)."""
    max_body = settings.intake.max_body_bytes
    max_upload = int(settings.voice.max_audio_mb * 1024 * 1024) + FORM_FIELD_LIMIT + 4096

    def limit_for(scope: dict[str, Any]) -> int:
        if scope["path"] == "/ai-voice":
            for name, value in scope["headers"]:
                if name == b"content-type" and value.lower().startswith(b"multipart/form-data"):
                    return max_upload
        return max_body

    token = settings.intake.token.get_secret_value() if settings.intake.token else None
    return Guard(create_app(engine, settings, closing), token, limit_for)


class _GuestServer(uvicorn.Server):
    """uvicorn's `serve()` replaces SIGINT/SIGTERM handlers with its own (and re-raises the
    signal after it stops). The runner and the console handle signals themselves and stop
    the intake in order, so it captures none."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        pass

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class IntakeServer:
    def __init__(self, server: _GuestServer, task: asyncio.Task[None], address: str, closing: asyncio.Event):
        self._server = server
        self._task = task
        self.address = address  # "127.0.0.1:8040": the port really bound (also when 0 was asked)
        self.closing = closing  # set at aclose(): requests waiting for a reply answer at once

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @classmethod
    async def start(cls, engine: Orchestrator, settings: Settings, sock: socket.socket) -> IntakeServer:
        closing = asyncio.Event()
        config = uvicorn.Config(
            build_asgi(engine, settings, closing),
            lifespan="off",  # the host starts and stops what the app uses
            log_config=None,  # never reconfigure the host's logging (the console logs to a file)
            access_log=False,
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=settings.intake.shutdown_grace_s,
        )
        server = _GuestServer(config)
        address = bound_address(sock)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="intake")
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        if not server.ready.is_set():
            ready.cancel()
            task.result()  # raises what stopped it
            raise RuntimeError("the intake stopped while starting")
        return cls(server, task, address, closing)

    async def aclose(self) -> None:
        """Stop accepting, answer the requests in flight (waiting ones at once, with the state
        they have), close the connections. Idempotent."""
        self.closing.set()
        self._server.should_exit = True
        await asyncio.gather(self._task, return_exceptions=True)
