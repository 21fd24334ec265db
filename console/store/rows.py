"""Rows of the SQL adapters, both ways: a WriteBatch as the rows of its statements, and a row
read back as the model's object. The tables are alike in every SQL adapter; each adapter has
the statements themselves (names in `WRITES`, in the order a batch applies them).

A row read is anything indexed by column name (sqlite3.Row, a psycopg dict row). JSON fields
are stored as text (model.json_text) and decoded here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any

from console.model import (
    Checkpoint,
    Dependency,
    DependencyType,
    Event,
    Interruption,
    Metrics,
    Priority,
    Process,
    RequestSource,
    ResumeRequest,
    State,
    Transfer,
    TransferStatus,
    Turn,
    VoiceRequest,
    json_text,
)
from console.store.ports import CHECKPOINTS_KEPT, Command, LeaseHolder, WriteBatch

Row = Mapping[str, Any]

# The statements a batch is written with, in the order that respects the foreign keys. Each
# adapter maps every name to its SQL, taking the rows `write_steps` gives it, column for column.
WRITES = (
    "upsert_process", "add_dependency", "delete_request", "upsert_request", "upsert_checkpoint",
    "prune_checkpoints", "add_event", "add_log", "upsert_pool", "upsert_call", "add_turn",
    "upsert_voice_request", "upsert_transfer", "answer_command",
)

PROCESS_COLUMNS = (
    "id", "kind", "priority", "spec", "resources", "max_attempts", "state", "reason",
    "progress", "attempt", "failures", "interruption", "checkpoint", "checkpoint_seq",
    "created_at", "updated_at", "started_at", "finished_at", "resumes_total",
    "resumes_succeeded", "resumes_failed", "resume_seconds", "interruptions",
)
REQUEST_COLUMNS = ("process_id", "priority", "requested_at", "seq", "source", "not_before", "force_immediate")
VOICE_COLUMNS = ("id", "call_id", "process_id", "input_text", "audio_path", "transcript", "reply",
                 "speech_path", "stage", "latency_ms", "usage", "model", "created_at", "updated_at")
TRANSFER_COLUMNS = ("id", "call_id", "process_id", "from_agent", "to_agent", "status", "summary",
                    "summary_source", "reason", "created_at", "updated_at", "completed_at")

# Built once (model.json_text): json.dumps with options builds a new encoder on every call
# (encoding rows is a large share of the engine's time with many processes).
_dumps = json_text


# -- model -> row ------------------------------------------------------------------------------------


class SpecJson:
    """A process's spec and resources as JSON, encoded once: they never change after
    registration, yet the row is written at every transition. Checked by identity, so a
    replaced spec is encoded again."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Any, Any, str, str]] = {}

    def __len__(self) -> int:
        """How many processes' JSON it holds."""
        return len(self._cache)

    def __call__(self, p: Process) -> tuple[str, str]:
        if p.state is State.COMPLETED:
            # written once more at most: holding its JSON would cost memory for every
            # process a long run has finished
            hit = self._cache.pop(p.id, None)
            if hit is not None and hit[0] is p.spec and hit[1] is p.resources:
                return hit[2], hit[3]
            return _dumps(p.spec), _dumps(p.resources) if p.resources else "{}"
        hit = self._cache.get(p.id)
        if hit is None or hit[0] is not p.spec or hit[1] is not p.resources:
            resources = _dumps(p.resources) if p.resources else "{}"  # most have none
            hit = self._cache[p.id] = (p.spec, p.resources, _dumps(p.spec), resources)
        return hit[2], hit[3]


def process_row(p: Process, spec_json: Callable[[Process], tuple[str, str]] | None = None) -> tuple:
    m = p.metrics
    spec, resources = spec_json(p) if spec_json is not None else (_dumps(p.spec), _dumps(p.resources))
    return (
        p.id, p.kind, p.priority.value, spec, resources, p.max_attempts,
        p.state.value, p.reason, p.progress, p.attempt, p.failures,
        _dumps(p.interruption.to_json()) if p.interruption else None,
        _dumps(p.checkpoint) if p.checkpoint is not None else None, p.checkpoint_seq,
        p.created_at, p.updated_at, p.started_at, p.finished_at, m.resumes_total,
        m.resumes_succeeded, m.resumes_failed, m.resume_seconds_total, m.interruptions,
    )


