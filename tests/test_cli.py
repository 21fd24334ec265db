"""The command line and the headless runner as real subprocesses on real database files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, dep, py, wait_until

from console.model import Event, json_text

SB = [sys.executable, "-m", "console"]


def sb(*args: str, check: bool = False, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([*SB, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{args} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def start_runner(db: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([*SB, "run", "--db", str(db), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def status(db: Path) -> dict:
    return json.loads(sb("status", "--db", str(db), "--json", check=True).stdout)


def states(db: Path) -> dict[str, str]:
    return {p["id"]: p["state"] for p in status(db)["processes"]}


def db_rows(db: Path, table: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    finally:
        con.close()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the headless runner ---------------------------------------------------------------------------

def test_run_until_idle_exit_status_and_json_lines(tmp_path):
    ok = write(tmp_path, "ok.toml", py("a", "noop") + py("b", "noop") + dep("b", "a"))
    result = sb("run", "--db", "t.db", "--workflow", str(ok), "--until-idle", check=True)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["process"], e["type"]) for e in events if e["type"] in ("running", "completed")] == [
        ("a", "running"), ("a", "completed"), ("b", "running"), ("b", "completed")]
    assert "2 completed" in result.stderr
    bad = write(tmp_path, "bad.toml", py("c", "fail", extra="max_attempts = 1"))
    result = sb("run", "--db", "t.db", "--workflow", str(bad), "--until-idle")
    assert result.returncode == 1
    assert states(tmp_path / "t.db") == {"a": "completed", "b": "completed", "c": "failed"}


def test_run_prints_events_in_seq_order(tmp_path):
    """`switchboard run`'s JSON lines come in `seq` order, log lines included: commands that
    print at once (stdout, stderr, progress), some failing and retried, several at a time. Each
    process's lines come after its `running`, and between two runs of one process its outcome."""
    processes = "".join(
        f'[[process]]\nid = "c{i}"\nkind = "shell"\nshell = true\nmax_attempts = 2\n'
        f'command = "echo out {i}; echo err {i} >&2; echo ::progress 50; echo more {i}; exit {i % 5 == 0 and 1 or 0}"\n'
        for i in range(60))
    wf = write(tmp_path, "wf.toml", processes)
    for attempt in range(3):
        result = sb("run", "--db", f"t{attempt}.db", "--workflow", str(wf), "--until-idle")
        events = [json.loads(line) for line in result.stdout.splitlines()]
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(set(seqs)), [(a, b) for a, b in zip(seqs, seqs[1:]) if b <= a][:5]
        running: set[str] = set()
        for e in events:
            if e["type"] == "running":
                running.add(e["process"])
            elif e["type"] in ("log", "progress"):
                assert e["process"] in running, e
            elif e["type"] in ("completed", "interrupted", "failed"):
                running.discard(e["process"])
        assert sum(e["type"] == "log" for e in events) == 60 * 3 + 12 * 3  # the failing ones ran twice
        assert result.returncode == 1 and "48 completed, 12 failed" in result.stderr, result.stderr


@pytest.mark.parametrize("event", [
    Event(1, 1795469837.4948022, "p0", "registered", "shell from /tmp/x.toml", {"priority": "medium"}),
    Event(2, 1.5, None, "pool"),
    Event(3, 2.0, 'é"x\n', "waiting", "needs ✓ \\ and \t", {"a": [1, 2.5, None, {"b": "ü"}], "c": Path("/x")}),
    Event(4, 3, "p", "log", "", {}),
    Event(5, 4.25, "p", "completed", "", {"elapsed_s": 0.1, "big": 1e20, "nan": float("nan"), "inf": float("-inf"),
                                          "t": True, 7: False, 2.5: (1, "x"), "set": {3}}),
])
def test_a_json_line_is_the_event_encoded_as_json(event):
    """The runner writes lines by hand, with event data through json's C encoder built once
    (fast paths): they must be what the JSON encoder writes."""
    assert event.json_line() == json_text(event.to_json())
    assert json.loads(event.json_line())["process"] == event.process_id


