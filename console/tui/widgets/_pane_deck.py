"""The panes under the queue: side by side in a wide terminal, one at a time in a narrow one."""

from __future__ import annotations

from typing import Any

from textual import events
from textual.containers import Container
from textual.widget import Widget

# From this many columns the lower panes stand two by two; below it each would be too narrow
# for its ids and messages (a pane of ~38 columns), so they take turns at full width.
WIDE_FROM = 120
BREAKPOINTS = [(0, "-narrow"), (WIDE_FROM, "-wide")]  # the classes Textual gives the screen


class PaneDeck(Container):
    """Holds the lower panes. On a `-narrow` screen one pane is shown at a time (see app.tcss):
    its border title names them all, the one shown highlighted, and a pane that gets the
    focus (tab, shift+tab) is the one shown."""

    def __init__(self, *panes: Widget, **kwargs: Any) -> None:
        super().__init__(*panes, **kwargs)
        self.titles: dict[str, str] = {}  # each pane's own title
        self.names: dict[str, str] = {}  # each pane's name in the narrow title
        self.shown = ""

    @property
    def tabbed(self) -> bool:
        return self.is_mounted and self.screen.has_class("-narrow")

    def set_title(self, pane_id: str, title: str, name: str | None = None) -> None:
        if name is not None:
            self.names[pane_id] = name
        if self.titles.get(pane_id) != title:
            self.titles[pane_id] = title
            self._retitle()

    def show(self, pane_id: str) -> None:
        if pane_id != self.shown:
            if self.shown:
                self.get_child_by_id(self.shown).remove_class("-shown")
            self.get_child_by_id(pane_id).add_class("-shown")
            self.shown = pane_id
            self._retitle()

    def on_mount(self) -> None:
        if not self.shown and self.children:
            self.show(self.children[0].id or "")

    def on_resize(self) -> None:
        self._retitle()  # the screen may have crossed WIDE_FROM

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if event.widget.parent is self and event.widget.id:
            self.show(event.widget.id)

    def _retitle(self) -> None:
        tabbed = self.tabbed
        for pane in self.children:
            title = self.titles.get(pane.id or "", "")
            if tabbed and pane.id == self.shown:
                # markup: the titles and names are the console's own words, never outside text
                pane.border_title = "".join(f"[reverse] {self.names.get(p.id or '', '')} [/]" if p.id == self.shown
                                            else f" {self.names.get(p.id or '', '')} " for p in self.children)
                pane.border_subtitle = f"{title} · tab: next pane"
            else:
                pane.border_title = title
                pane.border_subtitle = ""
