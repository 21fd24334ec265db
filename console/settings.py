"""Settings: defaults < config TOML < .env < environment < command-line flags.

The config TOML is the bundled `switchboard.toml` (`config/` in a checkout, shipped in the
package as `console.config`), or `--config PATH`, env `SWITCHBOARD_CONFIG`. Environment variables are `SWITCHBOARD_<NAME>` with `__`
between nested names, e.g. `SWITCHBOARD_ENGINE__MAX_CONCURRENT=8`.

Every setting is declared once, in the `_Field` tables below. From them come the plain
objects the program reads (`Settings`, `EngineSettings`, ...: attributes, `model_copy`)
and, when needed, pydantic-settings models that read `.env` and the environment, convert
values ("8" → 8) and word the errors. pydantic and pydantic-settings cost ~0.2 s to import
and build, a good part of a `switchboard run`'s start, so the common case does without them:
with no `SWITCHBOARD_*` variable, no `.env` file and every value already of its type and
valid, the values are checked against the same tables by `console.compat.plain_settings`
(held to pydantic-settings by tests/test_settings.py). Anything else goes through
pydantic-settings.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from console import compat
from console.bundled import default_config
from console.listen import parse_listen
from console.model import POOL_SIZE_MAX, UserError

_config_file: ContextVar[Path | None] = ContextVar("_config_file", default=None)


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "switchboard"


class DatabaseUrl(str):
    """`db` given as a server database's URL (postgresql://...), kept as it was written: a
    path's rules (~ expanded, folders created) do not apply to it."""

    def expanduser(self) -> DatabaseUrl:
        return self

    def exists(self) -> bool:
        """True: a server database is not looked for on this machine; opening it reaches the
        server (StoreUnavailable, one line, if it cannot)."""
        return True


def database_location(text: str) -> Path | DatabaseUrl:
    """`db` as written: a server URL stays text, anything else is a file's path."""
    from console.store import is_server_url

    return DatabaseUrl(text) if is_server_url(text) else Path(text)


class SecretStr:
    """A secret (an API key, a token): shown as '**********', given by get_secret_value()."""

    __slots__ = ("_secret_value",)

    def __init__(self, value: str):
        self._secret_value = value

    def get_secret_value(self) -> str:
        return self._secret_value

    def __str__(self) -> str:
        return "**********" if self._secret_value else ""

    def __repr__(self) -> str:
        return f"SecretStr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._secret_value == self._secret_value

    def __hash__(self) -> int:
        return hash(self._secret_value)

    def __len__(self) -> int:
        return len(self._secret_value)


