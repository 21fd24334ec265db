"""`shell`: a command run as an asyncio subprocess.

Protocol on stdout: `::progress <0-100>` and `::checkpoint <json>`; any other line (and
all of stderr) goes to the process log. A resumed command finds its last checkpoint in
SWITCHBOARD_CHECKPOINT and its run number in SWITCHBOARD_ATTEMPT. Exit 0 → completed,
75 (EX_TEMPFAIL) → interrupted(transient), anything else → an error (retried until
max_attempts). Cancel: SIGTERM to the command's process group, SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from console.engine.context import RunContext
from console.kinds import SpecError
from console.model import Interrupted, InterruptionType

EX_TEMPFAIL = 75
_STREAM_LIMIT = 1 << 20  # a line of up to 1 MiB (big checkpoints)


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
        spec = ctx.spec
        env = {**os.environ, **spec.get("env", {}),
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
            raise Interrupted(f"cannot start {spec['command']!r}: {e.strerror}", InterruptionType.ERROR) from None

        terminated = False

        def terminate() -> None:
            nonlocal terminated
            terminated = True
            _signal_group(proc, signal.SIGTERM)

        stop_watch = asyncio.create_task(_on_event(ctx.stopping, terminate))
        readers = [asyncio.create_task(_read_stdout(proc.stdout, ctx)),
                   asyncio.create_task(_read_stderr(proc.stderr, ctx))]
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
        if code == 0:
            return
        if code == EX_TEMPFAIL:
            raise Interrupted(f"exit {EX_TEMPFAIL} (temporary failure)", InterruptionType.TRANSIENT)
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        raise RuntimeError(how)


def _use_pidfd_watcher() -> None:
    """On Python 3.11, asyncio's default child watcher starts a thread per child to wait for
    it: measured, that doubled the cost of a short command (1,000 runs of /bin/true). A pidfd
    watcher waits on the loop itself, as 3.12 does by default. It serves one loop, so it is
    made again when the running loop changes."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    loop = asyncio.get_running_loop()
    watcher = asyncio.get_child_watcher()
    if isinstance(watcher, asyncio.PidfdChildWatcher) and watcher._loop is loop:  # noqa: SLF001
        return
    try:
        os.close(os.pidfd_open(os.getpid()))  # the kernel may lack pidfds (before Linux 5.3)
    except OSError:
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(loop)
    asyncio.set_child_watcher(watcher)


async def _on_event(event: asyncio.Event, action: Any) -> None:
    await event.wait()
    action()


async def _read_stdout(stream: asyncio.StreamReader, ctx: RunContext) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line over the limit: skip it, keep the protocol going
            ctx.log("(a line longer than 1 MiB was dropped)")
            continue
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("::progress "):
            try:
                await ctx.report(float(line[len("::progress "):].strip()))
                continue
            except ValueError:
                pass
        elif line.startswith("::checkpoint "):
            try:
                data = json.loads(line[len("::checkpoint "):])
            except json.JSONDecodeError:
                ctx.log(f"(ignored a checkpoint that is not JSON) {line}")
                continue
            await ctx.report(checkpoint=data)
            continue
        ctx.log(line)


async def _read_stderr(stream: asyncio.StreamReader, ctx: RunContext) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:
            continue
        if not raw:
            return
        ctx.log(raw.decode("utf-8", "replace").rstrip("\r\n"))


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
