"""Command line: argument parsing and one function per subcommand, nothing else.

Every user mistake ends as one line on stderr and exit status 2 (UserError)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

from console.model import UserError
from console.printable import printable


def say(text: str, file: Any = None) -> None:
    """Print human-readable output: each line shown, never acting on the terminal (text from
    outside may hold escape sequences; see console.printable). JSON passes unchanged: it has
    none (json.dumps escapes control characters)."""
    print("\n".join(printable(line) for line in text.split("\n")), file=file)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


# Options the top level takes (for the console) that a command may take too. Given before the
# command's name they are the top level's, after it the command's: two destinations, so one
# given before is not overwritten by the command's default, and `_resolve_global_options`
# refuses one the command does not take (never silently ignored).
GLOBAL_OPTIONS: dict[str, tuple[str, Any]] = {  # dest: (flag, value when not given)
    "db": ("--db", None), "config": ("--config", None), "theme": ("--theme", None),
    "read_only": ("--read-only", False), "listen": ("--listen", None), "observe": ("--observe", False),
}
_AFTER = "_after_command"  # the destination's suffix for a global option given after the command
_MISSING = object()


def _global_option(p: argparse.ArgumentParser, top: bool, flag: str, **kw: Any) -> None:
    dest = flag.lstrip("-").replace("-", "_")
    p.add_argument(flag, dest=dest if top else dest + _AFTER, default=argparse.SUPPRESS, **kw)
    if not top:
        p.set_defaults(**{"accepts_" + dest: True})


def _resolve_global_options(args: argparse.Namespace) -> None:
    """One value per global option, wherever it was given; refused (exit 2) when the command
    does not take it or it was given before and after the command with different values."""
    values = vars(args)
    command = values.get("command")
    for dest, (flag, default) in GLOBAL_OPTIONS.items():
        before = values.pop(dest, _MISSING)
        after = values.pop(dest + _AFTER, _MISSING)
        accepted = values.pop("accepts_" + dest, False)
        if command is not None and before is not _MISSING and not accepted:
            raise UserError(f"{flag} does not apply to `{command}`")
        if before is not _MISSING and after is not _MISSING and before != after:
            raise UserError(f"{flag} given twice, before and after `{command}`, with different values")
        values[dest] = after if after is not _MISSING else before if before is not _MISSING else default


def _common(p: argparse.ArgumentParser, top: bool = False) -> None:
    _global_option(p, top, "--db", metavar="PATH",
                   help="database file (env SWITCHBOARD_DB; default in the user data dir)")
    _global_option(p, top, "--config", metavar="PATH",
                   help="settings TOML (default: the bundled switchboard.toml)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command`, the top level and that command only (building
    all twelve cost every start ~10 ms)."""
    parser = _Parser(prog="switchboard", description="Terminal operations console for voice-AI operations. "
                     "Without a command: the console.")
    _common(parser, top=True)
    _console_flags(parser, top=True)
    _global_option(parser, True, "--observe", action="store_true",
                   help="watch the process that runs the engine; run it here only when taken over (T)")
    parser.set_defaults(func=cmd_console)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    for name, add in _COMMANDS.items():
        if command is None or name == command:
            add(sub)
    return parser


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="the console on a fresh demo database: the demo workflow and sample calls")
    _common(p)
    _console_flags(p)
    p.set_defaults(func=cmd_demo)


def _add_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="the console in a web browser (textual-serve), on this machine only; "
                       "the engine runs beside it for as long as it runs")
    _common(p)
    _global_option(p, False, "--theme", metavar="NAME", help="console theme (setting tui.theme)")
    _global_option(p, False, "--read-only", action="store_true", help="look, but do not act or dispatch")
    p.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="default 8000")
    _listen_flag(p)
    p.set_defaults(func=cmd_serve)


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run the orchestrator headless; events as JSON lines on stdout")
    _common(p)
    p.add_argument("--workflow", metavar="FILE",
                   help="load this workflow first: a file, or a bundled one by name (demo, shell-pipeline)")
    p.add_argument("--until-idle", action="store_true",
                   help="exit when nothing is queued or running: 0 if every process completed, else 1")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="processes running at once")
    p.add_argument("--synchronous", choices=["NORMAL", "FULL"], help="SQLite durability (FULL survives power loss)")
    _listen_flag(p)
    p.set_defaults(func=cmd_run)


