"""The intake's endpoints. Every action goes through the call-centre API
(`console.voice.center`), the same one the CLI and the console use; nothing here writes SQL."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from console.control import settled, settling
from console.engine.orchestrator import Orchestrator
from console.intake.models import (
    CallOut,
    Health,
    Problem,
    TransferAccepted,
    TransferIn,
    TransferOut,
    TransferPage,
    VoiceOut,
    VoiceText,
    transfer_out,
    voice_out,
)
from console.model import Conflict, NotFound, TransferStatus, UserError
from console.settings import Settings
from console.voice.center import call_center

# what Groq's speech-to-text accepts; the upload keeps only this suffix of the client's name
AUDIO_SUFFIXES = frozenset({".flac", ".mp3", ".mp4", ".mpeg", ".mpga", ".m4a", ".ogg", ".opus", ".wav", ".webm"})
FORM_FIELD_LIMIT = 4096  # bytes of a non-file form field (the call id)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "a mistake in the request (the detail says which)"},
    401: {"model": Problem, "description": "missing or wrong bearer token (when one is configured)"},
    413: {"model": Problem, "description": "request body too large"},
}
_NOT_FOUND = {404: {"model": Problem, "description": "no such call or transfer"}}
_CONFLICT = {409: {"model": Problem, "description": "the transfer is not in a state that allows this"}}

_VOICE_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": VoiceText.model_json_schema()},
        "multipart/form-data": {"schema": {
            "type": "object",
            "required": ["call_id", "audio"],
            "properties": {
                "call_id": VoiceText.model_json_schema()["properties"]["call_id"],
                "audio": {"type": "string", "format": "binary",
                          "description": f"the caller's audio ({', '.join(sorted(AUDIO_SUFFIXES))})"},
            },
        }},
    },
}


def _save_upload(src: BinaryIO, folder: Path, suffix: str) -> Path:
    """Runs in a worker thread: the file goes where the server says, under a name it makes."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}{suffix}"
    with path.open("xb") as out:
        shutil.copyfileobj(src, out, 1024 * 1024)
    if path.stat().st_size == 0:
        path.unlink()
        raise UserError("the audio file is empty")
    return path