def test_crash_recovery_after_sigkill_resumes_from_checkpoint(tmp_path):
    log = tmp_path / "runs.jsonl"
    wf = write(tmp_path, "wf.toml", "".join(
        py(f"w{i}", "counted", total=20, step_s=0.05, log=str(log)) for i in range(3)))
    runner = start_runner(tmp_path / "t.db", "--workflow", str(wf))
    # wait until every worker has checkpointed a few steps, then kill -9 mid-work
    wait_until(lambda: all(p["progress"] >= 20 for p in status(tmp_path / "t.db")["processes"])
               if (tmp_path / "t.db").exists() and len(status(tmp_path / "t.db")["processes"]) == 3 else False)
    runner.kill()
    runner.wait()
    before = status(tmp_path / "t.db")
    assert {p["state"] for p in before["processes"]} == {"running"}  # what a crash leaves behind
    assert before["owner"] is not None  # the dead owner's claim is still written down...
    # ...but a new runner sees that pid is gone and takes over at once
    result = sb("run", "--db", str(tmp_path / "t.db"), "--until-idle", check=True)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    crashed = [e for e in events if e["type"] == "interrupted"]
    assert len(crashed) == 3 and all(e["data"]["interruption"]["type"] == "crash" for e in crashed)
    assert set(states(tmp_path / "t.db").values()) == {"completed"}
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    for i in range(3):
        mine = [r for r in runs if r["process"] == f"w{i}"]
        assert [r["attempt"] for r in mine] == [1, 2]
        assert mine[0]["from"] == 0 and mine[1]["from"] >= 4  # resumed from its checkpoint
    # a crash is not a failed attempt: TRY (failed attempts) reads 0 of 3, though each ran twice
    shown = sb("status", "--db", str(tmp_path / "t.db"), check=True).stdout.splitlines()[4:]
    assert sorted(line.split()[4] for line in shown) == ["0/3"] * 3, shown


def test_graceful_shutdown_with_work_in_flight_is_fast_and_loses_nothing(tmp_path):
    wf = write(tmp_path, "wf.toml", "".join(py(f"c{i}", "cooperative") for i in range(3))
               + "".join(py(f"s{i}", "wait_gate", gate="never") for i in range(2))
               + '''
[[process]]
id = "sh"
kind = "shell"
command = ["sleep", "30"]
''')
    runner = start_runner(tmp_path / "t.db", "--workflow", str(wf), "--max-concurrent", "6")
    wait_until(lambda: (tmp_path / "t.db").exists()
               and sorted(states(tmp_path / "t.db").values()) == ["running"] * 6)
    runner.send_signal(signal.SIGTERM)
    # fast: the runner does not wait for work that never ends (gates that never open, `sleep 30`)
    assert runner.wait(timeout=20) == 0
    after = status(tmp_path / "t.db")
    assert after["owner"] is None  # released on the way out
    for p in after["processes"]:
        assert p["state"] == "interrupted" and p["interruption"]["type"] == "shutdown", p
    cooperative = {p["id"]: p for p in after["processes"] if p["id"].startswith("c")}
    assert all(p["attempt"] == 1 for p in cooperative.values())
    # the next start picks everything up again from where it stopped
    runner = start_runner(tmp_path / "t.db", "--max-concurrent", "6")
    try:
        wait_until(lambda: set(states(tmp_path / "t.db").values()) == {"running"})
    finally:
        runner.send_signal(signal.SIGINT)
        runner.wait(timeout=10)
    assert all(p["attempt"] == 2 for p in status(tmp_path / "t.db")["processes"])


def test_a_second_sigterm_during_shutdown_does_not_cut_it_short(tmp_path):
    # a parent that dies sends PR_SET_PDEATHSIG once per thread; service managers repeat SIGTERM
    wf = write(tmp_path, "wf.toml", '''
[[process]]
id = "stubborn"
kind = "shell"
command = ["sh", "-c", "trap '' TERM; sleep 30"]
''')
    runner = start_runner(tmp_path / "t.db", "--workflow", str(wf))
    wait_until(lambda: (tmp_path / "t.db").exists() and states(tmp_path / "t.db").get("stubborn") == "running")
    runner.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # shutting down: the shell ignores SIGTERM, so its grace is waited out
    runner.send_signal(signal.SIGTERM)
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=30) == 0
    assert "already stopping" in runner.stderr.read()
    after = status(tmp_path / "t.db")
    assert after["owner"] is None
    assert after["processes"][0]["interruption"]["type"] == "shutdown"


