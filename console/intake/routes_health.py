"""GET /healthz: the load balancer's probe (open without a token, see guard.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from console.intake.bodies import no_body
from console.intake.errors import CLIENT_ERRORS
from console.intake.models import Health


def health_router(dispatching: Callable[[], bool], closing: asyncio.Event) -> APIRouter:
    """`dispatching`: whether this engine still runs work; `closing`: set when the intake stops."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Health, dependencies=[Depends(no_body)],
                responses={503: {"model": Health}, 415: CLIENT_ERRORS[415]})
    async def healthz() -> JSONResponse:
        """503 while stopping or when this engine no longer dispatches."""
        now_dispatching = dispatching()
        ok = now_dispatching and not closing.is_set()
        body = Health(status="ok" if ok else "stopping", dispatching=now_dispatching)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    return router
