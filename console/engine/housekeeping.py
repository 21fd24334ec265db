"""The upkeep of the engine's history."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from console.store import History

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 600.0


async def prune_history(store: History, config: Any) -> None:
    """Forever: drops the history older than the engine's `history_retention_hours`, now and
    then."""
    while True:
        try:
            cutoff = time.time() - config.history_retention_hours * 3600
            await store.prune_history(cutoff)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("pruning history failed")
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
