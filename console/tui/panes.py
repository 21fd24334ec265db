"""The console's five panes: the queue above, the deck of lower panes (active, dependencies,
calls, events) below. What their lists' columns are, and how each is handed its rows: through
its filter, with a title that says a filter is on and how many rows it lets through."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from textual.dom import DOMNode
from textual.markup import escape as markup_escape

from console.model import Process
from console.tui.rows import ACTIVE_BAR_WIDTH, PaneRows
from console.tui.widgets import Column, PaneDeck, RowList, clean

PANE_ORDER = ("queue", "active", "graph", "calls", "events")  # as tab moves the focus
PANE_TITLES = {"queue": ("Queue", "Queue"), "active": ("Active resumes", "Active"),  # (title, name in tabs)
               "graph": ("Dependencies", "Dependencies"), "calls": ("Calls & transfers", "Calls"),
               "events": ("Events", "Events")}
EMPTY_TEXTS = {"queue": "the queue is empty", "active": "nothing running", "graph": "select a process",
               "calls": "no calls yet", "events": "no events yet"}
NO_MATCH = "nothing matches the filter (/ to change it)"


def _process_id(p: Process) -> str:
    return p.id


def queue_pane(rows: PaneRows) -> RowList:
    # Each list draws its pane's border and title itself: a container per pane was one more
    # widget for Textual's compositor to walk in every frame that touched its lines.
    # The queue is the operator's main list and its "why it waits" is long: full width.
    # Ids are sized to the ids shown and cut last; the columns that matter least are
    # dropped first (`drop`) when the pane is narrow.
    return RowList([Column("PRI", 4), Column("PROCESS", 0, fit=_process_id), Column("KIND", 5, drop=1),
                    Column("STATE", 11), Column("WHY IT WAITS", 0), Column("TRY", 4, drop=2), Column("AGE", 6)],
                   rows.queue, key=lambda p: p.id, empty=EMPTY_TEXTS["queue"], id="queue", classes="pane")


def lower_panes(rows: PaneRows) -> PaneDeck:
    return PaneDeck(
        RowList([Column("PROCESS", 0, fit=_process_id), Column("PROGRESS", ACTIVE_BAR_WIDTH),
                 Column("STAGE", 12, drop=2), Column("ELAPSED", 7), Column("HOLDS", 6, drop=1)],
                rows.active, key=lambda p: p.id, empty=EMPTY_TEXTS["active"], id="active", classes="pane"),
        RowList([Column("PROCESS", 0, fit=lambda r: r[0] + r[1]), Column("EDGE", 17), Column("STATE", 11)],
                rows.graph, key=lambda r: (r[0], r[1]), empty=EMPTY_TEXTS["graph"], id="graph",
                classes="pane"),
        RowList([Column("CALL · WORK", 0, fit=lambda r: r[0]), Column("STATUS", 11), Column("LATEST", 0)],
                rows.call, key=lambda r: r[1], empty=EMPTY_TEXTS["calls"], id="calls", classes="pane"),
        RowList([Column("TIME", 8, drop=1), Column("PROCESS", 0, fit=lambda e: e.process_id or ""),
                 Column("EVENT", 11), Column("MESSAGE", 0)],
                rows.event, key=lambda e: e.seq, empty=EMPTY_TEXTS["events"], follow_end=True,
                id="events", classes="pane"),
        id="lower")


class Panes:
    """Hands the panes' lists their rows. `filters` (pane id → text) and `whole_graph` are set
    by the app; `main` is the screen the panes are on."""

    def __init__(self, main: Callable[[], DOMNode]) -> None:
        self._main = main
        self.filters: dict[str, str] = {}
        self.whole_graph = False
        self._lists: dict[str, RowList] = {}
        self._titles: dict[str, str] = {}  # each pane's title as last set

    def titles_at_start(self) -> None:
        main = self._main()
        main.query_one("#queue").border_title = PANE_TITLES["queue"][0]
        deck = main.query_one(PaneDeck)
        for pane_id in PANE_ORDER[1:]:
            deck.set_title(pane_id, *PANE_TITLES[pane_id])

    def list(self, list_id: str) -> RowList | None:
        """The pane's list, once it has been handed rows."""
        return self._lists.get(list_id)

    def show(self, list_id: str, items: Sequence[Any], text: Callable[[Any], str]) -> None:
        """Hand a list its rows, through its filter (`text(row)` is what the filter matches);
        the pane's title says a filter is on and how many rows it lets through."""
        rows = self._lists.get(list_id)
        if rows is None:  # looked up once: a query walks the DOM
            rows = self._lists[list_id] = self._main().query_one(f"#{list_id}", RowList)
        needle = self.filters.get(list_id, "")
        shown = [x for x in items if needle.lower() in text(x).lower()] if needle else items
        title = self.title(list_id)
        if needle:
            title = f"{title} — filter: {clean(needle)} ({len(shown)} of {len(items)})"
        rows.empty = NO_MATCH if needle else EMPTY_TEXTS[list_id]
        rows.set_items(shown)
        if self._titles.get(list_id) != title:  # setting a title repaints the whole pane
            self._titles[list_id] = title
            if list_id == "queue":
                rows.border_title = markup_escape(title)
            else:  # the lower panes share a deck, which draws their titles (as tabs when narrow)
                self._main().query_one(PaneDeck).set_title(list_id, markup_escape(title))

    def title(self, list_id: str) -> str:
        if list_id == "graph":
            return "Dependencies — whole graph (g)" if self.whole_graph else "Dependencies of the selection (g: all)"
        return PANE_TITLES[list_id][0]
