"""Hostile input at the command line: options in either place, damaged or read-only database
files, huge numbers, terminal escapes, deep nesting. Each gets one line and exit status 2 (or
is shown escaped), nothing written. Real subprocesses on real files."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until

from console.cli import _COMMANDS, GLOBAL_OPTIONS, parse_args
from console.model import UserError

SB = [sys.executable, "-m", "console"]

WORKFLOW = '[[process]]\nid = "a"\nkind = "shell"\nshell = true\ncommand = "true"\n'


def sb(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SB, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_line_exit_2(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("switchboard: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def default_db() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "switchboard" / "switchboard.db"


# -- global options before or after the command --------------------------------------------------

# a command line for each command, after `--db X` / `--config C` (the minimum it needs)
COMMAND_LINES = {
    "demo": ["demo"],
    "serve": ["serve"],
    "run": ["run", "--until-idle"],
    "load": ["load", "w.toml"],
    "status": ["status"],
    "resume": ["resume", "a"],
    "cancel": ["cancel", "a"],
    "voice": ["voice", "--call", "c1", "--text", "hello"],
    "transfer": ["transfer", "--call", "c1", "--from", "ann", "--to", "bob"],
    "calls": ["calls"],
    "transfers": ["transfers"],
}


def test_every_command_is_covered():
    assert set(COMMAND_LINES) | {"bench"} == set(_COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMAND_LINES))
@pytest.mark.parametrize("place", ["before", "after"])
def test_db_and_config_are_taken_before_or_after_the_command(command, place):
    line = COMMAND_LINES[command]
    options = ["--db", "x.db", "--config", "c.toml"]
    args = parse_args(options + line if place == "before" else line[:1] + options + line[1:])
    assert (args.command, args.db, args.config) == (command, "x.db", "c.toml")


def test_console_options_before_a_command_that_takes_them():
    args = parse_args(["--theme", "nord", "--read-only", "demo"])
    assert (args.theme, args.read_only, args.listen) == ("nord", True, None)
    args = parse_args(["--listen", "127.0.0.1:9", "run"])
    assert args.listen == "127.0.0.1:9"
    args = parse_args(["--db", "x.db", "--observe"])  # the console itself
    assert (args.command, args.db, args.observe) == (None, "x.db", True)


@pytest.mark.parametrize("argv, message", [
    (["--theme", "nord", "status"], "--theme does not apply to `status`"),
    (["--observe", "run"], "--observe does not apply to `run`"),
    (["--listen", "127.0.0.1:9", "load", "w.toml"], "--listen does not apply to `load`"),
    (["--db", "x.db", "bench"], "--db does not apply to `bench`"),
    (["--db", "x.db", "status", "--db", "y.db"], "--db given twice"),
])
def test_an_option_before_a_command_that_does_not_take_it_is_refused(argv, message):
    with pytest.raises(UserError, match=message.replace("`", ".")):
        parse_args(argv)


def test_the_same_value_before_and_after_is_fine():
    assert parse_args(["--db", "x.db", "status", "--db", "x.db"]).db == "x.db"
    for dest, (_flag, default) in GLOBAL_OPTIONS.items():
        assert getattr(parse_args(["status"]), dest) == default


@pytest.mark.parametrize("command", ["load", "run", "status", "resume", "cancel", "voice", "transfer",
                                     "calls", "transfers"])
def test_db_before_the_command_acts_on_that_database(tmp_path, command):
    """`switchboard --db X CMD`: CMD reads and writes X, and the default database is never
    created (it wrote there before)."""
    Path("w.toml").write_text(WORKFLOW)
    other = tmp_path / "other.db"
    if command not in ("load", "run"):
        if command == "resume":  # held: pending until resumed
            Path("w.toml").write_text(WORKFLOW + "hold = true\n")
        assert sb("load", "--db", str(other), "w.toml").returncode == 0
    if command == "transfer":  # of a call that exists
        assert sb(*COMMAND_LINES["voice"], "--db", str(other)).returncode == 0
    line = COMMAND_LINES[command]
    if command == "run":
        line = ["run", "--workflow", "w.toml", "--until-idle"]
    result = sb("--db", str(other), *line)
    assert result.returncode == 0, result.stderr
    assert other.exists()
    assert not default_db().exists()
    con = sqlite3.connect(other)
    try:
        assert con.execute("SELECT id FROM processes WHERE id = 'a'").fetchone() == ("a",)
        if command in ("voice", "transfer"):
            table = "voice_requests" if command == "voice" else "transfers"
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
    finally:
        con.close()


def test_config_before_the_command_is_read(tmp_path):
    Path("w.toml").write_text(WORKFLOW)
    Path("bad.toml").write_text("[engine]\nmax_concurrent = -1\n")
    result = sb("--config", "bad.toml", "--db", str(tmp_path / "x.db"), "load", "w.toml")
    one_line_exit_2(result, "engine.max_concurrent")
    assert not (tmp_path / "x.db").exists()


# -- huge numbers ------------------------------------------------------------------------------------

BIG = 2 ** 63  # one past SQLite's largest integer
PROCESS_B = '[[process]]\nid = "b"\nkind = "shell"\nshell = true\ncommand = "true"\n'


@pytest.mark.parametrize("text, words", [
    (f"[resources]\ncpu_intensive = {BIG}\n" + WORKFLOW, ["pool 'cpu_intensive'", "1000000", str(BIG)]),
    (WORKFLOW + f"resources = {{ cpu_intensive = {BIG} }}\n", ["process 'a'", "'resources'", "1000000"]),
    (WORKFLOW + f"max_attempts = {BIG}\n", ["process 'a'", "'max_attempts'", "1000"]),
    (WORKFLOW + PROCESS_B + f'[[dependency]]\ndependent = "b"\ndependency = "a"\ntimeout_minutes = {BIG}\n',
     ["(b → a)", "'timeout_minutes'"]),
    (WORKFLOW + PROCESS_B + '[[dependency]]\ndependent = "b"\ndependency = "a"\ntimeout_minutes = inf\n',
     ["(b → a)", "'timeout_minutes'", "ten years"]),
])
@pytest.mark.parametrize("how", ["load", "run"])
def test_a_huge_number_in_a_workflow_is_one_line_and_nothing_written(tmp_path, text, words, how):
    Path("w.toml").write_text(text)
    db = tmp_path / "h.db"
    argv = ["load", "--db", str(db), "w.toml"] if how == "load" else [
        "run", "--db", str(db), "--workflow", "w.toml", "--until-idle"]
    one_line_exit_2(sb(*argv), "w.toml", *words)
    assert not db.exists()


def test_a_huge_pool_through_a_live_runner_registers_nothing(tmp_path):
    db = tmp_path / "h.db"
    Path("ok.toml").write_text(PROCESS_B)
    assert sb("load", "--db", str(db), "ok.toml").returncode == 0
    runner = subprocess.Popen([*SB, "run", "--db", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: json.loads(sb("status", "--db", str(db), "--json").stdout)["owner"] is not None)
        Path("w.toml").write_text(f"[resources]\ncpu_intensive = {BIG}\n" + WORKFLOW)
        one_line_exit_2(sb("load", "--db", str(db), "w.toml"), "pool 'cpu_intensive'")
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=30)
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT id FROM processes").fetchall() == [("b",)]
        assert con.execute("SELECT count(*) FROM pools").fetchone() == (0,)
    finally:
        con.close()


@pytest.mark.parametrize("config, setting", [
    (f"[engine]\nresources = {{ cpu_intensive = {BIG} }}\n", "engine.resources"),
    (f"[store]\nbusy_timeout_ms = {BIG}\n", "store.busy_timeout_ms"),
    ("[engine]\nhistory_retention_hours = inf\n", "engine.history_retention_hours"),
    ("[voice]\nmax_audio_mb = inf\n", "voice.max_audio_mb"),
    (f"[engine]\nmax_concurrent = {BIG}\n", "engine.max_concurrent"),
])
def test_a_huge_number_in_a_config_file_is_one_line(tmp_path, config, setting):
    Path("w.toml").write_text(WORKFLOW)
    Path("c.toml").write_text(config)
    db = tmp_path / "h.db"
    one_line_exit_2(sb("run", "--config", "c.toml", "--db", str(db), "--workflow", "w.toml", "--until-idle"),
                    setting)
    assert not db.exists()


# -- size: nesting, long texts -----------------------------------------------------------------------

DEEP = {
    "arrays": "a = " + "[" * 100_000,
    "inline tables": "a = " + "{ b = " * 100_000,
    "within the parser's reach": WORKFLOW.replace('kind = "shell"', 'kind = "python"\nentry = "os:getpid"')
    .replace('shell = true\ncommand = "true"\n', "args = { x = " + "[" * 200 + "]" * 200 + " }\n"),
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_a_deeply_nested_workflow_is_one_line(tmp_path, name):
    Path("w.toml").write_text(DEEP[name])
    db = tmp_path / "h.db"
    one_line_exit_2(sb("load", "--db", str(db), "w.toml"), "w.toml", "nested more than 64 levels")
    one_line_exit_2(sb("run", "--db", str(db), "--workflow", "w.toml"), "w.toml", "nested more than 64 levels")
    assert not db.exists()


def test_a_deeply_nested_config_file_is_one_line(tmp_path):
    Path("c.toml").write_text("[engine]\nresources = " + "{ a = " * 100_000)
    one_line_exit_2(sb("status", "--config", "c.toml", "--db", str(tmp_path / "h.db")), "c.toml", "nested")


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_deeply_nested_json_in_a_setting_variable_is_one_line(tmp_path, where):
    value = "[" * 100_000
    env = {}
    if where == ".env":
        Path(".env").write_text(f"SWITCHBOARD_ENGINE__RESOURCES={value}\n")
    else:
        env["SWITCHBOARD_ENGINE__RESOURCES"] = value
    one_line_exit_2(sb("status", "--db", str(tmp_path / "h.db"), env=env), "SWITCHBOARD_", "nested too deeply")


def test_texts_in_events_and_reasons_are_capped(tmp_path):
    """A step whose error is a megabyte long: the error goes into the failure's event and the
    process's reason, each cut at 4,096 characters with a marker of how long it was."""
    Path("jobs").mkdir()
    Path("jobs/big.py").write_text('async def boom(ctx):\n    raise RuntimeError("y" * 1_000_000)\n')
    Path("w.toml").write_text('[[process]]\nid = "a"\nkind = "python"\nentry = "big:boom"\npath = "jobs"\n'
                              'max_attempts = 2\n')
    db = tmp_path / "h.db"
    result = sb("run", "--db", str(db), "--workflow", "w.toml", "--until-idle",
                env={"SWITCHBOARD_ENGINE__RETRY_BASE_S": "0.01"})
    assert result.returncode == 1, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(e["type"] == "failed" for e in events)
    for e in events:
        assert len(e.get("message", "")) < 4200
    assert any("characters in all]" in e.get("message", "") for e in events)
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT max(length(message)) FROM events").fetchone()[0] < 4200
        reason, interruption = con.execute("SELECT reason, interruption FROM processes").fetchone()
    finally:
        con.close()
    assert len(reason) < 4200 and reason.endswith("characters in all]")
    assert interruption is None or len(interruption) < 4400


