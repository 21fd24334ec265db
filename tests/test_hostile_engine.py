"""Hostile conditions for the engine: a runner that loses its lease to another stops at once
and writes nothing more."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import wait_until

SB = [sys.executable, "-m", "console"]
TTL_S = 1.0


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def ready(db: Path, sql: str, expected: list[tuple]) -> bool:
    """For waits: the database may exist before its tables do."""
    try:
        return db.exists() and rows(db, sql) == expected
    except sqlite3.OperationalError:
        return False


def runner(db: Path, data: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "SWITCHBOARD_ENGINE__LEASE_TTL_S": str(TTL_S), "SWITCHBOARD_DATA_DIR": str(data)}
    return subprocess.Popen([*SB, "run", "--db", str(db), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_a_runner_that_lost_its_lease_stops_without_writing_and_exits_3(tmp_path):
    db = tmp_path / "t.db"
    wf = tmp_path / "w.toml"
    wf.write_text('[[process]]\nid = "long"\nkind = "shell"\ncommand = ["sleep", "60"]\n')
    a = runner(db, tmp_path / "a", "--workflow", str(wf), "--until-idle")
    b = None
    try:
        wait_until(lambda: ready(db, "SELECT state FROM processes", [("running",)]), timeout=30)
        a_pid = rows(db, "SELECT pid FROM lease")[0][0]
        assert a_pid == a.pid
        os.kill(a.pid, signal.SIGSTOP)
        wait_until(lambda: time.time() - rows(db, "SELECT heartbeat_at FROM lease")[0][0] > TTL_S * 1.5, timeout=30)
        b = runner(db, tmp_path / "b")
        wait_until(lambda: rows(db, "SELECT pid FROM lease")[0][0] == b.pid, timeout=30)
        wait_until(lambda: rows(db, "SELECT attempt, state FROM processes") == [(2, "running")], timeout=30)
        taken_at = rows(db, "SELECT max(seq) FROM events")[0][0]
        os.kill(a.pid, signal.SIGCONT)
        code = a.wait(timeout=15)
        err = a.stderr.read()
        assert code == 3, err
        assert err.strip().splitlines()[-1] == (
            f"switchboard: lost the database's lease to runner pid {b.pid} on {os.uname().nodename}; "
            "stopped without writing")
        assert "Traceback" not in err
        assert "Traceback" not in (tmp_path / "a" / "switchboard.log").read_text()
        # The new owner's rows only: its attempt still running, nothing from A after the takeover.
        assert rows(db, "SELECT attempt, state FROM processes") == [(2, "running")]
        assert rows(db, f"SELECT type FROM events WHERE seq > {taken_at}") == []
        assert rows(db, "SELECT pid FROM lease")[0][0] == b.pid
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.terminate()
                p.wait(timeout=30)


class Notices:
    """A host listener that keeps what the console would show."""

    def __init__(self) -> None:
        self.notices: list[tuple[str, str]] = []

    def host_event(self, event) -> None:
        pass

    def host_source(self, source, events) -> None:
        pass

    def notify(self, message: str, *, title: str = "", severity="information", markup: bool = True, **kw) -> None:
        self.notices.append((str(severity), message))


async def test_a_console_running_the_engine_says_it_lost_the_lease_and_stops_its_engine(tmp_path):
    from conftest import make_settings, wait_for
    from console.store import LeaseHolder
    from console.store.sqlite import SqliteStore
    from console.tui.host import EngineHost

    listener = Notices()
    host = EngineHost(make_settings(tmp_path, lease_ttl_s=1.0), listener)
    await host.start()
    assert host.engine is not None and host.engine.dispatching
    other = SqliteStore(tmp_path / "t.db")
    await other.open()
    try:
        now = time.time()
        taker = LeaseHolder("other", 4242, "elsewhere", "runner", now, now)
        assert await other.acquire_lease(taker, lambda h: True) is None
        await wait_for(lambda: any(s == "error" for s, _ in listener.notices), timeout=15)
        assert ("error", "Lost the database's lease to runner pid 4242 on elsewhere: this console's engine "
                "stopped without writing; quit and open the database again to observe it.") in listener.notices
        assert not host.engine.dispatching
        assert (await other.lease_holder()).token == "other"  # not released by the old owner
    finally:
        await host.shutdown()
        await other.close()
