"""POST /ai-voice and GET /ai-voice/{id}: a caller's utterance, as text or audio, to an AI reply."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from console.control import Settling
from console.intake.bodies import JSON, media_type, no_body, parse_json
from console.intake.errors import CLIENT_ERRORS, NOT_FOUND
from console.intake.models import VoiceOut, VoiceText, voice_out
from console.model import UserError
from console.voice.center import CallCenter
from console.private_files import open_private, private_folder

# what Groq's speech-to-text accepts; the upload keeps only this suffix of the client's name
AUDIO_SUFFIXES = frozenset({".flac", ".mp3", ".mp4", ".mpeg", ".mpga", ".m4a", ".ogg", ".opus", ".wav", ".webm"})
FORM_FIELD_LIMIT = 4096  # bytes of a non-file form field (the call id)
FORM = "multipart/form-data"

_VOICE_BODY = {
    "required": True,
    "content": {
        JSON: {"schema": VoiceText.model_json_schema()},
        FORM: {"schema": {
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
    path = private_folder(folder) / f"{uuid.uuid4().hex}{suffix}"
    with open_private(path) as out:
        shutil.copyfileobj(src, out, 1024 * 1024)
    if path.stat().st_size == 0:
        path.unlink()
        raise UserError("the audio file is empty")
    return path


def voice_router(center: CallCenter, waits: Settling, uploads: Path, wait_timeout_s: float,
                 closing: asyncio.Event) -> APIRouter:
    """`uploads`: the folder audio files are saved in; `closing`: set when the intake stops (a
    request waiting for its reply answers at once)."""
    router = APIRouter(tags=["voice requests"])

    async def from_form(request: Request) -> Any:
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

    @router.post("/ai-voice", response_model=VoiceOut, openapi_extra={"requestBody": _VOICE_BODY},
                 responses={202: {"model": VoiceOut, "description": "accepted; not finished yet (or `wait=false`)"},
                            **CLIENT_ERRORS})
    async def ai_voice(request: Request, wait: bool = Query(
            True, description="wait for the reply (up to intake.voice_wait_timeout_s); false: answer 202 at once")
    ) -> JSONResponse:
        """A caller's utterance, as text (JSON) or audio (multipart) → transcript → AI reply.

        Waiting, it answers 200 once the work has settled (`completed`, or stopped: `failed`,
        `interrupted` — e.g. no API key), or 202 with the state so far at the time-out (e.g.
        `waiting` for a rate limit's retry time)."""
        media = media_type(request)
        if media == FORM:
            vr = await from_form(request)
        elif media == JSON:
            body = parse_json(VoiceText, await request.body())
            vr = await center.create_voice_request(body.call_id, text=body.text)
        else:
            raise HTTPException(415, f"send {JSON} or {FORM}")
        if wait:
            await waits.wait(vr.id, wait_timeout_s, stop=closing)
            vr = await center.get_voice_request(vr.id)
        final = wait and waits.has_settled(vr.id)
        answer = voice_out(center.describe(vr))
        return JSONResponse(answer.model_dump(mode="json"), status_code=200 if final else 202)

    @router.get("/ai-voice/{request_id}", response_model=VoiceOut, dependencies=[Depends(no_body)],
                responses={**CLIENT_ERRORS, **NOT_FOUND})
    async def voice_request(request_id: str) -> VoiceOut:
        """A voice request, as `POST /ai-voice` answers it (to follow up a 202)."""
        return voice_out(center.describe(await center.get_voice_request(request_id)))

    return router
