"""The HTTP intake over real HTTP on 127.0.0.1, with the Groq-compatible loopback server
behind it: in-process (uvicorn on the test's loop) and as `switchboard run --listen`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import wait_for
from test_voice import KEY, _fresh_sim, settle, sim, voice_engine, wav_file  # noqa: F401  (fixtures)

from console.cli import main as cli_main
from console.intake import start_intake

TOKEN = "intake-token-0123456789abcdef"


@contextlib.asynccontextmanager
async def intake(tmp_path: Path, sim: Any, **kw: Any) -> AsyncIterator[tuple[Any, Any, httpx.AsyncClient]]:
    """An engine with its intake on 127.0.0.1:<free port>, and a client for it."""
    async with voice_engine(tmp_path, sim, **kw) as engine:
        server = await start_intake(engine, engine.settings, "127.0.0.1", 0)
        try:
            async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as client:
                yield engine, server, client
        finally:
            await server.aclose()


# -- voice requests ----------------------------------------------------------------------------------

async def test_ai_voice_waits_for_the_reply_and_the_call_keeps_the_turns(tmp_path, sim):
    async with intake(tmp_path, sim) as (engine, server, client):
        assert re.fullmatch(r"127\.0\.0\.1:\d+", server.address) and not server.address.endswith(":0")
        r = await client.post("/ai-voice", json={"call_id": "call-1", "text": "My internet is down again"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["state"] == "completed" and body["call_id"] == "call-1"
        assert body["transcript"] == "My internet is down again"
        assert body["reply"].startswith("Assistant: I understand")
        assert engine.processes[body["id"]].kind == "voice"  # real work on the engine
        r = await client.get("/calls/call-1")
        assert r.status_code == 200
        assert [(t["role"], t["text"]) for t in r.json()["turns"]] == [
            ("caller", "My internet is down again"), ("assistant", body["reply"])]
        assert (await client.get("/calls/no-such-call")).status_code == 404


async def test_ai_voice_without_waiting_answers_202_and_can_be_followed(tmp_path, sim):
    sim.configure(latency_s=0.3)
    async with intake(tmp_path, sim) as (engine, _server, client):
        r = await client.post("/ai-voice", params={"wait": "false"}, json={"call_id": "c2", "text": "Hello?"})
        assert r.status_code == 202
        first = r.json()
        assert first["state"] in ("queued", "running") and first["reply"] is None
        assert (await settle(engine, first["id"])).value == "completed"
        r = await client.get(f"/ai-voice/{first['id']}")
        assert r.status_code == 200 and r.json()["state"] == "completed" and r.json()["reply"]
        assert (await client.get("/ai-voice/vr-nothing")).status_code == 404


async def test_audio_upload_is_saved_by_the_server_under_its_own_name(tmp_path, sim):
    sim.configure(transcript="I want to cancel my contract")
    audio = wav_file(tmp_path / "caller.wav")
    async with intake(tmp_path, sim) as (engine, _server, client):
        files = {"audio": ("../../../etc/passwd.wav", audio.read_bytes(), "audio/wav")}
        r = await client.post("/ai-voice", data={"call_id": "c3"}, files=files)
        assert r.status_code == 200, r.text
        assert r.json()["transcript"] == "I want to cancel my contract" and r.json()["state"] == "completed"
        vr = await engine.store.get_voice_request(r.json()["id"])
    saved = Path(vr.audio_path)
    assert saved.parent == tmp_path / "data" / "intake" / "audio"
    assert saved.read_bytes() == audio.read_bytes() and "passwd" not in saved.name
    assert sim.stats()["upload_sizes"][-1] == audio.stat().st_size


async def test_a_request_naming_a_file_path_is_refused_and_reads_nothing(tmp_path, sim):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF-not-for-you")
    async with intake(tmp_path, sim) as (_engine, _server, client):
        r = await client.post("/ai-voice", json={"call_id": "c4", "text": "hi", "audio_path": str(secret)})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "audio_path"
        form = {"call_id": (None, "c4"), "audio": (None, str(secret))}  # a path as a plain form field
        r = await client.post("/ai-voice", files=form)
        assert r.status_code == 400 and "audio file" in r.json()["detail"]
    assert sim.stats()["requests"]["transcriptions"] == 0 and sim.stats()["requests"]["chat"] == 0


async def test_no_api_key_is_answered_at_once_as_interrupted(tmp_path, sim):
    async with intake(tmp_path, sim, key=None) as (_engine, _server, client):
        r = await client.post("/ai-voice", json={"call_id": "c5", "text": "Anyone there?"})
    assert r.status_code == 200
    body = r.json()
    assert body["state"] == "interrupted" and body["reply"] is None
    assert body["interruption"]["type"] == "no_provider" and "GROQ_API_KEY" in body["interruption"]["message"]
    assert "gsk_" not in r.text


async def test_rate_limit_beyond_the_wait_answers_waiting_with_its_retry_time(tmp_path, sim):
    sim.script("chat", [{"status": 429, "headers": {"retry-after": "120"}}])
    async with intake(tmp_path, sim, intake={"voice_wait_timeout_s": 30}) as (_engine, _server, client):
        r = await client.post("/ai-voice", json={"call_id": "c6", "text": "What is my balance?"})
    body = r.json()
    assert r.status_code == 202, body
    assert body["state"] == "waiting" and body["interruption"]["type"] == "rate_limited"
    assert body["interruption"]["retry_at"] is not None and body["reason"].startswith("retry at")


async def test_a_slow_reply_is_answered_with_its_state_at_the_time_out(tmp_path, sim):
    sim.configure(latency_s=5)
    async with intake(tmp_path, sim, intake={"voice_wait_timeout_s": 0.3}) as (engine, _server, client):
        r = await client.post("/ai-voice", json={"call_id": "c7", "text": "Still there?"})
        assert r.status_code == 202 and r.json()["state"] == "running" and r.json()["reply"] is None
        assert engine.processes[r.json()["id"]].state.value == "running"  # the work goes on


async def test_closing_answers_waiting_requests_and_the_engine_persists_the_work(tmp_path, sim):
    sim.configure(latency_s=5)
    async with voice_engine(tmp_path, sim) as engine:
        server = await start_intake(engine, engine.settings, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as client:
            pending = asyncio.create_task(client.post("/ai-voice", json={"call_id": "c8", "text": "hold on"}))
            await wait_for(lambda: any(p.state.value == "running" for p in engine.processes.values()))
            await server.aclose()
            r = await pending
        assert r.status_code == 202 and r.json()["state"] == "running"
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(trust_env=False) as c:
                await c.get(server.url + "/healthz")
    # the engine stopped after its intake: the request resumes at the next start
    vr_id = r.json()["id"]
    assert (await _process_state(tmp_path, vr_id)) == "interrupted"


async def _process_state(tmp_path: Path, pid: str) -> str:
    from console.store import open_store

    store = open_store(str(tmp_path / "t.db"))
    await store.open()
    try:
        return (await store.get_process(pid)).state.value
    finally:
        await store.close()


async def test_the_intake_leaves_the_hosts_signal_handlers_alone(tmp_path, sim):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    async with intake(tmp_path, sim) as (_engine, _server, client):
        assert (await client.get("/healthz")).json() == {"status": "ok", "dispatching": True}
        assert {s: signal.getsignal(s) for s in before} == before


async def test_a_cold_burst_builds_one_groq_client(tmp_path, sim, monkeypatch):
    """Found by the intake's benchmark: every call that arrived while the first client was being
    made built its own (each loading the CA bundle on the loop, ~0.1 s apiece)."""
    from console.voice import gateway

    monkeypatch.setattr(gateway, "_groq_imported", False)  # as in a fresh process: the first calls wait
    monkeypatch.setattr(gateway, "_import_lock", None)
    made: list[int] = []
    real = gateway.GroqGateway._make_client
    monkeypatch.setattr(gateway.GroqGateway, "_make_client", lambda self: made.append(1) or real(self))
    async with intake(tmp_path, sim) as (_engine, _server, client):
        answers = await asyncio.gather(*(client.post("/ai-voice", json={"call_id": f"cold-{i}", "text": "hi"})
                                         for i in range(10)))
    assert [r.json()["state"] for r in answers] == ["completed"] * 10
    assert len(made) == 1


# -- transfers -------------------------------------------------------------------------------------------

async def test_transfer_lifecycle_through_the_endpoints(tmp_path, sim):
    async with intake(tmp_path, sim) as (engine, _server, client):
        r = await client.post("/ai-voice", json={"call_id": "c9", "text": "Hi, this is Ann. My bill is wrong again"})
        assert r.json()["state"] == "completed"
        r = await client.post("/initiate-transfer", json={"call_id": "c9", "from_agent": "alice", "to_agent": "bob"})
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert accepted["status"] == "initiated" and accepted["call_id"] == "c9"
        tid = accepted["id"]
        await settle(engine, tid)
        r = await client.get(f"/transfers/{tid}")
        t = r.json()
        assert r.status_code == 200 and t["status"] == "ready" and t["state"] == "completed"
        assert t["summary"]["caller"] == "Ann" and t["summary_source"] == "llm"
        listed = (await client.get("/transfers", params={"status": "ready"})).json()
        assert [x["id"] for x in listed["items"]] == [tid]
        r = await client.post(f"/transfers/{tid}/complete")
        assert r.status_code == 200 and r.json()["status"] == "completed"
        assert (await client.post(f"/transfers/{tid}/complete")).status_code == 409
        assert (await client.post(f"/transfers/{tid}/cancel")).status_code == 409
        turns = (await client.get("/calls/c9")).json()["turns"]
        assert turns[-1]["role"] == "system" and "alice to bob" in turns[-1]["text"]
        assert (await client.get("/transfers/tr-unknown")).status_code == 404
        assert (await client.post("/transfers/tr-unknown/complete")).status_code == 404
        r = await client.post("/initiate-transfer", json={"call_id": "nobody", "from_agent": "a", "to_agent": "b"})
        assert r.status_code == 404 and "no call" in r.json()["detail"]
        r = await client.post("/initiate-transfer", json={"call_id": "c9", "from_agent": "bob", "to_agent": "bob"})
        assert r.status_code == 400 and "two different agents" in r.json()["detail"]


async def test_transfers_are_listed_newest_first_a_page_at_a_time(tmp_path, sim):
    async with intake(tmp_path, sim) as (engine, _server, client):
        await client.post("/ai-voice", json={"call_id": "c10", "text": "Please transfer me"})
        ids = []
        for to in ("bob", "carol", "dave"):
            r = await client.post("/initiate-transfer", json={"call_id": "c10", "from_agent": "alice", "to_agent": to})
            ids.append(r.json()["id"])
        for tid in ids:
            await settle(engine, tid)
        page = (await client.get("/transfers", params={"limit": 2})).json()
        assert [t["id"] for t in page["items"]] == ids[::-1][:2] and page["next_offset"] == 2
        page = (await client.get("/transfers", params={"limit": 2, "offset": page["next_offset"]})).json()
        assert [t["id"] for t in page["items"]] == ids[:1] and page["next_offset"] is None
        r = await client.post(f"/transfers/{ids[0]}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        cancelled = (await client.get("/transfers", params={"status": "cancelled"})).json()["items"]
        assert [t["id"] for t in cancelled] == [ids[0]]


# -- bad requests -------------------------------------------------------------------------------------

BAD = [
    ("post", "/ai-voice", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
    ("post", "/ai-voice", {"json": {"call_id": "c"}}, 422),
    ("post", "/ai-voice", {"json": {"call_id": "c", "text": ""}}, 422),
    ("post", "/ai-voice", {"json": {"call_id": "bad id!", "text": "hi"}}, 422),
    ("post", "/ai-voice", {"json": ["call_id", "text"]}, 422),
    ("post", "/ai-voice", {"json": {"call_id": "c", "text": "x" * 10_001}}, 422),
    ("post", "/ai-voice", {"content": b"call_id=c&text=hi", "headers": {"content-type": "text/plain"}}, 415),
    ("post", "/ai-voice", {"data": {"call_id": "c"}, "files": {"audio": ("a.exe", b"MZ", "application/x")}}, 400),
    ("post", "/ai-voice", {"files": {"audio": ("a.wav", b"RIFF", "audio/wav")}}, 400),
    ("post", "/ai-voice", {"data": {"call_id": "c"}, "files": {"audio": ("a.wav", b"", "audio/wav")}}, 400),
    ("post", "/ai-voice", {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}},
     400),
    ("post", "/ai-voice?wait=perhaps", {"json": {"call_id": "c", "text": "hi"}}, 422),
    ("post", "/initiate-transfer", {"json": {"call_id": "c", "from_agent": "a"}}, 422),
    ("post", "/initiate-transfer", {"json": {"call_id": "c", "from_agent": "a", "to_agent": "b", "x": 1}}, 422),
    ("post", "/initiate-transfer", {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 422),
    ("get", "/transfers?limit=0", {}, 422),
    ("get", "/transfers?status=lost", {}, 422),
    ("get", "/transfers?offset=-1", {}, 422),
    ("get", "/transfers/bad%20id", {}, 400),
    ("get", "/calls/c?turns=100000", {}, 422),
    ("post", "/healthz", {}, 405),
]


async def test_bad_requests_get_a_4xx_with_the_detail_and_change_nothing(tmp_path, sim):
    async with intake(tmp_path, sim) as (engine, _server, client):
        for method, path, kw, status in BAD:
            r = await getattr(client, method)(path, **kw)
            assert r.status_code == status, (method, path, kw, r.status_code, r.text)
            assert r.json()["detail"], (path, r.text)
        assert engine.processes == {}
        assert not list((tmp_path / "data").glob("intake/audio/*"))


async def test_oversized_bodies_get_413_announced_or_not(tmp_path, sim):
    settings = {"intake": {"max_body_bytes": 2048}, "voice": {"max_audio_mb": 0.01}}
    async with intake(tmp_path, sim, **settings) as (engine, _server, client):
        r = await client.post("/ai-voice", json={"call_id": "c", "text": "x" * 3000})
        assert r.status_code == 413 and "2048" in r.json()["detail"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
            yield b'{"call_id": "c", "text": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        r = await client.post("/ai-voice", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        big = {"audio": ("big.wav", b"R" * 40_000, "audio/wav")}
        r = await client.post("/ai-voice", data={"call_id": "c"}, files=big)
        assert r.status_code == 413
        ok = {"audio": ("small.wav", wav_file(tmp_path / "s.wav", seconds=0.2).read_bytes()[:8000], "audio/wav")}
        assert (await client.post("/ai-voice", data={"call_id": "c"}, files=ok, params={"wait": "false"})).status_code == 202
        assert len(engine.processes) == 1


async def test_with_a_token_every_request_but_the_health_probe_needs_it(tmp_path, sim):
    async with intake(tmp_path, sim, intake={"token": TOKEN}) as (_engine, _server, client):
        body = {"call_id": "c11", "text": "hi"}
        assert (await client.post("/ai-voice", json=body)).status_code == 401
        r = await client.post("/ai-voice", json=body, headers={"authorization": f"Bearer {TOKEN[:-1]}x"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert (await client.get("/openapi.json", headers={"authorization": TOKEN})).status_code == 401
        assert (await client.get("/healthz")).status_code == 200
        r = await client.post("/ai-voice", json=body, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["state"] == "completed"


# -- the command line: switchboard run --listen ------------------------------------------------------------

class Runner:
    """`switchboard run --listen …` as a subprocess; `url` once it says where it listens."""

    def __init__(self, tmp_path: Path, listen: str, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "console", "run", "--db", str(tmp_path / "r.db"), "--listen", listen],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stderr is not None
        self.reader = threading.Thread(target=lambda err=self.proc.stderr: [self.lines.put(x) for x in err],
                                       daemon=True)
        self.reader.start()
        line = self.lines.get(timeout=30)
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line
        self.url = match.group(1)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.reader.join(timeout=30)  # it ends at the end of the runner's stderr: all lines are in
        rest = []
        with contextlib.suppress(queue.Empty):
            while True:
                rest.append(self.lines.get_nowait())
        return code, "".join(rest)


@contextlib.contextmanager
def runner(tmp_path: Path, sim: Any, listen: str = "127.0.0.1:0", **env: str) -> Iterator[Runner]:
    r = Runner(tmp_path, listen, {"GROQ_API_KEY": KEY, "GROQ_BASE_URL": sim.base_url, **env})
    try:
        yield r
    finally:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def test_run_listen_on_any_address_needs_the_token_and_stops_gracefully_on_sigterm(tmp_path, sim):
    with runner(tmp_path, sim, "0.0.0.0:0", SWITCHBOARD_INTAKE__TOKEN=TOKEN) as r:
        url = r.url.replace("0.0.0.0", "127.0.0.1")
        with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
            assert client.post("/ai-voice", json={"call_id": "c12", "text": "hello"}).status_code == 401
            r2 = client.post("/ai-voice", json={"call_id": "c12", "text": "hello"},
                             headers={"authorization": f"Bearer {TOKEN}"})
            assert r2.status_code == 200 and r2.json()["reply"].startswith("Assistant:")
        code, rest = r.stop()
    assert code == 0 and "1 completed" in rest and "Traceback" not in rest
    assert TOKEN not in rest and KEY not in rest


@pytest.mark.parametrize("listen, env, message", [
    ("0.0.0.0:0", {}, "needs a token"),
    ("localhost", {}, "is not HOST:PORT"),
    ("127.0.0.1:70000", {}, "port must be a number"),
    ("0.0.0.0:0", {"SWITCHBOARD_INTAKE__TOKEN": "short"}, "16 to 1000 characters"),
])
def test_run_refuses_a_bad_listen_address_in_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch,
                                                                       listen, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    db = tmp_path / "never.db"
    assert cli_main(["run", "--db", str(db), "--listen", listen]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "short" not in err
    assert not db.exists()


def test_run_refuses_a_port_in_use(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli_main(["run", "--db", str(tmp_path / "never.db"), "--listen", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert "already in use" in err and err.count("\n") == 1
    assert not (tmp_path / "never.db").exists()


def test_the_token_is_kept_out_of_config_files(tmp_path, capsys):
    config = tmp_path / "sb.toml"
    config.write_text(f'[intake]\ntoken = "{TOKEN}"\n')
    assert cli_main(["run", "--config", str(config), "--db", str(tmp_path / "x.db"), "--until-idle"]) == 2
    err = capsys.readouterr().err
    assert "SWITCHBOARD_INTAKE__TOKEN" in err and TOKEN not in err


# -- fuzzing the OpenAPI schema ------------------------------------------------------------------------------

def test_fuzzed_requests_from_the_openapi_schema_never_get_a_5xx(tmp_path, sim):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    with runner(tmp_path, sim) as r:
        schema = schemathesis.openapi.from_url(r.url + "/openapi.json")
        seen: dict[int, int] = {}
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hsettings(max_examples=120, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))
            @given(case=schema.as_strategy(generation_mode=mode))
            def fuzz(case: Any) -> None:
                response = case.call(base_url=r.url, timeout=30)
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                assert response.status_code < 500, (case.as_curl_command(), response.text)

            fuzz()
        code, rest = r.stop()
    assert code == 0 and "Traceback" not in rest
    assert any(200 <= s < 300 for s in seen) and any(400 <= s < 500 for s in seen), seen


# -- hostile bodies: every endpoint, one keep-alive connection ---------------------------------------------

JSON_CT = {"content-type": "application/json"}


def _with(base: dict[str, Any], field: str, raw: bytes) -> bytes:
    """`base` as JSON with `field`'s value replaced by the raw token `raw` (NaN, 1e999…)."""
    return json.dumps({**base, field: "@@"}).encode().replace(b'"@@"', raw)


