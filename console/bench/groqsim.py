"""groqsim: a Groq-compatible HTTP server for tests (127.0.0.1 only, never the internet).

The real `groq` SDK talks to it over real HTTP:

    sim = GroqSim(key="k").start()
    client = groq.AsyncGroq(api_key="k", base_url=sim.base_url, max_retries=0)

Run on its own: `python -m console.bench.groqsim --port 0 [--key KEY]` prints one line `PORT <n>` once
it listens, then serves until SIGTERM/SIGINT. `GroqSim` runs it as a subprocess, so the server
shares neither the event loop nor the GIL with the code under test.

What the groq 1.7.0 SDK raises for each scripted response (checked by tests/test_groqsim.py,
identically with the default httpx transport and with `groq.DefaultAioHttpClient()`):

  * 401                          -> groq.AuthenticationError     (an APIStatusError)
  * 403                          -> groq.PermissionDeniedError
  * 429 (+ `retry-after` header) -> groq.RateLimitError; `e.response.headers["retry-after"]` is there
  * 500 / 502 / 503              -> groq.InternalServerError     (any status >= 500)
  * `delay_s` > client timeout   -> groq.APITimeoutError         (a subclass of APIConnectionError)
  * `malformed: true` (200, content-type application/json, body `{"choices": [` - not JSON)
                                 -> json.JSONDecodeError, NOT a groq.GroqError: the SDK calls
                                    `response.json()` without wrapping it. JSONDecodeError is a
                                    subclass of ValueError, `__cause__` is None, message e.g.
                                    "Expecting value: line 1 column 14 (char 13)". With
                                    max_retries=0 it propagates unchanged from `create(...)`;
                                    same for chat.completions and audio.transcriptions.
                                    audio.speech does not parse JSON at all: it returns the
                                    bytes as they came (`read()` gives b'{"choices": [').
  * a 200 whose body is JSON but not the promised shape (e.g. `body: "{}"`) is NOT an error:
    the SDK builds the model leniently (missing fields become None), so only
    `completion.choices[0]` fails later, with TypeError ('NoneType' object is not subscriptable).
  * a 200 with a non-JSON content-type (e.g. `headers: {"content-type": "text/plain"}`) makes
    `chat.completions.create` return a plain `str`, not a ChatCompletion (AttributeError later).
  * the SDK's aiohttp client (DefaultAioHttpClient) and its default httpx client both pool at
    most 100 connections: one AsyncGroq client never has more than 100 requests in flight.

Control endpoints (no auth): POST /_control/config, POST /_control/script,
GET /_control/stats, POST /_control/reset. See `GroqSim` for the blocking helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import math
import queue
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path
from typing import Any

ENDPOINTS = ("chat", "transcriptions", "speech")
DEFAULT_TRANSCRIPT = "hello, I need help with my bill"
HISTORY = 50  # how many auth headers / bodies the stats keep

_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request", "invalid_request_error", None),
    401: ("Invalid API Key", "invalid_request_error", "invalid_api_key"),
    403: ("Forbidden", "permission_error", None),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error",
          "model_not_found"),
    408: ("Request timed out", "invalid_request_error", None),
    413: ("Request Entity Too Large", "invalid_request_error", None),
    422: ("Unprocessable entity", "invalid_request_error", None),
    429: ("Rate limit reached. Please try again later.", "tokens", "rate_limit_exceeded"),
    500: ("Internal Server Error", "internal_server_error", None),
    502: ("Bad Gateway", "internal_server_error", None),
    503: ("Service Unavailable", "internal_server_error", "service_unavailable"),
}

_POSITIVE = {"thanks", "thank", "great", "good", "perfect", "happy", "appreciate", "lovely", "excellent"}
_NEGATIVE = {"angry", "frustrated", "annoyed", "terrible", "awful", "unacceptable", "cancel", "complaint",
             "wrong", "broken", "again", "still", "worst", "ridiculous", "upset", "disappointed", "refund"}
_NAME = re.compile(r"\b(?:my name is|this is|i am|i'm)\s+([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)")
_LINE = re.compile(r"^\s*(caller|user|customer|assistant|agent)\s*:\s*(.*)$", re.I | re.M)


# --------------------------------------------------------------------------- content helpers

def _text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _words(text: str, n: int | None = None) -> str:
    ws = text.split()
    return " ".join(ws if n is None else ws[:n])


def _count_words(text: str) -> int:
    return len(text.split())


def _last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return _text_of(m.get("content"))
    return ""


def summary_for(messages: list[Any]) -> dict[str, Any]:
    """The json_object answer, derived deterministically from the last user message. When that
    message holds a conversation ("caller: …" / "assistant: …" lines), the caller's lines are
    the caller's words; otherwise the whole message is."""
    text = _last_user_text(messages)
    lines = [(role.lower(), said.strip()) for role, said in _LINE.findall(text)]
    caller_lines = [s for r, s in lines if r in ("caller", "user", "customer") and s]
    helper_lines = [s for r, s in lines if r in ("assistant", "agent") and s]
    if not caller_lines:
        caller_lines = [text.strip()] if text.strip() else []
    caller = "unknown caller"
    for said in caller_lines:
        m = _NAME.search(said)
        if m:
            caller = m.group(1)
            break
    words = [w.strip(".,!?;:'\"").lower() for s in caller_lines for w in s.split()]
    score = sum(w in _POSITIVE for w in words) - sum(w in _NEGATIVE for w in words)
    issue = _words(caller_lines[0], 12) if caller_lines else "no caller words"
    return {
        "caller": caller,
        "issue": issue,
        "steps_taken": [_words(s, 12) for s in helper_lines[-3:]],
        "sentiment": "positive" if score > 0 else "negative" if score < 0 else "neutral",
        "next_action": f"follow up on: {issue}",
    }