def test_second_dispatcher_is_refused_naming_the_owner(tmp_path):
    wf = write(tmp_path, "wf.toml", py("g", "wait_gate", gate="never"))
    runner = start_runner(tmp_path / "t.db", "--workflow", str(wf))
    try:
        wait_until(lambda: (tmp_path / "t.db").exists() and states(tmp_path / "t.db").get("g") == "running")
        result = sb("run", "--db", str(tmp_path / "t.db"))
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"switchboard: {tmp_path / 't.db'} is already dispatched by runner pid {runner.pid} on "
            f"{os.uname().nodename}; use `switchboard status`, `resume` and `cancel` to act through it")
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=10)


def test_cli_acts_through_a_running_owner_within_a_second(tmp_path):
    wf = write(tmp_path, "wf.toml", py("held", "noop", extra="hold = true") + py("long", "wait_gate", gate="x")
               + py("after", "noop") + dep("after", "long"))
    runner = start_runner(tmp_path / "t.db", "--workflow", str(wf))
    db = str(tmp_path / "t.db")
    try:
        wait_until(lambda: Path(db).exists() and states(Path(db)).get("long") == "running")
        # the answer comes from the owner, which looks at its inbox while it runs work
        result = sb("resume", "--db", db, "held", check=True)
        assert result.stdout.startswith("held: ")
        wait_until(lambda: states(Path(db))["held"] == "completed")
        result = sb("cancel", "--db", db, "long", check=True)
        assert result.stdout.strip() == "long: cancelled"
        assert states(Path(db)) == {"held": "completed", "long": "cancelled", "after": "blocked"}
        result = sb("cancel", "--db", db, "long")
        assert result.returncode == 2 and result.stderr.strip() == "switchboard: long is already cancelled"
        result = sb("resume", "--db", db, "nope")
        assert result.returncode == 2 and result.stderr.strip() == "switchboard: no process 'nope'"
        # load through the owner
        more = write(tmp_path, "more.toml", py("extra", "noop"))
        result = sb("load", "--db", db, str(more), check=True)
        assert "loaded 1 new process" in result.stdout
        wait_until(lambda: states(Path(db)).get("extra") == "completed")
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout=10)


def test_cli_acts_directly_when_no_one_owns_the_database(tmp_path):
    wf = write(tmp_path, "wf.toml", py("a", "noop") + py("b", "noop", extra="hold = true"))
    result = sb("load", "--db", "t.db", str(wf), check=True)
    assert result.stdout.strip() == "loaded 2 new process(es), 0 new dependency(ies)"
    assert states(tmp_path / "t.db") == {"a": "queued", "b": "pending"}
    result = sb("load", "--db", "t.db", str(wf), check=True)  # idempotent
    assert "loaded 0 new process(es), 2 already present" in result.stdout
    sb("cancel", "--db", "t.db", "a", check=True)
    sb("resume", "--db", "t.db", "b", check=True)
    assert states(tmp_path / "t.db") == {"a": "cancelled", "b": "queued"}
    assert status(tmp_path / "t.db")["owner"] is None
    result = sb("run", "--db", "t.db", "--until-idle")
    assert result.returncode == 1  # a is cancelled
    assert states(tmp_path / "t.db") == {"a": "cancelled", "b": "completed"}


def test_status_text_and_json(tmp_path):
    wf = write(tmp_path, "wf.toml", py("a", "noop", "high"))
    sb("load", "--db", "t.db", str(wf), check=True)
    text = sb("status", "--db", "t.db", check=True).stdout
    assert "dispatched by nobody" in text and "a " in text and "queued" in text
    entry = status(tmp_path / "t.db")["processes"][0]
    assert {k: entry[k] for k in ("id", "kind", "state", "progress", "attempt", "priority")} == {
        "id": "a", "kind": "python", "state": "queued", "progress": 0, "attempt": 0, "priority": "high"}


