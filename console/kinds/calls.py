"""What the voice and transfer kinds use of the call centre, as ports: the call centre
(console.voice) provides them and installs itself on the engine, where a kind's RunContext
finds it (`ctx.calls`). The kinds import neither the call centre nor the engine."""

from __future__ import annotations

from typing import Protocol

from console.model import Transfer
from console.store import CallRecords

SERVICE = "calls"  # the engine service the call centre is installed as


class Reply(Protocol):
    """A chat completion."""

    content: str
    usage: dict[str, int]
    ms: float  # how long it took
    model: str


class Gateway(Protocol):
    """Groq's speech-to-text, chat and text-to-speech; failures raise the engine's outcomes
    (Interrupted, PermanentFailure)."""

    async def transcribe(self, audio: bytes, filename: str, model: str) -> tuple[str, float]:
        """The transcript and the milliseconds it took."""

    async def chat(self, messages: list[dict[str, str]], model: str, json_mode: bool = False) -> Reply: ...

    async def speak(self, text: str, model: str, voice: str) -> tuple[bytes, float]:
        """The audio (WAV) and the milliseconds it took."""


class CallDesk(Protocol):
    records: CallRecords
    """Calls, voice requests and transfers, for reading (writes go with the kind's report)."""

    transfers: dict[str, Transfer]
    """The transfers not yet final, by process id: the live objects a transfer kind updates."""

    def gateway(self) -> Gateway: ...
