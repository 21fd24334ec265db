"""The call-centre API: calls, voice requests and warm transfers, on top of the engine.

The CLI (through the store's inbox), the console and the HTTP intake all use this one API;
voice requests and transfers are processes of kind `voice` / `transfer`, so they queue,
retry, survive crashes and show in the dependency graph like any other work."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.engine.orchestrator import Orchestrator
from console.engine.workflow import ID_PATTERN, Workflow
from console.kinds.calls import SERVICE
from console.model import (
    TRANSFER_FINAL,
    Call,
    Conflict,
    Dependency,
    DependencyType,
    NotFound,
    Priority,
    Process,
    State,
    Transfer,
    TransferStatus,
    Turn,
    UserError,
    VoiceRequest,
)
from console.store import CallRecords, WriteBatch

if TYPE_CHECKING:
    from console.voice.gateway import GroqGateway

_ID = re.compile(ID_PATTERN)  # with fullmatch: `match` and `$` would also take a trailing newline
MAX_TEXT = 10_000
_SETTLED_VOICE = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})


def _new_id(prefix: str) -> str:
    return f"{prefix}-{os.urandom(5).hex()}"


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise UserError(f"{what} {value!r} is not a valid id (letters, digits and _.:@/- , up to 200)")
    return value


def check_voice_input(call_id: Any, text: str | None, audio_path: str | None,
                      max_audio_mb: float) -> tuple[str | None, str | None]:
    """Checks a voice request's input (before anything is written); returns (text, audio path)."""
    _check_id(call_id, "call")
    if (text is None) == (audio_path is None):
        raise UserError("give the caller's words as text or as an audio file (exactly one)")
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise UserError("the text is empty")
        text = text.strip()
        if len(text) > MAX_TEXT:
            raise UserError(f"the text is {len(text)} characters long; the limit is {MAX_TEXT}")
    if audio_path is not None:
        path = Path(audio_path).expanduser().resolve()
        if not path.is_file():
            raise UserError(f"{audio_path}: no such audio file")
        if path.stat().st_size > max_audio_mb * 1024 * 1024:
            raise UserError(f"{audio_path}: larger than voice.max_audio_mb ({max_audio_mb:g} MB)")
        audio_path = str(path)
    return text, audio_path


def check_transfer_input(call_id: Any, from_agent: Any, to_agent: Any) -> None:
    _check_id(call_id, "call")
    for name, value in (("from", from_agent), ("to", to_agent)):
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise UserError(f"the {name} agent must be a name of 1 to 200 characters")
    if from_agent.strip() == to_agent.strip():
        raise UserError("a transfer needs two different agents")


