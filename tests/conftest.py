from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from console.engine.orchestrator import Orchestrator
from console.engine.workflow import parse_workflow_text
from console.settings import DatabaseUrl, load_settings
from console.store import Store, open_store
from console.store.memory import MemoryStore

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))  # `steps` for python-kind entry points

import pg  # noqa: E402
import steps  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _postgres_server():
    """The embedded PostgreSQL server (tests/pg.py) is started by the first test that needs it
    and stopped here, at the end of the session."""
    yield
    pg.stop()


@pytest.fixture(autouse=True)
def _clean_steps():
    steps.RECORD.clear()
    steps.GATES.clear()
    yield


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test reads the developer's settings, data dir or API keys."""
    for key in list(os.environ):
        if key.startswith("SWITCHBOARD_") or key.startswith("GROQ_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.chdir(tmp_path)


def make_settings(tmp_path: Path, **engine: Any):
    engine = {"retry_base_s": 0.05, "retry_max_s": 0.5, **engine}
    return load_settings(db=tmp_path / "t.db", data_dir=tmp_path / "data", engine=engine)


def workflow(text: str, source: str = "test.toml"):
    return parse_workflow_text(text, source, base_dir=TESTS)


def py(pid: str, fn: str, priority: str = "medium", resources: str = "{}", extra: str = "", **args: Any) -> str:
    """A [[process]] table for a tests/steps.py function."""
    arg_text = ", ".join(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in args.items())
    return (f'[[process]]\nid = "{pid}"\nkind = "python"\nentry = "steps:{fn}"\npath = "{TESTS}"\n'
            f'priority = "{priority}"\nresources = {resources}\nargs = {{ {arg_text} }}\n{extra}\n')


def dep(dependent: str, dependency: str, type_: str = "sequential", percent: float = 100,
        timeout: float | None = None) -> str:
    text = (f'[[dependency]]\ndependent = "{dependent}"\ndependency = "{dependency}"\ntype = "{type_}"\n'
            f"required_completion_percent = {percent}\n")
    if timeout is not None:
        text += f"timeout_minutes = {timeout}\n"
    return text


# The store adapters an engine test can run on (tests/test_store_conformance.py checks that they
# keep the same contract): "memory" for tests that are about the engine, not the database;
# "postgres" on a database of its own on the session's embedded server (tests/pg.py).
ADAPTERS = ("memory", "sqlite", "postgres")
on_every_adapter = pytest.mark.parametrize("adapter", ADAPTERS)


def make_store(adapter: str, settings) -> Store:
    if adapter == "memory":
        return MemoryStore(path=str(settings.db_path))
    return open_store(str(settings.db_path))


@contextlib.asynccontextmanager
async def running_engine(tmp_path: Path, dispatch: bool = True, adapter: str = "sqlite",
                         **engine: Any) -> AsyncIterator[Orchestrator]:
    settings = make_settings(tmp_path, **engine)
    if adapter == "postgres":
        settings = settings.model_copy(update={"db": DatabaseUrl(pg.server().create_database())})
    try:
        store = make_store(adapter, settings)
        await store.open()
        orch = Orchestrator(store, settings)
        await orch.start(dispatch=dispatch)
        try:
            yield orch
        finally:
            await orch.stop()
            await store.close()
    finally:
        if adapter == "postgres":
            pg.server().drop_database(str(settings.db))


# Waits return as soon as their condition holds; the deadline only ends a wait that would
# otherwise hang, so it is generous: a loaded machine must not turn into a failure.
async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
    return value


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """wait_for for synchronous tests (e.g. polling another process through the CLI)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
    return value


# A stall is the event loop held by one blocking call. The bound is far above what a busy,
# shared machine adds to a short timer, and below what the blocking calls these tests guard
# against would hold it (the workloads make each of them long): the fine figures are the
# benchmark's (`switchboard bench`).
STALL_BOUND_S = 1.0


class LoopWatch:
    """A heartbeat on the running loop: the longest it was kept from waking its short timer."""

    TICK_S = 0.01

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def _beat(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(self.TICK_S)
            self.lags.append(time.perf_counter() - t - self.TICK_S)

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await self._task

    def assert_no_stall(self) -> None:
        assert self.lags, "the heartbeat never ran"
        worst = max(self.lags)
        assert worst < STALL_BOUND_S, f"the loop stalled for {worst * 1000:.0f} ms"


def states(orch: Orchestrator) -> dict[str, str]:
    return {pid: p.state.value for pid, p in orch.processes.items()}
