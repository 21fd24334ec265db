"""Warm transfers: POST /initiate-transfer, then /transfers/{id} to follow, complete or cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from console.intake.bodies import json_body, json_request_body, no_body
from console.intake.errors import CLIENT_ERRORS, CONFLICT, NOT_FOUND
from console.intake.models import TransferAccepted, TransferIn, TransferOut, TransferPage, transfer_out
from console.model import TransferStatus
from console.voice.center import CallCenter


def transfers_router(center: CallCenter) -> APIRouter:
    router = APIRouter(tags=["transfers"])
    bodiless = [Depends(no_body)]

    @router.post("/initiate-transfer", status_code=202, response_model=TransferAccepted,
                 openapi_extra={"requestBody": json_request_body(TransferIn)},
                 responses={**CLIENT_ERRORS, **NOT_FOUND})
    async def initiate_transfer(body: Annotated[TransferIn, Depends(json_body(TransferIn))]) -> TransferAccepted:
        """A warm transfer: summarised for `to_agent`, then `ready` (follow it at /transfers/{id})."""
        t = await center.create_transfer(body.call_id, body.from_agent, body.to_agent)
        return TransferAccepted(id=t.id, call_id=t.call_id, status=t.status)

    @router.get("/transfers", response_model=TransferPage, dependencies=bodiless, responses=CLIENT_ERRORS)
    async def transfers(status: TransferStatus | None = None,
                        limit: int = Query(50, ge=1, le=500),
                        offset: int = Query(0, ge=0, le=10_000_000)) -> TransferPage:
        """Transfers, newest first, a page at a time."""
        items = await center.list_transfers(status, limit, offset)
        return TransferPage(items=[transfer_out(center.describe(t)) for t in items], limit=limit, offset=offset,
                            next_offset=offset + len(items) if len(items) == limit else None)

    @router.get("/transfers/{transfer_id}", response_model=TransferOut, dependencies=bodiless,
                responses={**CLIENT_ERRORS, **NOT_FOUND})
    async def transfer(transfer_id: str) -> TransferOut:
        return transfer_out(center.describe(await center.get_transfer(transfer_id)))

    @router.post("/transfers/{transfer_id}/complete", response_model=TransferOut, dependencies=bodiless,
                 responses={**CLIENT_ERRORS, **NOT_FOUND, **CONFLICT})
    async def complete_transfer(transfer_id: str) -> TransferOut:
        """The target agent has the call: a `ready` transfer becomes `completed`."""
        return transfer_out(center.describe(await center.complete_transfer(transfer_id)))

    @router.post("/transfers/{transfer_id}/cancel", response_model=TransferOut, dependencies=bodiless,
                 responses={**CLIENT_ERRORS, **NOT_FOUND, **CONFLICT})
    async def cancel_transfer(transfer_id: str) -> TransferOut:
        return transfer_out(center.describe(await center.cancel_transfer(transfer_id)))

    return router