def test_status_try_column_is_failed_attempts_against_max(tmp_path):
    """A process waiting for an operator (no provider) and resumed by one is not failing: TRY
    reads 0/1, not 2/1; one that failed after its attempts reads 2/2, with the command's stderr."""
    wf = write(tmp_path, "wf.toml", py("op", "needs_operator", flag=str(tmp_path / "never"), extra="max_attempts = 1")
               + '[[process]]\nid = "up"\nkind = "shell"\ncommand = ["sh", "-c", "echo upload failed: 503 >&2; exit 1"]\n'
               + "max_attempts = 2\n")
    sb("run", "--db", "t.db", "--workflow", str(wf), "--until-idle")
    sb("resume", "--db", "t.db", "op", check=True)
    sb("run", "--db", "t.db", "--until-idle")
    rows = {line.split()[0]: line for line in sb("status", "--db", "t.db", check=True).stdout.splitlines()[4:]}
    assert rows["op"].split()[3:5] == ["0%", "0/1"], rows["op"]
    assert rows["up"].split()[3:5] == ["0%", "2/2"], rows["up"]
    assert rows["up"].endswith("attempts used up (2/2): exit status 1: upload failed: 503")
    shown = {p["id"]: p for p in status(tmp_path / "t.db")["processes"]}
    assert (shown["op"]["attempt"], shown["op"]["failures"]) == (2, 0)
    assert (shown["up"]["attempt"], shown["up"]["failures"]) == (2, 2)


def test_an_engine_exception_is_in_the_program_log_once_and_nowhere_else(tmp_path):
    """An exception raised by the engine or a kind while running a process (the shell kind, on
    an environment variable name it cannot pass) is the process's reason in one line; its
    traceback is in the program's log file, once per run, not on stderr, stdout or in the
    process's log."""
    wf = write(tmp_path, "wf.toml", '[[process]]\nid = "env"\nkind = "shell"\ncommand = ["true"]\n'
                                    'env = { "A=B" = "x" }\nmax_attempts = 1\n')
    result = sb("run", "--db", "t.db", "--workflow", str(wf), "--until-idle")
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    failed = [json.loads(line) for line in result.stdout.splitlines() if '"type":"failed"' in line]
    assert failed[0]["message"] == "attempts used up (1/1): ValueError: illegal environment variable name"
    log = (tmp_path / "xdg-data" / "switchboard" / "switchboard.log").read_text()
    assert log.count("Traceback") == 1 and "env: its run raised an unexpected exception" in log, log
    assert [row[-1] for row in db_rows(tmp_path / "t.db", "logs")] == []


def read_one_line_then_close(*args: str, stderr_path: Path) -> tuple[str, int]:
    """`switchboard ARGS | head -1`: a real pipe whose reader takes one line and closes it
    while the command still has more to write. Returns (the line, the command's exit status)."""
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen([*SB, *args], stdout=subprocess.PIPE, stderr=err, text=True)
        line = proc.stdout.readline()
        proc.stdout.close()
        code = proc.wait(timeout=120)
    return line, code


def test_a_closed_pipe_ends_a_command_quietly_as_sigpipe_does(tmp_path):
    """`switchboard status | head -1` (text or JSON) with more than a pipe holds: no traceback,
    and the status a shell reports for a tool that SIGPIPE ended (128 + 13)."""
    many = "".join(f'[[process]]\nid = "p{i:04}"\nkind = "shell"\ncommand = ["true"]\nhold = true\n'
                   for i in range(3000))
    sb("load", "--db", "t.db", str(write(tmp_path, "many.toml", many)), check=True)
    for flags in ([], ["--json"]):
        line, code = read_one_line_then_close("status", "--db", "t.db", *flags, stderr_path=tmp_path / "err.txt")
        err = (tmp_path / "err.txt").read_text()
        assert line.strip() and "Traceback" not in err and "Exception ignored" not in err, err
        assert err == "" and code == 141, (code, err)


