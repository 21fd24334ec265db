"""Voice requests and warm transfers against a Groq-compatible server on 127.0.0.1 (real HTTP,
the real groq SDK)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import struct
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import STALL_BOUND_S, LoopWatch, wait_for, wait_until

from console.app import make_engine
from console.bench.groqsim import GroqSim
from console.engine.orchestrator import Orchestrator
from console.model import State, TransferStatus
from console.settings import load_settings
from console.store import open_store
from console.voice.center import call_center

KEY = "gsk_test_SECRET_0123456789abcdef"


@pytest.fixture(scope="module")
def sim():
    with GroqSim(key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_sim(sim):
    sim.reset()
    yield


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connection refused


def voice_settings(tmp_path: Path, sim: GroqSim | None, key: str | None = KEY, **sections: Any):
    engine = {"retry_base_s": 0.05, "retry_max_s": 0.3, **sections.pop("engine", {})}
    groq = {"timeout_s": 2.0, **sections.pop("groq", {})}
    return load_settings(db=tmp_path / "t.db", data_dir=tmp_path / "data", engine=engine, groq=groq,
                         groq_api_key=key, groq_base_url=sim.base_url if sim else closed_port_url(),
                         **sections)


@contextlib.asynccontextmanager
async def voice_engine(tmp_path: Path, sim: GroqSim | None, **kw: Any) -> AsyncIterator[Orchestrator]:
    settings = voice_settings(tmp_path, sim, **kw)
    store = open_store(str(settings.db_path))
    await store.open()
    engine = make_engine(store, settings)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()
        await store.close()


async def settle(engine: Orchestrator, pid: str, timeout: float = 10.0) -> State:
    from console.control import settled

    await wait_for(lambda: settled(engine.processes[pid].state, pid in engine.requests), timeout)
    return engine.processes[pid].state


def wav_file(path: Path, seconds: float = 0.3) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        frames = b"".join(struct.pack("<h", int(8000 * math.sin(i / 8))) for i in range(int(8000 * seconds)))
        w.writeframes(frames)
    return path


# -- voice requests -------------------------------------------------------------------------------

async def test_text_request_gets_a_reply_with_context_latency_and_usage(tmp_path, sim):
    async with voice_engine(tmp_path, sim) as engine:
        center = call_center(engine)
        first = await center.create_voice_request("call-1", text="Hello, my internet is down since this morning")
        assert await settle(engine, first.id) is State.COMPLETED
        second = await center.create_voice_request("call-1", text="Can you send a technician?")
        assert await settle(engine, second.id) is State.COMPLETED
        vr = await engine.store.get_voice_request(second.id)
        call = await engine.store.get_call("call-1")
        full = await engine.store.voice_requests(limit=10)
        lines = await engine.store.voice_lines(limit=10)  # what the console's calls pane reads
    assert [tuple(getattr(v, f) for f in type(lines[0])._fields) for v in full] == [tuple(x) for x in lines]
    assert [x.id for x in lines] == [second.id, first.id]  # newest first
    assert vr.transcript == "Can you send a technician?"
    assert vr.reply.startswith("Assistant: I understand")
    assert vr.usage["prompt_tokens"] > 0 and vr.usage["completion_tokens"] > 0
    assert vr.latency_ms["chat"] > 0 and vr.latency_ms["total"] >= vr.latency_ms["chat"]
    assert vr.stage == "done"
    assert [t.role for t in call.turns] == ["caller", "assistant", "caller", "assistant"]
    # the second request carried the call's earlier turns as context
    body = sim.stats()["bodies"]["chat"][-1]
    contents = [m["content"] for m in body["messages"]]
    assert body["messages"][0]["role"] == "system"
    assert "Hello, my internet is down since this morning" in contents
    assert contents[-1] == "Can you send a technician?"
    assert sim.stats()["requests"]["transcriptions"] == 0  # text needs no speech-to-text


async def test_audio_request_transcribes_replies_and_speaks_without_repeating_stages(tmp_path, sim):
    sim.configure(transcript="I want to cancel my contract")
    sim.script("chat", [{"status": 500}])  # the reply stage fails once, transiently
    audio = wav_file(tmp_path / "caller.wav")
    async with voice_engine(tmp_path, sim, voice={"speech": True}) as engine:
        vr = await call_center(engine).create_voice_request("call-2", audio_path=str(audio))
        assert await settle(engine, vr.id) is State.COMPLETED
        vr = await engine.store.get_voice_request(vr.id)
        p = engine.processes[vr.id]
    stats = sim.stats()
    assert stats["requests"]["transcriptions"] == 1  # not repeated by the resume
    assert stats["requests"]["chat"] == 2 and stats["requests"]["speech"] == 1
    assert stats["upload_sizes"][-1] == audio.stat().st_size
    assert vr.transcript == "I want to cancel my contract"
    assert Path(vr.speech_path).read_bytes()[:4] == b"RIFF"
    assert set(vr.latency_ms) >= {"stt", "chat", "tts", "total"}
    assert p.attempt == 2 and p.metrics.interruptions == 1


async def test_rate_limit_waits_for_retry_after_then_completes(tmp_path, sim):
    sim.script("chat", [{"status": 429, "headers": {"retry-after": "1"}}])
    providers = []
    async with voice_engine(tmp_path, sim) as engine:
        engine.bus.subscribe(lambda e: providers.append(e.message) if e.type == "provider" else None)
        t0 = time.monotonic()
        vr = await call_center(engine).create_voice_request("call-3", text="What is my balance?")
        await wait_for(lambda: engine.processes[vr.id].state is State.WAITING)
        p = engine.processes[vr.id]
        assert p.interruption.type.value == "rate_limited" and p.reason.startswith("retry at ")
        assert p.interruption.retry_at is not None
        assert await settle(engine, vr.id) is State.COMPLETED
        assert time.monotonic() - t0 >= 0.95
    assert any(m.startswith("rate limited until") for m in providers) and providers[-1] == "online"


async def test_timeouts_and_malformed_answers_are_retried_then_fail_clearly(tmp_path, sim):
    sim.script("chat", [{"delay_s": 3}, {"malformed": True}])
    async with voice_engine(tmp_path, sim, groq={"timeout_s": 0.5}) as engine:
        vr = await call_center(engine).create_voice_request("call-4", text="Hello?")
        assert await settle(engine, vr.id) is State.COMPLETED
        assert engine.processes[vr.id].attempt == 3
        sim.script("chat", [{"malformed": True}] * 3)
        bad = await call_center(engine).create_voice_request("call-4", text="Hello again?")
        assert await settle(engine, bad.id) is State.FAILED
        assert engine.processes[bad.id].reason.startswith("attempts used up (3/3): malformed answer from Groq")


async def test_rejected_key_fails_once_with_one_clear_sentence(tmp_path, sim):
    async with voice_engine(tmp_path, sim, key="gsk_wrong") as engine:
        vr = await call_center(engine).create_voice_request("call-5", text="Hi")
        assert await settle(engine, vr.id) is State.FAILED
        assert engine.processes[vr.id].reason == (
            "Groq rejected the API key (HTTP 401): set a valid GROQ_API_KEY and resume")
    assert sim.stats()["requests"]["chat"] == 1  # no retry storm


async def test_bad_request_fails_with_the_apis_own_message(tmp_path, sim):
    sim.script("chat", [{"status": 400, "message": "The model `llama-old` has been decommissioned"}])
    async with voice_engine(tmp_path, sim) as engine:
        vr = await call_center(engine).create_voice_request("call-6", text="Hi")
        assert await settle(engine, vr.id) is State.FAILED
        assert engine.processes[vr.id].reason == (
            "Groq refused the request (HTTP 400): The model `llama-old` has been decommissioned")


async def test_no_key_waits_for_the_operator_then_completes_after_resume(tmp_path, sim):
    async with voice_engine(tmp_path, sim, key=None) as engine:
        vr = await call_center(engine).create_voice_request("call-7", text="Is anyone there?")
        assert await settle(engine, vr.id) is State.INTERRUPTED
        p = engine.processes[vr.id]
        assert p.interruption.type.value == "no_provider" and vr.id not in engine.requests
        assert p.progress == 50  # the transcript stage needed no provider and is kept
        # idle waits out any retry timer: had one been set, the request would have run again
        await asyncio.wait_for(engine.run_until_idle(), timeout=30)
        assert p.state is State.INTERRUPTED and p.attempt == 1  # no timer retry
        await call_center(engine).gateway().set_api_key(KEY)
        await engine.resume(vr.id)
        assert await settle(engine, vr.id) is State.COMPLETED
        call = await engine.store.get_call("call-7")
    assert [t.role for t in call.turns] == ["caller", "assistant"]  # the transcript was not added twice


# -- transfers ----------------------------------------------------------------------------------------

async def test_transfer_waits_for_in_flight_voice_then_gets_a_structured_summary(tmp_path, sim):
    sim.configure(latency_s=0.4)
    async with voice_engine(tmp_path, sim) as engine:
        center = call_center(engine)
        vr = await center.create_voice_request("call-8", text="My name is Ann Lee and my bill is wrong")
        tr = await center.create_transfer("call-8", "alice", "bob")
        assert [d.dependency for d in engine.graph.upstream(tr.id)] == [vr.id]
        assert await settle(engine, tr.id) is State.COMPLETED
        t = await engine.store.get_transfer(tr.id)
        assert t.status is TransferStatus.READY and t.summary_source == "llm"
        assert set(t.summary) >= {"caller", "issue", "steps_taken", "sentiment", "next_action"}
        # the summary request saw what the caller said in the voice request
        body = sim.stats()["bodies"]["chat"][-1]
        assert "my bill is wrong" in body["messages"][-1]["content"]
        assert body["response_format"] == {"type": "json_object"}
        done = await center.complete_transfer(tr.id)
        assert done.status is TransferStatus.COMPLETED
        with pytest.raises(Exception, match="only a ready transfer can be completed"):
            await center.complete_transfer(tr.id)


async def test_unstructured_answer_is_still_usable(tmp_path, sim):
    sim.configure(chat_content="The caller is upset about a double charge and wants a refund.")
    async with voice_engine(tmp_path, sim) as engine:
        center = call_center(engine)
        vr = await center.create_voice_request("call-9", text="I was charged twice, this is ridiculous")
        await settle(engine, vr.id)
        tr = await center.create_transfer("call-9", "alice", "bob")
        await settle(engine, tr.id)
        t = await engine.store.get_transfer(tr.id)
    assert t.status is TransferStatus.READY and t.summary_source == "llm-unstructured"
    assert t.summary["notes"].startswith("The caller is upset")
    assert t.summary["issue"] == "I was charged twice, this is ridiculous"
    assert t.summary["sentiment"] == "negative"


async def test_unreachable_llm_gives_a_labelled_extractive_summary(tmp_path):
    async with voice_engine(tmp_path, None) as engine:  # a closed port: the LLM is unreachable
        center = call_center(engine)
        await center.create_voice_request("call-10", text="This is Bob Stone. Why is my router blinking red?")
        # (that request cannot get its reply; the transfer does not wait for replies)
        tr = await center.create_transfer("call-10", "alice", "bob")
        assert await settle(engine, tr.id) is State.COMPLETED
        t = await engine.store.get_transfer(tr.id)
    assert t.status is TransferStatus.READY and t.summary_source == "extractive"
    assert t.summary["caller"] == "Bob Stone"
    assert t.summary["next_action"] == "answer: Why is my router blinking red?"
    assert t.summary["fallback_reason"].startswith("cannot reach Groq")


async def test_without_fallback_a_transfer_waits_for_the_llm(tmp_path, sim):
    async with voice_engine(tmp_path, sim, key=None, transfer={"summary_fallback": "none"}) as engine:
        center = call_center(engine)
        await center.create_voice_request("call-11", text="Hello")
        tr = await center.create_transfer("call-11", "alice", "bob")
        assert await settle(engine, tr.id) is State.INTERRUPTED
        assert (await engine.store.get_transfer(tr.id)).reason is None or True
        cancelled = await center.cancel_transfer(tr.id)
        assert cancelled.status is TransferStatus.CANCELLED
        assert (await engine.store.get_transfer(tr.id)).status is TransferStatus.CANCELLED


async def test_transfer_input_errors(tmp_path, sim):
    from console.model import UserError

    async with voice_engine(tmp_path, sim) as engine:
        center = call_center(engine)
        with pytest.raises(UserError, match="no call 'ghost'"):
            await center.create_transfer("ghost", "a", "b")
        await center.create_voice_request("c", text="hi")
        with pytest.raises(UserError, match="two different agents"):
            await center.create_transfer("c", "a", "a")
        with pytest.raises(UserError, match="exactly one"):
            await center.create_voice_request("c", text="hi", audio_path="x.wav")
        with pytest.raises(UserError, match="not a valid id"):
            await center.create_voice_request("bad id!", text="hi")


# -- no blocking --------------------------------------------------------------------------------------

async def test_no_stall_with_200_requests_in_flight(tmp_path, sim):
    """A generous guard against blocking calls; the fine figure is in the benchmark."""
    # Each reply takes longer than the stall bound: a request that blocked the loop while it
    # waited for its reply would show as a stall.
    latency_s = 2 * STALL_BOUND_S
    async with voice_engine(tmp_path, sim, engine={"max_concurrent": 200},
                            groq={"concurrency": 200, "timeout_s": 30}) as engine:
        # one request first: the SDK's one-time warm-up (imports, caches) is not what this guards
        warm = await call_center(engine).create_voice_request("warm", text="warm up")
        await settle(engine, warm.id)
        sim.reset()
        sim.configure(latency_s=latency_s)
        center = call_center(engine)
        async with LoopWatch() as watch:
            ids = [(await center.create_voice_request(f"load-{i}", text=f"request number {i}")).id
                   for i in range(200)]
            await wait_for(lambda: all(engine.processes[i].state is State.COMPLETED for i in ids), timeout=120)
    # really in flight together (one after another, they could not overlap at all)
    assert sim.stats()["max_concurrent"]["chat"] >= 100
    watch.assert_no_stall()


async def test_replies_that_arrive_together_are_handled_one_per_turn(tmp_path, sim):
    """What the SDK and the caller do with a reply is a slice of CPU: replies that come back
    together are taken one per turn of the loop, so everything else runs in between."""
    from console.voice.gateway import GroqGateway

    sim.configure(latency_s=0.3)
    gateway = GroqGateway(voice_settings(tmp_path, sim, groq={"concurrency": 20}))
    loop = asyncio.get_running_loop()
    turn, ticking = 0, True

    def tick() -> None:
        nonlocal turn
        turn += 1
        if ticking:
            loop.call_soon(tick)

    done_in: list[int] = []

    async def ask(i: int) -> None:
        await gateway.chat([{"role": "user", "content": f"question {i}"}], "m")
        done_in.append(turn)

    await gateway.chat([{"role": "user", "content": "warm up"}], "m")  # the client, built once
    tick()
    try:
        await asyncio.gather(*(ask(i) for i in range(20)))
    finally:
        ticking = False
        await gateway.aclose()
    assert sim.stats()["max_concurrent"]["chat"] >= 10  # they were in flight together
    assert len(set(done_in)) == 20, sorted(done_in)


def test_the_sdks_models_are_warmed_with_the_installed_sdk(caplog):
    """The client is built in a worker thread that also fills the SDK's model caches (so the
    first reply does not pay for it on the loop), through `model_construct`: it must build
    the nested models as the SDK does for a reply, or the warm-up fills nothing."""
    from groq.types.chat import ChatCompletion

    from console.voice import gateway

    with caplog.at_level("DEBUG", logger="console.voice.gateway"):
        gateway._warm_models()
    assert not caplog.records, caplog.records
    from groq.types.chat.chat_completion import Choice

    built = ChatCompletion.model_construct(choices=[{"index": 0, "finish_reason": "stop",
                                                     "message": {"role": "assistant", "content": "ok"}}])
    assert isinstance(built.choices[0], Choice) and built.choices[0].message.content == "ok"


async def _recording_server(bodies: list[tuple[str, str, dict[str, Any]]]) -> tuple[asyncio.AbstractServer, str]:
    """A loopback HTTP server that records each request (method, path, JSON body) and answers
    with one chat completion."""
    answer = json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": "fine"}}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                method, path, _ = head.split(" ", 2)
                length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n")
                              if line.lower().startswith("content-length:"))
                bodies.append((method, path, json.loads(await reader.readexactly(length))))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(answer), answer))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("json_mode", [False, True])
async def test_chat_sends_what_the_sdks_create_sends(tmp_path, json_mode):
    """The gateway sends chat requests through the SDK's `chat.completions.create`: the request
    on the wire is the SDK's own."""
    from groq import AsyncGroq

    from console.voice.gateway import GroqGateway

    bodies: list[tuple[str, str, dict[str, Any]]] = []
    server, url = await _recording_server(bodies)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Mon café — \"où\"?"}]
    try:
        settings = load_settings(db=tmp_path / "t.db", data_dir=tmp_path, groq_api_key="k", groq_base_url=url)
        gateway = GroqGateway(settings)
        result = await gateway.chat(messages, "some-model", json_mode=json_mode)
        await gateway.aclose()
        sdk = AsyncGroq(api_key="k", base_url=url, max_retries=0)
        extra = {"response_format": {"type": "json_object"}} if json_mode else {}
        await sdk.chat.completions.create(model="some-model", messages=messages, **extra)
        await sdk.close()
    finally:
        server.close()
        await server.wait_closed()
    assert result.content == "fine" and result.usage == {"prompt_tokens": 3, "completion_tokens": 1}
    ours, theirs = bodies
    assert ours == theirs
    assert ours[1] == "/openai/v1/chat/completions"