class CallCenter:
    """Installed on the engine (`install`); the voice and transfer kinds use it as their
    CallDesk (console/kinds/calls.py)."""

    def __init__(self, orchestrator: Orchestrator):
        self.engine = orchestrator
        self.records: CallRecords = orchestrator.store  # writes go through the engine's commits
        self.settings = orchestrator.settings
        # transfers not yet final, by process id: the live objects the transfer kind updates
        self.transfers: dict[str, Transfer] = {}

    def gateway(self) -> GroqGateway:
        from console.voice.gateway import GroqGateway  # first use: a shell-only runner never needs it

        return self.engine.service("groq", lambda: GroqGateway(self.settings, self._provider_changed))

    def _provider_changed(self, state: Any) -> None:
        self.engine.announce(self.engine.new_event(None, "provider", state.describe(),
                                                {"status": state.status, "until": state.until}))

    async def start(self) -> None:
        for status in (TransferStatus.INITIATED, TransferStatus.SUMMARIZING, TransferStatus.READY):
            for t in await self.records.list_transfers(status=status.value, limit=100_000):
                self.transfers[t.process_id] = t

    # -- voice requests ----------------------------------------------------------------------------

    async def create_voice_request(self, call_id: str, text: str | None = None,
                                   audio_path: str | None = None) -> VoiceRequest:
        text, audio_path = check_voice_input(call_id, text, audio_path, self.settings.voice.max_audio_mb)
        # a burst of requests (callers arriving together) is registered a few per turn of the loop
        await self.engine.take_turn()
        vr_id = _new_id("vr")
        now = time.time()
        vr = VoiceRequest(id=vr_id, call_id=call_id, process_id=vr_id, input_text=text, audio_path=audio_path,
                          created_at=now, updated_at=now)
        process = Process(id=vr_id, kind="voice", priority=Priority.HIGH, max_attempts=3,
                          spec={"voice_request": vr_id, "call_id": call_id})
        extra = WriteBatch(calls={call_id: Call(call_id, now, now)}, voice_requests={vr_id: vr})
        await self.engine.load(Workflow(source=f"voice request for call {call_id}", processes=[process]), extra,
                               admitted=True)
        return vr

    async def get_voice_request(self, request_id: str) -> VoiceRequest:
        _check_id(request_id, "voice request")
        vr = await self.records.get_voice_request(request_id)
        if vr is None:
            raise NotFound(f"no voice request {request_id!r}")
        return vr

    async def get_call(self, call_id: str, turns: int = 50) -> Call:
        _check_id(call_id, "call")
        call = await self.records.get_call(call_id, turns=turns)
        if call is None:
            raise NotFound(f"no call {call_id!r}")
        return call

    async def list_transfers(self, status: TransferStatus | None = None, limit: int = 50,
                             offset: int = 0) -> list[Transfer]:
        """Newest first."""
        return await self.records.list_transfers(status=status.value if status else None, limit=limit, offset=offset)

    def describe(self, record: VoiceRequest | Transfer) -> dict[str, Any]:
        """The record's JSON with its process's live state (see `with_process`)."""
        return with_process(record.to_json(), self.engine.processes.get(record.process_id))

    # -- transfers -----------------------------------------------------------------------------------

    async def create_transfer(self, call_id: str, from_agent: str, to_agent: str) -> Transfer:
        check_transfer_input(call_id, from_agent, to_agent)
        if await self.records.get_call(call_id, turns=0) is None:
            raise NotFound(f"no call {call_id!r}")
        tr_id = _new_id("tr")
        now = time.time()
        transfer = Transfer(id=tr_id, call_id=call_id, process_id=tr_id, from_agent=from_agent.strip(),
                            to_agent=to_agent.strip(), created_at=now, updated_at=now)
        process = Process(id=tr_id, kind="transfer", priority=Priority.HIGH, max_attempts=3,
                          spec={"transfer": tr_id, "call_id": call_id})
        # wait for what the caller said in requests still in flight, so the summary has it
        percent = self.settings.transfer.wait_for_voice_percent
        deps = []
        for vr in await self.records.voice_requests(call_id=call_id, limit=1000):
            p = self.engine.processes.get(vr.process_id)
            if p is not None and p.state not in _SETTLED_VOICE:
                deps.append(Dependency(tr_id, p.id, DependencyType.DATA, percent))
        self.transfers[tr_id] = transfer
        extra = WriteBatch(transfers={tr_id: transfer}, calls={call_id: Call(call_id, now, now)})
        try:
            await self.engine.load(Workflow(source=f"transfer of call {call_id}", processes=[process],
                                            dependencies=deps), extra)
        except BaseException:
            self.transfers.pop(tr_id, None)
            raise
        return transfer

    async def get_transfer(self, transfer_id: str) -> Transfer:
        _check_id(transfer_id, "transfer")
        live = self.transfers.get(transfer_id)  # transfer ids are their process ids
        if live is not None:
            return live
        stored = await self.records.get_transfer(transfer_id)
        if stored is None:
            raise NotFound(f"no transfer {transfer_id!r}")
        return stored

    async def complete_transfer(self, transfer_id: str) -> Transfer:
        t = await self.get_transfer(transfer_id)
        if t.status is not TransferStatus.READY:
            raise Conflict(f"transfer {t.id} is {t.status.value}; only a ready transfer can be completed")
        now = time.time()
        t.status, t.updated_at, t.completed_at = TransferStatus.COMPLETED, now, now
        self.transfers.pop(t.process_id, None)
        b = WriteBatch(transfers={t.id: t}, calls={t.call_id: Call(t.call_id, now, now)},
                       turns=[Turn(t.call_id, "system", f"call transferred from {t.from_agent} to {t.to_agent}",
                                   now, t.process_id)])
        b.events.append(self.engine.new_event(t.process_id, "transfer", f"transfer {t.id} completed",
                                           {"status": t.status.value}))
        await self.engine.commit(b)
        return t

    async def cancel_transfer(self, transfer_id: str) -> Transfer:
        t = await self.get_transfer(transfer_id)
        if t.status in TRANSFER_FINAL:
            raise Conflict(f"transfer {t.id} is already {t.status.value}")
        p = self.engine.processes.get(t.process_id)
        if p is not None and p.state not in (State.COMPLETED, State.CANCELLED, State.FAILED):
            await self.engine.cancel(p.id)  # the state hook marks the transfer cancelled
            if t.status is TransferStatus.CANCELLED:
                return t
        now = time.time()
        t.status, t.updated_at, t.reason = TransferStatus.CANCELLED, now, "cancelled by an operator"
        self.transfers.pop(t.process_id, None)
        b = WriteBatch(transfers={t.id: t})
        b.events.append(self.engine.new_event(t.process_id, "transfer", f"transfer {t.id} cancelled",
                                           {"status": t.status.value}))
        await self.engine.commit(b)
        return t

    def on_transfer_state(self, p: Process, previous: State, b: WriteBatch) -> None:
        """Keep the transfer's status in step with its process, in the same transaction."""
        t = self.transfers.get(p.id)
        if t is None:
            return
        if p.state is State.FAILED:
            t.status, t.reason = TransferStatus.FAILED, p.reason
        elif p.state is State.CANCELLED:
            t.status, t.reason = TransferStatus.CANCELLED, "cancelled by an operator"
        elif p.state in (State.BLOCKED, State.WAITING, State.INTERRUPTED):
            t.reason = p.reason or (p.interruption.message if p.interruption else None)
        elif p.state in (State.QUEUED, State.RUNNING):
            t.reason = None
        else:
            return
        t.updated_at = time.time()
        if t.status in TRANSFER_FINAL:
            self.transfers.pop(p.id, None)
        b.transfers[t.id] = t

    # -- commands from other processes (CLI) --------------------------------------------------------

    def install(self) -> None:
        self.engine.services[SERVICE] = self
        self.engine.start_hooks.append(self.start)
        self.engine.state_hooks["transfer"] = self.on_transfer_state
        commands = self.engine.commands
        commands["voice"] = self._voice_command
        commands["transfer"] = self._transfer_command
        commands["transfer.complete"] = lambda a: self._json(self.complete_transfer(a["id"]))
        commands["transfer.cancel"] = lambda a: self._json(self.cancel_transfer(a["id"]))

    async def _json(self, awaitable: Any) -> str:
        return json.dumps((await awaitable).to_json())

    async def _voice_command(self, a: dict[str, Any]) -> str:
        return await self._json(self.create_voice_request(a.get("call_id"), a.get("text"), a.get("audio_path")))

    async def _transfer_command(self, a: dict[str, Any]) -> str:
        return await self._json(self.create_transfer(a.get("call_id"), a.get("from_agent"), a.get("to_agent")))


def with_process(record: dict[str, Any], p: Process | None) -> dict[str, Any]:
    """A voice request's or transfer's JSON with its process's `state`, and why it stopped
    (`interruption`) or waits (`reason`): what the CLI prints and the intake answers."""
    record = {**record, "state": p.state.value if p else None}
    if p is not None and p.interruption and p.state is not State.COMPLETED:
        record["interruption"] = p.interruption.to_json()
    if p is not None and p.reason:
        record["reason"] = p.reason
    return record


def call_center(engine: Orchestrator) -> CallCenter:
    center = engine.services.get(SERVICE)
    if center is None:
        raise RuntimeError("the call centre is not installed on this engine")
    return center
