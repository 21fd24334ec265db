"""Domain types shared by the store, the engine, the kinds and the front ends. No I/O here."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from console.errors import Conflict, NotFound, UserError  # noqa: F401 - defined there, imported from here too
from console.limits import TEXT_MAX, capped

# JSON as the store and `switchboard run` write it: compact, anything JSON has no type for as
# its str(). Built once: json.dumps with options builds a new encoder on every call.
json_text = json.JSONEncoder(separators=(",", ":"), default=str).encode
_json_str = json_text  # a str alone: its JSON string literal

# An event's data is the engine's own small dict of plain values: no cycle-check needed (a
# cycle would raise RecursionError instead of ValueError).
data_text = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode


# Upper bounds of the numbers a workflow or a settings file gives: far above any real use, and
# far below what a database's integer column holds (a pool of 2**63 crashed the write).
POOL_SIZE_MAX = 1_000_000  # a resource pool's size, and what one process takes of it
TIMEOUT_MINUTES_MAX = 10 * 365 * 24 * 60  # ten years


class State(str, Enum):
    PENDING = "pending"  # registered, never queued (e.g. `hold = true`)
    QUEUED = "queued"  # a resume request is waiting for a slot
    WAITING = "waiting"  # queued, but dependencies, resources or a retry time are not met
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"  # non-retryable, or attempts used up
    INTERRUPTED = "interrupted"  # stopped mid-way; resumable from its checkpoint
    CANCELLED = "cancelled"  # by an operator; resumable on request
    BLOCKED = "blocked"  # a dependency failed, was cancelled or timed out

    def __str__(self) -> str:
        return self.value


# States in which a process holds a resume request (it is "in the queue").
IN_QUEUE = frozenset({State.QUEUED, State.WAITING})
# States from which an operator's resume starts the process again.
RESUMABLE = frozenset(
    {State.PENDING, State.INTERRUPTED, State.CANCELLED, State.FAILED, State.BLOCKED}
)
# States a dependent treats as "this dependency will never get there on its own".
DEAD_ENDS = frozenset({State.FAILED, State.CANCELLED, State.BLOCKED})


class Priority(str, Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Lower dispatches first."""
        return _PRIORITY_RANK[self]

    def __str__(self) -> str:
        return self.value


_PRIORITY_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}


class DependencyType(str, Enum):
    SEQUENTIAL = "sequential"  # start once the dependency reached the required percent
    DATA = "data"  # same rule; says the dependent consumes the dependency's output
    PARALLEL = "parallel"  # no ordering; shown in the graph
    RESOURCE = "resource"  # the two never run at the same time

    @property
    def orders(self) -> bool:
        # identity, not `in (...)`: that compares as strings (asked for every edge at every placement)
        return self is DependencyType.SEQUENTIAL or self is DependencyType.DATA

    def __str__(self) -> str:
        return self.value


class InterruptionType(str, Enum):
    CRASH = "crash"
    SHUTDOWN = "shutdown"
    ERROR = "error"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    NO_PROVIDER = "no_provider"
    OPERATOR = "operator"
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value


class RequestSource(str, Enum):
    OPERATOR = "operator"
    DEPENDENCY = "dependency"
    RETRY = "retry"
    RECOVERY = "recovery"
    SHUTDOWN = "shutdown"
    WORKFLOW = "workflow"

    def __str__(self) -> str:
        return self.value


@dataclass
class Interruption:
    """Why a run stopped before completing, and when it may retry."""

    type: InterruptionType
    message: str = ""
    occurred_at: float = field(default_factory=time.time)
    retry_at: float | None = None

    def __post_init__(self) -> None:
        self.message = capped(self.message)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type.value,
            "message": self.message,
            "occurred_at": self.occurred_at,
            "retry_at": self.retry_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Interruption | None:
        if not data:
            return None
        return cls(
            type=InterruptionType(data["type"]),
            message=data.get("message", ""),
            occurred_at=data.get("occurred_at") or 0.0,
            retry_at=data.get("retry_at"),
        )


