"""The HTTP intake: the telephony front end posts voice requests and transfers here.

FastAPI served by uvicorn on the engine's own event loop (the headless runner's or the
console's). The web stack is imported only when an intake starts, in a worker thread
(~0.7 s of module loading would otherwise freeze the loop once).

    intake = await start_intake(engine, settings)      # listens on settings.intake.listen
    print(intake.address)                              # "127.0.0.1:8040"
    await intake.aclose()                              # before engine.stop()
"""

from __future__ import annotations

import asyncio
import importlib
import socket
from typing import TYPE_CHECKING

from console import heap
from console.intake.listen import open_listener
from console.listen import Listen, parse_listen
from console.model import UserError

if TYPE_CHECKING:
    from console.engine.orchestrator import Orchestrator
    from console.intake.server import IntakeServer
    from console.settings import Settings

__all__ = ["Listen", "listener_for", "parse_listen", "start_intake"]


def listener_for(settings: Settings) -> socket.socket:
    """The bound socket for `settings.intake.listen`, after the token rule (UserError otherwise)."""
    if not settings.intake.listen:
        raise UserError("no listen address: give --listen HOST:PORT")
    return open_listener(parse_listen(settings.intake.listen), settings.intake.token is not None)


async def start_intake(engine: Orchestrator, settings: Settings, host: str | None = None,
                       port: int | None = None, *, sock: socket.socket | None = None) -> IntakeServer:
    """Serve the intake for `engine` on the running loop; returns once it accepts connections.

    Listens on `sock` if given, else on host:port, else on `settings.intake.listen`. Raises
    UserError if the address is refused (no token beyond loopback, port in use)."""
    if sock is None:  # resolving a host name may wait on DNS: off the loop
        if host is not None:
            listen = Listen(host, 0 if port is None else port)
            sock = await asyncio.to_thread(open_listener, listen, settings.intake.token is not None)
        else:
            sock = await asyncio.to_thread(listener_for, settings)
    try:
        server = await asyncio.to_thread(importlib.import_module, "console.intake.server")
        heap.resettle()
        return await server.IntakeServer.start(engine, settings, sock)
    except BaseException:
        sock.close()
        raise