# -- the declarations ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    """One setting. `kind`: int, float, str, bool, choice (one of `choices`), pools
    (name → int), keymap (name → str), path? / str? / secret? (or None), db? (a path or a
    server database's URL, or None)."""

    kind: str
    default: Any = None
    factory: Callable[[], Any] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    before: Callable[[Any], Any] | None = None  # applied to the input first (both paths)
    check: Callable[[Any], Any] | None = None  # raises ValueError (the message shown)

    def make_default(self) -> Any:
        return self.factory() if self.factory is not None else self.default


def _pools_positive(v: dict[str, int]) -> dict[str, int]:
    for name, size in v.items():
        if not 0 <= size <= POOL_SIZE_MAX:
            raise ValueError(f"pool {name!r}: size must be from 0 to {POOL_SIZE_MAX}, not {size}")
    return v


def _upper(v: Any) -> Any:
    return v.upper() if isinstance(v, str) else v


def _listen(v: str | None) -> str | None:
    if v is not None:
        parse_listen(v)  # raises ValueError naming the mistake
    return v


def _token(v: Any) -> Any:
    text = v.get_secret_value() if v is not None else None
    if text is not None and (not 16 <= len(text) <= 1000 or text.strip() != text):
        raise ValueError("the token must be 16 to 1000 characters, without spaces around it")
    return v


def _api_key(v: Any) -> Any:
    text = v.get_secret_value() if v is not None else None
    if text and not all(33 <= ord(c) < 127 for c in text):
        # never the value: it is a secret, and a bad one is often a real key with a newline
        raise ValueError("the Groq API key (GROQ_API_KEY) has spaces, control or non-ASCII characters")
    return v


_ENGINE = {
    "max_concurrent": _Field("int", 5, ge=1, le=10_000),
    # Pool name -> size. A workflow's [resources] table overrides these per database.
    "resources": _Field("pools", factory=lambda: {"cpu_intensive": 2, "memory_intensive": 2, "io_intensive": 3},
                        check=_pools_positive),
    "shutdown_grace_s": _Field("float", 0.5, ge=0, le=600),
    "cancel_grace_s": _Field("float", 2.0, ge=0, le=600),  # SIGTERM -> SIGKILL for shell work
    "max_log_lines": _Field("int", 10_000, ge=2, le=10_000_000),  # a shell command's log, per run
    "retry_base_s": _Field("float", 1.0, gt=0, le=3600),
    "retry_max_s": _Field("float", 300.0, gt=0, le=86_400),
    "history_retention_hours": _Field("float", 24.0, gt=0, le=87_600),  # ten years
    # How often the owner looks for changes other processes made (CLI commands).
    "external_poll_s": _Field("float", 0.2, gt=0, le=1.0),
    # An owner that has not renewed its claim for this long is considered dead.
    "lease_ttl_s": _Field("float", 10.0, ge=1, le=3600),
}
_STORE = {
    # NORMAL survives a crash of the program; FULL also survives power loss.
    "synchronous": _Field("choice", "NORMAL", choices=("NORMAL", "FULL"), before=_upper),
    "busy_timeout_ms": _Field("int", 5000, ge=0, le=3_600_000),
}
_GROQ = {
    "timeout_s": _Field("float", 30.0, gt=0, le=600),
    # Requests in flight at once. 200 at once through one pool stalls the loop (FACTS.md).
    "concurrency": _Field("int", 32, ge=1, le=1000),
    # aiohttp: faster and kinder to the loop than httpx at high concurrency.
    "transport": _Field("choice", "aiohttp", choices=("aiohttp", "httpx")),
}
_VOICE = {
    "stt_model": _Field("str", "whisper-large-v3-turbo"),
    "chat_model": _Field("str", "llama-3.3-70b-versatile"),
    "system_prompt": _Field("str", (
        "You are the voice assistant of a contact centre. Answer the caller in one or two short, "
        "friendly sentences. If you cannot help, offer to transfer them to an agent."
    )),
    "context_turns": _Field("int", 20, ge=0, le=500),  # earlier turns of the call sent as context
    "speech": _Field("bool", False),  # text-to-speech of the reply, to a WAV file in the data dir
    "tts_model": _Field("str", "playai-tts"),
    "tts_voice": _Field("str", "Fritz-PlayAI"),
    "max_audio_mb": _Field("float", 25.0, gt=0, le=1024),
}
_TRANSFER = {
    "summary_model": _Field("str", "llama-3.3-70b-versatile"),
    # When the LLM cannot be reached: "extractive" still gets the transfer ready with a
    # summary computed locally from the transcript; "none" waits for the LLM.
    "summary_fallback": _Field("choice", "extractive", choices=("extractive", "none")),
    # A transfer waits for the call's in-flight voice requests to reach this progress:
    # 50 = their transcript is saved (what the caller said), 100 = the AI reply too.
    "wait_for_voice_percent": _Field("float", 50.0, gt=0, le=100),
}
_INTAKE = {
    # HOST:PORT for the HTTP intake (`--listen`); None: no intake. 127.0.0.1 by default: any
    # other address needs a token.
    "listen": _Field("str?", None, check=_listen),
    # Bearer token the front end sends (env SWITCHBOARD_INTAKE__TOKEN; never in config files).
    "token": _Field("secret?", None, check=_token),
    # The largest request body, except an audio upload (which may be voice.max_audio_mb).
    "max_body_bytes": _Field("int", 65_536, ge=1024, le=16 * 1024 * 1024),
    # POST /ai-voice waits this long for the reply, then answers with the state it has.
    "voice_wait_timeout_s": _Field("float", 20.0, gt=0, le=600),
    # Requests still being answered get this long at shutdown.
    "shutdown_grace_s": _Field("float", 2.0, ge=0, le=60),
}
_TUI = {
    "theme": _Field("str", "switchboard-dark"),
    # binding id -> keys, e.g. { resume = "ctrl+r" } (see `?` in the console for the ids)
    "keymap": _Field("keymap", factory=dict),
}
_TOP = {
    "db": _Field("db?"),  # a file (default: <user data dir>/switchboard.db) or a postgresql:// URL
    "data_dir": _Field("path?"),  # default: <user data dir>
    # The Groq SDK's own variables. The key is a secret: never printed, logged or stored.
    "groq_api_key": _Field("secret?", check=_api_key),
    "groq_base_url": _Field("str?"),
}
# Read from these environment variables (any case), not SWITCHBOARD_*.
_ALIASES = {"groq_api_key": "GROQ_API_KEY", "groq_base_url": "GROQ_BASE_URL"}
# The environment variables the common case reads itself; any other SWITCHBOARD_* variable
# goes through pydantic-settings.
_PLAIN_ENV = {**{alias.lower(): name for name, alias in _ALIASES.items()},
              "switchboard_db": "db", "switchboard_data_dir": "data_dir"}


# -- the objects the program reads ------------------------------------------------------------------

class _Section:
    """Settings values as attributes. `model_copy(update=...)` as with pydantic models: a
    copy with some values replaced, not checked again."""

    _fields: ClassVar[dict[str, _Field]] = {}
    model_fields: ClassVar[dict[str, _Field]] = {}

    def __init__(self, **values: Any):
        for name, f in self._fields.items():
            setattr(self, name, values[name] if name in values else f.make_default())

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any:
        new = copy.deepcopy(self) if deep else copy.copy(self)
        for name, value in (update or {}).items():
            setattr(new, name, value)
        return new

    def model_dump(self) -> dict[str, Any]:
        return {name: (v.model_dump() if isinstance(v, _Section) else v)
                for name, v in ((n, getattr(self, n)) for n in self._fields)}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)})"


