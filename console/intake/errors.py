"""The intake's error answers, in one place: every refusal is `{"detail": ...}` with a status
that says what was wrong with the request. Only a client's mistake becomes a 4xx; anything
else stays a 500 (and is logged by the server)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from console.intake.models import Problem
from console.model import Conflict, NotFound, UserError

# the documented answers, for the OpenAPI schema
CLIENT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "a mistake in the request (the detail says which)"},
    401: {"model": Problem, "description": "missing or wrong bearer token (when one is configured)"},
    413: {"model": Problem, "description": "request body too large"},
    415: {"model": Problem, "description": "a body of a type this endpoint does not take (or any body, "
                                          "where it takes none)"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no such call or transfer"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "the transfer is not in a state that allows this"}}

_ERROR_FIELDS = ("type", "loc", "msg")


async def _user_error(_request: Request, e: UserError) -> JSONResponse:
    """A mistake the call-centre API names."""
    status = 404 if isinstance(e, NotFound) else 409 if isinstance(e, Conflict) else 400
    return JSONResponse({"detail": str(e)}, status_code=status)


async def _invalid(_request: Request, e: RequestValidationError) -> JSONResponse:
    """Which field, and why; never the client's input back (it may be bytes that are not text,
    or a number JSON cannot spell, and it is the client's own)."""
    detail = [{k: error[k] for k in _ERROR_FIELDS if k in error} for error in e.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(UserError, _user_error)
    app.add_exception_handler(RequestValidationError, _invalid)