def _add_load(sub: Any) -> None:
    p = sub.add_parser("load", help="register a workflow file's processes and queue them")
    _common(p)
    p.add_argument("file", metavar="FILE", help="a workflow file, or a bundled one by name (demo, shell-pipeline)")
    p.set_defaults(func=cmd_load)


def _add_status(sub: Any) -> None:
    p = sub.add_parser("status", help="show processes and their states")
    _common(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_status)


def _add_resume(sub: Any) -> None:
    p = sub.add_parser("resume", help="queue a process again (interrupted, cancelled, failed, blocked, pending)")
    _common(p)
    p.add_argument("id")
    p.add_argument("--force", action="store_true", help="first in line, skipping any retry delay")
    p.set_defaults(func=cmd_resume)


def _add_cancel(sub: Any) -> None:
    p = sub.add_parser("cancel", help="cancel a queued or running process")
    _common(p)
    p.add_argument("id")
    p.set_defaults(func=cmd_cancel)


def _add_voice(sub: Any) -> None:
    p = sub.add_parser("voice", help="a caller's utterance (text or audio) → transcript → AI reply")
    _common(p)
    p.add_argument("--call", required=True, metavar="C", help="the call (conversation) id")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", metavar="T", help="what the caller said")
    what.add_argument("--audio", metavar="F", help="an audio file of what the caller said")
    _waiting(p)
    p.set_defaults(func=cmd_voice)


def _add_transfer(sub: Any) -> None:
    p = sub.add_parser("transfer", help="start a warm transfer, or `transfer complete|cancel ID`")
    _common(p)
    p.add_argument("action", nargs="?", choices=["complete", "cancel"], help="act on a transfer instead")
    p.add_argument("id", nargs="?", help="the transfer, with complete or cancel")
    p.add_argument("--call", metavar="C")
    p.add_argument("--from", dest="from_agent", metavar="A", help="the agent handing the call over")
    p.add_argument("--to", dest="to_agent", metavar="B", help="the agent taking it")
    _waiting(p)
    p.set_defaults(func=cmd_transfer)


def _add_calls(sub: Any) -> None:
    p = sub.add_parser("calls", help="calls with their latest turn, or one call's turns with --call")
    _common(p)
    p.add_argument("--call", metavar="C", help="show this call's conversation")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_calls)


def _add_transfers(sub: Any) -> None:
    p = sub.add_parser("transfers", help="warm transfers, newest first")
    _common(p)
    p.add_argument("--status", choices=["initiated", "summarizing", "ready", "completed", "cancelled", "failed"])
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_transfers)


def _add_bench(sub: Any) -> None:
    p = sub.add_parser("bench", help="the benchmark suite: every scenario, figures next to their targets")
    p.add_argument("--quick", action="store_true", help="reduced sizes: a smoke test")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)


_COMMANDS: dict[str, Callable[[Any], None]] = {
    "demo": _add_demo,
    "serve": _add_serve,
    "run": _add_run,
    "load": _add_load,
    "status": _add_status,
    "resume": _add_resume,
    "cancel": _add_cancel,
    "voice": _add_voice,
    "transfer": _add_transfer,
    "calls": _add_calls,
    "transfers": _add_transfers,
    "bench": _add_bench,
}


def _console_flags(p: argparse.ArgumentParser, top: bool = False) -> None:
    _global_option(p, top, "--theme", metavar="NAME", help="console theme (setting tui.theme)")
    _global_option(p, top, "--read-only", action="store_true", help="look, but do not act or dispatch")
    _listen_flag(p, top)


def _listen_flag(p: argparse.ArgumentParser, top: bool = False) -> None:
    _global_option(p, top, "--listen", metavar="HOST:PORT",
                   help="serve the HTTP intake there (setting intake.listen; beyond 127.0.0.1 it needs a token)")


def _waiting(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true",
                   help="wait until it is done (runs it here when no runner or console is running)")
    p.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up waiting after S seconds")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _settings(args: argparse.Namespace, **overrides: Any):
    from console.settings import load_settings

    if args.db:
        overrides["db"] = args.db  # a path, or a postgresql:// URL kept as written (settings tell them apart)
    if getattr(args, "listen", None):
        from console.listen import parse_listen

        try:
            parse_listen(args.listen)
        except ValueError as e:
            raise UserError(f"--listen {e}") from None
        overrides["intake"] = {"listen": args.listen}
    return load_settings(args.config, **overrides)