def request_row(r: ResumeRequest) -> tuple:
    return (r.process_id, r.priority.value, r.requested_at, r.seq, r.source.value, r.not_before,
            bool(r.force_immediate))


def voice_row(v: VoiceRequest) -> tuple:
    return (v.id, v.call_id, v.process_id, v.input_text, v.audio_path, v.transcript, v.reply, v.speech_path,
            v.stage, _dumps(v.latency_ms), _dumps(v.usage), v.model, v.created_at, v.updated_at)


def transfer_row(t: Transfer) -> tuple:
    return (t.id, t.call_id, t.process_id, t.from_agent, t.to_agent, t.status.value,
            _dumps(t.summary) if t.summary is not None else None, t.summary_source, t.reason,
            t.created_at, t.updated_at, t.completed_at)


class Budget:
    """How long a slice of row building may take before the loop gets a turn."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.perf_counter() + seconds

    def spent(self) -> bool:
        return time.perf_counter() > self.deadline

    def renew(self) -> None:
        self.deadline = time.perf_counter() + self.seconds


def _build(make: Callable[[Any], tuple], items: Iterable[Any], budget: Budget | None
           ) -> Generator[None, None, list[tuple]]:
    rows = []
    for i, item in enumerate(items):
        rows.append(make(item))
        if budget is not None and i & 63 == 63 and budget.spent():
            yield
            budget.renew()
    return rows


def write_steps(b: WriteBatch, out: list[tuple[str, list[tuple]]],
                spec_json: Callable[[Process], tuple[str, str]] | None = None,
                budget: Budget | None = None) -> Iterator[None]:
    """Fills `out` with the batch as (statement name, rows) pairs, in the order of `WRITES`
    (a statement with no rows left out); with a `budget`, yields each time building has used it
    up (the caller lets the loop run, then goes on). Without one it never yields."""
    if b.processes:
        out.append(("upsert_process", (yield from _build(lambda p: process_row(p, spec_json),
                                                          list(b.processes.values()), budget))))
    if b.dependencies:
        out.append(("add_dependency", (yield from _build(
            lambda d: (d.dependent, d.dependency, d.type.value, d.required_completion_percent, d.timeout_minutes),
            b.dependencies, budget))))
    gone = [(pid,) for pid, r in b.requests.items() if r is None]
    if gone:
        out.append(("delete_request", gone))
    queued = yield from _build(request_row, [r for r in b.requests.values() if r is not None], budget)
    if queued:
        out.append(("upsert_request", queued))
    if b.checkpoints:
        # one row per (process, seq): a later checkpoint of the same number replaces an earlier one
        latest = {(c.process_id, c.seq): c for c in b.checkpoints}
        out.append(("upsert_checkpoint", (yield from _build(
            lambda c: (c.process_id, c.seq, c.progress, _dumps(c.data), c.created_at), list(latest.values()),
            budget))))
        newest: dict[str, int] = {}
        for c in b.checkpoints:
            newest[c.process_id] = max(newest.get(c.process_id, 0), c.seq)
        old = [(pid, seq - CHECKPOINTS_KEPT) for pid, seq in newest.items() if seq > CHECKPOINTS_KEPT]
        if old:
            out.append(("prune_checkpoints", old))
    if b.events:
        out.append(("add_event", (yield from _build(
            lambda e: (e.seq, e.ts, e.process_id, e.type, e.message, e.data_json()), b.events, budget))))
    if b.logs:
        out.append(("add_log", list(b.logs)))
    if b.pools:
        out.append(("upsert_pool", list(b.pools.items())))
    if b.calls:
        out.append(("upsert_call", [(c.id, c.created_at, c.updated_at) for c in b.calls.values()]))
    if b.turns:
        # the call twice: the statement numbers the turn from the call's turns in the transaction
        out.append(("add_turn", [(t.call_id, t.call_id, t.role, t.text, t.created_at, t.source) for t in b.turns]))
    if b.voice_requests:
        out.append(("upsert_voice_request", (yield from _build(voice_row, list(b.voice_requests.values()), budget))))
    if b.transfers:
        out.append(("upsert_transfer", [transfer_row(t) for t in b.transfers.values()]))
    if b.commands_done:
        now = time.time()
        out.append(("answer_command", [(status, result, now, cid)
                                       for cid, (status, result) in b.commands_done.items()]))


def write_rows(b: WriteBatch, spec_json: Callable[[Process], tuple[str, str]] | None = None
               ) -> list[tuple[str, list[tuple]]]:
    """The batch as (statement name, rows) pairs, built in one go."""
    out: list[tuple[str, list[tuple]]] = []
    for _ in write_steps(b, out, spec_json):
        pass
    return out


# -- row -> model ------------------------------------------------------------------------------------


def process_from(r: Row) -> Process:
    return Process(
        id=r["id"],
        kind=r["kind"],
        priority=Priority(r["priority"]),
        spec=json.loads(r["spec"]),
        resources=json.loads(r["resources"]),
        max_attempts=r["max_attempts"],
        state=State(r["state"]),
        reason=r["reason"],
        progress=r["progress"],
        attempt=r["attempt"],
        failures=r["failures"],
        interruption=Interruption.from_json(json.loads(r["interruption"]) if r["interruption"] else None),
        checkpoint=json.loads(r["checkpoint"]) if r["checkpoint"] is not None else None,
        checkpoint_seq=r["checkpoint_seq"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        metrics=Metrics(
            resumes_total=r["resumes_total"],
            resumes_succeeded=r["resumes_succeeded"],
            resumes_failed=r["resumes_failed"],
            resume_seconds_total=r["resume_seconds"],
            interruptions=r["interruptions"],
        ),
    )


def request_from(r: Row) -> ResumeRequest:
    return ResumeRequest(
        process_id=r["process_id"],
        priority=Priority(r["priority"]),
        requested_at=r["requested_at"],
        seq=r["seq"],
        source=RequestSource(r["source"]),
        not_before=r["not_before"],
        force_immediate=bool(r["force_immediate"]),
    )


def dependency_from(r: Row) -> Dependency:
    return Dependency(
        dependent=r["dependent"],
        dependency=r["dependency"],
        type=DependencyType(r["type"]),
        required_completion_percent=r["required_completion_percent"],
        timeout_minutes=r["timeout_minutes"],
    )


def event_from(r: Row) -> Event:
    return Event(
        seq=r["seq"], ts=r["ts"], process_id=r["process_id"], type=r["type"],
        message=r["message"], data=json.loads(r["data"]) if r["data"] else None,
    )


def checkpoint_from(r: Row) -> Checkpoint:
    return Checkpoint(r["process_id"], r["seq"], r["progress"], json.loads(r["data"]), r["created_at"])


def new_command_from(r: Row) -> Command:
    """A command not yet answered (its status and result are not read)."""
    return Command(r["id"], r["kind"], json.loads(r["payload"]), r["created_at"])


def command_from(r: Row) -> Command:
    return Command(r["id"], r["kind"], json.loads(r["payload"]), r["created_at"], r["status"], r["result"])


def holder_from(r: Row | None) -> LeaseHolder | None:
    """The lease's holder; None for no row or a row with no holder."""
    if r is None or r["token"] is None:
        return None
    return LeaseHolder(r["token"], r["pid"], r["host"], r["role"], r["acquired_at"], r["heartbeat_at"])


def turn_from(r: Row) -> Turn:
    return Turn(call_id=r["call_id"], role=r["role"], text=r["text"], created_at=r["created_at"],
                source=r["source"], seq=r["seq"])


def voice_from(r: Row) -> VoiceRequest:
    return VoiceRequest(
        id=r["id"], call_id=r["call_id"], process_id=r["process_id"], input_text=r["input_text"],
        audio_path=r["audio_path"], transcript=r["transcript"], reply=r["reply"], speech_path=r["speech_path"],
        stage=r["stage"], latency_ms=json.loads(r["latency_ms"]), usage=json.loads(r["usage"]), model=r["model"],
        created_at=r["created_at"], updated_at=r["updated_at"],
    )


def transfer_from(r: Row) -> Transfer:
    return Transfer(
        id=r["id"], call_id=r["call_id"], process_id=r["process_id"], from_agent=r["from_agent"],
        to_agent=r["to_agent"], status=TransferStatus(r["status"]),
        summary=json.loads(r["summary"]) if r["summary"] else None, summary_source=r["summary_source"],
        reason=r["reason"], created_at=r["created_at"], updated_at=r["updated_at"], completed_at=r["completed_at"],
    )
