"""`shell`: a command run as a child process, watched from the event loop.

Protocol on stdout: `::progress <0-100>` and `::checkpoint <json>`; any other line (and
all of stderr) goes to the process log. A resumed command finds its last checkpoint in
SWITCHBOARD_CHECKPOINT and its run number in SWITCHBOARD_ATTEMPT. Exit 0 → completed,
75 (EX_TEMPFAIL) → interrupted(transient), anything else → an error (retried until
max_attempts) whose reason is the exit status and the last lines of stderr. Cancel: SIGTERM
to the command's process group, SIGKILL after a grace period.

How a command runs (Linux with pidfds, kernel ≥ 5.3): the spawner process (`spawner.py`)
starts it, so the fork/exec is not on the loop, and reports its exit. Its stdout and stderr
are plain pipes: read once it has exited, or, if it runs longer than 10 ms, as readers on the
loop; no asyncio transports, stream readers or helper tasks, and one future wakes the run. If
the spawner cannot be used, the loop spawns the command itself the same way and watches it
through a pidfd. Elsewhere the same protocol runs on asyncio subprocesses (`_run_asyncio`).

Measured on the benchmark's 1,000-command DAG of /bin/true (5 at a time, 2 cores): the loop's
CPU per command went from ~1.8 ms (asyncio subprocesses: Popen, transports, three tasks) to
~0.5 ms, engine included.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import marshal
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any, Awaitable, Iterable

from console.kinds import SpecError, spawner
from console.kinds.context import RunContext
from console.kinds.shell_log import CappedLog
from console.kinds.shell_runs import RunRecords, stop_left_behind
from console.model import Interrupted, InterruptionType, PermanentFailure

log = logging.getLogger(__name__)

EX_TEMPFAIL = 75
_STREAM_LIMIT = 1 << 20  # a line of up to 1 MiB (big checkpoints)
_READ_CHUNK = 1 << 16  # below malloc's mmap threshold: small reads stay cheap
# Most commands are short. Their pipes are read once they have exited (all the output is
# there then), without registering them with the loop; a command still running after this
# long gets its pipes watched by the loop and a watcher for the engine's `stopping` flag (a
# task). So output is handled at most this late, and work that started within this much of a
# shutdown gets its SIGTERM this much later at most.
_WATCH_AFTER_S = 0.01
# A failed command's reason carries the last lines of its stderr (what it said about why),
# joined on one line and cut to its end.
_ERR_TAIL_LINES = 3
_ERR_TAIL_CHARS = 300


class ShellKind:
    name = "shell"

    def validate_spec(self, raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        allowed = {"command", "shell", "env", "cwd"}
        for key in raw:
            if key not in allowed:
                raise SpecError(key, f"unknown field for kind shell (expected {', '.join(sorted(allowed))})")
        use_shell = raw.get("shell", False)
        if not isinstance(use_shell, bool):
            raise SpecError("shell", "must be true or false")
        command = raw.get("command")
        if use_shell:
            if not isinstance(command, str) or not command.strip():
                raise SpecError("command", "with shell = true, command must be a non-empty string")
        elif not (isinstance(command, list) and command and all(isinstance(a, str) for a in command)):
            raise SpecError("command", "must be a non-empty list of strings (argv), or a string with shell = true")
        env = raw.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise SpecError("env", "must be a table of string = string")
        cwd = raw.get("cwd", ".")
        if not isinstance(cwd, str):
            raise SpecError("cwd", "must be a string")
        resolved = (base_dir / cwd).resolve()
        if not resolved.is_dir():
            raise SpecError("cwd", f"{resolved} is not a folder")
        return {"command": command, "shell": use_shell, "env": env, "cwd": str(resolved)}

    async def run(self, ctx: RunContext) -> None:
        records = _records(ctx)
        left = records.left_behind(ctx.process_id)
        if left is not None:
            await _stop_the_one_left_behind(ctx, records, *left)
        if _pidfd_supported():
            await _finished(_start_direct(ctx, records))
        else:
            _outcome(*await _run_asyncio(ctx, records))

    def begin(self, ctx: RunContext) -> Awaitable[None] | None:
        """Asks for the command at once (see kinds/__init__.py): the dispatcher's pass runs a
        turn before the run's task, and a turn here is ~0.5 ms of a command's ~4 under load.
        A command a dead runner left running must be stopped first: that is `run`'s."""
        if not _pidfd_supported():
            return None
        records = _records(ctx)
        if records.left_behind(ctx.process_id) is not None:
            return None
        return _finished(_start_direct(ctx, records))