# name -> (body from the endpoint's valid JSON body, its headers, the status an endpoint that takes
# JSON answers). An endpoint that takes no body answers 415 to any of them (413 to the one too
# large to read); an empty body there is no body.
HOSTILE: dict[str, tuple[Callable[[dict[str, Any]], bytes], dict[str, str], int]] = {
    "NaN": (lambda b: _with(b, "call_id", b"NaN"), JSON_CT, 422),
    "Infinity": (lambda b: _with(b, "call_id", b"Infinity"), JSON_CT, 422),
    "-Infinity": (lambda b: _with(b, "call_id", b"-Infinity"), JSON_CT, 422),
    "1e999": (lambda b: _with(b, "call_id", b"1e999"), JSON_CT, 422),
    "a 60,000-digit integer": (lambda b: _with(b, "call_id", b"9" * 60_000), JSON_CT, 422),
    "bytes that are not UTF-8": (lambda b: _with(b, "call_id", b'"\xff\xfe"'), JSON_CT, 422),
    "a lone surrogate escape": (lambda b: _with(b, "call_id", rb'"c\ud800"'), JSON_CT, 422),
    "JSON sent as text/plain": (lambda b: json.dumps(b).encode(), {"content-type": "text/plain"}, 415),
    "non-UTF-8 sent as text/plain": (lambda b: b"\xff\xfe", {"content-type": "text/plain; charset=utf-8"}, 415),
    "JSON with no content-type": (lambda b: json.dumps(b).encode(), {}, 415),
    "a form-urlencoded body": (lambda b: b"call_id=c&text=hi", {"content-type": "application/x-www-form-urlencoded"},
                               415),
    "an empty body": (lambda b: b"", JSON_CT, 422),
    "truncated JSON": (lambda b: json.dumps(b).encode()[:-5], JSON_CT, 422),
    "arrays 100,000 deep": (lambda b: b"[" * 100_000 + b"]" * 100_000, JSON_CT, 413),
    "arrays 20,000 deep (under the size limit)": (lambda b: b"[" * 20_000 + b"]" * 20_000, JSON_CT, 422),
    "an array instead of an object": (lambda b: json.dumps(list(b.values())).encode(), JSON_CT, 422),
    "null": (lambda b: b"null", JSON_CT, 422),
    "a NUL and terminal escapes in the id": (lambda b: json.dumps({**b, "call_id": "c\x00\x1b[2J"}).encode(),
                                             JSON_CT, 422),
    "a NUL and terminal escapes in the words": (
        lambda b: json.dumps({k: v if k == "call_id" else "x\x00\x1b]0;owned\x07\x1b[2J" for k, v in b.items()}).encode(),
        JSON_CT, 422),
    "multipart with no boundary": (lambda b: b"--x\r\nbroken\r\n--x--\r\n", {"content-type": "multipart/form-data"},
                                   400),
}