@dataclass
class ResumeRequest:
    """The queue entry. A process has at most one."""

    process_id: str
    priority: Priority
    requested_at: float
    seq: int  # FIFO tie-break within a priority
    source: RequestSource
    not_before: float | None = None
    force_immediate: bool = False

    def sort_key(self) -> tuple[int, int, int]:
        return (0 if self.force_immediate else 1, self.priority.rank, self.seq)


@dataclass
class Dependency:
    """An edge: `dependent` waits for (or never runs beside) `dependency`."""

    dependent: str
    dependency: str
    type: DependencyType = DependencyType.SEQUENTIAL
    required_completion_percent: float = 100.0
    timeout_minutes: float | None = None


@dataclass
class Metrics:
    """A process's counters over all its runs."""

    resumes_total: int = 0
    resumes_succeeded: int = 0
    resumes_failed: int = 0
    resume_seconds_total: float = 0.0
    interruptions: int = 0

    @property
    def average_resume_s(self) -> float | None:
        done = self.resumes_succeeded + self.resumes_failed
        return self.resume_seconds_total / done if done else None

    @property
    def reliability(self) -> float | None:
        """Share of finished runs that succeeded (1.0 = always)."""
        done = self.resumes_succeeded + self.resumes_failed
        return self.resumes_succeeded / done if done else None

    @property
    def interruption_rate(self) -> float | None:
        """Interruptions per started run."""
        return self.interruptions / self.resumes_total if self.resumes_total else None

    def to_json(self) -> dict[str, Any]:
        return {
            "resumes_total": self.resumes_total,
            "resumes_succeeded": self.resumes_succeeded,
            "resumes_failed": self.resumes_failed,
            "average_resume_s": self.average_resume_s,
            "reliability": self.reliability,
            "interruption_rate": self.interruption_rate,
        }


@dataclass
class Process:
    """An interrupted, checkpointed process the engine resumes: its spec, state and progress."""

    id: str
    kind: str
    spec: dict[str, Any] = field(default_factory=dict)
    priority: Priority = Priority.MEDIUM
    resources: dict[str, int] = field(default_factory=dict)
    max_attempts: int = 3
    state: State = State.PENDING
    reason: str | None = None  # why it waits or is blocked, in words
    progress: float = 0.0
    attempt: int = 0  # runs started so far, whatever ended them (SWITCHBOARD_ATTEMPT)
    failures: int = 0  # runs that ended in an error or a failure; failed once errors reach max_attempts
    interruption: Interruption | None = None
    checkpoint: Any = None  # latest checkpoint data (JSON value)
    checkpoint_seq: int = 0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def tries(self) -> str:
        """The TRY the console and `status` show: failed attempts against max_attempts, never
        above it. A run that a shutdown, a crash, an operator or a wait for an operator (no
        provider) ended is not a failed attempt; `attempt` counts every run."""
        return f"{min(self.failures, self.max_attempts)}/{self.max_attempts}"

    def summary(self) -> dict[str, Any]:
        """The JSON shape the CLI prints (`status --json`)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state.value,
            "progress": round(self.progress, 1),
            "attempt": self.attempt,
            "failures": self.failures,
            "max_attempts": self.max_attempts,
            "priority": self.priority.value,
            "resources": self.resources,
            "reason": self.reason,
            "interruption": self.interruption.to_json() if self.interruption else None,
            "updated_at": self.updated_at,
            "metrics": self.metrics.to_json(),
        }


@dataclass
class Checkpoint:
    """One saved checkpoint of a process (the latest few are kept)."""

    process_id: str
    seq: int
    progress: float
    data: Any
    created_at: float


@dataclass
class Event:
    """A state change (persisted in the history) or a progress/log notice (memory only)."""

    seq: int
    ts: float
    process_id: str | None
    type: str  # a State value, or "progress", "log", "registered", "pool", "command"
    message: str = ""
    data: dict[str, Any] | None = None
    _data_json: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.message) > TEXT_MAX:  # e.g. an error quoting a command line of megabytes
            self.message = capped(self.message)

    @property
    def persisted(self) -> bool:
        return self.type not in ("progress", "log")

    def data_json(self) -> str | None:
        """`data` as JSON, encoded once: its history row and its JSON line both carry it."""
        if self._data_json is None and self.data:
            self._data_json = data_text(self.data)
        return self._data_json

    def json_line(self) -> str:
        """`json_text(self.to_json())`, without building the dict or encoding `data` again
        (one line per event: a tenth of the runner's loop time went to encoding them)."""
        pid = "null" if self.process_id is None else _json_str(self.process_id)
        line = f'{{"seq":{self.seq},"ts":{self.ts!r},"process":{pid},"type":{_json_str(self.type)}'
        if self.message:
            line += ',"message":' + _json_str(self.message)
        if self.data:
            line += ',"data":' + self.data_json()  # type: ignore[operator]
        return line + "}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "ts": self.ts,
            "process": self.process_id,
            "type": self.type,
        }
        if self.message:
            out["message"] = self.message
        if self.data:
            out["data"] = self.data
        return out


