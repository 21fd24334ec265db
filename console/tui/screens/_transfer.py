"""A warm transfer in full, with the keys to complete or cancel it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.model import TRANSFER_FINAL, Transfer, TransferStatus, Turn
from console.tui.source import Source
from console.tui.widgets import clean, literal, time_of_day


class TransferScreen(ModalScreen[str | None]):
    """A warm transfer in full: who hands the call to whom, its whole summary, the call's latest
    turns. Its keys (the app's binding ids, so [tui.keymap] rebinds them here too) close it
    with what the user asked for: "complete" or "cancel"."""

    DEFAULT_CSS = "TransferScreen { align: center middle; }"

    BINDINGS = [
        Binding("y", "finish('complete')", "Complete", id="complete_transfer"),
        Binding("x", "finish('cancel')", "Cancel transfer", id="cancel_transfer"),
        Binding("escape,enter,q", "dismiss(None)", "Close", show=False),
    ]

    def __init__(self, transfer_id: str, source: Source, keys: dict[str, str] | None = None):
        super().__init__()
        self.transfer_id = transfer_id
        self.source = source
        self.keys = keys or {}  # binding id -> the keys as shown, after the keymap
        self.transfer: Transfer | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="details"):
            yield Static(literal(f"{self.transfer_id}  loading…"), id="transfer-summary")
            yield Static("", id="transfer-keys")

    async def on_mount(self) -> None:
        t = self.transfer = await self.source.transfer(self.transfer_id)
        if t is None:
            self.query_one("#transfer-summary", Static).update(literal(f"no transfer {self.transfer_id}"))
            return
        call = await self.source.call(t.call_id, turns=10)
        self.query_one("#transfer-summary", Static).update(transfer_text(t, call.turns if call else []))
        self.query_one("#transfer-keys", Static).update(self._keys())

    def _keys(self) -> Text:
        keys = {b.id: b.key for b in self.BINDINGS if b.id} | self.keys
        shown = Text("\n")
        if self.transfer is not None and self.transfer.status is TransferStatus.READY:
            shown.append(keys["complete_transfer"], style="bold")
            shown.append(" complete (hand the call over)   ")
        if self.transfer is not None and self.transfer.status not in TRANSFER_FINAL:
            shown.append(keys["cancel_transfer"], style="bold")
            shown.append(" cancel the transfer   ")
        shown.append("esc", style="bold")
        shown.append(" close")
        return shown

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "finish":
            t = self.transfer
            if t is None:
                return False
            return t.status is TransferStatus.READY if parameters == ("complete",) else t.status not in TRANSFER_FINAL
        return True

    def action_finish(self, what: str) -> None:
        self.dismiss(what)


def transfer_text(t: Transfer, turns: list[Turn]) -> Text:
    text = Text()
    text.append(clean(t.id), style="bold")
    text.append(f"  call {clean(t.call_id)} · {clean(t.from_agent)} → {clean(t.to_agent)} · {t.status.value}\n")
    text.append(f"started {time_of_day(t.created_at)}   updated {time_of_day(t.updated_at)}"
                + (f"   completed {time_of_day(t.completed_at)}" if t.completed_at else "") + "\n")
    if t.reason:
        text.append("reason: ", style="bold")
        text.append(clean(t.reason) + "\n")
    source = {"extractive": "computed locally (no model)", "llm": "by the model",
              "llm-unstructured": "by the model, unstructured"}.get(t.summary_source or "", t.summary_source or "—")
    text.append(f"\nsummary ({source})\n", style="bold")
    for key, value in (t.summary or {}).items():
        text.append(f"  {key.replace('_', ' ')}: ", style="bold")
        shown = "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        text.append(clean(shown or "—") + "\n")
    if not t.summary:
        text.append("  — (not ready yet)\n")
    text.append("\nthe call's latest turns\n", style="bold")
    for turn in turns:
        text.append(f"  {time_of_day(turn.created_at)} {turn.role:<9} ")
        text.append(clean(turn.text) + "\n")
    if not turns:
        text.append("  —\n")
    return text
