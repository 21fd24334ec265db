"""The shell kind on each of its paths: started by the spawner process, started from the loop
(pidfd), and on asyncio subprocesses (no pidfds). Same protocol, env, exit codes and cancel."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import pytest
from conftest import running_engine, states, wait_for, workflow

from console.kinds import shell
from console.model import State

MODES = ["spawner", "loop", "asyncio"]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    if request.param == "loop":
        monkeypatch.setattr(shell, "_spawner_for", lambda loop: None)
    elif request.param == "asyncio":
        monkeypatch.setattr(shell, "_pidfd_supported", lambda: False)
    return request.param


async def spawner_ready(mode: str) -> shell._Spawner | None:
    """With the spawner, wait until it has said it is ready (before, commands start from the loop)."""
    if mode != "spawner":
        return None
    helper = shell._spawner_for(asyncio.get_running_loop())
    assert helper is not None
    await wait_for(lambda: helper.ready)
    return helper


def shell_process(pid: str, command: str, extra: str = "") -> str:
    return f"[[process]]\nid = {json.dumps(pid)}\nkind = \"shell\"\nshell = true\ncommand = {json.dumps(command)}\n{extra}\n"


async def test_protocol_checkpoint_env_and_exit_codes(tmp_path, mode):
    out = tmp_path / "seen.txt"
    command = (f"echo attempt=$SWITCHBOARD_ATTEMPT cp=$SWITCHBOARD_CHECKPOINT id=$SWITCHBOARD_PROCESS "
               f"x=$EXTRA pwd=$(pwd) >> {out}; echo '::progress 40'; echo '::checkpoint {{\"step\": 2}}'; "
               "echo hi; echo oops >&2; echo '::progress nope'; echo '::checkpoint {bad'; "
               "[ $SWITCHBOARD_ATTEMPT -ge 2 ] || exit 75; printf 'no newline at the end'")
    text = shell_process("s", command, f'env = {{ EXTRA = "yes" }}\ncwd = "{tmp_path}"')
    async with running_engine(tmp_path) as orch:
        helper = await spawner_ready(mode)
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert orch.processes["s"].state is State.COMPLETED
        assert out.read_text().splitlines() == [
            f"attempt=1 cp= id=s x=yes pwd={tmp_path}",
            f'attempt=2 cp={{"step": 2}} id=s x=yes pwd={tmp_path}',
        ]
        checkpoints = await orch.store.checkpoints("s")
        assert [(c.data, c.progress) for c in checkpoints] == [({"step": 2}, 40), ({"step": 2}, 40)]
        logged = [line for _, line in await orch.store.logs("s")]
        for line in ("hi", "oops", "::progress nope", "(ignored a checkpoint that is not JSON) ::checkpoint {bad",
                     "no newline at the end"):
            assert line in logged
        if helper is not None:
            assert helper.ready and not helper.broken


async def test_commands_inherit_the_engines_environment_as_it_is_now(tmp_path, mode, monkeypatch):
    """Our environment's entries are kept between commands: a change must still reach the next one."""
    out = tmp_path / "seen.txt"
    async with running_engine(tmp_path) as orch:
        await spawner_ready(mode)
        for i, value in enumerate(["one", "two"]):
            monkeypatch.setenv("SB_TEST_INHERITED", value)
            await orch.load(workflow(shell_process(f"e{i}", f"echo $SB_TEST_INHERITED >> {out}")))
            await orch.run_until_idle()
        monkeypatch.delenv("SB_TEST_INHERITED")
        await orch.load(workflow(shell_process("e2", f"echo ${{SB_TEST_INHERITED:-unset}} >> {out}")))
        await orch.run_until_idle()
    assert out.read_text().split() == ["one", "two", "unset"]


async def test_exit_codes_become_outcomes(tmp_path, mode):
    text = (shell_process("ok", "exit 0") + shell_process("bad", "exit 3", "max_attempts = 1")
            + shell_process("killed", "kill -9 $$", "max_attempts = 1")
            + f'[[process]]\nid = "missing"\nkind = "shell"\ncommand = ["{tmp_path}/no-such-program"]\nmax_attempts = 1\n')
    async with running_engine(tmp_path) as orch:
        await spawner_ready(mode)
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert states(orch) == {"ok": "completed", "bad": "failed", "killed": "failed", "missing": "failed"}
        assert "exit status 3" in orch.processes["bad"].reason
        assert "killed by signal 9" in orch.processes["killed"].reason
        assert "No such file or directory" in orch.processes["missing"].reason


