"""Request bodies: how the intake reads what a client sends.

JSON only as `application/json`, parsed by pydantic's own parser straight from the bytes
(bytes that are not UTF-8, NaN, Infinity or nesting past its depth limit are invalid JSON
there, a 422), never as text first; and no body at all where an endpoint takes none."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

JSON = "application/json"
M = TypeVar("M", bound=BaseModel)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_json(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])}
             for error in e.errors(include_url=False, include_input=False, include_context=False)]) from None


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency: the request's JSON body as `model` (415 if it is not JSON)."""
    async def read(request: Request) -> M:
        if media_type(request) != JSON:
            raise HTTPException(415, f"send {JSON}")
        return parse_json(model, await request.body())
    return read


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI `requestBody` of an endpoint that reads `model` through `json_body`."""
    return {"required": True, "content": {JSON: {"schema": model.model_json_schema()}}}


async def no_body(request: Request) -> None:
    """A dependency of every endpoint that takes no body: one sent is refused, not ignored."""
    if await request.body():
        raise HTTPException(415, "this endpoint takes no request body")
