"""The intake's application, assembled: one router per concern, the error answers in one place.

Every action goes through the call-centre API (`console.voice.center`), the same one the CLI
and the console use, and waiting goes through `console.control`; nothing here touches the
store."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from console.control import settling
from console.engine.orchestrator import Orchestrator
from console.intake import errors
from console.intake.routes_calls import calls_router
from console.intake.routes_health import health_router
from console.intake.routes_transfers import transfers_router
from console.intake.routes_voice import voice_router
from console.settings import Settings
from console.voice.center import call_center


def create_app(engine: Orchestrator, settings: Settings, closing: asyncio.Event) -> FastAPI:
    center = call_center(engine)
    app = FastAPI(title="Switchboard intake", version="1", redoc_url=None,
                  description="Voice requests and warm transfers from the telephony front end.")
    errors.install(app)
    app.include_router(voice_router(center, settling(engine), settings.resolved_data_dir / "intake" / "audio",
                                    settings.intake.voice_wait_timeout_s, closing))
    app.include_router(transfers_router(center))
    app.include_router(calls_router(center))
    app.include_router(health_router(lambda: engine.dispatching, closing))
    return app
