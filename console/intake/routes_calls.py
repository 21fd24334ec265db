"""GET /calls/{id}: a call (conversation) with its latest turns."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query
from starlette.convertors import Convertor, register_url_convertor

from console.intake.bodies import no_body
from console.intake.errors import CLIENT_ERRORS, NOT_FOUND
from console.intake.models import CallOut
from console.voice.center import CallCenter


class WholeRest(Convertor[str]):
    """The rest of the path, slashes and line breaks included. Starlette's `path` (`.*`, with the
    route's `$`) leaves a trailing newline out: `/calls/abc%0A` would be the call `abc`."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("whole_rest", WholeRest())


def calls_router(center: CallCenter) -> APIRouter:
    router = APIRouter(tags=["calls"])

    @router.get("/calls/{call_id:whole_rest}", response_model=CallOut, dependencies=[Depends(no_body)],
                responses={**CLIENT_ERRORS, **NOT_FOUND})
    async def call(call_id: str = Path(description="the call id"),
                   turns: int = Query(50, ge=1, le=1000, description="the latest turns to include")) -> CallOut:
        """A call with its latest turns, oldest first."""
        c = await center.get_call(call_id, turns=turns)
        return CallOut(id=c.id, created_at=c.created_at, updated_at=c.updated_at, turn_count=c.turn_count,
                       turns=[t.to_json() for t in c.turns])

    return router