def _capped_log(ctx: RunContext) -> CappedLog:
    return CappedLog(ctx.log, ctx.settings.engine.max_log_lines)


def _records(ctx: RunContext) -> RunRecords:
    folder = ctx.settings.resolved_data_dir / "running"
    return ctx.service("shell.run_records", lambda: RunRecords(folder))


async def _stop_the_one_left_behind(ctx: RunContext, records: RunRecords, pgid: int, started: int) -> None:
    """Before the process runs again: its command from a runner that died is still running
    (same pid, same start time). Two copies must never run at once, so it is stopped."""
    ctx.log(f"the command of a runner that stopped unexpectedly still runs (process group {pgid}): "
            "stopping it before this attempt")
    how = await stop_left_behind(pgid, started, ctx.cancel_grace_s)
    ctx.log(f"the command left running (process group {pgid}) {how}; starting attempt {ctx.attempt}")
    records.forget(ctx.process_id)


async def _finished(child: _Child) -> None:
    _outcome(await _serve_direct(child), child.err_tail)


def _note_running(records: RunRecords, process_id: str, pid: int) -> None:
    try:
        records.record(process_id, pid)
    except OSError as e:  # e.g. a full disk: the command runs all the same, unrecorded
        log.warning("%s: cannot record its running command (pid %d): %s", process_id, pid, e.strerror)


def _outcome(code: int, err_tail: Iterable[str] = ()) -> None:
    """A command's exit status as the run's outcome: returns for 0, raises otherwise. A
    failure is the command's own (an error, not an exception of the engine): its reason is
    the status and what the command last wrote to stderr."""
    if code == 0:
        return
    if code == EX_TEMPFAIL:
        raise Interrupted(_with_tail(f"exit {EX_TEMPFAIL} (temporary failure)", err_tail),
                          InterruptionType.TRANSIENT)
    how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    raise Interrupted(_with_tail(how, err_tail), InterruptionType.ERROR)


def _with_tail(how: str, err_tail: Iterable[str]) -> str:
    """`exit status 1: <the last lines of stderr, on one line>`, at most _ERR_TAIL_CHARS of them."""
    said = " | ".join(line.strip() for line in err_tail if line.strip())
    if len(said) > _ERR_TAIL_CHARS:
        said = "…" + said[-(_ERR_TAIL_CHARS - 1):]
    return f"{how}: {said}" if said else how


def _argv(spec: dict[str, Any]) -> list[str]:
    return ["/bin/sh", "-c", spec["command"]] if spec.get("shell") else list(spec["command"])


# What exec says of the command itself: running it again cannot help, so it fails at once.
# (Out of memory, processes or file descriptors, or a lost spawner, may pass: retried.)
_EXEC_PERMANENT = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.E2BIG,
                             errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.EISDIR,
                             errno.ETXTBSY})
_PROGRAM_SHOWN_MAX = 200  # the command named in a reason (an argv can be megabytes)


def _cannot_start(spec: dict[str, Any], e: OSError) -> Exception:
    """The run's outcome when the command did not start: one line naming the program (not
    the whole argv) and the OS's reason; permanent when exec itself refused it."""
    program = spec["command"] if spec.get("shell") else spec["command"][0]
    shown = program if len(program) <= _PROGRAM_SHOWN_MAX else program[:_PROGRAM_SHOWN_MAX] + "…"
    why = (e.strerror or str(e)).replace("\n", " ")
    text = f"cannot start {shown!r}: {why}"
    if e.errno in _EXEC_PERMANENT:
        return PermanentFailure(text)
    return Interrupted(text, InterruptionType.ERROR)


# -- the direct path: fork/exec and loop readers -----------------------------------------------------

_pidfd_ok: bool | None = None


