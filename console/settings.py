"""Settings: defaults < config TOML < .env < environment < command-line flags.

The config TOML is `config/switchboard.toml` beside the package (or `--config PATH`,
env `SWITCHBOARD_CONFIG`). Environment variables are `SWITCHBOARD_<NAME>` with `__`
between nested names, e.g. `SWITCHBOARD_ENGINE__MAX_CONCURRENT=8`.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from console.model import UserError

PACKAGE_ROOT = Path(__file__).resolve().parent
# The repository (or sdist) root: config/ and themes/ live beside the package.
PROJECT_ROOT = PACKAGE_ROOT.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "switchboard.toml"

_config_file: ContextVar[Path | None] = ContextVar("_config_file", default=None)


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "switchboard"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineSettings(_Section):
    max_concurrent: int = Field(5, ge=1, le=10_000)
    # Pool name -> size. A workflow's [resources] table overrides these per database.
    resources: dict[str, int] = Field(
        default_factory=lambda: {"cpu_intensive": 2, "memory_intensive": 2, "io_intensive": 3}
    )
    shutdown_grace_s: float = Field(0.5, ge=0, le=600)
    cancel_grace_s: float = Field(2.0, ge=0, le=600)  # SIGTERM -> SIGKILL for shell work
    retry_base_s: float = Field(1.0, gt=0, le=3600)
    retry_max_s: float = Field(300.0, gt=0, le=86_400)
    history_retention_hours: float = Field(24.0, gt=0)
    # How often the owner looks for changes other processes made (CLI commands).
    external_poll_s: float = Field(0.2, gt=0, le=1.0)
    # An owner that has not renewed its claim for this long is considered dead.
    lease_ttl_s: float = Field(10.0, ge=1, le=3600)

    @field_validator("resources")
    @classmethod
    def _pools_positive(cls, v: dict[str, int]) -> dict[str, int]:
        for name, size in v.items():
            if size < 0:
                raise ValueError(f"pool {name!r} has a negative size {size}")
        return v


class StoreSettings(_Section):
    # NORMAL survives a crash of the program; FULL also survives power loss.
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_timeout_ms: int = Field(5000, ge=0)

    @field_validator("synchronous", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class GroqSettings(_Section):
    timeout_s: float = Field(30.0, gt=0, le=600)
    # Requests in flight at once. 200 at once through one pool stalls the loop (FACTS.md).
    concurrency: int = Field(32, ge=1, le=1000)
    # aiohttp: measured faster and kinder to the loop than httpx at high concurrency.
    transport: Literal["aiohttp", "httpx"] = "aiohttp"


class VoiceSettings(_Section):
    stt_model: str = "whisper-large-v3-turbo"
    chat_model: str = "llama-3.3-70b-versatile"
    system_prompt: str = (
        "You are the voice assistant of a contact centre. Answer the caller in one or two short, "
        "friendly sentences. If you cannot help, offer to transfer them to an agent."
    )
    context_turns: int = Field(20, ge=0, le=500)  # earlier turns of the call sent as context
    speech: bool = False  # text-to-speech of the reply, to a WAV file in the data dir
    tts_model: str = "playai-tts"
    tts_voice: str = "Fritz-PlayAI"
    max_audio_mb: float = Field(25.0, gt=0)


class TransferSettings(_Section):
    summary_model: str = "llama-3.3-70b-versatile"
    # When the LLM cannot be reached: "extractive" still gets the transfer ready with a
    # summary computed locally from the transcript; "none" waits for the LLM.
    summary_fallback: Literal["extractive", "none"] = "extractive"
    # A transfer waits for the call's in-flight voice requests to reach this progress:
    # 50 = their transcript is saved (what the caller said), 100 = the AI reply too.
    wait_for_voice_percent: float = Field(50.0, gt=0, le=100)


class IntakeSettings(_Section):
    # HOST:PORT for the HTTP intake (`--listen`); None: no intake. 127.0.0.1 by default: any
    # other address needs a token.
    listen: str | None = None
    # Bearer token the front end sends (env SWITCHBOARD_INTAKE__TOKEN; never in config files).
    token: SecretStr | None = None
    # The largest request body, except an audio upload (which may be voice.max_audio_mb).
    max_body_bytes: int = Field(65_536, ge=1024, le=16 * 1024 * 1024)
    # POST /ai-voice waits this long for the reply, then answers with the state it has.
    voice_wait_timeout_s: float = Field(20.0, gt=0, le=600)
    # Requests still being answered get this long at shutdown.
    shutdown_grace_s: float = Field(2.0, ge=0, le=60)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            from console.intake.listen import parse_listen

            parse_listen(v)  # raises ValueError naming the mistake
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        text = v.get_secret_value() if v is not None else None
        if text is not None and (not 16 <= len(text) <= 1000 or text.strip() != text):
            raise ValueError("the token must be 16 to 1000 characters, without spaces around it")
        return v


class TuiSettings(_Section):
    theme: str = "switchboard-dark"
    # binding id -> keys, e.g. { resume = "ctrl+r" } (see `?` in the console for the ids)
    keymap: dict[str, str] = Field(default_factory=dict)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",  # .env may hold other programs' variables; TOML keys are checked below
        validate_default=True,
    )

    db: Path | None = None  # default: <user data dir>/switchboard.db
    data_dir: Path | None = None  # default: <user data dir>
    engine: EngineSettings = Field(default_factory=EngineSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    groq: GroqSettings = Field(default_factory=GroqSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    transfer: TransferSettings = Field(default_factory=TransferSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    tui: TuiSettings = Field(default_factory=TuiSettings)
    # The Groq SDK's own variables. The key is a secret: never printed, logged or stored.
    groq_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("GROQ_API_KEY", "groq_api_key"))
    groq_base_url: str | None = Field(None, validation_alias=AliasChoices("GROQ_BASE_URL", "groq_base_url"))

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

    @property
    def db_path(self) -> Path:
        return (self.db or (self.resolved_data_dir / "switchboard.db")).expanduser()

    @property
    def resolved_data_dir(self) -> Path:
        return (self.data_dir or user_data_dir()).expanduser()


def _check_toml(path: Path) -> None:
    """Unknown keys in our own config file are mistakes worth naming (env may hold anything)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"{path}: cannot read config file: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    sections = {"engine": EngineSettings, "store": StoreSettings, "groq": GroqSettings,
                "voice": VoiceSettings, "transfer": TransferSettings, "tui": TuiSettings,
                "intake": IntakeSettings}
    for key, value in data.items():
        if key == "groq_api_key":
            raise UserError(f"{path}: keep groq_api_key out of config files; set GROQ_API_KEY "
                            "in the environment or in .env")
        if key in sections:
            if not isinstance(value, dict):
                raise UserError(f"{path}: [{key}] must be a table")
            if key == "intake" and "token" in value:
                raise UserError(f"{path}: keep intake.token out of config files; set "
                                "SWITCHBOARD_INTAKE__TOKEN in the environment or in .env")
            for sub in value:
                if sub not in sections[key].model_fields:
                    raise UserError(f"{path}: unknown setting {key}.{sub}")
        elif key not in Settings.model_fields:
            raise UserError(f"{path}: unknown setting {key}")


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    name = ".".join(str(p) for p in first["loc"]) or "settings"
    value = first.get("input")
    shown = value if not isinstance(value, (dict, list)) else "…"
    if "api_key" in name or "token" in name:
        shown = "…"  # never echo a secret
    return f"invalid setting {name}={shown!r}: {first['msg']}"


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings; any mistake becomes a UserError naming the setting and value."""
    if config is None:
        env_config = os.environ.get("SWITCHBOARD_CONFIG")
        config = Path(env_config) if env_config else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
        if config is not None and env_config and not config.exists():
            raise UserError(f"SWITCHBOARD_CONFIG={env_config}: no such file")
    elif not Path(config).exists():
        raise UserError(f"--config {config}: no such file")
    path = Path(config) if config is not None else None
    if path is not None:
        _check_toml(path)
    token = _config_file.set(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        raise UserError(_describe(e)) from None
    finally:
        _config_file.reset(token)
