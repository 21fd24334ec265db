"""Workflow files (TOML): parsed and validated completely before anything is written.

Every error names the file, the process (or dependency) and the field.

The TOML is read by `tomllib` (through console.limits, which bounds its nesting). Parsing is on
the path of `switchboard run --workflow F` (a cold start), so entries whose every field is
already of its type and valid are taken as they are (`console.compat.plain_process_entry`,
`plain_dependency_entry`: pydantic is then not imported);
any other goes through the pydantic models, which convert it or word the error."""

from __future__ import annotations

import marshal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from console import compat, kinds
from console.engine.graph import DependencyGraph
from console.limits import loads_toml
from console.model import (
    POOL_SIZE_MAX,
    TIMEOUT_MINUTES_MAX,
    Dependency,
    DependencyType,
    Priority,
    Process,
    UserError,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$"


_models: tuple[Any, Any] | None = None


def _entry_models() -> tuple[Any, Any]:
    """The pydantic models of a process and a dependency entry, made on first use."""
    global _models
    if _models is None:
        from pydantic import BaseModel, ConfigDict, Field

        class _ProcessEntry(BaseModel):
            model_config = ConfigDict(extra="allow")  # the rest is the kind's spec, checked by the kind

            id: str = Field(pattern=ID_PATTERN)
            kind: str
            priority: Priority = Priority.MEDIUM
            resources: dict[str, int] = Field(default_factory=dict)
            max_attempts: int = Field(3, ge=1, le=1000)
            hold: bool = False

        class _DependencyEntry(BaseModel):
            model_config = ConfigDict(extra="forbid")

            dependent: str
            dependency: str
            type: DependencyType = DependencyType.SEQUENTIAL
            required_completion_percent: float = Field(100.0, gt=0, le=100)
            timeout_minutes: float | None = Field(None, gt=0, le=TIMEOUT_MINUTES_MAX)

        _models = (_ProcessEntry, _DependencyEntry)
    return _models


@dataclass
class Workflow:
    source: str
    processes: list[Process] = field(default_factory=list)
    held: set[str] = field(default_factory=set)  # ids with hold = true
    dependencies: list[Dependency] = field(default_factory=list)
    resources: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A plain form to hand to the owning process through the store's inbox."""
        return {
            "source": self.source,
            "processes": [
                {"id": p.id, "kind": p.kind, "priority": p.priority.value, "resources": p.resources,
                 "max_attempts": p.max_attempts, "spec": p.spec, "hold": p.id in self.held}
                for p in self.processes
            ],
            "dependencies": [
                {"dependent": d.dependent, "dependency": d.dependency, "type": d.type.value,
                 "required_completion_percent": d.required_completion_percent,
                 "timeout_minutes": d.timeout_minutes}
                for d in self.dependencies
            ],
            "resources": self.resources,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Workflow:
        wf = cls(source=data["source"], resources=dict(data.get("resources") or {}))
        for p in data["processes"]:
            wf.processes.append(Process(
                id=p["id"], kind=p["kind"], priority=Priority(p["priority"]), resources=p["resources"],
                max_attempts=p["max_attempts"], spec=p["spec"],
            ))
            if p.get("hold"):
                wf.held.add(p["id"])
        for d in data["dependencies"]:
            wf.dependencies.append(Dependency(
                dependent=d["dependent"], dependency=d["dependency"], type=DependencyType(d["type"]),
                required_completion_percent=d["required_completion_percent"],
                timeout_minutes=d.get("timeout_minutes"),
            ))
        return wf


def _first_error(err: Any) -> tuple[str, str]:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    return loc, e["msg"]


def _validated(model: Any, raw: Any, where: str) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(raw)
    except ValidationError as e:
        loc, msg = _first_error(e)
        raise UserError(f"{where}: field {loc!r}: {msg}") from None


def parse_workflow(path: str | Path) -> Workflow:
    """Read and check a workflow file; raises UserError naming file, process and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such workflow file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read workflow file: {e}") from None
    return parse_workflow_text(text, str(path), base_dir=path.resolve().parent)


def parse_workflow_text(text: str, source: str, base_dir: Path) -> Workflow:
    data = loads_toml(text, source)

    unknown = set(data) - {"resources", "process", "dependency"}
    if unknown:
        raise UserError(f"{source}: unknown table {sorted(unknown)[0]!r} (expected resources, process, dependency)")

    wf = Workflow(source=source)
    resources = data.get("resources", {})
    if not isinstance(resources, dict):
        raise UserError(f"{source}: [resources] must be a table of pool = size")
    for name, size in resources.items():
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= POOL_SIZE_MAX:
            raise UserError(f"{source}: resources: pool {name!r}: size must be a whole number from 0 to "
                            f"{POOL_SIZE_MAX}, not {size!r}")
    wf.resources = dict(resources)

    raw_processes = data.get("process", [])
    if not isinstance(raw_processes, list) or not raw_processes:
        raise UserError(f"{source}: no [[process]] entries")
    seen: set[str] = set()
    # The same spec checked once per file: a 1,000-process file often names one command a
    # thousand times (and the shell kind's check resolves the working folder on disk). Each
    # process still gets its own copy.
    specs: dict[tuple[str, bytes], bytes] = {}
    for index, raw in enumerate(raw_processes):
        fields = compat.plain_process_entry(raw, ID_PATTERN) if type(raw) is dict else None
        if fields is not None:
            pid, kind_name, priority, pools, attempts, hold = fields
            extra = {k: v for k, v in raw.items() if k not in compat.PROCESS_ENTRY_FIELDS}
            where = f"{source}: process {pid!r}"
        else:
            name = raw.get("id") if isinstance(raw, dict) else None
            where = f"{source}: process {name!r}" if isinstance(name, str) else f"{source}: process #{index + 1}"
            if not isinstance(raw, dict):
                raise UserError(f"{where}: must be a table")
            entry = _validated(_entry_models()[0], raw, where)
            pid, kind_name, priority, pools, attempts, hold = (
                entry.id, entry.kind, entry.priority, entry.resources, entry.max_attempts, entry.hold)
            extra = dict(entry.model_extra or {})
        if pid in seen:
            raise UserError(f"{where}: field 'id': duplicate id {pid!r}")
        seen.add(pid)
        for pool, amount in pools.items():
            if not 1 <= amount <= POOL_SIZE_MAX:
                raise UserError(f"{where}: field 'resources': amount for pool {pool!r} must be from 1 to "
                                f"{POOL_SIZE_MAX}, not {amount}")
        try:
            kind = kinds.get(kind_name)
        except KeyError:
            raise UserError(
                f"{where}: field 'kind': unknown kind {kind_name!r} (known: {', '.join(kinds.names())})"
            ) from None
        key = _spec_key(kind_name, extra)
        known = specs.get(key) if key is not None else None
        if known is not None:
            spec = marshal.loads(known)
        else:
            try:
                spec = kind.validate_spec(extra, base_dir)
            except kinds.SpecError as e:
                raise UserError(f"{where}: field {e.field!r}: {e.message}") from None
            if key is not None:
                try:
                    specs[key] = marshal.dumps(spec)
                except ValueError:
                    pass
        wf.processes.append(Process(id=pid, kind=kind_name, priority=priority, resources=pools,
                                    max_attempts=attempts, spec=spec))
        if hold:
            wf.held.add(pid)

    raw_deps = data.get("dependency", [])
    if not isinstance(raw_deps, list):
        raise UserError(f"{source}: [[dependency]] entries must be an array of tables")
    pairs: set[tuple[str, str]] = set()
    for index, raw in enumerate(raw_deps):
        fields = compat.plain_dependency_entry(raw)
        if fields is None:
            where = f"{source}: dependency #{index + 1}"
            if isinstance(raw, dict) and isinstance(raw.get("dependent"), str):
                where += f" ({raw.get('dependent')} → {raw.get('dependency')})"
            entry = _validated(_entry_models()[1], raw, where)
            fields = (entry.dependent, entry.dependency, entry.type, entry.required_completion_percent,
                      entry.timeout_minutes)
        dependent, dependency, dtype, percent, timeout = fields
        if timeout is not None and not timeout <= TIMEOUT_MINUTES_MAX:  # the fast path's entries too
            raise UserError(f"{source}: dependency #{index + 1} ({dependent} → {dependency}): field "
                            f"'timeout_minutes': must be at most {TIMEOUT_MINUTES_MAX} (ten years), not {timeout}")
        if dependent == dependency or (dependent, dependency) in pairs:
            where = f"{source}: dependency #{index + 1} ({raw.get('dependent')} → {raw.get('dependency')})"
            if dependent == dependency:
                raise UserError(f"{where}: a process cannot depend on itself")
            raise UserError(f"{where}: duplicate dependency")
        pairs.add((dependent, dependency))
        wf.dependencies.append(Dependency(
            dependent=dependent, dependency=dependency, type=dtype,
            required_completion_percent=percent, timeout_minutes=timeout,
        ))
    return wf


def _spec_key(kind: str, raw: dict[str, Any]) -> tuple[str, bytes] | None:
    try:
        return kind, marshal.dumps(raw)
    except ValueError:  # e.g. a TOML date in it: checked every time
        return None


def check_workflow(
    wf: Workflow, processes: Mapping[str, Process], graph: DependencyGraph, pool_sizes: Mapping[str, int]
) -> tuple[list[Process], list[Dependency]]:
    """Check a parsed workflow against what the database holds already. Returns the processes
    and dependencies that are new; raises UserError (file, process, field) otherwise."""
    new = [p for p in wf.processes if p.id not in processes]
    known = set(processes) | {p.id for p in new}
    for d in wf.dependencies:
        for end, name in ((d.dependent, "dependent"), (d.dependency, "dependency")):
            if end not in known:
                raise UserError(f"{wf.source}: dependency ({d.dependent} → {d.dependency}): "
                                f"field {name!r}: unknown process {end!r}")
    new_deps = [d for d in wf.dependencies if not graph.has(d.dependent, d.dependency)]
    cycle = graph.find_cycle(new_deps)
    if cycle:
        raise UserError(f"{wf.source}: dependency cycle refused: {' → '.join(reversed(cycle))} (→ = depends on)")
    sizes = {**pool_sizes, **wf.resources}
    for p in new:
        for pool, amount in p.resources.items():
            if pool not in sizes:
                raise UserError(f"{wf.source}: process {p.id!r}: field 'resources': unknown pool {pool!r} "
                                f"(known: {', '.join(sorted(sizes))})")
            if amount > sizes[pool]:
                raise UserError(f"{wf.source}: process {p.id!r}: field 'resources': needs {amount} of "
                                f"pool {pool!r}, which has only {sizes[pool]}")
    return new, new_deps