# -- terminal escapes in human-readable output -------------------------------------------------------

# what must never reach a terminal raw: controls but the line break, bidirectional overrides
ACTING = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x1b]52;c;cHduZWQ=\x07 hi\r\u202egnp.exe"
SHOWN = "\\x1b]0;PWNED\\x07\\x1b[2J\\x1b]52;c;cHduZWQ=\\x07 hi\\r\\u202egnp.exe"


def inert(result: subprocess.CompletedProcess) -> str:
    assert result.returncode in (0, 1), result.stderr
    for text in (result.stdout, result.stderr):
        assert ACTING.search(text) is None, text
    return result.stdout


def test_status_shows_escape_sequences_from_a_process_visibly(tmp_path):
    """A shell process prints escape sequences (title, clear screen, clipboard, carriage return,
    a right-to-left override) and fails; its last line becomes the reason. A pool is named with
    one too. `status` shows them as visible escapes; `status --json` keeps them, JSON-escaped."""
    printf = HOSTILE.replace("\x1b", "\\033").replace("\x07", "\\007").replace("\r", "\\r").replace(
        "\u202e", "\\342\\200\\256")
    Path("w.toml").write_text(
        '[resources]\n"pool\\u001b[2J" = 2\n'
        '[[process]]\nid = "a"\nkind = "shell"\nshell = true\nmax_attempts = 1\n'
        f"command = '''printf 'out {printf}\\n'; printf '{printf}\\n' >&2; exit 3'''\n")
    db = tmp_path / "e.db"
    run = sb("run", "--db", str(db), "--workflow", "w.toml", "--until-idle")
    assert run.returncode == 1, run.stderr
    assert ACTING.search(run.stdout) is None  # JSON lines: escaped by JSON
    out = inert(sb("status", "--db", str(db)))
    assert SHOWN in out and "pool\\x1b[2J 0/2" in out
    process = json.loads(sb("status", "--db", str(db), "--json").stdout)["processes"][0]
    assert HOSTILE in process["reason"]