def create_app(engine: Orchestrator, settings: Settings, closing: asyncio.Event) -> FastAPI:
    center = call_center(engine)
    waits = settling(engine)
    uploads = settings.resolved_data_dir / "intake" / "audio"
    app = FastAPI(title="Switchboard intake", version="1", redoc_url=None,
                  description="Voice requests and warm transfers from the telephony front end.")

    @app.exception_handler(UserError)
    async def _user_error(_request: Request, e: UserError) -> JSONResponse:
        status = 404 if isinstance(e, NotFound) else 409 if isinstance(e, Conflict) else 400
        return JSONResponse({"detail": str(e)}, status_code=status)

    async def _voice_from_form(request: Request) -> Any:
        form = await request.form(max_files=1, max_fields=4, max_part_size=FORM_FIELD_LIMIT)
        try:
            call_id, audio = form.get("call_id"), form.get("audio")
            if not isinstance(call_id, str):
                raise UserError("the form needs a call_id field")
            if not isinstance(audio, UploadFile):
                raise UserError("the form needs an audio file field named audio")
            suffix = Path(audio.filename or "").suffix.lower()
            if suffix not in AUDIO_SUFFIXES:
                raise UserError(f"the audio file's name must end in one of {', '.join(sorted(AUDIO_SUFFIXES))}")
            path = await asyncio.to_thread(_save_upload, audio.file, uploads, suffix)
        finally:
            await form.close()
        try:
            return await center.create_voice_request(call_id, audio_path=str(path))
        except BaseException:
            await asyncio.to_thread(path.unlink, True)
            raise

    @app.post("/ai-voice", response_model=VoiceOut, openapi_extra={"requestBody": _VOICE_BODY},
              responses={202: {"model": VoiceOut, "description": "accepted; not finished yet (or `wait=false`)"},
                         **_ERRORS, 415: {"model": Problem, "description": "neither JSON nor multipart"}})
    async def ai_voice(request: Request, wait: bool = Query(
            True, description="wait for the reply (up to intake.voice_wait_timeout_s); false: answer 202 at once")
    ) -> JSONResponse:
        """A caller's utterance, as text (JSON) or audio (multipart) → transcript → AI reply.

        Waiting, it answers 200 once the work has settled (`completed`, or stopped: `failed`,
        `interrupted` — e.g. no API key), or 202 with the state so far at the time-out (e.g.
        `waiting` for a rate limit's retry time)."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == "multipart/form-data":
            vr = await _voice_from_form(request)
        elif media == "application/json":
            try:
                body = VoiceText.model_validate_json(await request.body())
            except ValidationError as e:
                # without the input: it may be bytes that are not text (and it is the client's own)
                raise RequestValidationError(e.errors(include_url=False, include_input=False)) from None
            vr = await center.create_voice_request(body.call_id, text=body.text)
        else:
            return JSONResponse({"detail": "send application/json or multipart/form-data"}, status_code=415)
        if wait:
            await waits.wait(vr.id, settings.intake.voice_wait_timeout_s, stop=closing)
            vr = await center.get_voice_request(vr.id)
        p = engine.processes.get(vr.id)
        final = wait and p is not None and settled(p.state, p.id in engine.requests)
        answer = voice_out(center.describe(vr))
        return JSONResponse(answer.model_dump(mode="json"), status_code=200 if final else 202)

    @app.get("/ai-voice/{request_id}", response_model=VoiceOut, responses={**_ERRORS, **_NOT_FOUND})
    async def voice_request(request_id: str) -> VoiceOut:
        """A voice request, as `POST /ai-voice` answers it (to follow up a 202)."""
        return voice_out(center.describe(await center.get_voice_request(request_id)))

    @app.post("/initiate-transfer", status_code=202, response_model=TransferAccepted,
              responses={**_ERRORS, **_NOT_FOUND})
    async def initiate_transfer(body: TransferIn) -> TransferAccepted:
        """A warm transfer: summarised for `to_agent`, then `ready` (follow it at /transfers/{id})."""
        t = await center.create_transfer(body.call_id, body.from_agent, body.to_agent)
        return TransferAccepted(id=t.id, call_id=t.call_id, status=t.status)

    @app.get("/transfers", response_model=TransferPage, responses=_ERRORS)
    async def transfers(status: TransferStatus | None = None,
                        limit: int = Query(50, ge=1, le=500),
                        offset: int = Query(0, ge=0, le=10_000_000)) -> TransferPage:
        """Transfers, newest first, a page at a time."""
        items = await center.list_transfers(status, limit, offset)
        return TransferPage(items=[transfer_out(center.describe(t)) for t in items], limit=limit, offset=offset,
                            next_offset=offset + len(items) if len(items) == limit else None)

    @app.get("/transfers/{transfer_id}", response_model=TransferOut, responses={**_ERRORS, **_NOT_FOUND})
    async def transfer(transfer_id: str) -> TransferOut:
        return transfer_out(center.describe(await center.get_transfer(transfer_id)))

    @app.post("/transfers/{transfer_id}/complete", response_model=TransferOut,
              responses={**_ERRORS, **_NOT_FOUND, **_CONFLICT})
    async def complete_transfer(transfer_id: str) -> TransferOut:
        """The target agent has the call: a `ready` transfer becomes `completed`."""
        return transfer_out(center.describe(await center.complete_transfer(transfer_id)))

    @app.post("/transfers/{transfer_id}/cancel", response_model=TransferOut,
              responses={**_ERRORS, **_NOT_FOUND, **_CONFLICT})
    async def cancel_transfer(transfer_id: str) -> TransferOut:
        return transfer_out(center.describe(await center.cancel_transfer(transfer_id)))

    @app.get("/calls/{call_id:path}", response_model=CallOut, responses={**_ERRORS, **_NOT_FOUND})
    async def call(call_id: str = PathParam(description="the call id"),
                   turns: int = Query(50, ge=1, le=1000, description="the latest turns to include")) -> CallOut:
        """A call with its latest turns, oldest first."""
        c = await center.get_call(call_id, turns=turns)
        return CallOut(id=c.id, created_at=c.created_at, updated_at=c.updated_at, turn_count=c.turn_count,
                       turns=[t.to_json() for t in c.turns])

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    async def healthz() -> JSONResponse:
        """Open without a token. 503 while stopping or when this engine no longer dispatches."""
        ok = engine.dispatching and not closing.is_set()
        body = Health(status="ok" if ok else "stopping", dispatching=engine.dispatching)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    return app
