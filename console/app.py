"""Assembles an engine with everything the product runs on it (the call-centre API)."""

from __future__ import annotations

from console.engine.orchestrator import Orchestrator
from console.settings import Settings
from console.store import Store
from console.voice.center import CallCenter


def make_engine(store: Store, settings: Settings, role: str = "runner") -> Orchestrator:
    engine = Orchestrator(store, settings, role=role)
    CallCenter(engine).install()
    return engine