def wav_bytes(text: str) -> bytes:
    """A small valid WAV: 16-bit mono 8000 Hz, 50 ms per input character (0.1 s .. 1 s)."""
    rate = 8000
    frames = min(rate, max(rate // 10, len(text) * rate // 20))
    tone = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                    for i in range(frames))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(tone)
    return buf.getvalue()


# --------------------------------------------------------------------------- the server

class Sim:
    def __init__(self, key: str | None = None) -> None:
        self.startup = {"latency_s": 0.0, "key": key, "transcript": None, "chat_content": None}
        self.reset()

    def reset(self) -> None:
        self.config: dict[str, Any] = dict(self.startup)
        self.scripts: dict[str, collections.deque] = {e: collections.deque() for e in ENDPOINTS}
        self.requests = {e: 0 for e in ENDPOINTS}
        # in_flight is live (a request still sleeping from before a reset is still in flight)
        self.in_flight: dict[str, int] = getattr(self, "in_flight", None) or {e: 0 for e in ENDPOINTS}
        self.max_concurrent = {e: 0 for e in ENDPOINTS}
        self.auth: collections.deque = collections.deque(maxlen=HISTORY)
        self.bodies: dict[str, collections.deque] = {e: collections.deque(maxlen=HISTORY) for e in ENDPOINTS}
        self.upload_sizes: list[int] = []
        self.seq = 0

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "auth": list(self.auth),
            "bodies": {e: list(b) for e, b in self.bodies.items()},
            "upload_sizes": list(self.upload_sizes),
            "max_concurrent": dict(self.max_concurrent),
            "in_flight": dict(self.in_flight),
            "pending_scripts": {e: len(q) for e, q in self.scripts.items()},
            "config": dict(self.config),
        }

    # ---- responses

    @staticmethod
    def error(status: int, message: str | None = None, type_: str | None = None, code: str | None = None,
              headers: dict[str, str] | None = None) -> Any:
        from aiohttp import web

        d_message, d_type, d_code = _DEFAULT_ERRORS.get(
            status, (f"HTTP {status}", "internal_server_error" if status >= 500 else "invalid_request_error", None))
        err: dict[str, Any] = {"message": message or d_message, "type": type_ or d_type}
        if code or d_code:
            err["code"] = code or d_code
        return web.json_response({"error": err}, status=status, headers=headers)

    def scripted(self, spec: dict[str, Any]) -> Any | None:
        """The response a scripted entry asks for, or None to fall through to the default."""
        from aiohttp import web

        headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
        if spec.get("malformed"):
            headers.setdefault("Content-Type", "application/json")
            return web.Response(status=int(spec.get("status", 200)), text='{"choices": [', headers=headers)
        status = int(spec.get("status", 200))
        if spec.get("body") is not None:
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
            body = spec["body"]
            if not isinstance(body, str):
                body = json.dumps(body)
            return web.Response(status=status, text=body, headers=headers)
        if status != 200:
            return self.error(status, spec.get("message"), spec.get("type"), spec.get("code"), headers)
        return None  # e.g. {"delay_s": 2} alone: wait, then answer as usual

    def chat_response(self, body: dict[str, Any], content_override: str | None) -> dict[str, Any]:
        messages = body.get("messages") or []
        if content_override is not None:
            content = content_override
        elif self.config.get("chat_content") is not None:
            content = str(self.config["chat_content"])
        elif (body.get("response_format") or {}).get("type") == "json_object":
            content = json.dumps(summary_for(messages))
        else:
            content = "Assistant: I understand — " + _words(_last_user_text(messages), 12)
        prompt = sum(_count_words(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        completion = _count_words(content)
        self.seq += 1
        return {
            "id": f"chatcmpl-sim-{self.seq}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
            "system_fingerprint": "fp_groqsim",
            "x_groq": {"id": f"req_sim_{self.seq}"},
        }

    # ---- handlers

    async def api(self, request: Any, endpoint: str) -> Any:
        from aiohttp import web

        self.requests[endpoint] += 1
        self.in_flight[endpoint] += 1
        self.max_concurrent[endpoint] = max(self.max_concurrent[endpoint], self.in_flight[endpoint])
        try:
            auth = request.headers.get("Authorization")
            self.auth.append(auth)
            # read the whole request first: a client gets its answer only after it sent it all
            body: Any = None
            if endpoint == "transcriptions":
                body, size = await self._read_form(request)
                self.upload_sizes.append(size)
            else:
                raw = await request.read()
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = None
            self.bodies[endpoint].append(body)

            latency = float(self.config.get("latency_s") or 0)
            if latency > 0:
                await asyncio.sleep(latency)
            key = self.config.get("key")
            if key is not None and auth != f"Bearer {key}":
                return self.error(401)
            spec = self.scripts[endpoint].popleft() if self.scripts[endpoint] else None
            if spec is not None:
                if spec.get("delay_s"):
                    await asyncio.sleep(float(spec["delay_s"]))
                response = self.scripted(spec)
                if response is not None:
                    return response
            else:
                spec = {}
            if not isinstance(body, dict):
                return self.error(400, "request body is not a JSON object" if endpoint != "transcriptions"
                                  else "expected multipart/form-data")
            if endpoint == "chat":
                if body.get("stream"):
                    return self.error(400, "groqsim does not support stream=true")
                return web.json_response(self.chat_response(body, spec.get("content")))
            if endpoint == "transcriptions":
                if "file" not in body:
                    return self.error(400, "file is required")
                text = spec.get("text")
                if text is None:
                    text = self.config.get("transcript")
                if text is None:
                    text = DEFAULT_TRANSCRIPT
                if body.get("response_format") == "text":
                    return web.Response(text=text, content_type="text/plain")
                return web.json_response({"text": text, "x_groq": {"id": "req_sim_stt"}})
            # speech
            return web.Response(body=wav_bytes(str(body.get("input", ""))), content_type="audio/wav")
        finally:
            self.in_flight[endpoint] -= 1

    @staticmethod
    async def _read_form(request: Any) -> tuple[dict[str, Any] | None, int]:
        if not request.content_type.startswith("multipart/"):
            await request.read()
            return None, 0
        fields: dict[str, Any] = {}
        size = 0
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if part.filename is not None:
                data = await part.read()
                size += len(data)
                fields[part.name or "file"] = {"filename": part.filename, "size": len(data)}
            else:
                fields[part.name or ""] = await part.text()
        return fields, size

    async def control(self, request: Any) -> Any:
        from aiohttp import web

        what = request.match_info["what"]
        if what == "stats" and request.method == "GET":
            return web.json_response(self.stats())
        if request.method != "POST":
            return web.json_response({"error": "use POST"}, status=405)
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if what == "reset":
            self.reset()
            return web.json_response({"ok": True})
        if what == "config":
            unknown = set(body) - set(self.startup)
            if unknown:
                return web.json_response({"error": f"unknown config keys: {sorted(unknown)}"}, status=400)
            for k, v in body.items():
                self.config[k] = (0.0 if v is None else float(v)) if k == "latency_s" else v
            return web.json_response({"ok": True, "config": self.config})
        if what == "script":
            endpoint = body.get("endpoint")
            if endpoint not in ENDPOINTS:
                return web.json_response({"error": f"endpoint must be one of {ENDPOINTS}"}, status=400)
            responses = body.get("responses") or []
            if not isinstance(responses, list) or not all(isinstance(r, dict) for r in responses):
                return web.json_response({"error": "responses must be a list of objects"}, status=400)
            self.scripts[endpoint].extend(responses)
            return web.json_response({"ok": True, "pending": len(self.scripts[endpoint])})
        return web.json_response({"error": f"no control endpoint {what!r}"}, status=404)

    def app(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024 * 1024)
        for path, endpoint in (("/openai/v1/chat/completions", "chat"),
                               ("/openai/v1/audio/transcriptions", "transcriptions"),
                               ("/openai/v1/audio/speech", "speech")):
            app.router.add_post(path, lambda r, e=endpoint: self.api(r, e))
        app.router.add_route("*", "/_control/{what}", self.control)
        return app


async def serve(port: int, key: str | None) -> None:
    from aiohttp import web

    runner = web.AppRunner(Sim(key).app(), access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"PORT {bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Groq-compatible HTTP server for tests (127.0.0.1 only)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--key", default=None, help="the only API key accepted (default: any)")
    args = p.parse_args(argv)
    asyncio.run(serve(args.port, args.key))
    return 0


# --------------------------------------------------------------------------- the test helper

class GroqSim:
    """The sim in a subprocess, with blocking control calls (fine from tests, even async ones:
    each call is a quick local round trip)."""

    SCRIPT = Path(__file__).resolve()

    def __init__(self, key: str | None = None) -> None:
        self.key = key
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.returncode: int | None = None  # the server's exit code, after close()
        # control calls never go through a proxy from the environment
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("GroqSim is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> GroqSim:
        cmd = [sys.executable, str(self.SCRIPT), "--port", "0"]
        if self.key is not None:
            cmd += ["--key", self.key]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        lines: queue.Queue[bytes] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=lambda out=self.proc.stdout: lines.put(out.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=timeout).decode().strip()
        except queue.Empty:
            self.close()
            raise RuntimeError(f"groqsim printed no PORT line within {timeout:g} s") from None
        if not line.startswith("PORT "):
            code = self.proc.poll()
            self.close()
            raise RuntimeError(f"groqsim did not start (exit code {code}, first line {line!r})")
        self.port = int(line.split()[1])
        return self

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=10) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"groqsim {path}: HTTP {e.code}: {e.read().decode(errors='replace')}") from None

    def configure(self, **kw: Any) -> dict[str, Any]:
        """Any of latency_s, key, transcript, chat_content; None clears a value."""
        return self._call("POST", "/_control/config", kw)

    def script(self, endpoint: str, responses: list[dict[str, Any]]) -> dict[str, Any]:
        """Queue responses for "chat" | "transcriptions" | "speech", one per request, in order."""
        return self._call("POST", "/_control/script", {"endpoint": endpoint, "responses": responses})

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_control/stats")

    def reset(self) -> dict[str, Any]:
        return self._call("POST", "/_control/reset", {})

    def close(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.returncode = proc.returncode
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> GroqSim:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