def test_hostile_bodies_get_a_4xx_with_a_detail_on_every_endpoint_and_the_connection_lives(tmp_path, sim):
    with runner(tmp_path, sim) as r, httpx.Client(base_url=r.url, trust_env=False, timeout=30) as client:
        vr = client.post("/ai-voice", json={"call_id": "c1", "text": "Hi, this is Ann. My bill is wrong"}).json()
        assert vr["state"] == "completed", vr
        tr = client.post("/initiate-transfer", json={"call_id": "c1", "from_agent": "alice", "to_agent": "bob"}).json()
        assert wait_for_sync(lambda: client.get(f"/transfers/{tr['id']}").json()["status"] == "ready")
        calls_before = client.get("/calls/c1").json()
        takes_json = {  # endpoint -> its valid JSON body, or None: it takes no body
            ("POST", "/ai-voice?wait=false"): {"call_id": "c1", "text": "hello"},
            ("POST", "/initiate-transfer"): {"call_id": "c1", "from_agent": "alice", "to_agent": "carol"},
            ("GET", f"/ai-voice/{vr['id']}"): None,
            ("GET", "/transfers"): None,
            ("GET", f"/transfers/{tr['id']}"): None,
            ("POST", f"/transfers/{tr['id']}/complete"): None,
            ("POST", f"/transfers/{tr['id']}/cancel"): None,
            ("GET", "/calls/c1"): None,
            ("GET", "/healthz"): None,
        }
        peer = None
        for (method, path), base in takes_json.items():
            for name, (make, headers, status) in HOSTILE.items():
                body = make(base or {"x": "y"})
                if base is None:
                    if not body:
                        continue  # no body: a plain request, made below
                    status = 413 if status == 413 else 415
                elif path == "/initiate-transfer" and name == "multipart with no boundary":
                    status = 415  # a form is not what it takes
                got = client.request(method, path, content=body, headers=headers)
                where = (method, path, name, got.status_code, got.text[:200])
                assert got.status_code == status, where
                assert got.json()["detail"], where
                # the same connection answers the next request: nothing reset it
                address = got.extensions["network_stream"].get_extra_info("client_addr")
                assert peer in (None, address), where
                peer = address
        # nothing was written by any of them
        assert client.get(f"/transfers/{tr['id']}").json()["status"] == "ready"
        assert [t["id"] for t in client.get("/transfers").json()["items"]] == [tr["id"]]
        assert client.get("/calls/c1").json() == calls_before
        # without the body, each is answered (what refused them was the body)
        for method, path in [e for e, base in takes_json.items() if base is None and not e[1].endswith("/cancel")]:
            assert client.request(method, path).status_code == 200, path
        assert client.get(f"/transfers/{tr['id']}").json()["status"] == "completed"
        code, rest = r.stop()
    assert code == 0 and "Traceback" not in rest, rest[-3000:]