async def test_a_failed_commands_reason_is_its_exit_status_and_last_stderr_lines(tmp_path, mode):
    """What the command said about why it failed is its reason, not an engine traceback: the
    exit status, then its stderr's last lines on one line, cut to their end."""
    long_line = "x" * 1000 + " the end"
    text = (shell_process("up", "echo starting; echo upload failed: 503 >&2; exit 1", "max_attempts = 2")
            + shell_process("chatty", "for i in 1 2 3 4 5; do echo line $i >&2; done; exit 4", "max_attempts = 1")
            + shell_process("long", f"echo {long_line} >&2; kill -9 $$", "max_attempts = 1")
            + shell_process("quiet", "exit 5", "max_attempts = 1"))
    events = []
    async with running_engine(tmp_path) as orch:
        await spawner_ready(mode)
        orch.bus.subscribe(events.append)
        await orch.load(workflow(text))
        await orch.run_until_idle()
        up = orch.processes["up"]
        assert up.state is State.FAILED
        assert up.reason == "attempts used up (2/2): exit status 1: upload failed: 503"
        assert up.interruption.message == "exit status 1: upload failed: 503"
        assert orch.processes["chatty"].reason == "attempts used up (1/1): exit status 4: line 3 | line 4 | line 5"
        long_reason = orch.processes["long"].reason
        assert "killed by signal 9: …" in long_reason and long_reason.endswith("x the end")
        assert len(long_reason) < 400
        assert orch.processes["quiet"].reason == "attempts used up (1/1): exit status 5"
        logged = [line for pid in ("up", "chatty", "long", "quiet") for _, line in await orch.store.logs(pid)]
    assert "upload failed: 503" in logged and "starting" in logged
    assert not [line for line in logged if "Traceback" in line or "RuntimeError" in line], logged
    shown = [e.message + json.dumps(e.data) for e in events]
    assert not [m for m in shown if "Traceback" in m or "RuntimeError" in m], shown


@pytest.mark.parametrize("started_by", ["dispatcher", "run"])
async def test_commands_started_by_the_dispatcher_or_by_their_run_end_alike(tmp_path, mode, started_by, monkeypatch):
    """Work that may start at once is started in the dispatcher's pass (ShellKind.begin), the
    rest by its run; without pidfds `begin` declines. Same outcomes either way."""
    begun: list[str] = []
    real_begin = shell.ShellKind.begin

    def begin(self, ctx):
        if started_by == "run":
            return None
        try:
            started = real_begin(self, ctx)
        except Exception:  # it could not start (from the loop, that is known at once)
            begun.append(ctx.process_id)
            raise
        if started is not None:
            begun.append(ctx.process_id)
        return started

    monkeypatch.setattr(shell.ShellKind, "begin", begin)
    text = (shell_process("first", "exit 0") + shell_process("ok", "exit 0")
            + shell_process("bad", "exit 3", "max_attempts = 1") + shell_process("killed", "kill -9 $$", "max_attempts = 1")
            + f'[[process]]\nid = "missing"\nkind = "shell"\ncommand = ["{tmp_path}/no-such-program"]\nmax_attempts = 1\n')
    async with running_engine(tmp_path, max_concurrent=1) as orch:  # one at a time: all but the first
        await spawner_ready(mode)                                    # are placed by a committed load
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert states(orch) == {"first": "completed", "ok": "completed", "bad": "failed", "killed": "failed",
                                "missing": "failed"}
        assert "exit status 3" in orch.processes["bad"].reason
        assert "killed by signal 9" in orch.processes["killed"].reason
        assert "No such file or directory" in orch.processes["missing"].reason
    if started_by == "dispatcher" and mode != "asyncio":
        assert {"ok", "bad", "killed", "missing"} <= set(begun)
    else:
        assert begun == []


def start_eagerly(coro):
    """Run `coro` now up to its first wait, then on as a task would (Python 3.12's eager tasks)."""
    done = asyncio.get_running_loop().create_future()

    def step(_: object = None) -> None:
        try:
            waiting = coro.send(None)
        except StopIteration as e:
            done.set_result(e.value)
        except BaseException as e:  # noqa: BLE001 - handed to whoever awaits `done`
            done.set_exception(e)
        else:
            waiting.add_done_callback(step)

    step()
    return done