def _listener(settings):
    """The intake's socket, bound before anything is written (a refusal is one line, exit 2)."""
    if not settings.intake.listen:
        return None
    from console.intake import listener_for

    return listener_for(settings)


async def _with_store(settings, fn: Callable[[Any], Awaitable[int]], reads_only: bool = False) -> int:
    from console.store import open_store

    store = open_store(str(settings.db_path), settings.store.synchronous, settings.store.busy_timeout_ms,
                       reads_only=reads_only)
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()


def _ensure_data_dir(settings) -> None:
    if settings.db is None:  # the default location: create it on first use
        settings.db_path.parent.mkdir(parents=True, exist_ok=True)


def cmd_run(args: argparse.Namespace) -> int:
    from console import headless
    from console.bundled import resolve_workflow
    from console.engine.workflow import parse_workflow

    engine: dict[str, Any] = {}
    if args.max_concurrent is not None:
        engine["max_concurrent"] = args.max_concurrent
    store: dict[str, Any] = {}
    if args.synchronous:
        store["synchronous"] = args.synchronous
    settings = _settings(args, engine=engine or None, store=store or None)
    workflow = parse_workflow(resolve_workflow(args.workflow)) if args.workflow else None
    listener = _listener(settings)
    try:
        _ensure_data_dir(settings)
        _log_to_file(settings)
        check = None if workflow is None else (lambda store: _precheck(store, settings, workflow))
        return asyncio.run(headless.run(settings, workflow, args.until_idle, listener=listener, check=check))
    finally:
        if listener is not None:
            listener.close()


def _log_to_file(settings) -> Path:
    """The program's log (warnings, an unexpected exception's traceback, once): a file in the
    data dir, as the console's; stderr keeps the runner's one-line messages."""
    import logging

    path = settings.resolved_data_dir / "switchboard.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=path, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return path


async def _precheck(store, settings, workflow) -> int:
    """Check a workflow against the database before anything is written."""
    from console.engine.graph import DependencyGraph
    from console.engine.workflow import check_workflow

    graph = DependencyGraph()
    for d in await store.list_dependencies():
        graph.add(d)
    processes = {p.id: p for p in await store.list_processes()}
    snapshot_pools = (await store.load_snapshot()).pools
    check_workflow(workflow, processes, graph, {**settings.engine.resources, **snapshot_pools})
    return 0


def _act(args: argparse.Namespace, kind: str, payload: dict[str, Any], precheck=None) -> int:
    from console.control import act

    settings = _settings(args)
    _ensure_data_dir(settings)

    async def go(store) -> int:
        if precheck is not None:
            await precheck(store, settings)
        status, message = await act(store, settings, kind, payload)
        if status == "done":
            say(message)
            return 0
        if status == "error":
            raise UserError(message)
        say(f"switchboard: {message}", file=sys.stderr)
        return 1

    return asyncio.run(_with_store(settings, go))


def cmd_load(args: argparse.Namespace) -> int:
    from console.bundled import resolve_workflow
    from console.engine.workflow import parse_workflow

    workflow = parse_workflow(resolve_workflow(args.file))
    return _act(args, "load", workflow.to_json(), precheck=lambda store, s: _precheck(store, s, workflow))


def cmd_resume(args: argparse.Namespace) -> int:
    return _act(args, "resume", {"id": args.id, "force": args.force})


def cmd_cancel(args: argparse.Namespace) -> int:
    return _act(args, "cancel", {"id": args.id})


def _work(args: argparse.Namespace, kind: str, payload: dict[str, Any], show: Callable[[dict], str]) -> int:
    """Create a voice request or a transfer, optionally wait for it, and report it."""
    from console.control import act_and_wait

    settings = _settings(args)
    _ensure_data_dir(settings)

    async def go(store) -> int:
        status, message, state = await act_and_wait(store, settings, kind, payload, wait=args.wait,
                                                     wait_timeout=args.timeout)
        if status == "error":
            raise UserError(message)
        if status != "done":
            say(f"switchboard: {message}", file=sys.stderr)
            return 1
        from console.voice.center import with_process

        record = json.loads(message)
        process = await store.get_process(record["process_id"])
        fresh = (await store.get_voice_request(record["id"]) if kind == "voice"
                 else await store.get_transfer(record["id"]))
        record = with_process(fresh.to_json(), process)
        say(json.dumps(record, indent=2) if args.json else show(record))
        if not args.wait:
            return 0
        return 0 if record["state"] == "completed" else 1

    return asyncio.run(_with_store(settings, go))