class Interrupted(Exception):
    """Raised by a handler (or a python-kind entry point) to stop mid-way, resumably.

    `transient`, `rate_limited` and `error` are retried automatically with backoff
    (at `retry_at` when given); the other types wait for an operator's resume."""

    def __init__(
        self,
        message: str = "",
        type: InterruptionType | str = InterruptionType.TRANSIENT,
        retry_at: float | None = None,
    ):
        message = capped(message)
        super().__init__(message)
        self.type = InterruptionType(type)
        self.message = message
        self.retry_at = retry_at


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help (e.g. a rejected API key)."""


# Interruption types the engine retries by itself; the others wait for an operator.
AUTO_RETRY = frozenset({InterruptionType.TRANSIENT, InterruptionType.RATE_LIMITED, InterruptionType.ERROR})


# -- calls, voice requests, transfers ---------------------------------------------------------------

class TransferStatus(str, Enum):
    INITIATED = "initiated"
    SUMMARIZING = "summarizing"
    READY = "ready"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


TRANSFER_FINAL = frozenset({TransferStatus.COMPLETED, TransferStatus.CANCELLED, TransferStatus.FAILED})


@dataclass
class Turn:
    """One utterance in a call's conversation."""

    call_id: str
    role: str  # caller | agent | assistant | system
    text: str
    created_at: float = field(default_factory=time.time)
    source: str | None = None  # the process that added it
    seq: int = 0  # position in the call, given by the store

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "role": self.role, "text": self.text, "created_at": self.created_at,
                "source": self.source}


@dataclass
class Call:
    """A caller's call: what its voice requests and transfers belong to."""

    id: str
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    turns: list[Turn] = field(default_factory=list)  # filled by readers that ask for them
    turn_count: int = 0
    last_turn: Turn | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "created_at": self.created_at, "updated_at": self.updated_at,
                "turn_count": self.turn_count,
                "last_turn": self.last_turn.to_json() if self.last_turn else None,
                "turns": [t.to_json() for t in self.turns]}


@dataclass
class VoiceRequest:
    """A caller's utterance on its way to an AI reply: transcript, reply, stage, timings."""

    id: str
    call_id: str
    process_id: str
    input_text: str | None = None
    audio_path: str | None = None
    transcript: str | None = None
    reply: str | None = None
    speech_path: str | None = None
    stage: str = "queued"  # queued | transcribing | replying | speaking | done
    latency_ms: dict[str, float] = field(default_factory=dict)  # stt, chat, tts, total
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens, completion_tokens
    model: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "call_id": self.call_id, "process_id": self.process_id,
                "input_text": self.input_text, "audio_path": self.audio_path,
                "transcript": self.transcript, "reply": self.reply, "speech_path": self.speech_path,
                "stage": self.stage, "latency_ms": self.latency_ms, "usage": self.usage,
                "model": self.model, "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass
class Transfer:
    """A warm transfer of a call from one agent to another, with its AI summary."""

    id: str
    call_id: str
    process_id: str
    from_agent: str
    to_agent: str
    status: TransferStatus = TransferStatus.INITIATED
    summary: dict[str, Any] | None = None
    summary_source: str | None = None  # "llm" | "llm-unstructured" | "extractive"
    reason: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    completed_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "call_id": self.call_id, "process_id": self.process_id,
                "from_agent": self.from_agent, "to_agent": self.to_agent, "status": self.status.value,
                "summary": self.summary, "summary_source": self.summary_source, "reason": self.reason,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "completed_at": self.completed_at}
