"""A deterministic database for console tests: fixed ids, fixed times, every kind of row."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path

from conftest import TESTS

FIXED_TS = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC

WORKFLOW = f'''
[[process]]
id = "ingest"
kind = "python"
entry = "steps:noisy"
path = "{TESTS}"
priority = "high"
resources = {{ io_intensive = 1 }}

[[process]]
id = "train"
kind = "python"
entry = "steps:fail"
path = "{TESTS}"
max_attempts = 1
resources = {{ cpu_intensive = 1 }}

[[process]]
id = "evaluate"
kind = "python"
entry = "steps:noop"
path = "{TESTS}"

[[process]]
id = "report"
kind = "python"
entry = "steps:noop"
path = "{TESTS}"
priority = "low"
hold = true

[[process]]
id = "nightly-backup"
kind = "python"
entry = "steps:noop"
path = "{TESTS}"
priority = "critical"
hold = true

[[dependency]]
dependent = "train"
dependency = "ingest"
type = "data"
required_completion_percent = 80

[[dependency]]
dependent = "evaluate"
dependency = "train"
'''


def build(db: Path, data_dir: Path) -> None:
    """Runs the engine once (no API key: voice work waits as no_provider), then pins every
    timestamp so renders are the same on every run."""
    asyncio.run(build_async(db, data_dir))


async def build_async(db: Path, data_dir: Path) -> None:
    import console.voice.center as center_module
    from console.app import make_engine
    from console.engine.workflow import parse_workflow_text
    from console.settings import load_settings
    from console.store import open_store
    from console.voice.center import call_center

    counter = itertools.count(1)
    original = center_module._new_id
    center_module._new_id = lambda prefix: f"{prefix}-{next(counter):04d}"

    async def go() -> None:
        # one process at a time: `train` may start once `ingest` is at 80%, and side by side the
        # two interleaved their events by timing (ingest's completion before or after train's failure)
        settings = load_settings(db=db, data_dir=data_dir, groq_api_key=None,
                                 groq_base_url="http://127.0.0.1:9", engine={"max_concurrent": 1})
        store = open_store(str(db))
        await store.open()
        engine = make_engine(store, settings)
        await engine.start()
        # One thing at a time, each run until idle: events of work running side by side
        # interleave by timing (a fresh checkout, compiling its modules, gave another order).
        await engine.load(parse_workflow_text(WORKFLOW, "nightly.toml", TESTS))
        await engine.run_until_idle()
        center = call_center(engine)
        await center.create_voice_request("call-7", text="Hi, this is [red]Ann[/red] \x1b[31mLee\x1b[0m. My bill is wrong?")
        await engine.run_until_idle()
        await center.create_voice_request("call-8", text="My router keeps dropping the connection.")
        await engine.run_until_idle()
        await center.create_transfer("call-7", "alice", "bob")
        await engine.run_until_idle()
        await engine.stop()
        idle = make_engine(store, settings)  # owns the database without dispatching
        await idle.start(dispatch=False)
        await idle.resume("nightly-backup")  # stays queued: nothing dispatches it
        await idle.stop()
        await store.close()

    try:
        await go()
    finally:
        center_module._new_id = original
    con = sqlite3.connect(db)
    with con:
        for table, columns in {
            "processes": ["created_at", "updated_at", "started_at", "finished_at"],
            "events": ["ts"], "logs": ["ts"], "checkpoints": ["created_at"], "resume_requests": ["requested_at"],
            "calls": ["created_at", "updated_at"], "turns": ["created_at"],
            "voice_requests": ["created_at", "updated_at"], "transfers": ["created_at", "updated_at"],
        }.items():
            for column in columns:
                con.execute(f"UPDATE {table} SET {column} = ? WHERE {column} IS NOT NULL", (FIXED_TS,))
        con.execute("UPDATE processes SET interruption = json_set(interruption, '$.occurred_at', ?) "
                    "WHERE interruption IS NOT NULL", (FIXED_TS,))
        con.execute("UPDATE calls SET updated_at = ? WHERE id = 'call-8'", (FIXED_TS + 1,))
    con.close()