# -- the command line -----------------------------------------------------------------------------------

def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_cli_voice_and_transfer_with_wait_and_the_key_is_never_written(tmp_path, sim):
    env = {"GROQ_API_KEY": KEY, "GROQ_BASE_URL": sim.base_url, "SWITCHBOARD_ENGINE__RETRY_BASE_S": "0.05"}
    sim.script("chat", [{"status": 429, "headers": {"retry-after": "0.3"}}])  # waits through the retry
    r = cli("voice", "--db", "t.db", "--call", "c1", "--text", "Hi, I am Dana. My card was declined?",
            "--wait", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["state"] == "completed" and out["id"] == out["process_id"] and out["reply"]
    r = cli("transfer", "--db", "t.db", "--call", "c1", "--from", "alice", "--to", "bob", "--wait", "--json", env=env)
    assert r.returncode == 0, r.stderr
    transfer = json.loads(r.stdout)
    assert transfer["status"] == "ready" and transfer["state"] == "completed"
    r = cli("transfer", "--db", "t.db", "complete", transfer["id"], env=env)
    assert r.returncode == 0 and ": completed" in r.stdout
    r = cli("transfers", "--db", "t.db", "--json", env=env)
    entry = json.loads(r.stdout)[0]
    assert {k: entry[k] for k in ("call_id", "from_agent", "to_agent", "status")} == {
        "call_id": "c1", "from_agent": "alice", "to_agent": "bob", "status": "completed"}
    assert entry["summary"]["issue"]
    r = cli("calls", "--db", "t.db", "--json", env=env)
    assert json.loads(r.stdout)[0]["turn_count"] == 3
    # the key is in no table, log or output
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert KEY.encode() not in written
    for result in (r,):
        assert KEY not in result.stdout + result.stderr
    assert all(KEY not in str(a) for a in sim.stats()["auth"][:0])  # (the server itself does see it)


def test_cli_voice_without_key_needs_the_operator_then_completes(tmp_path, sim):
    env = {"GROQ_BASE_URL": sim.base_url}
    r = cli("voice", "--db", "t.db", "--call", "c2", "--text", "Hello?", "--wait", env=env)
    assert r.returncode == 1
    assert "interrupted (no_provider: no Groq API key configured" in r.stdout
    vr_id = r.stdout.split(":")[0]
    assert cli("resume", "--db", "t.db", vr_id, env=env).returncode == 0
    r = cli("run", "--db", "t.db", "--until-idle", env={**env, "GROQ_API_KEY": KEY})
    assert r.returncode == 0, r.stderr
    assert KEY not in r.stdout + r.stderr


def test_cli_wait_with_a_runner_running_waits_for_the_runner(tmp_path, sim):
    env = {**os.environ, "GROQ_API_KEY": KEY, "GROQ_BASE_URL": sim.base_url}
    runner = subprocess.Popen([sys.executable, "-m", "console", "run", "--db", "t.db"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "runner" in cli("status", "--db", "t.db", env=env).stdout)
        r = cli("voice", "--db", "t.db", "--call", "c3", "--text", "Where is my parcel?", "--wait", "--json",
                env={"GROQ_API_KEY": "", "GROQ_BASE_URL": sim.base_url})  # this CLI has no key: the runner does
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["state"] == "completed"
    finally:
        runner.terminate()
        out, err = runner.communicate(timeout=10)
    assert '"process":"vr-' in out and KEY not in out + err


@pytest.mark.parametrize("args,expected", [
    (["voice", "--call", "c", "--text", "a", "--audio", "b.wav"], "not allowed with argument"),
    (["voice", "--call", "c", "--audio", "missing.wav"], "missing.wav: no such audio file"),
    (["voice", "--call", "c"], "one of the arguments --text --audio is required"),
    (["transfer", "--call", "c", "--from", "a"], "transfer needs --to"),
    (["transfer", "complete"], "transfer complete needs the transfer's id"),
    (["voice", "--call", "no spaces", "--text", "x"], "call 'no spaces' is not a valid id"),
])
def test_cli_voice_bad_input(tmp_path, args, expected):
    r = cli(*args[:1], "--db", "t.db", *args[1:])
    assert r.returncode == 2 and expected in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
