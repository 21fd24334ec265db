"""The console's engine: run on the app's own loop, or observed in the process that runs it.

`EngineHost` opens the console's database, starts the engine there (or, when another process
owns the database or the console only observes, reads it through a StoreSource), takes over
from an owner that has gone, and at the end drains the engine and closes the database. What
it finds goes up to the app through a `HostListener`; the app never reaches the engine's
start or the database itself."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Protocol

from console.model import Event, UserError
from console.settings import Settings
from console.tui.source import LiveSource, Source, StoreSource, close_database, open_database
from console.tui.widgets import clean

EVENTS_AT_START = 500  # the engine's most recent events, shown when the console starts it


class HostListener(Protocol):
    """What the host tells the app (the app is one)."""

    def host_event(self, event: Event) -> None:
        """An event the engine running here published (provider changes excepted)."""

    def host_source(self, source: Source, events: list[Event]) -> None:
        """The panes read from `source` from now on; `events` are the feed's first ones."""

    def notify(self, message: str, *, title: str = "", severity: Any = "information", markup: bool = True,
               **kwargs: Any) -> None: ...


class EngineHost:
    def __init__(self, settings: Settings, listener: HostListener, *, read_only: bool = False, observe: bool = False,
                 prepare: Callable[[Any], Awaitable[None]] | None = None) -> None:
        self.settings = settings
        self.listener = listener
        self.read_only = read_only
        self.observe = observe  # never run the engine unless taken over (`serve`'s tabs)
        self.prepare = prepare  # an async fn(engine) run once the engine has started (the demo)
        self.store: Any = None  # the database, opened at start; handed to the engine, read through the Source
        self.engine: Any = None  # when this console runs it
        self.intake: Any = None  # the HTTP intake, when this console runs the engine and --listen
        self.source: Source | None = None
        self.provider = "unknown"  # Groq's state, as the status bar shows it

    @property
    def observing(self) -> StoreSource | None:
        """The StoreSource, while another process (or none) runs the engine."""
        return self.source if isinstance(self.source, StoreSource) else None

    async def start(self) -> None:
        """Run the engine here unless the console only observes or another process owns the
        database: then observe it."""
        from console.app import make_engine
        from console.engine.orchestrator import OwnedElsewhere

        settings = self.settings
        self.store = await open_database(settings)
        owner = None
        if not self.read_only and not self.observe:
            engine = make_engine(self.store, settings, role="console")
            engine.bus.subscribe(self._engine_event)
            try:
                await engine.start()
            except OwnedElsewhere as owned:
                owner = owned.holder
            else:
                live = LiveSource(engine)
                await self._own(engine, live, await live.recent_events(limit=EVENTS_AT_START))
                if self.prepare is not None:
                    await self.prepare(engine)
                return
        source = StoreSource(self.store, settings, owner, self.read_only)
        await source.refresh()
        owner = source.owner
        self.source = source
        self.listener.host_source(source, await source.new_events(first=True))
        self.provider = "handled by the owner" if owner else "not running"
        if settings.intake.listen and not self.read_only and not self.observe:
            who = f"pid {owner.pid}" if owner else "another process"
            self.listener.notify(f"The HTTP intake is not served: {who} runs this database's engine, and the intake "
                                 "runs beside it (start that one with --listen).", title="intake",
                                 severity="warning", markup=False)

    async def poll(self) -> tuple[bool, list[Event]]:
        """An observer's look at the database: whether its snapshot was reloaded, and the new
        events. Nothing while this console runs the engine."""
        source = self.observing
        if source is None:
            return False, []
        changed = await source.refresh()  # first: the progress it finds is in this feed
        events = await source.new_events()
        if not changed:  # a killed owner changes nothing: asked each time
            await source.check_owner()
        return changed, events

    async def take_over(self) -> bool:
        """Run the engine in this console, when the owner it observed has gone. Says why not."""
        source = self.observing
        if source is None:
            self.listener.notify("This console runs the engine already.", markup=False)
            return False
        if self.read_only:
            self.listener.notify("This console is read-only (--read-only).", severity="warning")
            return False
        if await source.check_owner():
            owner = source.owner
            assert owner is not None  # check_owner() is true only when it found the holder
            self.listener.notify(f"{owner.role} pid {owner.pid} runs the engine.", markup=False)
            return False
        from console.app import make_engine
        from console.engine.orchestrator import OwnedElsewhere

        engine = make_engine(self.store, self.settings, role="console")
        unsubscribe = engine.bus.subscribe(self._engine_event)
        try:
            await engine.start()
        except OwnedElsewhere as owned:
            unsubscribe()
            self.listener.notify(f"{owned.holder.role} pid {owned.holder.pid} took over first.", severity="warning",
                                 markup=False)
            return False
        await self._own(engine, LiveSource(engine), [])
        self.listener.notify("This console runs the engine now; quitting it stops the engine.", markup=False)
        return True

    async def shutdown(self) -> None:
        """Drain the engine (running work is persisted as interrupted) and close the database."""
        if self.intake is not None:  # no new requests while the engine drains
            await self.intake.aclose()
        if self.engine is not None:
            await self.engine.stop()
        if self.store is not None:
            await close_database(self.store)

    def _engine_event(self, event: Event) -> None:
        if event.type == "provider":
            self.provider = event.message
            return
        self.listener.host_event(event)

    async def _own(self, engine: Any, source: LiveSource, events: list[Event]) -> None:
        """This console runs the engine (at start, or taking over): the panes read its memory."""
        self.engine = engine
        self.source = source
        self.listener.host_source(source, events)
        self._lease_watch = asyncio.get_running_loop().create_task(self._stop_on_lost_lease(engine),
                                                                   name="lease-lost-watch")
        await self._start_intake(engine)
        from console.voice.center import call_center

        self.provider = call_center(engine).gateway().state.describe()

    async def _stop_on_lost_lease(self, engine: Any) -> None:
        """Another owner took the database over: this console's engine stops (without writing:
        the rows are the new owner's) and says so."""
        await engine.lease_lost.wait()
        await engine.stop()
        taker = engine.lease_taker
        whom = f"{taker.role} pid {taker.pid} on {taker.host}" if taker is not None else "another owner"
        self.listener.notify(f"Lost the database's lease to {whom}: this console's engine stopped without "
                             "writing; quit and open the database again to observe it.",
                             title="engine stopped", severity="error", markup=False, timeout=3600)

    async def _start_intake(self, engine: Any) -> None:
        if not self.settings.intake.listen:
            return
        from console.intake import start_intake

        try:
            self.intake = await start_intake(engine, self.settings)
        except UserError as e:  # e.g. the port was taken since the command line was checked
            self.listener.notify(clean(str(e)), title="intake", severity="error", markup=False)
