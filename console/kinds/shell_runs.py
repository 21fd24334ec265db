"""Records of the commands the shell kind has running, so that a runner that was killed
(`kill -9`) leaves behind nothing that runs beside the next attempt.

When a command starts, a small file in data_dir/running names the process, the command's
pid (its process group: it leads its own session) and its start time in clock ticks since
boot (/proc/<pid>/stat, field 22); the file goes when the command has exited. Before a
process runs again, a file still there means a runner died while the command ran: if the
pid still belongs to a process with that same start time, it is the same command (a pid
that was reused has another start time) and its group is stopped first. Files are 0600 in
a 0700 folder. No fsync: a runner killed on a live machine leaves the page cache intact,
and a machine that went down took the commands with it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

from console.workdirs import path_name

_POLL_S = 0.02  # how often a left-behind command is looked at while it is being stopped


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot), or None if there is no such live
    process (a zombie has exited: it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or parentheses
    fields = stat[stat.rfind(b")") + 2:].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class RunRecords:
    def __init__(self, folder: Path):
        self.folder = folder
        self._made = False

    def _path(self, process_id: str) -> Path:
        return self.folder / (path_name(process_id) + ".json")

    def record(self, process_id: str, pid: int) -> None:
        """Note that `pid` (the leader of its own group) runs `process_id`'s command. A
        command already gone is not recorded."""
        started = start_time(pid)
        if started is None:
            return
        if not self._made:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._made = True
        data = json.dumps({"process": process_id, "pid": pid, "pgid": pid, "start": started}).encode()
        path = self._path(process_id)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def forget(self, process_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(process_id))

    def left_behind(self, process_id: str) -> tuple[int, int] | None:
        """(pgid, start time) of a command a dead runner left running for `process_id`, if it
        still runs; a record of one that is gone is dropped."""
        try:
            data = json.loads(self._path(process_id).read_bytes())
            pgid, started = int(data["pgid"]), int(data["start"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self.forget(process_id)  # unreadable: nothing can be known of it
            return None
        if start_time(pgid) != started:
            self.forget(process_id)
            return None
        return pgid, started


async def stop_left_behind(pgid: int, started: int, grace_s: float) -> str:
    """SIGTERM to the group, SIGKILL after `grace_s`; returns once its leader is gone, saying
    how it went. Signals go only while the leader is still the recorded process."""
    how = "SIGTERM"
    if not _signal_if_same(pgid, started, signal.SIGTERM):
        return "it had exited"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while start_time(pgid) == started and loop.time() < deadline:
        await asyncio.sleep(_POLL_S)
    if _signal_if_same(pgid, started, signal.SIGKILL):
        how = "SIGKILL after SIGTERM"
        while start_time(pgid) == started:
            await asyncio.sleep(_POLL_S)
    # what else of its group is left (a shell's children): the group id cannot be given to
    # another group while one of them lives
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    return f"stopped with {how}"


def _signal_if_same(pgid: int, started: int, sig: int) -> bool:
    if start_time(pgid) != started:
        return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
