"""Settings are read without pydantic when nothing needs converting, and then are exactly
what pydantic-settings makes of the same sources; anything else still goes through it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from console import settings as S
from console.model import UserError

ROOT = Path(__file__).resolve().parent.parent


def through_pydantic(config: Path | None, **init):
    token = S._config_file.set(config)
    try:
        return S._from_model(S._pydantic_model()(**{k: v for k, v in init.items() if v is not None}))
    finally:
        S._config_file.reset(token)


def typed(s: S.Settings) -> dict:
    out = {}
    for name in S.Settings._fields:
        v = getattr(s, name)
        if isinstance(v, S._Section):
            for sub in type(v)._fields:
                x = getattr(v, sub)
                out[f"{name}.{sub}"] = (type(x).__name__, x)
        else:
            out[name] = (type(v).__name__, v)
    return out


scalars = st.one_of(st.integers(-3, 20_000), st.floats(allow_nan=False, allow_infinity=True, width=32),
                    st.booleans(), st.sampled_from(["", "full", "NORMAL", "httpx", "none", "x", "8", "127.0.0.1:0",
                                                    "tok" * 8, "~/db"]))
def good(f: S._Field):
    """Values of the field's own type, mostly within its limits (and a few just outside)."""
    lo = f.ge if f.ge is not None else f.gt if f.gt is not None else -5
    hi = f.le if f.le is not None else 10**6
    if f.kind == "int":
        return st.integers(int(lo) - 1, int(hi) + 1)
    if f.kind == "float":
        return st.one_of(st.floats(lo, hi), st.integers(int(lo), int(hi)), st.just(lo), st.just(hi))
    if f.kind == "bool":
        return st.booleans()
    if f.kind == "choice":
        return st.sampled_from([*f.choices, *(c.lower() for c in f.choices)])
    if f.kind == "pools":
        return st.dictionaries(st.sampled_from(["a", "cpu_intensive"]), st.integers(-1, 3))
    if f.kind == "keymap":
        return st.dictionaries(st.sampled_from(["resume", "quit"]), st.sampled_from(["x", "ctrl+r"]))
    if f.kind == "str?" and f.check is not None:
        return st.sampled_from(["127.0.0.1:0", "[::1]:8040", "localhost:1", "nope"])
    return st.text(st.characters(min_codepoint=32, max_codepoint=0x2fff, blacklist_categories=("Cs",)), max_size=5)


def value(f: S._Field):
    return st.integers(0, 9).flatmap(lambda n: scalars if n == 0 else good(f))


section_values = st.fixed_dictionaries({}, optional={
    f"{section}.{name}": value(f)
    for section, cls in S._SECTIONS.items() for name, f in cls._fields.items() if f.kind != "secret?"
})


def nest(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        section, name = key.split(".")
        out.setdefault(section, {})[name] = value
    return out


def toml_text(data: dict) -> str:
    import json

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v) if isinstance(v, str) else str(v)

    return "".join(f"[{section}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in fields.items())
                   for section, fields in data.items())


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section_values, section_values)
def test_without_pydantic_is_what_pydantic_settings_makes(tmp_path_factory, in_file, in_flags):
    folder = tmp_path_factory.mktemp("cfg")
    config = folder / "c.toml"
    config.write_text(toml_text(nest(in_file)))
    init = nest(in_flags)
    try:
        toml = S._check_toml(config)
    except UserError:
        return
    fast = S._settings_without_pydantic(toml, init)
    if fast is None:
        return
    assert typed(fast) == typed(through_pydantic(config, **init))


def test_the_shipped_config_needs_no_pydantic():
    toml = S._check_toml(S.default_config())
    fast = S._settings_without_pydantic(toml, {"db": Path("x.db"), "engine": {"max_concurrent": 3}})
    assert fast is not None
    assert typed(fast) == typed(through_pydantic(S.default_config(), db=Path("x.db"), engine={"max_concurrent": 3}))


def test_what_needs_pydantic_settings_goes_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert S._environment_values() == {}
    monkeypatch.setenv("GROQ_API_KEY", "gsk_1")
    assert S._environment_values() == {"groq_api_key": "gsk_1"}
    s = S.load_settings(None)
    assert isinstance(s.groq_api_key, S.SecretStr) and s.groq_api_key.get_secret_value() == "gsk_1"
    assert "gsk_1" not in repr(s) and str(s.groq_api_key) == "**********"
    monkeypatch.setenv("groq_api_key", "gsk_2")  # the same setting spelt twice
    assert S._environment_values() is None
    monkeypatch.delenv("groq_api_key")
    monkeypatch.setenv("SWITCHBOARD_DB", str(tmp_path / "env.db"))
    monkeypatch.setenv("switchboard_data_dir", str(tmp_path / "data"))
    assert S._environment_values() == {"groq_api_key": "gsk_1", "db": str(tmp_path / "env.db"),
                                       "data_dir": str(tmp_path / "data")}
    config = tmp_path / "c.toml"
    config.write_text('db = "toml.db"\n')
    for init in ({}, {"db": tmp_path / "flag.db"}):
        fast = S.load_settings(config, **init)
        assert typed(fast) == typed(through_pydantic(config, **init))
    assert S.load_settings(config).db_path == tmp_path / "env.db"
    assert S.load_settings(config, db=tmp_path / "flag.db").db_path == tmp_path / "flag.db"
    monkeypatch.setenv("SWITCHBOARD_DB", "")  # not a path: pydantic-settings decides
    assert S._settings_without_pydantic({}, {}) is None
    monkeypatch.delenv("SWITCHBOARD_DB")
    monkeypatch.delenv("switchboard_data_dir")
    monkeypatch.setenv("SWITCHBOARD_VOICE__SPEECH", "yes")
    assert S._environment_values() is None
    assert S.load_settings(None).voice.speech is True
    monkeypatch.delenv("SWITCHBOARD_VOICE__SPEECH")
    (tmp_path / ".env").write_text("SWITCHBOARD_GROQ__CONCURRENCY=4\n")
    assert S._environment_values() is None
    assert S.load_settings(None).groq.concurrency == 4


def test_model_copy_and_sections_behave_like_the_models(tmp_path):
    s = S.load_settings(None, db=tmp_path / "t.db")
    t = s.model_copy(update={"tui": s.tui.model_copy(update={"keymap": {"resume": "x"}})})
    assert t.tui.keymap == {"resume": "x"} and s.tui.keymap == {} and t.engine is s.engine
    assert t.db_path == tmp_path / "t.db" and t != s and s == S.load_settings(None, db=tmp_path / "t.db")
    assert set(S.EngineSettings.model_fields) >= {"max_concurrent", "resources"}
    with pytest.raises(UserError, match=r"invalid setting engine.max_concurrent=0: Input should be greater"):
        S.load_settings(None, engine={"max_concurrent": 0})


def test_switchboard_run_never_imports_pydantic(tmp_path):
    code = ("import sys\nfrom console.cli import main\n"
            f"code = main(['run', '--db', {str(tmp_path / 't.db')!r}, '--until-idle'])\n"
            "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'pydantic_settings'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)})
    assert out.stdout.split("\n")[-2] == "0 []"