def alive_with(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


async def test_a_cancel_between_dispatch_and_the_runs_first_step(tmp_path, mode, monkeypatch):
    """An operator's cancel in the same turn as the dispatch pass (before the run's task has
    taken a step): the command is stopped, the process ends cancelled, the cancel returns."""
    from console.engine.orchestrator import Orchestrator

    marker = "30.0625"
    cancels = []
    real = Orchestrator._dispatch_once

    def dispatch_then_cancel(self):
        more = real(self)
        if "s" in self._running and not cancels:
            cancels.append(start_eagerly(self.cancel("s")))
        return more

    monkeypatch.setattr(Orchestrator, "_dispatch_once", dispatch_then_cancel)
    async with running_engine(tmp_path) as orch:
        await spawner_ready(mode)
        await orch.load(workflow(shell_process("s", f"exec sleep {marker}")))
        await wait_for(lambda: bool(cancels))
        assert await asyncio.wait_for(cancels[0], 5) == "s: cancelled"
        assert orch.processes["s"].state is State.CANCELLED
        await wait_for(lambda: not alive_with(marker))


async def test_cancel_sends_sigterm_to_the_group_then_sigkill(tmp_path, mode):
    pidfile = tmp_path / "pids"
    # the shell ignores SIGTERM: only SIGKILL after the grace period ends it; its child sleeps
    command = f"trap '' TERM; sleep 30 & echo $$ $! > {pidfile}; wait"
    grace = 0.3
    async with running_engine(tmp_path, cancel_grace_s=grace) as orch:
        await spawner_ready(mode)
        await orch.load(workflow(shell_process("long", command)))
        await wait_for(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2)
        leader, child = (int(x) for x in pidfile.read_text().split())
        t0 = time.monotonic()
        # without the SIGKILL the cancel would wait for the child's `sleep 30`
        await asyncio.wait_for(orch.cancel("long"), timeout=20)
        elapsed = time.monotonic() - t0
        assert orch.processes["long"].state is State.CANCELLED
        assert elapsed > grace - 0.05  # the grace period first (a slow machine only adds to it)
        with pytest.raises(ProcessLookupError):
            os.kill(leader, 0)  # reaped
        await wait_for(lambda: _gone(child))  # killed (its new parent reaps it)


async def test_shutdown_terminates_running_commands_and_keeps_their_last_checkpoint(tmp_path, mode):
    command = ("trap 'echo \"::checkpoint {\\\"at\\\": \\\"term\\\"}\"; exit 75' TERM; "
               "echo '::checkpoint {\"at\": \"start\"}'; while :; do sleep 0.05; done")
    settings_grace = {"shutdown_grace_s": 120.0}
    async with running_engine(tmp_path, **settings_grace) as orch:
        await spawner_ready(mode)
        await orch.load(workflow(shell_process("w", command)))
        # its output is read by the loop now, so the stop watcher has been set up as well
        await wait_for(lambda: orch.processes["w"].checkpoint == {"at": "start"})
        # it answers SIGTERM: the stop does not wait out the grace
        await asyncio.wait_for(orch.stop(), timeout=30)
        p = orch.processes["w"]
        assert p.checkpoint == {"at": "term"}
        assert p.state is State.INTERRUPTED and p.interruption.type.value == "shutdown"


async def test_a_line_over_the_limit_is_dropped_and_the_protocol_goes_on(tmp_path, mode, monkeypatch):
    monkeypatch.setattr(shell, "_STREAM_LIMIT", 1000)
    script = tmp_path / "long.py"
    script.write_text(
        "import sys\n"
        "sys.stdout.write('x' * 5000 + '\\n')\n"          # too long, complete
        "sys.stdout.write('::checkpoint 30\\n')\n"
        "sys.stdout.write('y' * 3000)\n"                 # too long, then ended later
        "sys.stdout.flush()\n"
        "sys.stdout.write('y' * 3000 + '\\nafter\\n')\n"
        "sys.stderr.write('e' * 5000 + '\\nerr ok\\n')\n"
    )
    text = f'[[process]]\nid = "l"\nkind = "shell"\ncommand = ["{sys.executable}", "{script}"]\n'
    async with running_engine(tmp_path) as orch:
        await spawner_ready(mode)
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert orch.processes["l"].state is State.COMPLETED
        logged = [line for _, line in await orch.store.logs("l")]
        assert "after" in logged and "err ok" in logged
        assert all(len(line) <= 1000 for line in logged)
        if mode != "asyncio":  # asyncio's reader reports an over-long line once or more, as it goes
            assert logged.count("(a line longer than 1 MiB was dropped)") == 2
        assert [c.data for c in await orch.store.checkpoints("l")] == [30]


async def test_many_short_commands_at_once(tmp_path, mode):
    text = "".join(f'[[process]]\nid = "t{i}"\nkind = "shell"\ncommand = ["true"]\n' for i in range(60))
    async with running_engine(tmp_path, max_concurrent=8) as orch:
        await spawner_ready(mode)
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert set(states(orch).values()) == {"completed"}


async def test_the_spawner_runs_the_commands_off_the_loop(tmp_path):
    out = tmp_path / "ppid"
    async with running_engine(tmp_path) as orch:
        helper = await spawner_ready("spawner")
        await orch.load(workflow(shell_process("p", f"echo $PPID > {out}")))
        await orch.run_until_idle()
        assert orch.processes["p"].state is State.COMPLETED
        assert int(out.read_text()) == helper.pid != os.getpid()


async def test_a_spawner_that_dies_loses_only_what_it_was_running(tmp_path):
    started = tmp_path / "started"
    async with running_engine(tmp_path, retry_base_s=0.05) as orch:
        helper = await spawner_ready("spawner")
        await orch.load(workflow(shell_process("long", f"touch {started}; sleep 0.5", "max_attempts = 2")))
        await wait_for(started.exists)
        os.kill(helper.pid, signal.SIGKILL)
        await wait_for(lambda: helper.broken)
        await orch.run_until_idle()
        p = orch.processes["long"]
        # its exit status was lost, so the first run counts as an error; the retry started from the loop
        assert p.state is State.COMPLETED and p.attempt == 2
        await orch.load(workflow(shell_process("after", "true")))
        await orch.run_until_idle()
        assert orch.processes["after"].state is State.COMPLETED
        assert shell._spawner_for(asyncio.get_running_loop()) is None  # no new one for this loop


async def test_a_new_loop_gets_its_own_spawner_and_the_old_one_exits(tmp_path):
    helpers = []

    async def one_run(n: int):
        async with running_engine(tmp_path / str(n)) as orch:
            helpers.append(await spawner_ready("spawner"))
            await orch.load(workflow(shell_process("x", "true")))
            await orch.run_until_idle()
            assert orch.processes["x"].state is State.COMPLETED

    for n in range(2):
        (tmp_path / str(n)).mkdir()
        await asyncio.get_running_loop().run_in_executor(None, lambda n=n: asyncio.run(one_run(n)))
    first, second = helpers
    assert first.pid != second.pid and first.broken and not second.broken
    await wait_for(lambda: _gone(first.pid))  # it exits once its socket is closed


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not yet reaped
    except FileNotFoundError:
        return True


async def test_many_commands_that_cannot_start_at_once(tmp_path, mode):
    text = "".join(f'[[process]]\nid = "m{i}"\nkind = "shell"\ncommand = ["{tmp_path}/missing-{i}"]\nmax_attempts = 1\n'
                   for i in range(150))
    async with running_engine(tmp_path, max_concurrent=150) as orch:
        await spawner_ready(mode)
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert set(states(orch).values()) == {"failed"}
        assert all("No such file or directory" in p.reason for p in orch.processes.values())


async def until_logged(orch, process_id: str, lines: set[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not lines <= {line for _, line in await orch.store.logs(process_id)}:
        assert time.monotonic() < deadline, f"{process_id} never logged {lines}"
        await asyncio.sleep(0.01)


async def test_output_after_the_exit_and_more_than_a_pipe_holds(tmp_path, mode):
    # the command exits at once, a process it left behind writes later: the run waits for it
    # (as it always has: until both pipes close); the other writes more than a pipe holds
    # before anything watches its pipes
    text = (shell_process("late", "(sleep 0.2; echo late; echo late-err >&2) & echo early")
            + f'[[process]]\nid = "big"\nkind = "shell"\ncommand = ["{sys.executable}", "-c", '
              '"import sys; sys.stdout.write(\'line\\\\n\' * 30000); print(\'::progress 50\')"]\n')
    async with running_engine(tmp_path, max_log_lines=100_000) as orch:
        await spawner_ready(mode)
        t0 = time.monotonic()
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert states(orch) == {"late": "completed", "big": "completed"}
        assert time.monotonic() - t0 >= 0.2
        # a process's last lines are committed by the log flusher, possibly a commit after its state
        await until_logged(orch, "late", {"early", "late", "late-err"})
        big = [line for _, line in await orch.store.logs("big", limit=100_000)]
        assert big.count("line") == 30000 and orch.processes["big"].progress == 100


@pytest.mark.parametrize("limit", ["none", "request size", "socket buffer"])
async def test_a_big_checkpoint_reaches_the_resumed_command(tmp_path, mode, limit, monkeypatch):
    """A ~100 KB SWITCHBOARD_CHECKPOINT goes through the spawner; a request over its size limit,
    or one the socket cannot take, is started from the loop instead (the spawner stays)."""
    script = tmp_path / "big.py"
    script.write_text(
        "import json, os, sys\n"
        "cp = os.environ.get('SWITCHBOARD_CHECKPOINT')\n"
        "if cp is None:\n"
        "    print('::checkpoint ' + json.dumps('x' * 50_000)); sys.exit(75)\n"
        "sys.exit(0 if len(json.loads(cp)) == 50_000 else 3)\n"
    )
    if limit == "request size":
        monkeypatch.setattr(shell.spawner, "MAX_REQUEST", 10_000)
    text = f'[[process]]\nid = "b"\nkind = "shell"\ncommand = ["{sys.executable}", "{script}"]\n'
    async with running_engine(tmp_path) as orch:
        helper = await spawner_ready(mode)
        if helper is not None and limit == "socket buffer":
            import socket

            helper.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert orch.processes["b"].state is State.COMPLETED and orch.processes["b"].attempt == 2
        if helper is not None:
            assert not helper.broken
