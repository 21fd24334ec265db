"""The shell kind under hostile conditions: a runner killed with its commands running, a pid
reused by another program, secrets in the engine's environment, commands that cannot be
executed, process ids that fold onto one folder."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import running_engine, wait_for, wait_until, workflow
from console.kinds import shell
from console.kinds.shell_runs import start_time
from console.model import State
from console.workdirs import path_name, workdir_for

SB = [sys.executable, "-m", "console"]


@pytest.fixture(params=["spawner", "loop", "asyncio"])
def mode(request, monkeypatch):
    if request.param == "loop":
        monkeypatch.setattr(shell, "_spawner_for", lambda loop: None)
    elif request.param == "asyncio":
        monkeypatch.setattr(shell, "_pidfd_supported", lambda: False)
    return request.param


def alive(pid: int) -> bool:
    """Running (a zombie has exited: whoever adopted it may not reap it at once)."""
    return start_time(pid) is not None


def status(db: Path, env: dict) -> dict:
    out = subprocess.run([*SB, "status", "--db", str(db), "--json"], capture_output=True, text=True,
                         timeout=60, env=env, check=True).stdout
    return json.loads(out)


# -- item 5: kill -9 of the runner -----------------------------------------------------------------

def test_a_command_left_running_by_a_killed_runner_is_stopped_before_it_runs_again(tmp_path):
    pids, runs = tmp_path / "pids", tmp_path / "runs"
    # Attempt 1 writes its pid and becomes `sleep 300`. Any later attempt notes whether the
    # first one still runs as it starts (a second copy at the same time), then finishes.
    command = (f"echo $$ >> {pids}; echo \"start $SWITCHBOARD_ATTEMPT\" >> {runs}; "
               f"if [ \"$SWITCHBOARD_ATTEMPT\" = 1 ]; then echo '::progress 10'; exec sleep 300; fi; "
               f"st=$(cut -d' ' -f3 /proc/$(head -n1 {pids})/stat 2>/dev/null); "
               f"if [ -n \"$st\" ] && [ \"$st\" != Z ]; then echo overlap >> {runs}; fi")
    wf = tmp_path / "wf.toml"
    wf.write_text(f'[[process]]\nid = "s"\nkind = "shell"\nshell = true\ncommand = {json.dumps(command)}\n')
    db = tmp_path / "t.db"
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(tmp_path / "data")}
    runner = subprocess.Popen([*SB, "run", "--db", str(db), "--workflow", str(wf)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: pids.exists() and db.exists()
                   and [p["progress"] for p in status(db, env)["processes"]] == [10])
    finally:
        runner.kill()
        runner.wait()
    first = int(pids.read_text().split()[0])
    assert alive(first)  # what a kill -9 leaves: the command runs on, orphaned
    try:
        result = subprocess.run([*SB, "run", "--db", str(db), "--until-idle"], env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert not alive(first)
        assert runs.read_text().splitlines() == ["start 1", "start 2"]  # and no "overlap"
        assert {p["state"] for p in status(db, env)["processes"]} == {"completed"}
        logged = [json.loads(line) for line in result.stdout.splitlines()]
        said = [e["message"] for e in logged if e.get("type") == "log" and e.get("process") == "s"]
        assert any(f"process group {first}" in m and "stopping it" in m for m in said), said
    finally:
        if alive(first):
            os.kill(first, signal.SIGKILL)


async def test_a_reused_pid_with_another_start_time_is_not_signalled(tmp_path, mode):
    """A record of a dead runner's command names a pid that now belongs to another program
    (its start time differs): that program is left alone, and the process runs."""
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        wait_until(lambda: start_time(other.pid) is not None)
        running = tmp_path / "data" / "running"
        running.mkdir(parents=True)
        (running / (path_name("s") + ".json")).write_text(json.dumps(
            {"process": "s", "pid": other.pid, "pgid": other.pid, "start": start_time(other.pid) - 1}))
        text = f'[[process]]\nid = "s"\nkind = "shell"\ncommand = ["true"]\n'
        async with running_engine(tmp_path) as orch:
            await orch.load(workflow(text))
            await orch.run_until_idle()
            assert orch.processes["s"].state is State.COMPLETED
        assert other.poll() is None and alive(other.pid)
        assert list(running.iterdir()) == []  # the stale record is gone
    finally:
        other.kill()
        other.wait()


async def test_a_finished_command_leaves_no_record_and_records_are_private(tmp_path, mode):
    marker = tmp_path / "go"
    text = (f'[[process]]\nid = "s"\nkind = "shell"\nshell = true\n'
            f'command = "while [ ! -e {marker} ]; do sleep 0.01; done"\n')
    async with running_engine(tmp_path) as orch:
        await orch.load(workflow(text))
        running = tmp_path / "data" / "running"
        records = await wait_for(lambda: running.is_dir() and list(running.glob("*.json")))
        assert stat.S_IMODE(running.stat().st_mode) == 0o700
        assert stat.S_IMODE(records[0].stat().st_mode) == 0o600
        marker.touch()
        await orch.run_until_idle()
        assert orch.processes["s"].state is State.COMPLETED
        assert list(running.iterdir()) == []


# -- item 6: secrets ---------------------------------------------------------------------------------

async def test_commands_do_not_inherit_the_engines_secrets(tmp_path, mode, monkeypatch):
    secrets = {"GROQ_API_KEY": "gsk_x", "SWITCHBOARD_INTAKE_TOKEN": "t1", "SWITCHBOARD_INTAKE__TOKEN": "t2-a-token-long-enough",
               "LIVEKIT_API_SECRET": "l", "OTHER_API_KEY": "o", "AWS_SECRET": "a", "GITHUB_TOKEN": "g",
               "DB_PASSWORD": "p", "my_password_file": "f", "PASSED_TOKEN": "engine's"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PLAIN_SETTING", "kept")
    out = tmp_path / "env.txt"
    text = (f'[[process]]\nid = "s"\nkind = "shell"\nshell = true\ncommand = "env > {out}"\n'
            'env = { PASSED_TOKEN = "given" }\n')
    async with running_engine(tmp_path) as orch:
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert orch.processes["s"].state is State.COMPLETED
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert not set(secrets) - {"PASSED_TOKEN"} & set(seen)
    assert seen["PASSED_TOKEN"] == "given" and seen["PLAIN_SETTING"] == "kept"


# -- item 12: a command that cannot be executed ------------------------------------------------------

@pytest.mark.parametrize("what", ["missing", "not_executable", "bad_format", "argv_too_long"])
async def test_a_command_that_cannot_be_executed_fails_at_once(tmp_path, mode, what):
    program = tmp_path / "prog"
    argv = [str(program)]
    if what == "missing":
        reason = "No such file or directory"
    elif what == "not_executable":
        program.write_text("#!/bin/sh\nexit 0\n")
        reason = "Permission denied"
    elif what == "bad_format":
        program.write_bytes(b"\x7fELF garbage, not a program")
        program.chmod(0o755)
        reason = "Exec format error"
    else:
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o755)
        argv += ["x" * 200_000] * 20  # 4 MB of arguments
        reason = "Argument list too long"
    text = f'[[process]]\nid = "s"\nkind = "shell"\nmax_attempts = 3\ncommand = {json.dumps(argv)}\n'
    async with running_engine(tmp_path) as orch:
        await orch.load(workflow(text))
        await orch.run_until_idle()
        p = orch.processes["s"]
        assert p.state is State.FAILED
        assert p.attempt == 1
        assert reason in p.reason and "\n" not in p.reason and len(p.reason) < 400, p.reason
        events = await orch.store.events(process_id="s")
        assert events and all(len(e.message) < 1000 for e in events)


# -- item 11: one folder per process id --------------------------------------------------------------

def test_process_ids_never_share_a_folder(tmp_path):
    long = "x" * 300
    ids = ["a/b", "a_b", "a@b", "A_B", "..", ".", "", "_", "a\nb", "ä", "a" + long, "a" + long + "y",
           "../a_b", "a_b.", ".a_b"]
    names = [path_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert len({n.lower() for n in names}) == len(ids)  # also where case is ignored
    folders = [workdir_for(tmp_path, i) for i in ids]
    assert len(set(folders)) == len(ids)
    for folder in folders:
        assert folder.parent == tmp_path / "work" and folder.is_dir()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert len(folder.name) <= 100


def test_a_folder_of_the_old_layout_is_kept_by_its_own_id(tmp_path):
    old = tmp_path / "work" / "nightly-1"
    old.mkdir(parents=True)
    (old / "state.txt").write_text("kept")
    folder = workdir_for(tmp_path, "nightly-1")
    assert (folder / "state.txt").read_text() == "kept"
    # an id that was folded onto an old folder does not take it: it may be another id's
    shared = tmp_path / "work" / "a_b"
    shared.mkdir()
    assert workdir_for(tmp_path, "a/b") != shared and shared.is_dir()


# -- item 1 (log part): a command's log is capped --------------------------------------------------

async def test_a_commands_log_keeps_its_first_and_last_lines_and_says_how_many_were_dropped(tmp_path, mode):
    text = ('[[process]]\nid = "s"\nkind = "shell"\nshell = true\n'
            'command = "i=1; while [ $i -le 100 ]; do echo line $i; i=$((i+1)); done"\n')
    async with running_engine(tmp_path, max_log_lines=10) as orch:
        await orch.load(workflow(text))
        await orch.run_until_idle()
        assert orch.processes["s"].state is State.COMPLETED
        logged = [line for _, line in await orch.store.logs("s", limit=1000)]
    assert logged[:5] == [f"line {i}" for i in range(1, 6)]
    assert logged[5].startswith("(90 lines dropped here")
    assert logged[6:] == [f"line {i}" for i in range(96, 101)]


def test_the_log_cap_is_a_setting_with_a_default(tmp_path):
    from console.settings import load_settings

    assert load_settings(db=tmp_path / "t.db").engine.max_log_lines == 10_000
    assert load_settings(db=tmp_path / "t.db", engine={"max_log_lines": 50}).engine.max_log_lines == 50
