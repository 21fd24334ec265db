"""groqsim driven by the real `groq` SDK over real HTTP on 127.0.0.1, with both of the SDK's
transports: its default httpx one and `groq.DefaultAioHttpClient()`. Nothing reaches the internet."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
import wave

import groq
import pytest
from conftest import wait_for

from console.bench.groqsim import DEFAULT_TRANSCRIPT, GroqSim, wav_bytes

KEY = "gsk_groqsim_test_key"
MODEL = "llama-3.1-8b-instant"


@pytest.fixture(scope="module")
def sim():
    with GroqSim(key=KEY) as s:
        yield s
    assert s.returncode == 0


@pytest.fixture(autouse=True)
def _fresh(sim):
    sim.reset()
    yield


def make_client(sim: GroqSim, transport: str, key: str = KEY, timeout: float | None = None) -> groq.AsyncGroq:
    kw = {} if timeout is None else {"timeout": timeout}
    http_client = groq.DefaultAioHttpClient() if transport == "aiohttp" else None
    return groq.AsyncGroq(api_key=key, base_url=sim.base_url, max_retries=0, http_client=http_client, **kw)


@pytest.fixture(params=["httpx", "aiohttp"])
def transport(request):
    return request.param


@pytest.fixture
async def client(sim, transport):
    async with make_client(sim, transport) as c:
        yield c


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are a helpful agent."}, {"role": "user", "content": text}]


# --------------------------------------------------------------------------- the script itself

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_script_prints_port_and_stops_on_signal(sig):
    proc = subprocess.Popen([sys.executable, str(GroqSim.SCRIPT), "--port", "0", "--key", "k"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        assert re.fullmatch(r"PORT [1-9][0-9]*\n", line), line
        port = int(line.split()[1])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/_control/stats", timeout=5) as r:
            assert json.loads(r.read())["requests"] == {"chat": 0, "transcriptions": 0, "speech": 0}
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0  # it stops by itself, with no request to end it
        assert proc.stdout.read() == b""  # exactly one line on stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# --------------------------------------------------------------------------- default behaviour

async def test_chat(sim, client):
    text = "hello, I need help with my bill it is far too high this month and I am upset"
    completion = await client.chat.completions.create(model=MODEL, messages=user(text))
    content = completion.choices[0].message.content
    assert content == "Assistant: I understand — " + " ".join(text.split()[:12])
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage.prompt_tokens == 5 + len(text.split())
    assert completion.usage.completion_tokens == len(content.split())
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    stats = sim.stats()
    assert stats["requests"]["chat"] == 1
    assert stats["auth"] == [f"Bearer {KEY}"]
    assert stats["bodies"]["chat"][0]["messages"][-1]["content"] == text
    assert stats["bodies"]["chat"][0]["model"] == MODEL


async def test_chat_content_configured(sim, client):
    sim.configure(chat_content="Exactly this.")
    completion = await client.chat.completions.create(
        model=MODEL, messages=user("anything"), response_format={"type": "json_object"})
    assert completion.choices[0].message.content == "Exactly this."
    sim.configure(chat_content=None)
    completion = await client.chat.completions.create(model=MODEL, messages=user("anything"))
    assert completion.choices[0].message.content == "Assistant: I understand — anything"


async def test_chat_json_object(sim, client):
    conversation = ("Transfer from agent ana to agent ben.\n\nConversation:\n"
                    "caller: Hi, this is Maria Lopez and my internet keeps dropping every evening since Monday.\n"
                    "assistant: I am sorry. Let us restart the router first.\n"
                    "caller: I did that already, it is still broken.\n")
    completion = await client.chat.completions.create(
        model=MODEL, messages=user(conversation), response_format={"type": "json_object"})
    data = json.loads(completion.choices[0].message.content)
    assert set(data) == {"caller", "issue", "steps_taken", "sentiment", "next_action"}
    assert data["caller"] == "Maria Lopez"
    assert data["issue"] == "Hi, this is Maria Lopez and my internet keeps dropping every evening"
    assert data["steps_taken"] == ["I am sorry. Let us restart the router first."]
    assert data["sentiment"] == "negative"
    assert isinstance(data["next_action"], str) and data["next_action"]
    # deterministic
    again = await client.chat.completions.create(
        model=MODEL, messages=user(conversation), response_format={"type": "json_object"})
    assert json.loads(again.choices[0].message.content) == data
    # a plain message: the whole message is the caller's words
    plain = await client.chat.completions.create(
        model=MODEL, messages=user("thanks, the bill is fine now"), response_format={"type": "json_object"})
    data = json.loads(plain.choices[0].message.content)
    assert data["issue"] == "thanks, the bill is fine now" and data["sentiment"] == "positive"


async def test_transcription(sim, client):
    audio = wav_bytes("some caller audio")
    result = await client.audio.transcriptions.create(model="whisper-large-v3-turbo", file=("a.wav", audio))
    assert result.text == DEFAULT_TRANSCRIPT
    sim.configure(transcript="my router is broken")
    result = await client.audio.transcriptions.create(model="whisper-large-v3-turbo", file=("a.wav", audio),
                                                      language="en")
    assert result.text == "my router is broken"
    stats = sim.stats()
    assert stats["requests"]["transcriptions"] == 2
    assert stats["upload_sizes"] == [len(audio), len(audio)]
    form = stats["bodies"]["transcriptions"][-1]
    assert form["model"] == "whisper-large-v3-turbo" and form["language"] == "en"
    assert form["file"] == {"filename": "a.wav", "size": len(audio)}


async def test_speech(sim, client):
    response = await client.audio.speech.create(model="playai-tts", voice="Fritz-PlayAI", input="Hello there.",
                                                response_format="wav")
    data = await response.read()
    assert data.startswith(b"RIFF")
    assert response.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        short = w.getnframes()
    assert 0 < short <= 8000
    long = await (await client.audio.speech.create(model="playai-tts", voice="Fritz-PlayAI", input="x" * 5000,
                                                   response_format="wav")).read()
    with wave.open(io.BytesIO(long)) as w:
        assert w.getnframes() == 8000  # capped at 1 s
    assert sim.stats()["bodies"]["speech"][0]["input"] == "Hello there."


# --------------------------------------------------------------------------- errors the SDK raises

async def test_wrong_key_is_401(sim, transport):
    async with make_client(sim, transport, key="gsk_wrong") as bad:
        with pytest.raises(groq.AuthenticationError) as info:
            await bad.chat.completions.create(model=MODEL, messages=user("hi"))
        assert info.value.status_code == 401
        # Groq's SDK keeps the whole body (OpenAI's unwraps "error")
        assert info.value.body == {"error": {"message": "Invalid API Key", "type": "invalid_request_error",
                                             "code": "invalid_api_key"}}
        with pytest.raises(groq.AuthenticationError):
            await bad.audio.transcriptions.create(model="whisper-large-v3-turbo", file=("a.wav", b"RIFF"))
        with pytest.raises(groq.AuthenticationError):
            await bad.audio.speech.create(model="playai-tts", voice="v", input="hi", response_format="wav")
        assert sim.stats()["auth"] == ["Bearer gsk_wrong"] * 3
        sim.configure(key=None)  # no key configured: any key is accepted
        completion = await bad.chat.completions.create(model=MODEL, messages=user("hi"))
        assert completion.choices[0].message.content.startswith("Assistant:")
    sim.configure(key="other")
    async with make_client(sim, transport) as good:
        with pytest.raises(groq.AuthenticationError):
            await good.chat.completions.create(model=MODEL, messages=user("hi"))
        sim.reset()  # back to the key given on the command line
        await good.chat.completions.create(model=MODEL, messages=user("hi"))


async def test_rate_limited_with_retry_after(sim, client):
    sim.script("chat", [{"status": 429, "headers": {"retry-after": "2"}}])
    with pytest.raises(groq.RateLimitError) as info:
        await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.body["error"]["code"] == "rate_limit_exceeded"
    # the script is used up: the next request is answered normally
    await client.chat.completions.create(model=MODEL, messages=user("hi"))


@pytest.mark.parametrize("status, exc", [(500, groq.InternalServerError), (503, groq.InternalServerError),
                                         (403, groq.PermissionDeniedError), (400, groq.BadRequestError)])
async def test_scripted_status(sim, client, status, exc):
    sim.script("chat", [{"status": status, "message": f"scripted {status}"}])
    with pytest.raises(exc) as info:
        await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert info.value.status_code == status
    assert info.value.body["error"]["message"] == f"scripted {status}"


async def test_scripted_errors_on_audio(sim, client):
    sim.script("transcriptions", [{"status": 500}])
    sim.script("speech", [{"status": 429, "headers": {"retry-after": "7"}}])
    with pytest.raises(groq.InternalServerError):
        await client.audio.transcriptions.create(model="whisper-large-v3-turbo", file=("a.wav", b"RIFF"))
    with pytest.raises(groq.RateLimitError) as info:
        await client.audio.speech.create(model="playai-tts", voice="v", input="hi", response_format="wav")
    assert info.value.response.headers["retry-after"] == "7"


async def test_client_timeout(sim, transport):
    sim.script("chat", [{"delay_s": 2}])
    async with make_client(sim, transport, timeout=0.5) as c:
        with pytest.raises(groq.APITimeoutError):
            await c.chat.completions.create(model=MODEL, messages=user("hi"))
        assert sim.stats()["in_flight"]["chat"] == 1  # it gave up before the answer came
    await wait_for(lambda: sim.stats()["in_flight"]["chat"] == 0)  # the next test starts clean


async def test_malformed_json(sim, client):
    # The SDK does not wrap this: a bare json.JSONDecodeError (a ValueError), not a GroqError.
    sim.script("chat", [{"malformed": True}])
    with pytest.raises(json.JSONDecodeError) as info:
        await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert not isinstance(info.value, groq.GroqError)
    sim.script("transcriptions", [{"malformed": True}])
    with pytest.raises(json.JSONDecodeError):
        await client.audio.transcriptions.create(model="whisper-large-v3-turbo", file=("a.wav", b"RIFF"))
    # speech is binary: the SDK hands back the bytes without looking at them
    sim.script("speech", [{"malformed": True}])
    data = await (await client.audio.speech.create(model="playai-tts", voice="v", input="hi",
                                                   response_format="wav")).read()
    assert data == b'{"choices": ['


async def test_json_of_the_wrong_shape_is_not_an_error(sim, client):
    sim.script("chat", [{"body": "{}"}, {"body": "plain words", "headers": {"content-type": "text/plain"}}])
    completion = await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert completion.choices is None
    text = await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert text == "plain words"  # a str, not a ChatCompletion


# --------------------------------------------------------------------------- scripting and latency

async def test_script_is_consumed_in_order(sim, client):
    sim.script("chat", [{"status": 500}, {"status": 429}])
    sim.script("chat", [{"delay_s": 0.3}])
    with pytest.raises(groq.InternalServerError):
        await client.chat.completions.create(model=MODEL, messages=user("one"))
    with pytest.raises(groq.RateLimitError):
        await client.chat.completions.create(model=MODEL, messages=user("two"))
    t0 = time.monotonic()
    completion = await client.chat.completions.create(model=MODEL, messages=user("three"))
    assert time.monotonic() - t0 >= 0.3
    assert completion.choices[0].message.content == "Assistant: I understand — three"
    completion = await client.chat.completions.create(model=MODEL, messages=user("four"))
    assert completion.choices[0].message.content == "Assistant: I understand — four"
    stats = sim.stats()
    assert stats["requests"]["chat"] == 4 and stats["pending_scripts"]["chat"] == 0


async def test_latency(sim, client):
    latency_s = 1.5
    sim.configure(latency_s=latency_s)
    t0 = time.monotonic()
    await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert time.monotonic() - t0 >= latency_s
    sim.configure(latency_s=None)
    t0 = time.monotonic()
    await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert time.monotonic() - t0 < latency_s  # cleared: had it stayed, this would take as long


async def test_200_concurrent_chats_through_aiohttp(sim):
    sim.configure(latency_s=0.2)
    async with make_client(sim, "aiohttp") as c:
        results = await asyncio.gather(*(c.chat.completions.create(model=MODEL, messages=user(f"call {i}"))
                                         for i in range(200)))
    assert [r.choices[0].message.content for r in results] == [f"Assistant: I understand — call {i}"
                                                               for i in range(200)]
    stats = sim.stats()
    assert stats["requests"]["chat"] == 200
    assert stats["max_concurrent"]["chat"] >= 100  # in flight together, not one after another
    # the SDK's connection pool (DEFAULT_CONNECTION_LIMITS) caps one client at 100 in flight
    assert stats["max_concurrent"]["chat"] <= 100


def test_control_rejects_nonsense(sim):
    with pytest.raises(RuntimeError, match="400"):
        sim.script("embeddings", [{"status": 500}])
    with pytest.raises(RuntimeError, match="unknown config keys"):
        sim.configure(latency=1)