def test_run_goes_on_quietly_when_its_reader_closes_the_pipe(tmp_path):
    """`switchboard run | head -1`: the engine finishes its work (it does not die half-way as a
    filter would) and says nothing about the closed pipe; its exit status is the work's."""
    command = "i=0; while [ $i -lt 4000 ]; do echo line $i; i=$((i+1)); done"
    wf = write(tmp_path, "wf.toml", f'[[process]]\nid = "talk"\nkind = "shell"\nshell = true\ncommand = "{command}"\n')
    line, code = read_one_line_then_close("run", "--db", "t.db", "--workflow", str(wf), "--until-idle",
                                          stderr_path=tmp_path / "err.txt")
    err = (tmp_path / "err.txt").read_text()
    assert json.loads(line)["seq"] == 1
    assert "Traceback" not in err and "Exception ignored" not in err and "Broken pipe" not in err, err
    assert code == 0 and "1 completed" in err, (code, err)
    assert states(tmp_path / "t.db") == {"talk": "completed"}


# -- bad input: one line, exit 2, nothing written ------------------------------------------------------

BAD_WORKFLOWS = [
    ("not toml", "[[process]\nid=", "not valid TOML"),
    ("no processes", "[resources]\ncpu_intensive = 1\n", "no [[process]] entries"),
    ("bad priority", py("x", "noop", "urgent"), "process 'x': field 'priority': Input should be"),
    ("unknown kind", '[[process]]\nid = "x"\nkind = "perl"\n', "process 'x': field 'kind': unknown kind 'perl'"),
    ("missing command", '[[process]]\nid = "x"\nkind = "shell"\n', "process 'x': field 'command': must be a non-empty list"),
    ("bad entry", '[[process]]\nid = "x"\nkind = "python"\nentry = "nocolon"\n', "process 'x': field 'entry'"),
    ("unknown field", '[[process]]\nid = "x"\nkind = "shell"\ncommand = ["true"]\ncommandd = 1\n', "process 'x': field 'commandd': unknown field"),
    ("duplicate id", py("x", "noop") + py("x", "noop"), "process 'x': field 'id': duplicate id"),
    ("bad id", '[[process]]\nid = "a b"\nkind = "shell"\ncommand = ["true"]\n', "process 'a b': field 'id'"),
    ("negative attempts", py("x", "noop", extra="max_attempts = 0"), "process 'x': field 'max_attempts'"),
    ("bad percent", py("x", "noop") + py("y", "noop") + dep("y", "x", "data", 120), "dependency #1 (y → x): field 'required_completion_percent'"),
    ("bad dep type", py("x", "noop") + py("y", "noop") + dep("y", "x", "sideways"), "field 'type'"),
    ("self dependency", py("x", "noop") + dep("x", "x"), "cannot depend on itself"),
    ("unknown dependency", py("x", "noop") + dep("x", "ghost"), "field 'dependency': unknown process 'ghost'"),
    ("cycle", py("x", "noop") + py("y", "noop") + dep("y", "x") + dep("x", "y"), "dependency cycle refused"),
    ("unknown pool", py("x", "noop", resources="{ gpu = 1 }"), "process 'x': field 'resources': unknown pool 'gpu'"),
    ("pool too small", py("x", "noop", resources="{ cpu_intensive = 9 }"), "needs 9 of pool 'cpu_intensive'"),
    ("bad pool size", "[resources]\ncpu_intensive = -1\n" + py("x", "noop"), "resources: pool 'cpu_intensive'"),
    ("unknown table", "[proces]\nid = 1\n", "unknown table 'proces'"),
]


@pytest.mark.parametrize("name,text,expected", BAD_WORKFLOWS, ids=[b[0] for b in BAD_WORKFLOWS])
def test_bad_workflow_is_one_clear_line_exit_2_and_changes_nothing(tmp_path, name, text, expected):
    good = write(tmp_path, "good.toml", py("base", "noop"))
    sb("load", "--db", "t.db", str(good), check=True)
    before = {t: db_rows(tmp_path / "t.db", t) for t in ("processes", "dependencies", "events", "resume_requests", "pools", "commands")}
    bad = write(tmp_path, "bad.toml", text)
    for command in (["load", "--db", "t.db", str(bad)], ["run", "--db", "t.db", "--workflow", str(bad), "--until-idle"]):
        result = sb(*command)
        assert result.returncode == 2, result
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith(f"switchboard: {bad}: ") and expected in lines[0], lines[0]
        assert result.stdout == ""
    after = {t: db_rows(tmp_path / "t.db", t) for t in before}
    assert after == before