def _section(name: str, fields: dict[str, _Field]) -> type[_Section]:
    return type(name, (_Section,), {"_fields": fields, "model_fields": fields, "__module__": __name__})


EngineSettings = _section("EngineSettings", _ENGINE)
StoreSettings = _section("StoreSettings", _STORE)
GroqSettings = _section("GroqSettings", _GROQ)
VoiceSettings = _section("VoiceSettings", _VOICE)
TransferSettings = _section("TransferSettings", _TRANSFER)
IntakeSettings = _section("IntakeSettings", _INTAKE)
TuiSettings = _section("TuiSettings", _TUI)

_SECTIONS: dict[str, type[_Section]] = {
    "engine": EngineSettings, "store": StoreSettings, "groq": GroqSettings, "voice": VoiceSettings,
    "transfer": TransferSettings, "intake": IntakeSettings, "tui": TuiSettings,
}


class Settings(_Section):
    _fields = {**_TOP, **{name: _Field("section", factory=cls) for name, cls in _SECTIONS.items()}}
    model_fields = _fields

    db: Path | DatabaseUrl | None
    data_dir: Path | None
    engine: Any
    store: Any
    groq: Any
    voice: Any
    transfer: Any
    intake: Any
    tui: Any
    groq_api_key: SecretStr | None
    groq_base_url: str | None

    @property
    def db_path(self) -> Path | DatabaseUrl:
        return (self.db or (self.resolved_data_dir / "switchboard.db")).expanduser()

    @property
    def resolved_data_dir(self) -> Path:
        return (self.data_dir or user_data_dir()).expanduser()


# -- without pydantic (the common case: console.compat) ---------------------------------------------------

def _environment_values() -> dict[str, Any] | None:
    """What the environment sets, if pydantic-settings need not read it (see
    compat.plain_environment)."""
    return compat.plain_environment(_PLAIN_ENV)


def _settings_without_pydantic(toml: dict[str, Any], init: dict[str, Any]) -> Settings | None:
    env = _environment_values()
    if env is None or not set(init) <= Settings._fields.keys():
        return None
    values = compat.plain_settings(compat.deep_update(toml, env, init), Settings._fields, _SECTIONS, SecretStr)
    return None if values is None else Settings(**values)


# -- pydantic-settings (the general case) ---------------------------------------------------------------

_pydantic_settings: Any = None