# The show functions print fields from outside through `printable` one by one: a line break in
# a transcript is shown as \n, not taken for a line of the output.

def _state_line(r: dict) -> str:
    line = f"{printable(r['id'])}: {r['state']}"
    if r.get("interruption") and r["state"] in ("interrupted", "waiting"):
        line += f" ({r['interruption']['type']}: {printable(r['interruption']['message'])})"
    elif r.get("reason"):
        line += f" ({printable(r['reason'])})"
    return line


def _show_voice(r: dict) -> str:
    lines = [_state_line(r) + f"  call {printable(r['call_id'])}"]
    if r.get("transcript") is not None:
        lines.append(f"caller:    {printable(r['transcript'])}")
    if r.get("reply") is not None:
        usage = r.get("usage") or {}
        lines.append(f"assistant: {printable(r['reply'])}")
        lines.append(f"latency {r['latency_ms'].get('total', 0):.0f} ms, tokens {usage.get('prompt_tokens', 0)} in / "
                     f"{usage.get('completion_tokens', 0)} out, model {r.get('model')}")
    if r.get("speech_path"):
        lines.append(f"speech:    {printable(r['speech_path'])}")
    return "\n".join(lines)


def _show_transfer(r: dict) -> str:
    line = (f"{printable(r['id'])}: {r['status']}  call {printable(r['call_id'])}, "
            f"{printable(r['from_agent'])} → {printable(r['to_agent'])}")
    if r.get("reason") and r["status"] not in ("ready", "completed"):
        line += f" ({printable(r['reason'])})"
    lines = [line]
    summary = r.get("summary")
    if summary:
        label = {"extractive": "computed locally (LLM unavailable)",
                 "llm-unstructured": "from the LLM, completed locally"}.get(r.get("summary_source") or "",
                                                                            "from the LLM")
        lines.append(f"summary ({label}):")
        for key in ("caller", "issue", "steps_taken", "sentiment", "next_action", "notes", "fallback_reason"):
            if summary.get(key):
                value = "; ".join(summary[key]) if isinstance(summary[key], list) else summary[key]
                lines.append(f"  {key.replace('_', ' ')}: {printable(value)}")
    return "\n".join(lines)


def cmd_voice(args: argparse.Namespace) -> int:
    from console.voice.center import check_voice_input

    settings = _settings(args)
    text, audio = check_voice_input(args.call, args.text, args.audio, settings.voice.max_audio_mb)
    payload = {"call_id": args.call, "text": text, "audio_path": audio}
    return _work(args, "voice", payload, _show_voice)


def cmd_transfer(args: argparse.Namespace) -> int:
    if args.action:
        if not args.id:
            raise UserError(f"transfer {args.action} needs the transfer's id")
        if args.call or args.from_agent or args.to_agent:
            raise UserError(f"transfer {args.action} takes only an id")
        return _act_print(args, f"transfer.{args.action}", {"id": args.id}, _show_transfer)
    missing = [flag for flag, value in (("--call", args.call), ("--from", args.from_agent), ("--to", args.to_agent))
               if not value]
    if missing:
        raise UserError(f"transfer needs {', '.join(missing)} (or: transfer complete|cancel ID)")
    from console.voice.center import check_transfer_input

    check_transfer_input(args.call, args.from_agent, args.to_agent)
    payload = {"call_id": args.call, "from_agent": args.from_agent, "to_agent": args.to_agent}
    return _work(args, "transfer", payload, _show_transfer)


def _act_print(args: argparse.Namespace, kind: str, payload: dict[str, Any], show: Callable[[dict], str]) -> int:
    from console.control import act

    settings = _settings(args)

    async def go(store) -> int:
        status, message = await act(store, settings, kind, payload)
        if status == "error":
            raise UserError(message)
        if status != "done":
            say(f"switchboard: {message}", file=sys.stderr)
            return 1
        record = json.loads(message)
        process = await store.get_process(record["process_id"])
        record["state"] = process.state.value if process else None
        say(json.dumps(record, indent=2) if args.json else show(record))
        return 0

    _require_db(settings)
    return asyncio.run(_with_store(settings, go))