def test_missing_workflow_file_and_bad_arguments(tmp_path):
    result = sb("load", "--db", "t.db", "nope.toml")
    assert (result.returncode, result.stderr.strip()) == (
        2, "switchboard: nope.toml: no such workflow file, nor a bundled workflow (demo, shell-pipeline)")
    result = sb("run", "--db", "t.db", "--max-concurrent", "many")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    result = sb("frobnicate")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "t.db").exists()


BAD_SETTINGS = [
    ({"SWITCHBOARD_ENGINE__MAX_CONCURRENT": "lots"}, [], "invalid setting engine.max_concurrent='lots'"),
    ({"SWITCHBOARD_ENGINE__MAX_CONCURRENT": "0"}, [], "invalid setting engine.max_concurrent='0'"),
    ({"SWITCHBOARD_STORE__SYNCHRONOUS": "sometimes"}, [], "invalid setting store.synchronous='SOMETIMES'"),
    ({}, ["--max-concurrent", "-3"], "invalid setting engine.max_concurrent=-3"),
    ({"SWITCHBOARD_ENGINE__SHUTDOWN_GRACE_S": "-1"}, [], "invalid setting engine.shutdown_grace_s='-1'"),
]


@pytest.mark.parametrize("env,flags,expected", BAD_SETTINGS)
def test_bad_settings_are_named_with_their_value(tmp_path, env, flags, expected):
    result = sb("run", "--db", "t.db", "--until-idle", *flags, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"switchboard: {expected}") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "t.db").exists()


def test_bad_config_file_is_named(tmp_path):
    config = write(tmp_path, "c.toml", "[engine]\nmax_concurent = 3\n")
    result = sb("status", "--config", str(config), "--db", "t.db")
    assert (result.returncode, result.stderr.strip()) == (2, f"switchboard: {config}: unknown setting engine.max_concurent")
    config.write_text("[engine\n")
    result = sb("status", "--config", str(config))
    assert result.returncode == 2 and "not valid TOML" in result.stderr


def test_settings_precedence_defaults_toml_dotenv_env_flags(tmp_path, monkeypatch):
    from console.settings import load_settings

    config = write(tmp_path, "c.toml", "[engine]\nmax_concurrent = 7\nretry_base_s = 2.0\n[store]\nsynchronous = 'full'\n")
    s = load_settings(config)
    assert (s.engine.max_concurrent, s.engine.retry_base_s, s.store.synchronous) == (7, 2.0, "FULL")
    assert s.engine.shutdown_grace_s == 0.5  # default
    write(tmp_path, ".env", "SWITCHBOARD_ENGINE__MAX_CONCURRENT=8\nSWITCHBOARD_ENGINE__RETRY_BASE_S=3\nOTHER_TOOL=1\n")
    s = load_settings(config)
    assert (s.engine.max_concurrent, s.engine.retry_base_s) == (8, 3.0)
    monkeypatch.setenv("SWITCHBOARD_ENGINE__MAX_CONCURRENT", "9")
    assert load_settings(config).engine.max_concurrent == 9
    assert load_settings(config, engine={"max_concurrent": 10}).engine.max_concurrent == 10


# -- the store and the import contract ---------------------------------------------------------------

def test_database_is_private_and_versioned(tmp_path):
    wf = write(tmp_path, "wf.toml", py("a", "noop"))
    sb("load", "--db", "t.db", str(wf), check=True)
    assert stat.S_IMODE((tmp_path / "t.db").stat().st_mode) == 0o600
    con = sqlite3.connect(tmp_path / "t.db")
    from console.store.schema import SCHEMA_VERSION
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute("PRAGMA user_version = 999")
    con.commit()
    con.close()
    result = sb("status", "--db", "t.db")
    assert result.returncode == 2 and "newer than this Switchboard" in result.stderr