def _pidfd_supported() -> bool:
    global _pidfd_ok
    if _pidfd_ok is None:
        _pidfd_ok = False
        if hasattr(os, "pidfd_open"):
            try:
                os.close(os.pidfd_open(os.getpid()))  # the kernel may lack pidfds (before Linux 5.3)
                _pidfd_ok = True
            except OSError:
                pass
    return _pidfd_ok


# Secrets of the engine that a command does not get unless its spec's `env` passes them on
# by name: the names below, and any name ending in _API_KEY, _SECRET or _TOKEN, or holding
# PASSWORD (case aside).
SECRET_NAMES = frozenset({"GROQ_API_KEY", "SWITCHBOARD_INTAKE_TOKEN", "SWITCHBOARD_INTAKE__TOKEN",
                          "LIVEKIT_API_SECRET"})
_SECRET_SUFFIXES = ("_API_KEY", "_SECRET", "_TOKEN")


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper in SECRET_NAMES or upper.endswith(_SECRET_SUFFIXES) or "PASSWORD" in upper


def _child_environment(ctx: RunContext) -> tuple[list[bytes], bytes | None]:
    """The child's environment as `KEY=value` bytes (what exec takes), and its PATH: ours
    without its secrets, the spec's `env` over it, SWITCHBOARD_ATTEMPT/PROCESS and, on a
    resume, the checkpoint."""
    over: dict[bytes, bytes | None] = {}
    for k, v in (ctx.spec.get("env") or {}).items():
        key = os.fsencode(k)
        if b"=" in key:
            raise ValueError("illegal environment variable name")
        over[key] = os.fsencode(v)
    over[b"SWITCHBOARD_ATTEMPT"] = str(ctx.attempt).encode()
    over[b"SWITCHBOARD_PROCESS"] = os.fsencode(ctx.process_id)
    over[b"SWITCHBOARD_CHECKPOINT"] = (
        os.fsencode(json.dumps(ctx.checkpoint)) if ctx.checkpoint is not None else None
    )
    base = _inherited_environment()
    if any(k in base for k in over):
        env = [e for k, e in base.items() if k not in over]
    else:
        env = list(base.values())
    env += [k + b"=" + v for k, v in over.items() if v is not None]
    path = over[b"PATH"] if b"PATH" in over else (base[b"PATH"][5:] if b"PATH" in base else None)
    return env, path


_inherited: tuple[dict[bytes, bytes], dict[bytes, bytes]] | None = None


def _inherited_environment() -> dict[bytes, bytes]:
    """Our own environment without its secrets, as name -> `KEY=value` entry: built again
    only when the environment has changed (comparing the mappings is C code; building the
    entries is not)."""
    global _inherited
    base = dict(os.environb)
    if _inherited is None or _inherited[0] != base:
        _inherited = (base, {k: k + b"=" + v for k, v in base.items()
                             if not is_secret_name(os.fsdecode(k))})
    return _inherited[1]


_devnull: tuple[int, int] | None = None  # (pid, fd): the children's stdin, opened once


def _devnull_fd() -> int:
    global _devnull
    if _devnull is None or _devnull[0] != os.getpid():
        _devnull = (os.getpid(), os.open(os.devnull, os.O_RDWR))  # not inherited (PEP 446)
    return _devnull[1]


def _spawn_here(argv: list[str], cwd: str | None, env: list[bytes], out_w: int, err_w: int) -> tuple[int, Any]:
    """Start the command from this process (on the loop): (pid, its Popen, kept until it is
    reaped)."""
    proc = spawner.spawn(argv, cwd, env, _devnull_fd(), out_w, err_w)
    return proc.pid, proc