def test_an_id_with_escapes_in_an_error_is_shown_visibly(tmp_path):
    Path("w.toml").write_text(WORKFLOW)
    db = tmp_path / "e.db"
    assert sb("load", "--db", str(db), "w.toml").returncode == 0
    result = sb("resume", "--db", str(db), HOSTILE)
    assert result.returncode == 2
    assert ACTING.search(result.stderr) is None and "\\x1b]0;PWNED" in result.stderr


@pytest.fixture(scope="module")
def sim():
    from console.bench.groqsim import GroqSim

    with GroqSim(key="gsk_test_hostile_0123456789") as server:
        yield server


def test_voice_calls_and_transfers_show_caller_and_llm_text_visibly(tmp_path, sim):
    """What a caller said and what the LLM answered, both with escape sequences: `voice`,
    `calls`, `calls --call`, `transfer` and `transfers` show them escaped; --json keeps them."""
    sim.reset()
    sim.configure(chat_content="reply " + HOSTILE)
    env = {"GROQ_API_KEY": "gsk_test_hostile_0123456789", "GROQ_BASE_URL": sim.base_url}
    db = str(tmp_path / "v.db")
    out = inert(sb("voice", "--db", db, "--call", "c1", "--text", "caller " + HOSTILE, "--wait", env=env))
    assert "caller:    caller " + SHOWN in out and "assistant: reply " + SHOWN in out
    assert "caller " + SHOWN in inert(sb("calls", "--db", db, "--call", "c1"))
    assert "\\x1b]0;PWNED" in inert(sb("calls", "--db", db))
    sim.configure(chat_content=None)  # the summary: the simulator's JSON, from the caller's words
    out = inert(sb("transfer", "--db", db, "--call", "c1", "--from", "ann", "--to", "bob", "--wait", env=env))
    assert "\\x1b]0;PWNED" in out
    inert(sb("transfers", "--db", db))
    turns = json.loads(sb("calls", "--db", db, "--call", "c1", "--json").stdout)["turns"]
    assert turns[0]["text"] == "caller " + HOSTILE