def test_not_a_database(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    result = sb("status", "--db", "junk.db")
    assert result.returncode == 2 and "not a Switchboard database" in result.stderr


def test_headless_path_never_imports_textual_or_groq():
    code = (
        "import sys\n"
        "import console.cli, console.headless, console.engine.orchestrator, console.control\n"
        "import console.kinds.shell, console.kinds.python, console.store.sqlite, console.settings\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'groq', 'rich'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_engine_store_and_kinds_never_import_textual():
    forbidden = ("textual", "console.tui")
    for folder in ("engine", "store", "kinds"):
        for path in (ROOT / "console" / folder).rglob("*.py"):
            text = path.read_text()
            for name in forbidden:
                assert f"import {name}" not in text and f"from {name}" not in text, (path, name)


def test_demo_workflow_completes_showing_a_resume_and_an_early_data_dependency(tmp_path):
    result = sb("run", "--workflow", str(ROOT / "config" / "demo.toml"), "--until-idle", timeout=120,
                env={"SWITCHBOARD_ENGINE__RETRY_BASE_S": "0.2"})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    seq = {(e["process"], e["type"]): e["seq"] for e in events if e["type"] in ("running", "completed")}
    interrupted = [e for e in events if e["type"] == "interrupted"]
    assert [(e["process"], e["data"]["interruption"]["type"]) for e in interrupted] == [("transcribe", "transient")]
    assert seq[("evaluate", "running")] < seq[("train", "completed")]  # data dependency at 80 %
    db = tmp_path / "xdg-data" / "switchboard" / "switchboard.db"  # the default location
    assert set(states(db).values()) == {"completed"}
    report = tmp_path / "xdg-data" / "switchboard" / "work" / "nightly" / "report.md"
    assert "resumed after 100 calls" in report.read_text()


def test_shell_example_workflow(tmp_path):
    example = ROOT / "config" / "examples" / "shell-pipeline.toml"
    result = sb("run", "--db", "t.db", "--workflow", str(example), "--until-idle",
                env={"SWITCHBOARD_ENGINE__RETRY_BASE_S": "0.1"})
    assert result.returncode == 1  # `publish` is held for an operator
    held = states(tmp_path / "t.db")
    assert held["publish"] == "pending"
    sb("resume", "--db", "t.db", "publish", check=True)
    result = sb("run", "--db", "t.db", "--until-idle")
    assert result.returncode == 0, result.stderr


def test_a_bundled_workflow_is_named_without_a_file(tmp_path):
    # from an installed wheel there is no config/ folder to point at
    sb("load", "--db", "t.db", "shell-pipeline", check=True)
    assert "fetch-logs" in states(tmp_path / "t.db")
    result = sb("run", "--db", "d.db", "--workflow", "demo", "--until-idle", timeout=120,
                env={"SWITCHBOARD_ENGINE__RETRY_BASE_S": "0.2"})
    assert result.returncode == 0, result.stderr
    assert set(states(tmp_path / "d.db")) == {"ingest", "transcribe", "redact", "train", "evaluate", "report"}


def test_a_file_wins_over_a_bundled_workflow_of_the_same_name(tmp_path):
    (tmp_path / "demo").write_text('[[process]]\nid = "mine"\nkind = "shell"\ncommand = ["true"]\n')
    sb("load", "--db", "t.db", "demo", check=True)
    assert states(tmp_path / "t.db") == {"mine": "queued"}


@pytest.mark.parametrize("command", [["run", "--until-idle", "--workflow"], ["load"]])
def test_an_unknown_workflow_name_is_one_line_and_writes_nothing(tmp_path, command):
    result = sb(*command[:1], "--db", "t.db", *command[1:], "nightly")
    assert result.returncode == 2
    assert result.stderr == ("switchboard: nightly: no such workflow file, nor a bundled workflow "
                             "(demo, shell-pipeline)\n")
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize("argv", [
    ["run", "--db", "x.db", "--workflow", "w.toml", "--until-idle", "--max-concurrent", "3"],
    ["status", "--json"],
    ["voice", "--call", "c1", "--text", "hello", "--wait"],
    ["transfer", "complete", "t1"],
    ["bench", "--quick", "--json"],
])
def test_a_command_parses_alike_with_only_its_own_parser(argv):
    from console.cli import build_parser

    assert vars(build_parser(argv[0]).parse_args(argv)) == vars(build_parser().parse_args(argv))
