"""The Textual console: its composition, keys and wiring. Its parts each have a module: the
engine run here or observed (host.py), where the panes read (source.py), what their rows show
(rows.py), how each pane is handed its rows (panes.py), the operator's actions (operator.py),
the header's trends (trends.py), the status line (status.py), exports (export.py).

Updates are coalesced: engine events only mark panes dirty; one refresh at most every
`REFRESH_S` rebuilds what changed, and each list renders only its visible lines."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import Input

from console.model import TRANSFER_FINAL, Event, Process
from console.settings import Settings
from console.tui.export import export_list
from console.tui.host import EngineHost
from console.tui.operator import Operator
from console.tui.panes import PANE_ORDER, Panes, lower_panes, queue_pane
from console.tui.rows import PaneRows, process_text
from console.tui.screens import DetailsScreen, HelpScreen, TransferScreen
from console.tui.source import GraphLayout, OrderedView, Source, StateCounts, StoreSource
from console.tui.status import status_parts
from console.tui.trends import Trends
from console.tui.widgets import BREAKPOINTS, HeaderBar, KeyBar, OwnerBanner, RowList, StatusBar, clean

log = logging.getLogger(__name__)

REFRESH_S = 0.1  # at most ten repaints a second, however many events arrive
# The calls pane is read from the store (calls, transfers, voice requests), which costs the loop
# noticeably with many requests in flight; twice a second is often enough for it.
CALLS_REFRESH_S = 0.5
LISTS_PER_PASS = 2
# Processes placed in the queue's order and counted per pass, at most: a large workflow loaded
# at once would otherwise hold the loop for one long pass.
TOUCHED_PER_PASS = 200
EVENTS_KEPT = 10_000
STATE_ORDER = ["running", "queued", "waiting", "interrupted", "blocked", "failed", "pending", "cancelled", "completed"]


TRANSFER_DONE = frozenset(s.value for s in TRANSFER_FINAL)
ALL_PANES = frozenset({"queue", "active", "graph", "calls", "events", "header"})


class SwitchboardApp(App[None]):
    TITLE = "Switchboard"
    CSS_PATH = "app.tcss"
    HORIZONTAL_BREAKPOINTS = BREAKPOINTS  # -narrow / -wide on the screen: see PaneDeck
    # The keys that act on the lists are priority bindings: the app runs them as the key
    # arrives, before it forwards the next keys to the focused widget. As ordinary bindings
    # they ran only once the key had bubbled back up from the list, by which time keys typed
    # right after it had been forwarded to the list too: "/red" typed fast resumed the
    # selection ("r") and exported ("e") instead of filtering. `check_action` keeps them
    # off while an input has the focus or a dialog is open.
    BINDINGS = [
        Binding("r", "resume", "Resume", id="resume", priority=True),
        Binding("R", "force_resume", "Force", id="force_resume", priority=True),
        Binding("c", "cancel", "Cancel", id="cancel", priority=True),
        Binding("enter", "details", "Details", id="details"),
        Binding("n", "new_voice", "Voice", id="new_voice", priority=True),
        Binding("t", "transfer", "Transfer", id="transfer", priority=True),
        Binding("slash", "filter", "Filter", id="filter", priority=True),
        Binding("e", "export", "Export", id="export", priority=True),
        Binding("g", "toggle_graph", "Graph", id="toggle_graph", priority=True),
        # shown only while a transfer is chosen in the calls pane
        Binding("y", "complete_transfer", "Complete", id="complete_transfer"),
        Binding("x", "cancel_transfer", "Cancel transfer", id="cancel_transfer"),
        Binding("a", "toggle_all", "All", id="toggle_all", show=False, priority=True),
        Binding("tab", "focus_next", "Next pane", id="next_pane", show=False),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("T", "take_over", "Take over the engine", id="take_over", show=False),
        Binding("q", "quit", "Quit", id="quit"),
    ]
    LIST_ACTIONS = frozenset(b.action for b in BINDINGS if b.priority)

    def __init__(self, settings: Settings, *, read_only: bool = False, theme: str | None = None,
                 log_path: Path | None = None, clock: Any = time.time, prepare: Any = None,
                 settle_heap: bool = False, observe: bool = False):
        super().__init__()
        self.settings = settings
        self.read_only = read_only
        self._banner: OwnerBanner | None = None  # mounted the first time no engine runs
        self.log_path = log_path
        self.clock = clock  # fixed in snapshot tests
        self.settle_heap = settle_heap  # see console.heap; the command line asks for it
        self.rows = PaneRows(clock, lambda: {**self.get_theme_variable_defaults(), **self.current_theme.variables})
        self.operator = Operator(self, read_only, calls_changed=self._calls_changed)
        self.source = None
        # `observe`: never run the engine unless taken over (`serve`'s tabs); `prepare`: an async
        # fn(engine) run once the engine has started (the demo)
        self.host = EngineHost(settings, self, read_only=read_only, observe=observe, prepare=prepare)
        self.selected_id: str | None = None
        self.selected_call: str | None = None
        self.show_all = False
        self.panes = Panes(lambda: self.screen_stack[0])
        self._filter_target = "queue"
        self._events: deque[Event] = deque(maxlen=EVENTS_KEPT)
        self._dirty: set[str] = set()
        self._touched: set[str] = set()  # processes changed since the last refresh
        self._painted: dict[str, float] = {}  # when each list was last handed its rows
        self._queue_view: OrderedView | None = None
        self._counts: StateCounts | None = None
        self._graph_layout = GraphLayout()  # the whole-graph view's rows
        self._graph_subject: tuple[bool, str | None] | None = None  # what the graph pane last showed
        self._refresh_timer: Any = None
        self.trends = Trends()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = False
        from console.tui.themes import load_themes, register_themes, resolve_theme_name

        themes, self.theme_errors = load_themes()
        register_themes(self, themes)
        self.theme = resolve_theme_name(theme or settings.tui.theme, self.available_themes)

    @property
    def source(self) -> Source | None:
        """Where the panes read from: None until the console has started."""
        return self._source

    @source.setter
    def source(self, source: Source | None) -> None:
        self._source = source
        self.rows.source = self.operator.source = source

    @property
    def engine(self) -> Any:
        """The engine, when this console runs it."""
        return self.host.engine

    @property
    def store(self) -> Any:
        """The console's database (the engine's, when it runs here), opened at start."""
        return self.host.store

    @property
    def intake(self) -> Any:
        return self.host.intake

    @property
    def provider(self) -> str:
        return self.host.provider

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        yield queue_pane(self.rows)
        yield lower_panes(self.rows)
        yield Input(placeholder="filter the focused list (esc to close)", id="filter", select_on_focus=False)
        yield StatusBar(id="status")
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.panes.titles_at_start()
        self.query_one("#filter", Input).display = False
        if self.settings.tui.keymap:
            self.set_keymap(self.settings.tui.keymap)
        for message in self.theme_errors:
            self.notify(message, title="theme", severity="warning")
        self.query_one("#queue", RowList).focus()
        self._tasks.append(asyncio.create_task(self.trends.measure_lag()))
        self.set_interval(1.0, self._tick)
        if not self.is_headless:
            self._handle_signals()
        self._start()

    STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def _handle_signals(self) -> None:
        """SIGTERM (a service manager, `kill`) and SIGHUP (the terminal closed) quit as `q` does.
        By default they ended the process at once: running work stayed `running` until crash
        recovery, and the terminal was left in the console's screen mode."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: self.run_worker(self.action_quit(), group="quit"))
        loop.add_signal_handler(signal.SIGHUP, lambda: self.run_worker(self._hang_up(), group="quit"))

    async def _hang_up(self) -> None:
        """The terminal is gone: drain and persist as `q` does, then leave at once. Textual's
        own exit would restore the terminal first, and its writer blocks forever on a
        terminal that hung up."""
        await self.shutdown()
        logging.shutdown()
        os._exit(128 + signal.SIGHUP)

    @work(exclusive=True, group="start")
    async def _start(self) -> None:
        await self.host.start()
        if self.host.observing is not None:
            self.set_interval(0.5, self._poll_store)
        self._dirty.update(ALL_PANES)
        self._refresh()
        if self.settle_heap:
            from console import heap

            heap.settle()

    def host_source(self, source: Source, events: list[Event]) -> None:
        """The host's news: the panes read from `source` from now on (at start, or taking over)."""
        self._events.extend(events)
        self.source = source
        self.operator.engine = self.host.engine
        self._build_views()

    def _build_views(self) -> None:
        """The queue's order and the state counts, from scratch (at start, when the observed
        snapshot is reloaded, when completed work is shown or hidden)."""
        source = self.source
        self._queue_view = OrderedView(source.processes, lambda p: source.queue_key(p, self.show_all))
        self._counts = StateCounts(source.processes)
        self._touched.clear()

    async def _poll_store(self) -> None:
        source = self.host.observing
        if source is None or self._stopped:
            return
        changed, events = await self.host.poll()
        self._show_owner(source)
        if events:
            self._events.extend(events)
            self._dirty.add("events")
        if changed:
            self._build_views()
        if changed or events:
            self._dirty.update({"queue", "active", "graph", "calls", "header"})
            self._schedule_refresh()

    # -- an observer's owner, and taking over from it ------------------------------------------------

    def _show_owner(self, source: StoreSource) -> None:
        """The banner, when no engine runs the observed database (queued work would wait):
        for a console that could take over, or whose owner has gone."""
        gone = source.owner is None and (not self.read_only or source.last_owner is not None)
        if gone:
            self._owner_banner().show(source.last_owner)
        elif self._banner is not None:
            self._banner.hide()

    def _owner_banner(self) -> OwnerBanner:
        if self._banner is None:
            self._banner = OwnerBanner(can_take_over=not self.read_only)
            main = self.screen_stack[0]
            main.mount(self._banner, before=main.query_one("#status"))
        return self._banner

    async def action_take_over(self) -> None:
        """Run the engine in this console, when the owner it observed has gone."""
        if self._stopped or self.source is None:
            return
        if await self.host.take_over():
            self._owner_banner().hide()
            self._dirty.update(ALL_PANES)
            self._refresh()

    # -- engine events → coalesced refresh ----------------------------------------------------------

    def host_event(self, event: Event) -> None:
        """An event of the engine this console runs: the panes it touches are marked for the next refresh."""
        if event.type == "completed":
            self.trends.count_completion()
        if event.process_id:
            self._touched.add(event.process_id)
        self._events.append(event)
        self._dirty.add("events")
        if event.type == "progress":
            self._dirty.add("active")
        elif event.type != "log":
            self._dirty.update({"queue", "active", "graph", "header"})
        engine = self.host.engine
        p = engine.processes.get(event.process_id) if event.process_id and engine else None
        if event.type == "transfer" or (p is not None and p.kind in ("voice", "transfer") and event.type != "log"):
            self._dirty.add("calls")
        self._schedule_refresh()

    def _calls_changed(self) -> None:
        self._dirty.add("calls")
        self._schedule_refresh()

    def _schedule_refresh(self) -> None:
        if self._refresh_timer is None and not self._stopped:
            self._refresh_timer = self.set_timer(REFRESH_S, self._refresh)

    def _refresh(self) -> None:
        self._refresh_timer = None
        if self.source is None or self._stopped or not self.is_running:
            return
        dirty, self._dirty = self._dirty, set()
        touched, self._touched = self._touched, set()
        if len(touched) > TOUCHED_PER_PASS:  # a large workflow just loaded: placed over a few passes
            now_placed = set(islice(touched, TOUCHED_PER_PASS))
            self._touched, touched = touched - now_placed, now_placed
        if touched:  # only what changed is placed again: no pane re-sorts all processes
            self._queue_view.update(touched)
            self._counts.update(touched)
        # The lists take turns: at most LISTS_PER_PASS repaint in one pass, those waiting longest
        # first, the rest on the next pass. Textual paints every dirty widget in one frame, and
        # four busy lists at once make one long frame; two keep each frame short.
        lists = sorted((name for name in ("active", "queue", "events", "graph") if name in dirty),
                       key=lambda name: self._painted.get(name, 0.0))
        later = lists[LISTS_PER_PASS:]
        now = time.monotonic()
        for name in lists[:LISTS_PER_PASS]:
            self._painted[name] = now
            if name == "queue":
                self._set("queue", self._queue_view.snapshot(), process_text)
            elif name == "active":
                self._set("active", self.source.running(), process_text)
            elif name == "graph":
                self._refresh_graph()
            else:
                self._set("events", list(self._events), lambda e: f"{e.process_id} {e.type} {e.message}")
        waits = []  # until the next pass, for what this one left
        if self._touched:  # the rest of a large load: in the next passes
            self._dirty.update({"queue", "header"})
            waits.append(REFRESH_S)
        if later:
            self._dirty.update(later)
            waits.append(REFRESH_S / 2)
        if "calls" in dirty:
            since = now - self._painted.get("calls", 0.0)
            if since >= CALLS_REFRESH_S:
                self._painted["calls"] = now
                self._load_calls()
            else:
                self._dirty.add("calls")
                waits.append(max(REFRESH_S, CALLS_REFRESH_S - since))
        if waits and self._refresh_timer is None:
            self._refresh_timer = self.set_timer(min(waits), self._refresh)
        if "header" in dirty:
            self._refresh_header()

    def _set(self, list_id: str, items: Sequence[Any], text: Callable[[Any], str]) -> None:
        self.panes.show(list_id, items, text)

    # -- rows ------------------------------------------------------------------------------------

    def get_theme_variable_defaults(self) -> dict[str, str]:
        # $state-* for themes that do not define them (Textual's built-ins)
        from console.tui.themes import state_variable_defaults

        return state_variable_defaults(self.current_theme)

    def watch_theme(self) -> None:
        self.rows.theme_changed()
        if self.is_running:
            self._dirty.update({"queue", "active", "graph", "events", "header", "calls"})
            self._schedule_refresh()

    # -- panes fed from the store and the graph ------------------------------------------------------

    def _refresh_graph(self) -> None:
        whole = self.panes.whole_graph
        subject = (whole, None if whole else self.selected_id)
        graph = self.panes.list("graph")
        if graph is not None and subject != self._graph_subject:
            graph.start_over()  # the relations of another process: a new list, nothing "left" it
        self._graph_subject = subject
        rows = self.rows.graph_rows(whole, self.selected_id, self._graph_layout)
        self._set("graph", rows, lambda r: f"{r[1]} {r[2]} {self.rows.state_of(r[1])}")

    @work(exclusive=True, group="calls")
    async def _load_calls(self) -> None:
        self._set("calls", await self.rows.call_rows(), lambda r: f"{r[0]} {r[2]} {r[3]}")
        if self._transfer_status() is not None:
            self.refresh_bindings()  # the chosen transfer's keys follow its status

    def _refresh_header(self) -> None:
        counts = {state.value: n for state, n in self._counts.counts.items()}
        self.query_one(HeaderBar).set_counts([(counts.get(state, 0), state, self.rows.state_style(state))
                                              for state in STATE_ORDER
                                              if counts.get(state) or state in ("running", "queued")])

    def _tick(self) -> None:
        """Once a second: the status bar, the sparklines, ages and elapsed times."""
        if self._stopped or not self.is_running:  # not while the screen is torn down
            return
        self.query_one(HeaderBar).set_trends(*self.trends.tick())
        self.query_one("#status", StatusBar).set_parts(status_parts(
            lag_ms=self.trends.lag_now, provider=self.provider, db=self.settings.db_path, intake=self.intake,
            log_path=self.log_path, observed=self.host.observing, read_only=self.read_only))
        self._age_queue()
        if self.source is not None and self.source.running():
            self._dirty.add("active")
            self._schedule_refresh()

    def _age_queue(self) -> None:
        """The queue's AGE counts up with the clock: its rows on screen are made again, and
        only the lines whose text changed are drawn (a screenful, not the whole queue)."""
        queue = self.panes.list("queue")
        if queue is not None and queue.display:
            queue.refresh_rows()

    # -- selection -----------------------------------------------------------------------------------

    @on(RowList.Highlighted)
    def _highlighted(self, event: RowList.Highlighted) -> None:
        list_id = event.rowlist.id
        if list_id in ("queue", "active") and isinstance(event.item, Process):
            self._select(event.item.id)
        elif list_id == "graph" and event.item and not self.panes.whole_graph:
            pass  # moving inside the graph does not re-centre it; enter does
        elif list_id == "calls" and event.item:
            key = event.item[1]
            kind, _, ident = key.partition(":")
            if kind == "call":
                self.selected_call = ident
            else:
                self._select(ident)
            self.refresh_bindings()  # a transfer's keys show while one is chosen

    def _select(self, pid: str) -> None:
        if pid != self.selected_id:
            self.selected_id = pid
            self._dirty.add("graph")
            self._schedule_refresh()

    @on(RowList.Chosen)
    def _chosen(self, event: RowList.Chosen) -> None:
        self.action_details()

    def _chosen_row(self) -> tuple[RowList, Any] | None:
        """The focused list and the key of the row the user chose in it; None (and says why)
        when the cursor moved there by itself because the chosen row left the list."""
        focused = self.focused
        if not isinstance(focused, RowList) or focused.chosen is None:
            return None
        if focused.unconfirmed:
            gone = _row_label(focused.id, focused.left) if focused.left is not None else "The chosen row"
            self.notify(f"{gone} left the list. Choose a row with ↑/↓, then press the key again.",
                        title="nothing done", severity="warning", markup=False)
            return None
        return focused, focused.chosen

    def _focused_process(self) -> Process | None:
        """The process the keys act on: the one on the row the user chose, looked up by its id
        (never by the row's position, which moves as the list changes)."""
        chosen = self._chosen_row()
        if chosen is None or self.source is None:
            return None
        rows, key = chosen
        pid: str | None = None
        if rows.id in ("queue", "active"):
            pid = key
        elif rows.id == "graph":
            pid = key[1]
        elif rows.id == "calls":
            kind, _, ident = key.partition(":")
            pid = ident if kind in ("vr", "tr") else None
        elif rows.id == "events":
            pid = rows.selected.process_id if rows.selected is not None else None
        return self.source.processes.get(pid) if pid else None

    # -- actions ---------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.LIST_ACTIONS and (isinstance(self.screen, ModalScreen) or isinstance(self.focused, Input)):
            return False  # the key is the input's or the dialog's
        if action in ("complete_transfer", "cancel_transfer"):
            status = self._transfer_status()
            if status is None:
                return False  # not shown: no transfer is chosen
            return status == "ready" if action == "complete_transfer" else status not in TRANSFER_DONE
        return True

    def _transfer_status(self) -> str | None:
        """The status of the transfer on the focused calls row, if that is a transfer."""
        focused = self.focused
        if isinstance(focused, RowList) and focused.id == "calls" and focused.selected is not None \
                and focused.selected[1].startswith("tr:") and not isinstance(self.screen, ModalScreen):
            return focused.selected[2]
        return None

    def _chosen_transfer(self) -> str | None:
        chosen = self._chosen_row()
        if chosen is None or chosen[0].id != "calls" or not chosen[1].startswith("tr:"):
            return None
        return chosen[1].partition(":")[2]

    def action_complete_transfer(self, transfer_id: str | None = None) -> None:
        transfer_id = transfer_id or self._chosen_transfer()
        if transfer_id is not None and self.operator.can_act():
            self.operator.complete_transfer(transfer_id)

    def action_cancel_transfer(self, transfer_id: str | None = None) -> None:
        transfer_id = transfer_id or self._chosen_transfer()
        if transfer_id is not None and self.operator.can_act():
            self.operator.cancel_transfer(transfer_id)

    async def action_resume(self, force: bool = False) -> None:
        if not self.operator.can_act():
            return
        p = self._focused_process()
        if p is not None:
            await self.operator.resume(p, force)

    async def action_force_resume(self) -> None:
        await self.action_resume(force=True)

    def action_cancel(self) -> None:
        if not self.operator.can_act():
            return
        p = self._focused_process()
        if p is not None:
            self.operator.cancel(p)

    def action_details(self) -> None:
        focused = self.focused
        if isinstance(focused, RowList) and focused.id == "calls":
            transfer_id = self._chosen_transfer()
            if transfer_id is not None:
                self._show_transfer(transfer_id)
                return
        if (isinstance(focused, RowList) and focused.id == "graph" and focused.chosen and not focused.unconfirmed
                and not self.panes.whole_graph):
            self._select(focused.chosen[1])
        p = self._focused_process()
        if p is None or self.source is None:
            return
        ups = [d.dependency for d in self.source.graph.upstream(p.id)]
        downs = [d.dependent for d in self.source.graph.downstream(p.id)]
        self.push_screen(DetailsScreen(p, ups, downs, self.source))

    def _show_transfer(self, transfer_id: str) -> None:
        keys = {binding_id: shown for shown, _, binding_id, _ in self.key_hints() if binding_id}

        def closed(what: str | None) -> None:
            if what == "complete":
                self.action_complete_transfer(transfer_id)
            elif what == "cancel":
                self.action_cancel_transfer(transfer_id)

        self.push_screen(TransferScreen(transfer_id, self.source, keys), closed)

    def action_new_voice(self) -> None:
        if self.operator.can_act():
            self.operator.new_voice(self.selected_call, sent=lambda call: setattr(self, "selected_call", call))

    def action_transfer(self) -> None:
        if self.operator.can_act():
            self.operator.transfer(self.selected_call)

    def action_filter(self) -> None:
        focused = self.focused
        self._filter_target = focused.id if isinstance(focused, RowList) else "queue"
        box = self.query_one("#filter", Input)
        box.value = self.panes.filters.get(self._filter_target, "")
        box.cursor_position = len(box.value)
        box.placeholder = f"filter {self._filter_target} (esc to close)"
        box.display = True
        # at once, not on the next turn (`focus()` is deferred): keys typed right after `/`
        # belong to the filter, never to the list's actions (`r` would resume)
        self.screen.set_focus(box)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.panes.filters[self._filter_target] = event.value
        self._dirty.add(self._filter_target)
        self._schedule_refresh()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one(f"#{self._filter_target}", RowList).focus()

    def on_key(self, event: Any) -> None:
        box = self.query_one("#filter", Input)
        if event.key == "escape" and box.display:
            box.display = False
            self.query_one(f"#{self._filter_target}", RowList).focus()
            event.stop()

    def action_toggle_graph(self) -> None:
        self.panes.whole_graph = not self.panes.whole_graph
        self._dirty.add("graph")
        self._refresh()

    def action_toggle_all(self) -> None:
        self.show_all = not self.show_all
        self._build_views()
        self._dirty.add("queue")
        self._refresh()
        self.notify("showing completed processes too" if self.show_all else "hiding completed processes")

    async def action_export(self) -> None:
        focused = self.focused if isinstance(self.focused, RowList) else self.query_one("#queue", RowList)
        count, stem = await export_list(focused, self.settings.resolved_data_dir / "exports")
        self.notify(f"exported {count} rows to {stem}.csv and .json", markup=False)

    def key_hints(self) -> list[tuple[str, str, str, Binding]]:
        """(keys as shown, description, binding id, binding) for every binding, after the
        keymap from the settings: the help screen and the key bar both show these."""
        keymap = getattr(self, "_keymap", {})
        rows = []
        for b in self.BINDINGS:
            keys = keymap.get(b.id, b.key) if b.id else b.key
            shown = ", ".join(self.get_key_display(Binding(k.strip(), "")) for k in keys.split(","))
            rows.append((shown, b.description, b.id or "", b))
        return rows

    def push_screen(self, *args: Any, **kwargs: Any) -> Any:
        result = super().push_screen(*args, **kwargs)
        self.call_after_refresh(self._update_keys)  # a dialog's keys replace the lists' keys
        return result

    def pop_screen(self) -> Any:
        result = super().pop_screen()
        self.call_after_refresh(self._update_keys)
        return result

    def _update_keys(self) -> None:
        if self.is_running and not self._stopped:
            self.screen_stack[0].query_one("#keys", KeyBar).update_keys()

    def action_focus_next(self) -> None:
        if not self._focus_pane(1):
            super().action_focus_next()

    def action_focus_previous(self) -> None:
        if not self._focus_pane(-1):
            super().action_focus_previous()

    def _focus_pane(self, step: int) -> bool:
        """tab and shift+tab from a pane: the focus to the next pane (`step` 1) or the one
        before (-1), the lower panes included when a narrow screen shows one of them at a time
        (Textual's own order skips the hidden ones). False elsewhere (a dialog, the filter)."""
        focused = self.focused
        if self.screen is not self.screen_stack[0] or not isinstance(focused, RowList) or focused.id not in PANE_ORDER:
            return False
        target = PANE_ORDER[(PANE_ORDER.index(focused.id) + step) % len(PANE_ORDER)]
        # at once (`focus()` waits a turn): a second tab typed quickly moves on from this pane
        self.screen.set_focus(self.query_one(f"#{target}", RowList))
        return True

    def action_help(self) -> None:
        rows = [(keys, description, binding_id) for keys, description, binding_id, _ in self.key_hints()]
        rows.append(("ctrl+p", "Command palette", "command_palette"))
        self.push_screen(HelpScreen(rows))

    async def action_quit(self) -> None:
        self.notify("stopping: running work gets its grace period…")
        await self.shutdown()
        self.exit()

    async def shutdown(self) -> None:
        """Drain the engine (running work is persisted as interrupted) and close the store."""
        if self._stopped:
            return
        self._stopped = True
        if not self.is_headless:
            for sig in self.STOP_SIGNALS:
                asyncio.get_running_loop().remove_signal_handler(sig)
        for t in self._tasks:
            t.cancel()
        await self.host.shutdown()

    async def on_unmount(self) -> None:
        await self.shutdown()

    # -- command palette ----------------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        operator = self.operator
        yield SystemCommand("Resume all interrupted", "Queue every interrupted process again", operator.resume_all)
        yield SystemCommand("Cancel all queued", "Cancel every queued or waiting process", operator.cancel_all)
        yield SystemCommand("Load workflow…", "Register a workflow file's processes", operator.ask_workflow)
        yield SystemCommand("Export the focused list", "Write it as CSV and JSON to the data dir", self.action_export)
        yield SystemCommand("Show or hide completed processes", "In the queue pane", self.action_toggle_all)
        yield SystemCommand("Set the Groq API key…", "Kept in memory only, never written", operator.ask_key)

def _row_label(list_id: str | None, key: Any) -> str:
    """A row's key as the user reads it: a process id, a call or transfer id, an event."""
    if list_id == "graph":
        return clean(key[1])
    if list_id == "calls":
        return clean(str(key).partition(":")[2])
    if list_id == "events":
        return f"event #{key}"
    return clean(key)