def _hostile_variant(body: Any, how: str, field_pick: int) -> tuple[bytes, dict[str, str]]:
    """A schemathesis case's body made into what schemathesis does not send: a non-finite number
    in one of its fields, bytes that are not UTF-8, or the JSON under another content type."""
    plain = {k: v for k, v in body.items() if not isinstance(v, bytes)} if isinstance(body, dict) else {}
    plain = plain or {"call_id": "c"}
    field = sorted(plain)[field_pick % len(plain)]
    if how in ("NaN", "Infinity", "-Infinity", "1e999"):
        return _with(plain, field, how.encode()), JSON_CT
    if how == "latin-1 bytes":
        return _with(plain, field, b'"caf\xe9 \xff"'), JSON_CT
    text = json.dumps(plain)
    if how == "utf-16":
        return text.encode("utf-16"), JSON_CT
    content_type = {"text/plain": "text/plain", "no content-type": None,
                    "multipart, no boundary": "multipart/form-data"}[how]
    return text.encode(), {} if content_type is None else {"content-type": content_type}


def test_fuzzed_requests_with_hostile_bodies_get_a_4xx_on_the_same_connection(tmp_path, sim):
    """Schemathesis 4 generates finite numbers only and sends every body as UTF-8 JSON under
    its documented type: its cases are sent again here with the body made hostile."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    hows = ["NaN", "Infinity", "-Infinity", "1e999", "utf-16", "latin-1 bytes", "text/plain", "no content-type",
            "multipart, no boundary"]
    with runner(tmp_path, sim) as r, httpx.Client(base_url=r.url, trust_env=False, timeout=30) as client:
        schema = schemathesis.openapi.from_url(r.url + "/openapi.json")
        peers: set[Any] = set()
        seen: dict[str, int] = {}

        @hsettings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=schema.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE),
               how=st.sampled_from(hows), field_pick=st.integers(0, 10))
        def fuzz(case: Any, how: str, field_pick: int) -> None:
            content, headers = _hostile_variant(case.body, how, field_pick)
            response = client.request(case.method, case.formatted_path, params=case.query, content=content,
                                      headers=headers)
            where = (case.method, case.formatted_path, how, content[:200], response.status_code, response.text[:300])
            assert 400 <= response.status_code < 500 and response.json()["detail"], where
            peers.add(response.extensions["network_stream"].get_extra_info("client_addr"))
            assert len(peers) == 1, where  # no answer closed the connection
            seen[how] = seen.get(how, 0) + 1

        fuzz()
        code, rest = r.stop()
    assert code == 0 and "Traceback" not in rest
    assert set(seen) == set(hows), seen

def wait_for_sync(condition: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- ids: the whole value must be an id, a trailing newline included -------------------------------------------

async def test_an_id_with_a_trailing_newline_is_refused_everywhere(tmp_path, sim):
    async with intake(tmp_path, sim) as (engine, _server, client):
        r = await client.post("/ai-voice", json={"call_id": "abc", "text": "hello"})
        assert r.status_code == 200, r.text
        vr_id = r.json()["id"]
        r = await client.post("/initiate-transfer", json={"call_id": "abc", "from_agent": "alice", "to_agent": "bob"})
        tr_id = r.json()["id"]
        await settle(engine, tr_id)
        before = set(engine.processes)

        r = await client.post("/ai-voice", json={"call_id": "abc\n", "text": "hello"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "call_id", r.text
        audio = wav_file(tmp_path / "a.wav").read_bytes()
        r = await client.post("/ai-voice", data={"call_id": "abc\n"}, files={"audio": ("a.wav", audio, "audio/wav")})
        assert r.status_code == 400 and "not a valid id" in r.json()["detail"], r.text
        r = await client.post("/initiate-transfer", json={"call_id": "abc\n", "from_agent": "alice", "to_agent": "carol"})
        assert r.status_code == 422, r.text
        for method, path in [("GET", "/calls/abc%0A"), ("GET", f"/ai-voice/{vr_id}%0A"),
                             ("GET", f"/transfers/{tr_id}%0A"), ("POST", f"/transfers/{tr_id}%0A/complete"),
                             ("POST", f"/transfers/{tr_id}%0A/cancel")]:
            r = await client.request(method, path)
            assert r.status_code == 400 and "not a valid id" in r.json()["detail"], (path, r.text)
        assert set(engine.processes) == before
        assert (await client.get(f"/transfers/{tr_id}")).json()["status"] == "ready"
        assert not list((tmp_path / "data").glob("intake/audio/*"))


def test_the_cli_refuses_a_call_id_with_a_trailing_newline(tmp_path, capsys):
    db = tmp_path / "never.db"
    assert cli_main(["voice", "--db", str(db), "--call", "abc\n", "--text", "hello"]) == 2
    assert cli_main(["transfer", "--db", str(db), "--call", "abc\n", "--from", "alice", "--to", "bob"]) == 2
    err = capsys.readouterr().err
    assert err.count("not a valid id") == 2 and err.count("\n") == 2 and "Traceback" not in err
    assert not db.exists()