# -- damaged and read-only database files -----------------------------------------------------------

def loaded_db(tmp_path: Path, name: str = "d.db") -> Path:
    Path("w.toml").write_text(WORKFLOW)
    db = tmp_path / name
    assert sb("load", "--db", str(db), "w.toml").returncode == 0
    return db


def garble_table(db: Path, table: str) -> None:
    """Overwrite the root page of `table` with garbage, as a bad disk or a stray write would."""
    con = sqlite3.connect(db)
    try:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    finally:
        con.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(random.Random(7).randbytes(page_size))


def commands_on(db: Path) -> dict[str, list[str]]:
    return {"status": ["status", "--db", str(db)],
            "load": ["load", "--db", str(db), "w.toml"],
            "run": ["run", "--db", str(db), "--until-idle"]}


@pytest.mark.parametrize("damage", ["text", "truncated", "garbage mid-file"])
def test_a_damaged_database_file_is_one_line_and_left_as_it_is(tmp_path, damage):
    db = loaded_db(tmp_path)
    if damage == "text":
        db.write_text("hello, I am not a database\n" * 100)
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[:3000])
    else:
        garble_table(db, "processes")
    before = db.read_bytes()
    for command, argv in commands_on(db).items():
        result = sb(*argv)
        one_line_exit_2(result, str(db))
        if damage == "garbage mid-file":
            assert "damaged" in result.stderr and "restore it from a backup" in result.stderr
            assert "quick_check" in result.stderr
        if command != "run" or damage != "garbage mid-file":
            assert db.read_bytes() == before, command
        # (`run` takes the lease before it reads the processes, so it finds this damage only
        # after writing its lease row, which it releases on the way out)