def _require_db(settings) -> None:
    if not settings.db_path.exists():
        raise UserError(f"{settings.db_path}: no database yet (run `switchboard load` or `switchboard run` first)")


def cmd_calls(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _require_db(settings)

    async def go(store) -> int:
        if args.call:
            call = await store.get_call(args.call, turns=max(1, args.limit))
            if call is None:
                raise UserError(f"no call {args.call!r}")
            if args.json:
                print(json.dumps(call.to_json(), indent=2))
            else:
                say(f"call {printable(call.id)}: {call.turn_count} turn(s)")
                for t in call.turns:
                    say(f"{time.strftime('%H:%M:%S', time.localtime(t.created_at))}  {t.role:<9} {printable(t.text)}")
            return 0
        calls = await store.list_calls(limit=args.limit)
        if args.json:
            print(json.dumps([c.to_json() for c in calls], indent=2))
            return 0
        for c in calls:
            last = printable(f"{c.last_turn.role}: {c.last_turn.text}" if c.last_turn else "(no turns)")
            say(f"{printable(c.id):<20} {c.turn_count:>3} turn(s)  "
                f"{time.strftime('%H:%M:%S', time.localtime(c.updated_at))}  {last[:80]}")
        if not calls:
            print("no calls")
        return 0

    return asyncio.run(_with_store(settings, go, reads_only=True))


def cmd_transfers(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _require_db(settings)

    async def go(store) -> int:
        transfers = await store.list_transfers(status=args.status, limit=args.limit)
        if args.json:
            print(json.dumps([t.to_json() for t in transfers], indent=2))
            return 0
        for t in transfers:
            issue = printable((t.summary or {}).get("issue", ""))
            say(f"{printable(t.id)}  {t.status.value:<11} call {printable(t.call_id)}  "
                f"{printable(t.from_agent)} → {printable(t.to_agent)}  {issue[:60]}")
        if not transfers:
            print("no transfers")
        return 0

    return asyncio.run(_with_store(settings, go, reads_only=True))


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _require_db(settings)

    async def go(store) -> int:
        from console.engine.orchestrator import summarise

        processes = await store.list_processes()
        snapshot = await store.load_snapshot()
        summary = await summarise(store, processes, {**settings.engine.resources, **snapshot.pools},
                                  settings.engine.max_concurrent, len(snapshot.requests))
        holder = await store.lease_holder()
        owner = None
        if holder is not None:
            owner = {"pid": holder.pid, "host": holder.host, "role": holder.role,
                     "heartbeat_age_s": round(time.time() - holder.heartbeat_at, 1)}
        counts: dict[str, int] = {}
        for p in processes:
            counts[p.state.value] = counts.get(p.state.value, 0) + 1
        if args.json:
            print(json.dumps({"db": str(store.path), "owner": owner, "counts": counts,
                              "orchestrator": summary,
                              "processes": [p.summary() for p in processes]}, indent=2))
            return 0
        who = f"{owner['role']} pid {owner['pid']}" if owner else "nobody (not running)"
        say(f"{settings.db_path} — dispatched by {who}")
        say("  ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no processes")
        rate = summary["success_rate_1h"]
        pools = "  ".join(f"{n} {u['used']}/{u['size']}" for n, u in summary["resources"].items())
        say(f"success rate (1 h): {'—' if rate is None else f'{rate:.0%}'}   pools: {pools}")
        if processes:
            width = max(len(printable(p.id)) for p in processes)
            print(f"{'ID':<{width}}  {'KIND':<8} {'STATE':<11} {'PROG':>5}  {'TRY':>5}  {'PRIORITY':<8}  REASON")
            for p in processes:
                reason = printable(p.reason or (f"{p.interruption.type.value}: {p.interruption.message}"
                                                if p.interruption and p.state.value == "interrupted" else ""))
                say(f"{printable(p.id):<{width}}  {p.kind:<8} {p.state.value:<11} {p.progress:>4.0f}%  "
                    f"{p.tries:>5}  {p.priority.value:<8}  {reason}".rstrip())
        return 0

    return asyncio.run(_with_store(settings, go, reads_only=True))


def cmd_console(args: argparse.Namespace, prepare=None, settings=None) -> int:
    import logging

    from console.tui.themes import ThemeError

    if settings is None:
        settings = _settings(args)
        _check_listen(args, settings)
    _ensure_data_dir(settings)
    if not isinstance(settings.db_path, Path):  # it shows and checks a file's folder
        raise UserError("--db: the console does not open a PostgreSQL database yet (`switchboard run` and "
                        "`status` do)")
    if not settings.db_path.parent.is_dir():
        raise UserError(f"{settings.db_path.parent}: the database's folder does not exist")
    log_path = settings.resolved_data_dir / "switchboard.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # the console owns the terminal: logs go to a file
    logging.basicConfig(filename=log_path, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from console.tui.app import SwitchboardApp

    try:
        app = SwitchboardApp(settings, read_only=args.read_only, theme=args.theme, log_path=log_path,
                             prepare=prepare, settle_heap=True, observe=getattr(args, "observe", False))
    except ThemeError as e:
        raise UserError(str(e)) from None
    app.run()
    return app.return_code or 0  # 1 when the console stopped on an error


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def cmd_serve(args: argparse.Namespace) -> int:
    """The console in browser tabs. The engine runs beside them for as long as this command
    does (see console.serve); each tab is a console observing it."""
    import socket

    from console.tui.themes import ThemeError

    if args.host not in LOOPBACK:
        raise UserError(f"--host {args.host}: the browser console has no login, so it listens on this machine "
                        "only (127.0.0.1, ::1, localhost); reach it from elsewhere through an SSH tunnel")
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port}: not a port (1-65535)")
    settings = _settings(args)
    from console.tui.app import SwitchboardApp

    try:
        SwitchboardApp(settings, theme=args.theme)  # an unknown theme is an error here, not in the browser
    except ThemeError as e:
        raise UserError(str(e)) from None
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is not "in use"
        try:
            probe.bind((args.host, args.port))
        except OSError as e:
            raise UserError(f"--port {args.port}: cannot listen on {args.host}:{args.port} ({e.strerror})") from None
    _check_listen(args, settings)  # the runner binds it: refused here, before anything starts
    _ensure_data_dir(settings)
    from console.serve import serve

    return serve(settings, host=args.host, port=args.port, config=args.config, theme=args.theme,
                 read_only=args.read_only, listen=args.listen)


def cmd_demo(args: argparse.Namespace) -> int:
    from console.demo.seed import demo_settings, seed

    settings = _settings(args)
    if args.db and Path(args.db).exists():  # the demo starts afresh: it deletes the file it is given
        raise UserError(f"--db {args.db}: the demo starts from a fresh database and would delete this file; "
                        "name a file that does not exist (or remove it yourself)")
    _check_listen(args, settings)  # before the old demo database is removed
    return cmd_console(args, prepare=seed, settings=demo_settings(settings, args.db))


def _check_listen(args: argparse.Namespace, settings) -> None:
    """The console binds its intake once its engine runs; refuse a bad address up front."""
    if args.read_only or getattr(args, "observe", False):
        if args.listen:
            flag = "--read-only" if args.read_only else "--observe"
            raise UserError(f"--listen needs the console to run the engine: not with {flag}")
        return
    listener = _listener(settings)
    if listener is not None:
        listener.close()


def cmd_bench(args: argparse.Namespace) -> int:
    from console.bench.suite import main as bench

    return bench((["--quick"] if args.quick else []) + (["--json"] if args.json else []))


# What a shell reports for a command that SIGPIPE ended (128 + 13), as `yes | head -1` does:
# a reader that closed the pipe early (`switchboard status | head`) stopped us the same way.
EXIT_CLOSED_PIPE = 141


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line as the commands read it (a mistake: UserError, or argparse's exit 2)."""
    parser = build_parser(argv[0] if argv and argv[0] in _COMMANDS else None)
    args = parser.parse_args(argv)
    _resolve_global_options(args)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        code = args.func(args)
        sys.stdout.flush()  # here, not at exit, where a closed pipe would be a printed warning
        return code
    except UserError as e:
        say(f"switchboard: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        from console.closedpipe import discard_output

        discard_output(sys.stdout)  # what is still buffered must not fail again at exit
        return EXIT_CLOSED_PIPE


if __name__ == "__main__":
    sys.exit(main())
