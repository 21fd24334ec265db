"""One shared AsyncGroq client for all voice work, with a concurrency limit, and the mapping
from Groq's errors to the engine's outcomes.

The SDK's own retries are off (max_retries=0): the engine retries instead, so a rate-limited
request waits visibly in the queue ("retry at …") without holding a slot, and a retry-after
longer than the SDK's 60 s cap is still honoured. `groq` is imported on first use only, so
the headless path does not pay for it."""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from console import heap
from console.model import Interrupted, InterruptionType, PermanentFailure
from console.pacer import Pacer
from console.settings import Settings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from groq import AsyncGroq

NO_KEY_MESSAGE = "no Groq API key configured: set GROQ_API_KEY, then resume"
_BEARER = re.compile(r"Bearer\s+\S+", re.IGNORECASE)


def scrub(text: str, key: str | None) -> str:
    """Remove the key (and any Bearer value) from an error text before it is stored, logged
    or printed: transports quote request headers in their errors (e.g. an illegal header)."""
    if key:
        for form in {key, key.strip(), repr(key)[1:-1], repr(key.encode())[2:-1]}:
            if form:
                text = text.replace(form, "[key]")
    return _BEARER.sub("Bearer [key]", text)


def scrubbed(e: Exception, key: str | None) -> Exception:
    """The same outcome as `e`, with its text scrubbed of the key."""
    if isinstance(e, Interrupted):
        return Interrupted(scrub(e.message, key), e.type, retry_at=e.retry_at)
    return type(e)(scrub(str(e), key))


@dataclass
class ProviderState:
    """What the status bar shows: online, no key, rate limited until …, unreachable, key rejected."""

    status: str = "unknown"
    until: float | None = None
    message: str = ""
    changed_at: float = field(default_factory=time.time)

    def describe(self) -> str:
        if self.status == "rate limited" and self.until:
            return f"rate limited until {time.strftime('%H:%M:%S', time.localtime(self.until))}"
        return self.status


@dataclass
class ChatResult:
    content: str
    usage: dict[str, int]
    ms: float
    model: str


def retry_after(headers: Any) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        import email.utils  # an HTTP date here is rare: not imported at every start

        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _api_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(e, "message", "") or e)


def classify(e: BaseException, timeout_s: float) -> Exception:
    """Map an SDK exception to Interrupted (resumable) or PermanentFailure."""
    import groq

    if isinstance(e, groq.RateLimitError):
        wait = retry_after(e.response.headers)
        retry_at = time.time() + wait if wait is not None else None
        return Interrupted("rate limited by Groq" + (f" (retry after {wait:g} s)" if wait is not None else ""),
                           InterruptionType.RATE_LIMITED, retry_at=retry_at)
    if isinstance(e, (groq.AuthenticationError, groq.PermissionDeniedError)):
        return PermanentFailure(f"Groq rejected the API key (HTTP {e.status_code}): "
                                "set a valid GROQ_API_KEY and resume")
    if isinstance(e, groq.APITimeoutError):  # a subclass of APIConnectionError: first
        import httpx

        # the aiohttp transport reports a refused connection as a connect time-out
        if isinstance(e.__cause__, httpx.ConnectTimeout):
            return Interrupted(f"cannot reach Groq: {e.__cause__}", InterruptionType.TRANSIENT)
        return Interrupted(f"Groq did not answer within {timeout_s:g} s", InterruptionType.TRANSIENT)
    if isinstance(e, groq.APIConnectionError):
        return Interrupted(f"cannot reach Groq: {e.__cause__ or e}", InterruptionType.TRANSIENT)
    if isinstance(e, groq.APIStatusError):
        if e.status_code >= 500 or e.status_code in (408, 409):
            return Interrupted(f"Groq error {e.status_code}: {_api_message(e)}", InterruptionType.TRANSIENT)
        return PermanentFailure(f"Groq refused the request (HTTP {e.status_code}): {_api_message(e)}")
    # A 200 whose body is not what the API promises (not JSON, missing fields): retried as an
    # error, so it ends as `failed` after max_attempts instead of looping for ever.
    return Interrupted(f"malformed answer from Groq: {type(e).__name__}: {e}", InterruptionType.ERROR)


