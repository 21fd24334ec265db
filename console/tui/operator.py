"""The operator's actions on the work, from the console: resume, force, cancel (one process or
many), complete or cancel a transfer, a new voice request, a transfer, a workflow to load, the
Groq API key. Destructive ones ask first; each says what happened or why nothing did."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from textual.app import App

from console.model import Process, State, UserError
from console.tui.screens import ConfirmScreen, FieldError, FormScreen
from console.tui.source import Source
from console.tui.widgets import clean


def field_at_fault(message: str, starts: dict[str, str]) -> str | None:
    """The form field an engine's error is about, by how the message begins (None: the form)."""
    return next((field for start, field in starts.items() if message.startswith(start)), None)


def _plural(n: int) -> str:
    return "process" if n == 1 else "processes"


class Operator:
    """Carries out the operator's actions through the Source. The app hands it the Source
    (`source`) and, when this console runs the engine, the engine (`engine`); `calls_changed()`
    tells the app a transfer moved on (its pane is read again)."""

    def __init__(self, app: App[Any], read_only: bool, calls_changed: Callable[[], None]) -> None:
        self.app = app  # asks and tells through its dialogs and notifications
        self.read_only = read_only
        self.calls_changed = calls_changed
        self.source: Source | None = None
        self.engine: Any = None

    def can_act(self) -> bool:
        if self.read_only:
            self.app.notify("This console is read-only (--read-only).", severity="warning")
            return False
        if self.source is None:
            self.app.notify("Still starting…", severity="warning")
            return False
        return True

    async def act(self, kind: str, payload: dict[str, Any]) -> str | None:
        """The action's result, or None when it was refused (and the refusal shown)."""
        assert self.source is not None
        try:
            message = await self.source.act(kind, payload)
        except UserError as e:
            self.app.notify(clean(str(e)), severity="error", markup=False)
            return None
        return message

    # -- one process ---------------------------------------------------------------------------------

    async def resume(self, p: Process, force: bool = False) -> None:
        message = await self.act("resume", {"id": p.id, "force": force})
        if message:
            self.app.notify(clean(message), markup=False)

    def cancel(self, p: Process) -> None:
        async def answered(yes: bool | None) -> None:
            if yes:
                message = await self.act("cancel", {"id": p.id})
                if message:
                    self.app.notify(clean(message), markup=False)

        self.app.push_screen(ConfirmScreen(f"Cancel {p.id} ({p.state.value})?", f"Cancel {p.id}"), answered)

    # -- transfers and calls -------------------------------------------------------------------------

    def complete_transfer(self, transfer_id: str) -> None:
        self.app.run_worker(self._finish_transfer("transfer.complete", transfer_id, "completed"), group="transfer")

    def cancel_transfer(self, transfer_id: str) -> None:
        async def answered(yes: bool | None) -> None:
            if yes:
                await self._finish_transfer("transfer.cancel", transfer_id, "cancelled")

        self.app.push_screen(ConfirmScreen(f"Cancel transfer {transfer_id}?", "Cancel the transfer"), answered)

    async def _finish_transfer(self, kind: str, transfer_id: str, done: str) -> None:
        if await self.act(kind, {"id": transfer_id}) is not None:
            self.app.notify(f"transfer {clean(transfer_id)} {done}", markup=False)
            self.calls_changed()

    def new_voice(self, call: str | None, sent: Callable[[str], None]) -> None:
        """The form for a voice request on `call` (a new call when None); `sent(call id)` once queued."""
        call = call or f"call-{time.strftime('%H%M%S')}"

        async def submit(values: dict[str, str]) -> FieldError | None:
            assert self.source is not None
            try:
                message = await self.source.act("voice", {"call_id": values["call"].strip(), "text": values["text"]})
            except UserError as e:  # the engine's check: the form stays open, as typed
                return field_at_fault(str(e), {"call": "call", "the text": "text"}), clean(str(e))
            vr = json.loads(message)
            sent(vr["call_id"])
            self.app.notify(f"voice request {vr['id']} queued for call {clean(vr['call_id'])}", markup=False)
            return None

        self.app.push_screen(FormScreen("New voice request", [("call", "Call", call),
                                                              ("text", "What the caller said", "")], ok="Send",
                                        submit=submit))

    def transfer(self, call: str | None) -> None:
        if not call:
            self.app.notify("Select a call in the Calls & transfers pane first.", severity="warning")
            return

        async def submit(values: dict[str, str]) -> FieldError | None:
            assert self.source is not None
            try:
                message = await self.source.act("transfer", {"call_id": call, "from_agent": values["from"],
                                                              "to_agent": values["to"]})
            except UserError as e:
                fields = {"the from agent": "from", "the to agent": "to", "a transfer needs two": "to"}
                return field_at_fault(str(e), fields), clean(str(e))
            self.app.notify(f"transfer {json.loads(message)['id']} started for call {clean(call)}", markup=False)
            return None

        self.app.push_screen(FormScreen(f"Warm transfer of call {clean(call)}",
                                        [("from", "From agent", ""), ("to", "To agent", "")], ok="Transfer",
                                        submit=submit))

    # -- many processes, a workflow, the key (the command palette) ---------------------------------------

    def resume_all(self) -> None:
        if not self.can_act():
            return
        assert self.source is not None
        ids = [p.id for p in self.source.processes.values() if p.state is State.INTERRUPTED]
        self.confirm_bulk(ids, "resume", "Resume all {n} interrupted {processes}?", "Resume {n}",
                          "resumed {done} interrupted {processes}")

    def cancel_all(self) -> None:
        if not self.can_act():
            return
        assert self.source is not None
        ids = [p.id for p in self.source.queue()]
        self.confirm_bulk(ids, "cancel", "Cancel all {n} queued or waiting {processes}?", "Cancel {n}",
                          "cancelled {done} queued {processes}")

    def confirm_bulk(self, ids: list[str], kind: str, question: str, yes: str, done: str) -> None:
        """Asks before acting on many processes, naming how many; acts on exactly those."""
        if not ids:
            self.app.notify(f"nothing to {kind}")
            return

        async def answered(confirmed: bool | None) -> None:
            if not confirmed:
                return
            acted = 0
            for pid in ids:
                if await self.act(kind, {"id": pid}) is not None:
                    acted += 1
            self.app.notify(done.format(done=acted, processes=_plural(acted)))

        n = len(ids)
        self.app.push_screen(ConfirmScreen(question.format(n=n, processes=_plural(n)), yes.format(n=n)), answered)

    def ask_workflow(self) -> None:
        if not self.can_act():
            return

        async def submitted(values: dict[str, str] | None) -> None:
            if not values:
                return
            from console.engine.workflow import parse_workflow

            try:
                workflow = await asyncio.to_thread(parse_workflow, values["path"].strip())
            except UserError as e:
                self.app.notify(clean(str(e)), severity="error", markup=False)
                return
            message = await self.act("load", workflow.to_json())
            if message:
                self.app.notify(clean(message), markup=False)

        self.app.push_screen(FormScreen("Load a workflow file", [("path", "Path", "")], ok="Load"), submitted)

    def ask_key(self) -> None:
        if self.engine is None:
            self.app.notify("Only the console that runs the engine holds the key.", severity="warning")
            return
        engine = self.engine

        async def submitted(values: dict[str, str] | None) -> None:
            if values and values["key"].strip():
                from console.voice.center import call_center

                await call_center(engine).gateway().set_api_key(values["key"].strip())
                self.app.notify("API key set for this session; resume the work that waited for it")

        self.app.push_screen(FormScreen("Groq API key (memory only)", [("key", "Key", "")], ok="Set"), submitted)
