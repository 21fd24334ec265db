"""This engine's claim on its database."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

from console.model import UserError
from console.store import LeaseHolder, Store

log = logging.getLogger(__name__)

CLI_LEASE_WAIT_S = 5.0


class OwnedElsewhere(UserError):
    def __init__(self, db: str, holder: LeaseHolder):
        super().__init__(
            f"{db} is already dispatched by {holder.role} pid {holder.pid} on {holder.host}; "
            "use `switchboard status`, `resume` and `cancel` to act through it"
        )
        self.holder = holder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_is_stale(holder: LeaseHolder, ttl_s: float) -> bool:
    """Whether the holder of a database's lease has stopped owning it: its heartbeat is older
    than `ttl_s`, or it ran on this host and its process is gone."""
    if time.time() - holder.heartbeat_at > ttl_s:
        return True
    # On this host we can tell at once whether the owner is still alive (kill -9 case).
    return holder.host == socket.gethostname() and holder.pid != os.getpid() and not _pid_alive(holder.pid)


class Lease:
    """The claim: taken at start (a CLI command holds the database for a moment only, so it is
    waited for), renewed by a heartbeat, released at stop. A stale claim (see `lease_is_stale`)
    is taken over."""

    def __init__(self, store: Store, role: str, ttl_s: float):
        self._store = store
        self._role = role
        self._ttl_s = ttl_s
        self._token = os.urandom(16).hex()

    async def acquire(self) -> None:
        """Raises OwnedElsewhere if another live owner holds it."""
        deadline = time.monotonic() + CLI_LEASE_WAIT_S
        while True:
            now = time.time()
            holder = LeaseHolder(self._token, os.getpid(), socket.gethostname(), self._role, now, now)
            current = await self._store.acquire_lease(holder, self._is_stale)
            if current is None:
                return
            if current.role != "cli" or time.monotonic() > deadline:
                raise OwnedElsewhere(self._store.path, current)
            await asyncio.sleep(0.05)

    def _is_stale(self, holder: LeaseHolder) -> bool:
        return lease_is_stale(holder, self._ttl_s)

    async def heartbeat(self, on_lost: Callable[[], None]) -> None:
        """Renews the claim, a few times per time-to-live; calls `on_lost` and returns if
        another owner has taken it."""
        interval = self._ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self._store.renew_lease(self._token, time.time()):
                    log.error("lost the claim on %s; dispatching stops", self._store.path)
                    on_lost()
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("renewing the claim failed")

    async def release(self) -> None:
        await self._store.release_lease(self._token)