class GroqGateway:
    def __init__(self, settings: Settings, on_state: Callable[[ProviderState], None] | None = None):
        self._settings = settings
        key = settings.groq_api_key.get_secret_value() if settings.groq_api_key else None
        self._key: str | None = key or None
        self._client: AsyncGroq | None = None
        self._client_lock = asyncio.Lock()
        self._limit = asyncio.Semaphore(settings.groq.concurrency)
        self._on_state = on_state
        self.state = ProviderState("online" if self._key else "no key")
        self.in_flight = 0
        self.responses = Pacer()  # see _paced_response

    @property
    def available(self) -> bool:
        return self._key is not None

    async def set_api_key(self, key: str | None) -> None:
        """Replace the key (kept in memory only); the next request uses a new client."""
        old, self._client = self._client, None
        self._key = key or None
        self._set_state("online" if self._key else "no key")
        if old is not None:
            await old.close()

    def _set_state(self, status: str, until: float | None = None, message: str = "") -> None:
        if (status, until) == (self.state.status, self.state.until):
            return
        self.state = ProviderState(status, until, message)
        if self._on_state is not None:
            self._on_state(self.state)

    def _make_client(self) -> AsyncGroq:
        import httpx
        from groq import AsyncGroq, DefaultAioHttpClient, DefaultAsyncHttpxClient

        cfg = self._settings.groq
        # The pool holds as many connections as we allow requests in flight (the SDK's
        # default caps at 100), all kept alive for reuse.
        limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
        client_class = DefaultAioHttpClient if cfg.transport == "aiohttp" else DefaultAsyncHttpxClient
        http_client = client_class(limits=limits, event_hooks={"response": [self._paced_response]})
        client = AsyncGroq(api_key=self._key, base_url=self._settings.groq_base_url or None,
                           timeout=cfg.timeout_s, max_retries=0, http_client=http_client)
        # The SDK imports each resource (and builds its models) on first access: here, in
        # this worker thread, rather than on the loop at the first request (~50 ms there).
        client.chat.completions, client.audio.transcriptions, client.audio.speech  # noqa: B018
        _warm_models()
        return client

    async def _paced_response(self, response: Any) -> None:
        """httpx calls this once a response's headers are in, before its body is read: what
        follows (the SDK reading and parsing it, the caller's handling up to its next wait) is
        a slice of CPU, ~1.5 ms for a chat reply. Replies that arrive together (200 requests
        sent in one burst come back in one) took theirs back to back, 20 or more in one turn of
        the loop (~30 ms late heartbeats); through the pacer they go one per turn."""
        await self.responses.turn()

    async def _call(self, fn: Callable[[AsyncGroq], Any]) -> tuple[Any, float]:
        if self._key is None:
            self._set_state("no key")
            raise Interrupted(NO_KEY_MESSAGE, InterruptionType.NO_PROVIDER)
        client = self._client
        if client is None:
            # One client for a first burst too (without the lock, every call that arrived
            # before the first client existed built its own). Building it loads the CA
            # bundle (~0.1 s), so that happens in a worker thread, off the loop.
            async with self._client_lock:
                if self._client is None:
                    await _import_groq()
                    self._client = await asyncio.to_thread(self._make_client)
                    heap.resettle()  # what the client's warm-up imported and built
                client = self._client
        async with self._limit:
            self.in_flight += 1
            t0 = time.perf_counter()
            try:
                result = await fn(client)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - every SDK error becomes an outcome
                mapped = scrubbed(classify(e, self._settings.groq.timeout_s), self._key)
                if isinstance(mapped, Interrupted) and mapped.type is InterruptionType.RATE_LIMITED:
                    self._set_state("rate limited", mapped.retry_at)
                elif isinstance(mapped, PermanentFailure) and "API key" in str(mapped):
                    self._set_state("key rejected")
                elif isinstance(mapped, Interrupted) and mapped.type is InterruptionType.TRANSIENT:
                    self._set_state("unreachable", message=mapped.message)
                raise mapped from None
            finally:
                self.in_flight -= 1
            self._set_state("online")
            return result, (time.perf_counter() - t0) * 1000

    async def chat(self, messages: list[dict[str, str]], model: str, json_mode: bool = False) -> ChatResult:
        async def go(client: AsyncGroq) -> Any:
            if json_mode:
                return await client.chat.completions.create(model=model, messages=messages,  # type: ignore[arg-type]
                                                            response_format={"type": "json_object"})
            return await client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]

        completion, ms = await self._call(go)
        try:
            content = completion.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError) as e:
            raise Interrupted(f"malformed answer from Groq: {e}", InterruptionType.ERROR) from None
        usage = {}
        if getattr(completion, "usage", None) is not None:
            usage = {"prompt_tokens": completion.usage.prompt_tokens or 0,
                     "completion_tokens": completion.usage.completion_tokens or 0}
        return ChatResult(content, usage, ms, getattr(completion, "model", model) or model)

    async def transcribe(self, audio: bytes, filename: str, model: str) -> tuple[str, float]:
        async def go(client: AsyncGroq) -> Any:
            return await client.audio.transcriptions.create(model=model, file=(filename, audio))

        result, ms = await self._call(go)
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise Interrupted("malformed answer from Groq: no transcript text", InterruptionType.ERROR)
        return text, ms

    async def speak(self, text: str, model: str, voice: str) -> tuple[bytes, float]:
        async def go(client: AsyncGroq) -> bytes:
            response = await client.audio.speech.create(model=model, voice=voice, input=text,
                                                        response_format="wav")
            return await response.read()

        audio, ms = await self._call(go)
        if not audio.startswith(b"RIFF"):  # the SDK passes any body through as bytes
            raise Interrupted("malformed answer from Groq: the speech is not a WAV file", InterruptionType.ERROR)
        return audio, ms

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _warm_models() -> None:
    """The SDK builds an answer's model from its JSON through caches it fills on first use
    (type hints, field tables): ~0.1 s on the loop at the first reply. Filled here instead,
    in the worker thread, by building answers of the shapes we ask for the way the SDK builds
    them (`model_construct`, pydantic's public constructor, which the SDK's models override)."""
    try:
        from groq.types.audio import Transcription
        from groq.types.chat import ChatCompletion

        ChatCompletion.model_construct(
            id="warm", object="chat.completion", created=0, model="warm",
            choices=[{"index": 0, "finish_reason": "stop", "logprobs": None,
                      "message": {"role": "assistant", "content": "ok"}}],
            usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})
        Transcription.model_construct(text="ok")
    except Exception:  # noqa: BLE001 - a warm-up only
        log.debug("warming the SDK's models failed", exc_info=True)


_import_lock: asyncio.Lock | None = None
_groq_imported = False


async def _import_groq() -> None:
    """Import the SDK (~0.3 s of module loading) in a worker thread the first time, so the
    loop keeps running meanwhile; the headless path never pays for it unless voice work runs.
    A flag, not `sys.modules`, says when it is done: the module shows up there half-built
    while the thread is still importing, and touching it then would block on the import lock."""
    global _import_lock, _groq_imported
    if _groq_imported:
        return
    if _import_lock is None:
        _import_lock = asyncio.Lock()
    async with _import_lock:
        if not _groq_imported:
            await asyncio.to_thread(importlib.import_module, "groq")
            _groq_imported = True
            heap.resettle()
