"""In-process publish/subscribe of engine events (the console, the runner, the intake)."""

from __future__ import annotations

import logging
from typing import Callable

from console.model import Event

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]


class EventBus:
    """Subscribers are plain callables run synchronously on the loop: they must not block.
    A subscriber that raises is logged and kept; it never stops the engine."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self.unsubscribe(fn)

    def unsubscribe(self, fn: Subscriber) -> None:
        if fn in self._subscribers:
            self._subscribers.remove(fn)

    def publish(self, event: Event) -> None:
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:  # noqa: BLE001 - a broken subscriber must not stop the engine
                log.exception("event subscriber %r failed", fn)
