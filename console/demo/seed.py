"""`switchboard demo`: a fresh demo database with the demo workflow and a few sample calls,
so a new user sees a living console in one command, with no API key (voice work then waits
visibly as "no provider", and transfers get a locally computed summary)."""

from __future__ import annotations

from pathlib import Path

from console.bundled import workflow_file
from console.engine.orchestrator import Orchestrator
from console.settings import Settings

PACE_S = 1.0
SAMPLE_CALLS = [
    ("call-1001", ["Hi, this is Maria Lopez. I was charged twice for my broadband this month.",
                   "Can you refund the second payment?"]),
    ("call-1002", ["Hello, my router keeps dropping the connection every evening."]),
    ("call-1003", ["I'd like to upgrade my plan to the unlimited one, what does it cost?"]),
]


def demo_settings(settings: Settings, db: str | None) -> Settings:
    """The demo's own database (fresh each time) unless --db names one."""
    path = Path(db) if db else settings.resolved_data_dir / "demo.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return settings.model_copy(update={"db": path})


async def seed(engine: Orchestrator) -> None:
    import asyncio

    from console.engine.workflow import parse_workflow_text
    from console.voice.center import call_center

    demo = workflow_file("demo")
    text = await asyncio.to_thread(demo.read_text, "utf-8")
    workflow = parse_workflow_text(text, str(demo), demo.parent)
    for p in workflow.processes:  # slow enough to watch: about a minute for the whole night
        p.spec.setdefault("args", {})["pace_s"] = PACE_S
    await engine.load(workflow)
    center = call_center(engine)
    for call_id, utterances in SAMPLE_CALLS:
        for said in utterances:
            await center.create_voice_request(call_id, text=said)
    await center.create_transfer("call-1001", "alice", "bob")
    engine.services["demo-callers"] = _Callers(engine)


class _Callers:
    """Callers keep calling while the demo runs: a new utterance every few seconds."""

    LINES = ["Is my payment through yet?", "The app says my account is locked.",
             "Can I move my installation date to Friday?", "Why did my bill go up this month?",
             "I want to speak to someone about cancelling."]

    def __init__(self, engine: Orchestrator):
        import asyncio

        self.engine = engine
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        import asyncio
        import random

        from console.voice.center import call_center

        rng = random.Random(1)
        n = 1004
        while True:
            await asyncio.sleep(rng.uniform(4, 9))
            await call_center(self.engine).create_voice_request(f"call-{n}", text=rng.choice(self.LINES))
            n += 1

    async def aclose(self) -> None:
        self.task.cancel()
