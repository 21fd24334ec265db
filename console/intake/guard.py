"""The intake's outer ASGI layer: the bearer token and the request body size limit.

Plain ASGI (not a Starlette BaseHTTPMiddleware, which adds a task per request): a refused
request is answered before the application sees it, and a body is cut off as soon as it
passes the limit, whether or not it announced its length (chunked)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.exceptions import HTTPException

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz"})  # a load balancer's probe carries no token; it learns nothing


async def _answer(send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: Any, token: str | None, limit_for: Callable[[Scope], int]):
        self.app = app
        self._token = token.encode() if token else None
        self._limit_for = limit_for

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                # constant time: how much of the token matched must not show in the timing
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self._token is not None and scope["path"] not in OPEN_PATHS and not self._authorized(scope):
            return await _answer(send, 401, "missing or wrong bearer token",
                                 [(b"www-authenticate", b'Bearer realm="switchboard"')])
        limit = self._limit_for(scope)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    return await _answer(send, 400, "invalid Content-Length")
                if int(value) > limit:
                    return await _answer(send, 413, f"request body larger than {limit} bytes")
        received = 0

        async def counted_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # raised inside the handler's read: the app answers it as a 413
                    raise HTTPException(413, f"request body larger than {limit} bytes")
            return message

        await self.app(scope, counted_receive, send)