def _immutable(path: Path, on: bool) -> bool:
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0


def test_a_read_only_folder_is_named_and_status_still_reads(tmp_path):
    """A folder no file can be made in (SQLite needs its -wal and -shm beside the database),
    the database itself writable: `status` reads it; a command that writes says the folder is
    read-only (it said "not a Switchboard database")."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = loaded_db(folder)
    if os.geteuid() == 0:
        if not _immutable(folder, True):  # chmod does not stop root
            pytest.skip("running as root, and chattr +i does not work here")
    else:
        folder.chmod(0o555)
    try:
        before = db.read_bytes()
        status = sb("status", "--db", str(db))
        assert status.returncode == 0 and "queued" in status.stdout, status.stderr
        for command in ("load", "run"):
            one_line_exit_2(sb(*commands_on(db)[command]), str(db), f"its folder {folder} is read-only")
        assert db.read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["d.db"]
    finally:
        if os.geteuid() == 0:
            _immutable(folder, False)
        else:
            folder.chmod(0o755)


def test_a_database_on_a_read_only_filesystem_is_read_by_status(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only filesystem needs root")
    db = loaded_db(tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mount does not work here (no CAP_SYS_ADMIN)")
    try:
        (mnt / "d.db").write_bytes(db.read_bytes())
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        ro = mnt / "d.db"
        status = sb("status", "--db", str(ro))
        assert status.returncode == 0 and "queued" in status.stdout, status.stderr
        assert json.loads(sb("status", "--db", str(ro), "--json").stdout)["processes"][0]["id"] == "a"
        assert sb("calls", "--db", str(ro)).returncode == 0
        for command in ("load", "run"):
            one_line_exit_2(sb(*commands_on(ro)[command]), str(ro), "Read-only file system")
        assert ro.read_bytes() == db.read_bytes()
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.parametrize("place", ["before", "after"])
def test_demo_never_deletes_an_existing_database(tmp_path, place):
    """The demo starts from a fresh database, deleting the one --db names: an existing file
    (a user's real database, named before `demo` now that the option is taken there) is refused."""
    db = loaded_db(tmp_path)
    before = db.read_bytes()
    argv = ["--db", str(db), "demo"] if place == "before" else ["demo", "--db", str(db)]
    one_line_exit_2(sb(*argv), str(db), "would delete this file")
    assert db.read_bytes() == before
