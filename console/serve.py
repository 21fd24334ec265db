"""`switchboard serve`: the console in browser tabs, beside one engine that lives as long as
`serve` does.

textual-serve starts a console process per tab and ends it when the tab goes (a reload is a
new process). So the engine does not run in a tab: `serve` starts a headless `switchboard run`
on the same database and stops it with SIGTERM when it ends, and every tab is a console that
observes that runner and acts through its inbox."""

from __future__ import annotations

import asyncio
import ipaddress
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from console.engine.orchestrator import lease_is_stale
from console.model import UserError
from console.settings import DatabaseUrl, Settings
from console.store import LeaseHolder, open_store

RUNNER_START_TIMEOUT_S = 60.0
# After SIGTERM the runner gives running work its grace period, then persists and closes.
RUNNER_STOP_MARGIN_S = 15.0


def url_host(host: str) -> str:
    """`host` as a URL writes it: an IPv6 literal in brackets (RFC 3986)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a name, e.g. localhost
    return f"[{host}]" if address.version == 6 else host


def public_url(host: str, port: int) -> str:
    """The address the page tells the browser to fetch its scripts and websocket from."""
    return f"http://{url_host(host)}:{port}"


def console_argv(command: list[str], db: Path | DatabaseUrl, config: str | None) -> list[str]:
    """`switchboard <command…>` on this database, in this Python."""
    return [sys.executable, "-m", "console", *command, "--db", str(db), *(["--config", config] if config else [])]


async def live_owner(settings: Settings) -> LeaseHolder | None:
    """The process that runs the database's engine now, if any (a CLI command holds it for a
    moment only: not an owner). Opens the database first, creating it."""
    store = open_store(str(settings.db_path), settings.store.synchronous, settings.store.busy_timeout_ms)
    await store.open()
    try:
        holder = await store.lease_holder()
    finally:
        await store.close()
    if holder is None or holder.role == "cli" or lease_is_stale(holder, settings.engine.lease_ttl_s):
        return None
    return holder


class EngineRunner:
    """A headless `switchboard run` as `serve`'s engine: started in its own session (the
    terminal's ctrl+c is `serve`'s to handle), stopped with SIGTERM as a service manager
    would, and never left behind: on Linux it gets SIGTERM if `serve` dies."""

    def __init__(self, argv: list[str], stop_timeout_s: float):
        self.argv = argv
        self.stop_timeout_s = stop_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=_ended_with_parent())
        # reaped as soon as it exits: a zombie would look alive to the tabs' owner check
        threading.Thread(target=self._watch, args=(self.process,), daemon=True).start()

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        if not self._stopping:
            print(f"switchboard: the engine (runner pid {process.pid}) stopped with status {code}; the tabs "
                  "say so and offer to take it over", file=sys.stderr, flush=True)

    async def wait_until_owner(self, settings: Settings, timeout: float = RUNNER_START_TIMEOUT_S) -> int | None:
        """None once the runner holds the database; its exit status if it ended first (it
        said why on stderr)."""
        assert self.process is not None
        store = open_store(str(settings.db_path), settings.store.synchronous, settings.store.busy_timeout_ms)
        await store.open()
        deadline = time.monotonic() + timeout
        try:
            while True:
                holder = await store.lease_holder()
                if holder is not None and holder.pid == self.process.pid:
                    return None
                code = self.process.poll()
                if code is not None:
                    return code
                if time.monotonic() > deadline:
                    print(f"switchboard: the engine did not start within {timeout:g} s", file=sys.stderr)
                    return 1
                await asyncio.sleep(0.05)
        finally:
            await store.close()

    def stop(self) -> int | None:
        """SIGTERM, then wait for the runner to persist and exit (SIGKILL if it hangs)."""
        process = self.process
        if process is None:
            return None
        self._stopping = True
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait()


def _ended_with_parent() -> Callable[[], None] | None:
    """On Linux, what the runner runs before it starts: ask for SIGTERM when the process that
    started it ends (PR_SET_PDEATHSIG). The C library is loaded here, not in the child."""
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)


def serve(settings: Settings, *, host: str, port: int, config: str | None, theme: str | None,
          read_only: bool, listen: str | None) -> int:
    from textual_serve.server import Server

    owner = asyncio.run(live_owner(settings))
    runner = None
    if owner is not None:
        if listen:
            raise UserError(f"--listen: {owner.role} pid {owner.pid} runs this database's engine, and the intake "
                            "runs beside it (start that one with --listen)")
        print(f"switchboard: {owner.role} pid {owner.pid} runs this database's engine; the tabs observe it",
              file=sys.stderr, flush=True)
    elif not read_only:
        runner = EngineRunner(console_argv(["run"], settings.db_path, config)
                              + (["--listen", listen] if listen else []),
                              stop_timeout_s=settings.engine.shutdown_grace_s + RUNNER_STOP_MARGIN_S)
    try:
        if runner is not None:
            runner.start()
            code = asyncio.run(runner.wait_until_owner(settings))
            if code is not None:
                return code
        tab = console_argv([], settings.db_path, config) + (["--theme", theme] if theme else [])
        tab += ["--read-only"] if read_only else ["--observe"]
        url = public_url(host, port)
        engine = f"engine: runner pid {runner.pid}, " if runner is not None else ""
        print(f"switchboard: the console at {url} ({engine}ctrl+c stops)", file=sys.stderr, flush=True)
        Server(shlex.join(tab), host=host, port=port, title="Switchboard", public_url=url).serve()
        return 0
    finally:
        if runner is not None:
            runner.stop()