def _pydantic_model() -> Any:
    """The pydantic-settings model of the same declarations, made on first use."""
    global _pydantic_settings
    if _pydantic_settings is not None:
        return _pydantic_settings
    from typing import Literal, Optional

    import pydantic
    from pydantic import AliasChoices, ConfigDict, Field, create_model, field_validator
    from pydantic_settings import (
        BaseSettings,
        PydanticBaseSettingsSource,
        SettingsConfigDict,
        TomlConfigSettingsSource,
    )

    def annotation(f: _Field) -> Any:
        return {
            "int": int, "float": float, "str": str, "bool": bool, "pools": dict[str, int],
            "keymap": dict[str, str], "path?": Optional[Path], "str?": Optional[str],
            "secret?": Optional[pydantic.SecretStr], "db?": Optional[str],
        }.get(f.kind) or Literal[f.choices]  # type: ignore[valid-type]

    def field(f: _Field, **extra: Any) -> Any:
        limits = {k: getattr(f, k) for k in ("ge", "gt", "le") if getattr(f, k) is not None}
        if f.factory is not None:
            return Field(default_factory=f.factory, **limits, **extra)
        return Field(f.default, **limits, **extra)

    def validators(fields: dict[str, _Field]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, f in fields.items():
            if f.before is not None:
                out[f"before_{name}"] = field_validator(name, mode="before")(
                    lambda cls, v, fn=f.before: fn(v))
            if f.check is not None:
                out[f"check_{name}"] = field_validator(name)(lambda cls, v, fn=f.check: fn(v))
            if f.kind == "db?":  # validated as text (a path given as Path too), then told apart
                out[f"before_{name}"] = field_validator(name, mode="before")(
                    lambda cls, v: str(v) if isinstance(v, Path) else v)
                out[f"location_{name}"] = field_validator(name)(
                    lambda cls, v: database_location(v) if v is not None else None)
        return out

    def model(name: str, fields: dict[str, _Field]) -> Any:
        return create_model(name, __config__=ConfigDict(extra="forbid"), __validators__=validators(fields),
                            **{n: (annotation(f), field(f)) for n, f in fields.items()})

    sections = {name: model(cls.__name__, cls._fields) for name, cls in _SECTIONS.items()}

    class _Base(BaseSettings):
        model_config = SettingsConfigDict(
            env_prefix="SWITCHBOARD_",
            env_nested_delimiter="__",
            env_file=".env",
            extra="ignore",  # .env may hold other programs' variables; TOML keys are checked below
            validate_default=True,
        )

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
            path = _config_file.get()
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    top: dict[str, Any] = {}
    for name, f in _TOP.items():
        alias = _ALIASES.get(name)
        extra = {"validation_alias": AliasChoices(alias, name)} if alias else {}
        top[name] = (annotation(f), field(f, **extra))
    for name, section in sections.items():
        top[name] = (section, Field(default_factory=section))
    _pydantic_settings = create_model("Settings", __base__=_Base, __validators__=validators(_TOP), **top)
    return _pydantic_settings


def _from_model(m: Any) -> Settings:
    """The plain objects for what the pydantic model validated."""
    def plain(v: Any) -> Any:
        secret = getattr(v, "get_secret_value", None)
        return SecretStr(secret()) if secret is not None else v

    values: dict[str, Any] = {name: plain(getattr(m, name)) for name in _TOP}
    for name, cls in _SECTIONS.items():
        section = getattr(m, name)
        values[name] = cls(**{n: plain(getattr(section, n)) for n in cls._fields})
    return Settings(**values)


# -- loading ------------------------------------------------------------------------------------------

def _check_toml(path: Path) -> dict[str, Any]:
    """Unknown keys in our own config file are mistakes worth naming (env may hold anything).
    Returns what the file says."""
    from console.limits import loads_toml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read config file: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    data = loads_toml(text, str(path))
    for key, value in data.items():
        if key == "groq_api_key":
            raise UserError(f"{path}: keep groq_api_key out of config files; set GROQ_API_KEY "
                            "in the environment or in .env")
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise UserError(f"{path}: [{key}] must be a table")
            if key == "intake" and "token" in value:
                raise UserError(f"{path}: keep intake.token out of config files; set "
                                "SWITCHBOARD_INTAKE__TOKEN in the environment or in .env")
            for sub in value:
                if sub not in _SECTIONS[key]._fields:
                    raise UserError(f"{path}: unknown setting {key}.{sub}")
        elif key not in Settings._fields:
            raise UserError(f"{path}: unknown setting {key}")
    return data


def _describe(err: Any) -> str:
    first = err.errors()[0]
    name = ".".join(str(p) for p in first["loc"]) or "settings"
    value = first.get("input")
    shown = value if not isinstance(value, (dict, list)) else "…"
    if "api_key" in name.lower() or "token" in name.lower():
        shown = "…"  # never echo a secret
    return f"invalid setting {name}={shown!r}: {first['msg']}"


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings; any mistake becomes a UserError naming the setting and value."""
    if config is None:
        env_config = os.environ.get("SWITCHBOARD_CONFIG")
        config = Path(env_config) if env_config else default_config()
        if config is not None and env_config and not config.exists():
            raise UserError(f"SWITCHBOARD_CONFIG={env_config}: no such file")
    elif not Path(config).exists():
        raise UserError(f"--config {config}: no such file")
    path = Path(config) if config is not None else None
    toml = _check_toml(path) if path is not None else {}
    init = {k: v for k, v in overrides.items() if v is not None}
    fast = _settings_without_pydantic(toml, init)
    if fast is not None:
        return fast
    from pydantic import ValidationError

    token = _config_file.set(path)
    try:
        return _from_model(_pydantic_model()(**init))
    except ValidationError as e:
        raise UserError(_describe(e)) from None
    except RecursionError:  # pydantic-settings decoding a SWITCHBOARD_* variable's JSON
        raise UserError("invalid setting: a value in a SWITCHBOARD_* environment variable (or .env) is "
                        "nested too deeply") from None
    finally:
        _config_file.reset(token)
