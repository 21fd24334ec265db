"""Request and response bodies of the intake (they make its OpenAPI schema).

Requests check shape and size; what the words mean (a valid call id, two different agents)
is checked once, by the call-centre API, whose UserError becomes a 4xx answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from console.engine.workflow import ID_PATTERN
from console.model import TransferStatus
from console.voice.center import MAX_TEXT

# every process state (console.model.State), as the answers spell them
ProcessState = Literal["pending", "queued", "waiting", "running", "completed", "failed", "interrupted",
                       "cancelled", "blocked"]


class _In(BaseModel):
    # an unknown field (say, a file path) is refused; so is a NaN or an infinity where a number goes
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# no control characters from a client: in the caller's words only line breaks and tabs, in a name none
_WORDS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
_NAME = r"^[^\x00-\x1f\x7f-\x9f]*$"


class VoiceText(_In):
    call_id: str = Field(pattern=ID_PATTERN, description="the call (conversation) id")
    text: str = Field(min_length=1, max_length=MAX_TEXT, pattern=_WORDS, description="what the caller said")


class TransferIn(_In):
    call_id: str = Field(pattern=ID_PATTERN)
    from_agent: str = Field(min_length=1, max_length=200, pattern=_NAME)
    to_agent: str = Field(min_length=1, max_length=200, pattern=_NAME)


class InterruptionOut(BaseModel):
    type: str
    message: str
    occurred_at: float
    retry_at: float | None = None


class VoiceOut(BaseModel):
    """A voice request and where its work stands. `state` is its process's state: `completed`
    with a `reply`, or what stopped it (`interruption`) or keeps it waiting (`reason`)."""

    id: str
    call_id: str
    state: ProcessState | None
    stage: str
    transcript: str | None = None
    reply: str | None = None
    interruption: InterruptionOut | None = None
    reason: str | None = None
    latency_ms: dict[str, float] = {}
    created_at: float


class TransferAccepted(BaseModel):
    id: str
    call_id: str
    status: TransferStatus


class TransferOut(BaseModel):
    id: str
    call_id: str
    from_agent: str
    to_agent: str
    status: TransferStatus
    state: ProcessState | None
    summary: dict[str, Any] | None = None
    summary_source: str | None = None
    reason: str | None = None
    interruption: InterruptionOut | None = None
    created_at: float
    updated_at: float
    completed_at: float | None = None


class TransferPage(BaseModel):
    items: list[TransferOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="the offset of the next page; null on the last one")


class TurnOut(BaseModel):
    seq: int
    role: str
    text: str
    created_at: float


class CallOut(BaseModel):
    id: str
    created_at: float
    updated_at: float
    turn_count: int
    turns: list[TurnOut]


class Health(BaseModel):
    status: Literal["ok", "stopping"]
    dispatching: bool


class Problem(BaseModel):
    detail: Any


def _fields(model: type[BaseModel], record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in model.model_fields if k in record}


def voice_out(record: dict[str, Any]) -> VoiceOut:
    return VoiceOut(**_fields(VoiceOut, record))


def transfer_out(record: dict[str, Any]) -> TransferOut:
    return TransferOut(**_fields(TransferOut, record))