class _Spawner:
    """The engine's side of the spawner process (see spawner.py): one per event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.owner = os.getpid()
        self.ready = False  # it has said so: until then commands start here
        self.broken = False
        self._next = 0
        self._starting: dict[int, _Child] = {}
        self._running: dict[int, _Child] = {}
        self._buf = bytearray(spawner.ANSWER_MAX)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            null = _devnull_fd()
            self.proc = spawner.spawn([sys.executable, "-I", "-S", spawner.__file__, str(theirs.fileno())],
                                      None, None, null, null, null, keep=(theirs.fileno(),))
            self.pid = self.proc.pid
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        loop.add_reader(ours.fileno(), self._readable)

    def request(self, child: _Child, argv: list[str], cwd: str | None, env: list[bytes],
                out_w: int, err_w: int) -> bool:
        """Ask for `child` to be started; False if it must be started here instead."""
        if not self.ready or self.broken:
            return False
        data = marshal.dumps((self._next + 1, argv, cwd, env))
        if len(data) > spawner.MAX_REQUEST:
            return False
        fds = out_w.to_bytes(4, sys.byteorder, signed=True) + err_w.to_bytes(4, sys.byteorder, signed=True)
        try:
            self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except (BlockingIOError, InterruptedError):
            return False  # its queue is full: start this one here
        except OSError as e:
            if e.errno not in (errno.EMSGSIZE, errno.ENOBUFS):  # too big for the socket: here
                self._lost()
            return False
        self._next += 1
        self._starting[self._next] = child
        return True

    def _readable(self) -> None:
        while True:
            try:
                n = self.sock.recv_into(self._buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                n = 0
            try:
                answers = marshal.loads(memoryview(self._buf)[:n]) if n else None
            except (EOFError, ValueError, TypeError):
                answers = None
            if not answers:  # closed (or garbled, which must not happen): it is gone
                self._lost()
                return
            for what, key, value in answers:
                if what == "r":
                    self.ready = True
                    continue
                if what == "x":
                    child = self._running.pop(key, None)
                    if child is not None:
                        child.exit_status(value)
                    continue
                child = self._starting.pop(key, None)
                if child is None:
                    continue
                if what == "s":
                    self._running[value] = child
                    child.started(value)
                else:
                    child.start_failed(OSError(*value))

    def _lost(self) -> None:
        if self.broken:
            return
        log.warning("the shell kind's spawner process exited; starting commands from the engine's loop")
        self.close()
        gone = OSError(0, "the spawner process exited")
        for child in self._starting.values():
            child.start_failed(gone)
        for child in self._running.values():
            child.lost()
        self._starting.clear()
        self._running.clear()

    def close(self) -> None:
        """The spawner exits when its socket closes; it is reaped by the next one or at exit."""
        if self.broken:
            return
        self.broken = True
        if not self.loop.is_closed():
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        _exited_spawners.append(self.proc)


_spawners: dict[int, _Spawner] = {}  # id(loop) -> its spawner
_exited_spawners: list[subprocess.Popen] = []
_spawner_failed = False


def _spawner_for(loop: asyncio.AbstractEventLoop) -> _Spawner | None:
    """The spawner of this loop (started on first use); None where there is none to be had."""
    global _spawner_failed
    current = _spawners.get(id(loop))
    if current is not None and current.loop is loop and current.owner == os.getpid():
        return None if current.broken else current
    if _spawner_failed or not sys.platform.startswith("linux") or not sys.executable:
        return None
    for key, other in list(_spawners.items()):  # spawners of loops that are gone
        if other.owner != os.getpid():
            del _spawners[key]
        elif other.loop.is_closed() or other.loop is loop:
            other.close()
            del _spawners[key]
    for proc in list(_exited_spawners):
        if proc.poll() is not None:
            _exited_spawners.remove(proc)
    try:
        current = _Spawner(loop)
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("cannot start the shell kind's spawner process (%s); starting commands from the loop", e)
        _spawner_failed = True
        return None
    _spawners[id(loop)] = current
    return current


class _StartError(Exception):
    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


class _Child:
    """One running command. The run sleeps on one future, woken by its exit (a pidfd reader on
    the loop, or the spawner's answer), by its pipes once they are watched, or by a timer."""

    def __init__(self, ctx: RunContext, loop: asyncio.AbstractEventLoop, records: RunRecords):
        self.ctx = ctx
        self.loop = loop
        self.records = records
        self.log = _capped_log(ctx)
        self.pid = 0
        self.returncode: int | None = None
        self.terminated = False  # SIGTERM sent (or due) because the engine is stopping
        self.program = ""
        self.cwd: str | None = None
        self.lost_track = False
        self.err_tail: deque[str] = deque(maxlen=_ERR_TAIL_LINES)  # the last lines of stderr
        self._keep: Any = None
        self._out_fd = -1
        self._err_fd = -1
        self._pidfd = -1
        self._out = bytearray()
        self._err = bytearray()
        self._out_paused = False
        self._out_dropping = False
        self._err_dropping = False
        self._watching = False  # the pipes are readers on the loop
        self._waiting_pid = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._start_error: OSError | None = None
        self._watch_timer: asyncio.TimerHandle | None = None
        self._stop_task: asyncio.Task[None] | None = None

    # -- starting ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the command: through the spawner when there is one (its pid comes later),
        else from here. Raises OSError if it cannot start here."""
        spec = self.ctx.spec
        env, _ = _child_environment(self.ctx)
        argv = _argv(spec)
        self.program, self.cwd = argv[0], spec.get("cwd") or None
        out = os.pipe()
        try:
            err = os.pipe()
        except OSError:
            os.close(out[0])
            os.close(out[1])
            raise
        helper = _spawner_for(self.loop)
        try:
            if helper is not None and helper.request(self, argv, self.cwd, env, out[1], err[1]):
                self._keep = helper
            else:
                self.pid, self._keep = _spawn_here(argv, self.cwd, env, out[1], err[1])
        except BaseException:
            for fd in (*out, *err):
                os.close(fd)
            raise
        os.close(out[1])
        os.close(err[1])
        self._out_fd, self._err_fd = out[0], err[0]
        os.set_blocking(self._out_fd, False)
        os.set_blocking(self._err_fd, False)
        if self.pid:
            try:
                self._pidfd = os.pidfd_open(self.pid)
            except OSError:  # e.g. out of file descriptors: do not leave it running unwatched
                self.signal(signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self.pid, 0)
                self.close()
                raise
            self.loop.add_reader(self._pidfd, self._exited)
            _note_running(self.records, self.ctx.process_id, self.pid)
        if self.ctx.stopping.is_set():
            self._terminate()
        self._watch_timer = self.loop.call_later(_WATCH_AFTER_S, self._watch)

    async def _until_started(self) -> bool:
        """Wait for the pid (from the spawner); False if the command did not start."""
        self._waiting_pid = True
        while not self.pid and self._start_error is None:
            await self._sleep()
        return bool(self.pid)

    # -- what the spawner says -------------------------------------------------------------------

    def started(self, pid: int) -> None:
        self.pid = pid
        _note_running(self.records, self.ctx.process_id, pid)
        if self.terminated:  # the engine stopped before the pid came
            self.signal(signal.SIGTERM)
        if self._waiting_pid:
            self._wake()

    def start_failed(self, error: OSError) -> None:
        self._start_error = error
        self._wake()

    def exit_status(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        self._wake()

    def lost(self) -> None:
        """The spawner died: the command's exit status will never come."""
        self.lost_track = True
        if self.returncode is None:
            self.returncode = 255
        self._wake()

    # -- callbacks (loop readers, timers) --------------------------------------------------------

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _watch(self) -> None:
        """Still running (or its pipes still open): let the loop watch its pipes and the
        engine's stopping flag."""
        self._watch_timer = None
        if not self._watching:
            self._watching = True
            if self._out_fd >= 0 and not self._out_paused:
                self.loop.add_reader(self._out_fd, self._read_out)
            if self._err_fd >= 0:
                self.loop.add_reader(self._err_fd, self._read_err)
        if self.returncode is None and self._stop_task is None and not self.terminated:
            self._stop_task = self.loop.create_task(self._on_stopping())

    def _take_out(self) -> bool:
        """One read from stdout into the buffer; False when there is nothing more for now."""
        data = _read_chunk(self._out_fd)
        if data is None:
            return False
        if not data:
            self._close_out()
            return False
        self._out += data
        if self._watching and len(self._out) > 2 * _STREAM_LIMIT:  # the run is behind: pause
            self.loop.remove_reader(self._out_fd)
            self._out_paused = True
            return False
        return True

    def _take_err(self) -> bool:
        """One read from stderr, its complete lines logged; False when there is nothing more."""
        data = _read_chunk(self._err_fd)
        if data is None:
            return False
        try:
            if data:
                self._err += data
                lines = _split_lines(self, "_err", "_err_dropping", final=False)
            else:
                self._close_err()
                lines = _split_lines(self, "_err", "_err_dropping", final=True)
            for line in lines:
                if line is not None:
                    self.log(line)
                    self.err_tail.append(line)
        except Exception as e:  # noqa: BLE001 - handed to the run, which raises it
            self._error = e
        return bool(data)

    def _read_out(self) -> None:
        self._take_out()
        self._wake()

    def _read_err(self) -> None:
        self._take_err()
        self._wake()

    def _drain(self) -> None:
        """After the exit: read what the pipes hold; whatever stays open (a process the
        command left behind has them) is watched from now on."""
        while self._err_fd >= 0 and self._take_err():
            pass
        while self._out_fd >= 0 and not self._out_paused and self._take_out():
            pass
        if (self._out_fd >= 0 or self._err_fd >= 0) and not self._watching:
            if self._watch_timer is not None:
                self._watch_timer.cancel()
            self._watch()

    def _exited(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: asyncio reports 255 too
            pid, status = self.pid, -1
        if pid == 0:
            return
        self.returncode = os.waitstatus_to_exitcode(status) if status != -1 else 255
        if isinstance(self._keep, subprocess.Popen):
            self._keep.returncode = self.returncode  # it must not reap the pid again
        self.loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._wake()

    async def _on_stopping(self) -> None:
        await self.ctx.stopping.wait()
        self._terminate()

    def _terminate(self) -> None:
        self.terminated = True
        if self.pid:
            self.signal(signal.SIGTERM)

    def signal(self, sig: int) -> None:
        """To the command's whole process group (it leads its own session)."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    # -- the run's side ----------------------------------------------------------------------------

    async def _sleep(self, deadline: float | None = None) -> None:
        self._waiter = self.loop.create_future()
        timer = self.loop.call_at(deadline, self._wake) if deadline is not None else None
        try:
            await self._waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def serve(self, *, exit_only: bool = False, deadline: float | None = None) -> bool:
        """Handle the output until the command has exited and closed both pipes (with
        `exit_only`: until it has exited); False if `deadline` (loop time) came first.
        Raises _StartError if the spawner could not start it."""
        while True:
            if self._start_error is not None:
                raise _StartError(self._start_error)
            if self.returncode is not None and (self._out_fd >= 0 or self._err_fd >= 0):
                self._drain()
            if self._out or self._out_fd < 0:
                await self._handle_out()
            if self._error is not None:
                raise self._error
            if self.returncode is not None and (exit_only or (self._out_fd < 0 and self._err_fd < 0)):
                return True
            if deadline is not None and self.loop.time() >= deadline:
                return False
            await self._sleep(deadline)

    async def _handle_out(self) -> None:
        ctx = self.ctx
        while True:
            final = self._out_fd < 0
            lines = _split_lines(self, "_out", "_out_dropping", final=final, one=True)
            if not lines:
                break
            line = lines[0]
            if line is None:
                self.log("(a line longer than 1 MiB was dropped)")
                continue
            await _protocol_line(ctx, line, self.log)
        if self._out_paused and len(self._out) <= _STREAM_LIMIT and self._out_fd >= 0:
            self._out_paused = False
            self.loop.add_reader(self._out_fd, self._read_out)

    async def kill(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` (at once if the engine's stop already sent the
        SIGTERM); the output is still handled meanwhile (a last checkpoint counts). Returns
        once the command has exited."""
        try:
            if not self.pid and not await self._until_started():
                return  # it never started
            if self.returncode is None:
                if not self.terminated:
                    self.signal(signal.SIGTERM)
                    await self.serve(exit_only=True, deadline=self.loop.time() + grace)
                if self.returncode is None:
                    self.signal(signal.SIGKILL)
                await self.serve(exit_only=True)
        except BaseException:
            self.signal(signal.SIGKILL)  # cancelled again while stopping it: no more grace
            raise
        # the group may have other members left (a shell's children): make sure they go too
        self.signal(signal.SIGKILL)

    def close(self) -> None:
        """Let go of the pipes and timers. A command that has not exited (the run was torn
        down early) stays watched until it does, so it is reaped."""
        if self._watch_timer is not None:
            self._watch_timer.cancel()
            self._watch_timer = None
        if self._stop_task is not None:
            self._stop_task.cancel()
            self._stop_task = None
        self._close_out()
        self._close_err()
        if self._pidfd >= 0 and self.returncode is not None:
            self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def _close_out(self) -> None:
        if self._out_fd >= 0:
            if self._watching and not self._out_paused:
                self.loop.remove_reader(self._out_fd)
            os.close(self._out_fd)
            self._out_fd = -1

    def _close_err(self) -> None:
        if self._err_fd >= 0:
            if self._watching:
                self.loop.remove_reader(self._err_fd)
            os.close(self._err_fd)
            self._err_fd = -1


def _split_lines(owner: Any, buf_name: str, drop_name: str, *, final: bool,
                 one: bool = False) -> list[str | None]:
    """Complete lines taken from the buffer `owner.<buf_name>`, decoded (None: a line over the
    limit, dropped); with `final`, the rest too. With `one`, at most one line."""
    buf: bytearray = getattr(owner, buf_name)
    lines: list[str | None] = []
    start = 0
    dropping = getattr(owner, drop_name)
    while True:
        nl = buf.find(b"\n", start)
        if nl < 0:
            break
        if dropping:  # the end of a line already reported as too long
            dropping = False
        elif nl - start > _STREAM_LIMIT:
            lines.append(None)
        else:
            lines.append(buf[start:nl].decode("utf-8", "replace").rstrip("\r\n"))
        start = nl + 1
        if one and lines:
            break
    if not (one and lines):
        rest = len(buf) - start
        if final and rest:
            if not dropping:
                lines.append(buf[start:].decode("utf-8", "replace").rstrip("\r\n") if rest <= _STREAM_LIMIT
                             else None)
            start = len(buf)
            dropping = False
        elif rest > _STREAM_LIMIT:  # no end in sight: drop what we have, and the rest of it
            if not dropping:
                lines.append(None)
            dropping = True
            start = len(buf)
    if start:
        del buf[:start]
    setattr(owner, drop_name, dropping)
    return lines


def _start_direct(ctx: RunContext, records: RunRecords) -> _Child:
    child = _Child(ctx, asyncio.get_running_loop(), records)
    try:
        child.start()
    except OSError as e:
        raise _cannot_start(ctx.spec, e) from None
    return child


async def _serve_direct(child: _Child) -> int:
    ctx = child.ctx
    try:
        await child.serve()
    except _StartError as e:
        raise _cannot_start(ctx.spec, e.error) from None
    except BaseException:
        await child.kill(ctx.cancel_grace_s)
        raise
    finally:
        child.close()
        child.log.close()
        if child.pid and child.returncode is not None and not child.lost_track:
            child.records.forget(ctx.process_id)
    if child.lost_track:
        raise Interrupted("its exit status was lost (the spawner process exited)", InterruptionType.ERROR)
    assert child.returncode is not None
    return child.returncode


# -- the portable path: asyncio subprocesses ---------------------------------------------------------

async def _run_asyncio(ctx: RunContext, records: RunRecords) -> tuple[int, deque[str]]:
    """The command's exit status and the last lines of its stderr."""
    spec = ctx.spec
    env = {**{k: v for k, v in os.environ.items() if not is_secret_name(k)}, **spec.get("env", {}),
           "SWITCHBOARD_ATTEMPT": str(ctx.attempt),
           "SWITCHBOARD_PROCESS": ctx.process_id}
    if ctx.checkpoint is not None:
        env["SWITCHBOARD_CHECKPOINT"] = json.dumps(ctx.checkpoint)
    else:
        env.pop("SWITCHBOARD_CHECKPOINT", None)
    common: dict[str, Any] = dict(
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        cwd=spec.get("cwd") or None, env=env, start_new_session=True, limit=_STREAM_LIMIT,
    )
    _use_pidfd_watcher()
    try:
        if spec.get("shell"):
            proc = await asyncio.create_subprocess_shell(spec["command"], **common)
        else:
            proc = await asyncio.create_subprocess_exec(*spec["command"], **common)
    except OSError as e:
        raise _cannot_start(spec, e) from None
    _note_running(records, ctx.process_id, proc.pid)

    terminated = False
    err_tail: deque[str] = deque(maxlen=_ERR_TAIL_LINES)

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        _signal_group(proc, signal.SIGTERM)

    stop_watch = asyncio.create_task(_on_event(ctx.stopping, terminate))
    log = _capped_log(ctx)
    readers = [asyncio.create_task(_read_stdout(proc.stdout, ctx, log)),
               asyncio.create_task(_read_stderr(proc.stderr, log, err_tail))]
    try:
        await asyncio.gather(*readers)
        code = await proc.wait()
    except asyncio.CancelledError:
        await _kill(proc, ctx.cancel_grace_s, already_terminated=terminated)
        raise
    finally:
        stop_watch.cancel()
        for r in readers:
            r.cancel()
        await asyncio.gather(stop_watch, *readers, return_exceptions=True)
        log.close()
        if proc.returncode is not None:
            records.forget(ctx.process_id)
    return code, err_tail


def _use_pidfd_watcher() -> None:
    """On Python 3.11, asyncio's default child watcher starts a thread per child to wait for
    it. A pidfd watcher waits on the loop itself, as 3.12 does by default. It serves one loop,
    so it is made again when the running loop changes."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    global _pidfd_watched
    import weakref  # loaded by asyncio already

    loop = asyncio.get_running_loop()
    if _pidfd_watched is not None and _pidfd_watched[1]() is loop \
            and asyncio.get_child_watcher() is _pidfd_watched[0]:
        return
    try:
        os.close(os.pidfd_open(os.getpid()))  # the kernel may lack pidfds (before Linux 5.3)
    except OSError:
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(loop)
    asyncio.set_child_watcher(watcher)
    _pidfd_watched = (watcher, weakref.ref(loop))


_pidfd_watched: tuple[Any, Any] | None = None  # (watcher, weak reference to the loop)


async def _on_event(event: asyncio.Event, action: Any) -> None:
    await event.wait()
    action()


async def _read_stdout(stream: asyncio.StreamReader, ctx: RunContext, log: CappedLog) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line over the limit: skip it, keep the protocol going
            log("(a line longer than 1 MiB was dropped)")
            continue
        if not raw:
            return
        await _protocol_line(ctx, raw.decode("utf-8", "replace").rstrip("\r\n"), log)


def _read_chunk(fd: int) -> bytes | None:
    """One non-blocking read: None when nothing is there yet, b"" at the end (or a broken pipe)."""
    try:
        return os.read(fd, _READ_CHUNK)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


async def _protocol_line(ctx: RunContext, line: str, log: CappedLog) -> None:
    """One line of a command's stdout: `::progress N`, `::checkpoint JSON`, or a log line
    (also what looks like the protocol but is not valid)."""
    if line.startswith("::progress "):
        try:
            await ctx.report(float(line[len("::progress "):].strip()))
            return
        except ValueError:
            pass
    elif line.startswith("::checkpoint "):
        try:
            data = json.loads(line[len("::checkpoint "):])
        except json.JSONDecodeError:
            log(f"(ignored a checkpoint that is not JSON) {line}")
            return
        await ctx.report(checkpoint=data)
        return
    log(line)


async def _read_stderr(stream: asyncio.StreamReader, log: CappedLog, err_tail: deque[str]) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:
            continue
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        log(line)
        err_tail.append(line)


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def _kill(proc: asyncio.subprocess.Process, grace: float, already_terminated: bool) -> None:
    """SIGTERM, then SIGKILL after `grace`; always reaps the child before returning."""
    if proc.returncode is None:
        if not already_terminated:
            _signal_group(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except asyncio.TimeoutError:
                pass
        if proc.returncode is None:
            _signal_group(proc, signal.SIGKILL)
    await proc.wait()
    # the group may have other members left (a shell's children): make sure they go too
    _signal_group(proc, signal.SIGKILL)


KIND = ShellKind()
