"""Console themes as files (console/tui/themes.py, themes/*.toml)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.color import Color
from textual.theme import BUILTIN_THEMES, Theme
from textual.widgets import Static

from console.tui.themes import (
    COLOUR_KEYS,
    STATE_VARIABLES,
    THEMES_DIR,
    ThemeError,
    load_theme_file,
    load_themes,
    register_themes,
    resolve_theme_name,
    state_variable_defaults,
    user_themes_dir,
)

BUNDLED = ("switchboard-dark", "switchboard-light", "switchboard-high-contrast")
ANSI_THEMES = ("ansi-dark", "ansi-light")
REQUIRED_VARIABLES = (
    "border",
    "border-blurred",
    "footer-key-foreground",
    "footer-description-foreground",
    "block-cursor-background",
    "block-cursor-foreground",
    "input-selection-background",
    *STATE_VARIABLES,
)

GOOD = """\
name = "{name}"
dark = true
primary = "{primary}"
"""


def write(folder: Path, filename: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(text, encoding="utf-8")
    return path


def luminance(colour: str) -> float:
    c = Color.parse(colour)

    def channel(v: int) -> float:
        v = v / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)


def contrast(a: str, b: str) -> float:
    low, high = sorted((luminance(a), luminance(b)))
    return (high + 0.05) / (low + 0.05)


class ThemedApp(App):
    """A minimal app whose CSS uses a custom theme variable."""

    CSS = "#state { color: $state-running; background: $state-pending; }"

    def compose(self) -> ComposeResult:
        yield Static("running", id="state")

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return state_variable_defaults(self.current_theme)


# --- bundled themes ---------------------------------------------------------


def test_bundled_themes_load_without_errors():
    themes, errors = load_themes([THEMES_DIR])
    assert errors == []
    assert sorted(themes) == sorted(BUNDLED)
    assert len({theme.name for theme in themes.values()}) == 3
    assert sorted(p.stem for p in THEMES_DIR.glob("*.toml")) == sorted(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_theme_covers_every_colour(name):
    theme = load_theme_file(THEMES_DIR / f"{name}.toml")
    assert theme.name == name
    for key in COLOUR_KEYS:
        value = getattr(theme, key)
        assert value, f"{name}: {key} not set"
        Color.parse(value)
    for key in REQUIRED_VARIABLES:
        assert key in theme.variables, f"{name}: variable {key} not set"
    for key in STATE_VARIABLES:
        Color.parse(theme.variables[key])
    # State colours are distinguishable from each other...
    assert len({theme.variables[key].lower() for key in STATE_VARIABLES}) == len(STATE_VARIABLES)
    # ...and readable on the background (WCAG AA for text).
    assert contrast(theme.foreground, theme.background) >= 7
    for key in STATE_VARIABLES:
        assert contrast(theme.variables[key], theme.background) >= 4.5, key


def test_dark_is_dark_and_light_is_light():
    themes, _ = load_themes([THEMES_DIR])
    assert themes["switchboard-dark"].dark is True
    assert themes["switchboard-light"].dark is False
    assert themes["switchboard-high-contrast"].dark is True


def test_high_contrast_theme_is_high_contrast():
    theme = load_theme_file(THEMES_DIR / "switchboard-high-contrast.toml")
    assert Color.parse(theme.background) == Color.parse("#000000")
    assert Color.parse(theme.foreground) == Color.parse("#ffffff")
    for key in ("primary", "warning", "error", "success", "accent", "secondary"):
        assert contrast(getattr(theme, key), theme.background) >= 7, key
    for key in STATE_VARIABLES:
        assert contrast(theme.variables[key], theme.background) >= 7, key
    # Borders stay visible, focused or not.
    assert contrast(theme.variables["border"], theme.background) >= 7
    assert contrast(theme.variables["border-blurred"], theme.background) >= 4.5
    assert (
        contrast(theme.variables["block-cursor-foreground"], theme.variables["block-cursor-background"])
        >= 7
    )


def test_default_dirs_are_bundled_then_user(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert user_themes_dir() == tmp_path / "config" / "switchboard" / "themes"
    themes, errors = load_themes()  # user folder does not exist: fine
    assert errors == []
    assert set(BUNDLED) <= set(themes)


def test_user_themes_dir_defaults_to_dot_config(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_themes_dir() == tmp_path / ".config" / "switchboard" / "themes"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")  # XDG: relative paths are ignored
    assert user_themes_dir() == tmp_path / ".config" / "switchboard" / "themes"


# --- registration with Textual -----------------------------------------------


@pytest.mark.parametrize("name", BUNDLED)
async def test_bundled_theme_can_be_made_current(name):
    themes, errors = load_themes([THEMES_DIR])
    assert errors == []
    app = App()
    register_themes(app, themes)
    async with app.run_test() as pilot:
        app.theme = name
        await pilot.pause()
        assert app.theme == name
        assert app.current_theme.name == name
        variables = app.get_css_variables()
        assert variables["state-running"] == themes[name].variables["state-running"]
        assert variables["border"] == themes[name].variables["border"]


async def test_builtin_themes_stay_available():
    themes, _ = load_themes([THEMES_DIR])
    app = App()
    register_themes(app, themes)
    available = app.available_themes
    for name in (*BUNDLED, "textual-dark", "textual-light", *ANSI_THEMES):
        assert name in available, name
    assert set(BUILTIN_THEMES) <= set(available)
    async with app.run_test() as pilot:
        for name in ("switchboard-dark", "ansi-dark", "textual-dark", "ansi-light"):
            app.theme = name
            await pilot.pause()
            assert app.current_theme.name == name


def test_register_themes_accepts_a_list():
    app = App()
    theme = Theme(name="listed", primary="#123456")
    register_themes(app, [theme])
    assert app.available_themes["listed"] is theme


async def test_custom_state_variables_usable_from_css():
    themes, _ = load_themes([THEMES_DIR])
    app = ThemedApp()
    register_themes(app, themes)
    async with app.run_test() as pilot:
        # Our themes define $state-*; Textual's built-ins fall back to the
        # app's get_theme_variable_defaults (state_variable_defaults).
        for name in (*BUNDLED, "textual-dark", "ansi-dark", "ansi-light", "nord"):
            app.theme = name
            await pilot.pause()
            static = app.query_one("#state", Static)
            expected = app.get_css_variables()["state-running"]
            assert static.styles.color == Color.parse(expected), name
            if name in themes:
                assert expected == themes[name].variables["state-running"]


@pytest.mark.parametrize("name", list(BUILTIN_THEMES))
def test_state_defaults_cover_builtin_themes(name):
    defaults = state_variable_defaults(BUILTIN_THEMES[name])
    assert sorted(defaults) == sorted(STATE_VARIABLES)
    for value in defaults.values():
        Color.parse(value)


# --- broken files ------------------------------------------------------------

BROKEN = {
    "bad-colour": ('name = "x"\nprimary = "#12345"\n', "colour 'primary' = \"#12345\" is not a colour"),
    "bad-toml": ('name = "x"\nprimary = \n', "not valid TOML:"),
    "missing-primary": ('name = "x"\nsecondary = "#123456"\n', "missing 'primary'"),
    "unknown-key": ('name = "x"\nprimary = "#123456"\nprimry = "#123456"\n', "unknown key 'primry'"),
    "missing-name": ('primary = "#123456"\n', "missing 'name'"),
    "bad-name": ('name = "a, b"\nprimary = "#123456"\n', "is not a valid theme name"),
    # a name or variable ending in a newline is not a name (a `$` would let the newline pass)
    "name-with-newline": ('name = "x\\n"\nprimary = "#123456"\n', "is not a valid theme name"),
    "variable-with-newline": (
        'name = "x"\nprimary = "#123456"\n[variables]\n"state-running\\n" = "#123456"\n',
        "is not a valid CSS variable name",
    ),
    "builtin-name": ('name = "ansi-dark"\nprimary = "#123456"\n', "is a built-in Textual theme"),
    "bad-dark": ('name = "x"\nprimary = "#123456"\ndark = "yes"\n', "'dark' = \"yes\" must be true or false"),
    "colour-not-string": ('name = "x"\nprimary = 12\n', "colour 'primary' = 12 is not a colour"),
    "variables-not-table": ('name = "x"\nprimary = "#123456"\nvariables = "x"\n', "must be a table"),
    "bad-variable-colour": (
        'name = "x"\nprimary = "#123456"\n[variables]\nstate-running = "bogus"\n',
        "variable 'state-running' = \"bogus\" is not a colour",
    ),
    "variable-not-string": (
        'name = "x"\nprimary = "#123456"\n[variables]\nborder = 3\n',
        "variable 'border' = 3 must be a string",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_file_is_reported_and_others_still_load(tmp_path, case):
    text, fragment = BROKEN[case]
    folder = tmp_path / "themes"
    write(folder, "a-good.toml", GOOD.format(name="good-a", primary="#336699"))
    broken = write(folder, f"m-{case}.toml", text)
    write(folder, "z-good.toml", GOOD.format(name="good-z", primary="#993366"))

    themes, errors = load_themes([folder])

    assert sorted(themes) == ["good-a", "good-z"]
    assert len(errors) == 1
    (message,) = errors
    assert "\n" not in message
    assert message.startswith(f"{broken}: "), message
    assert fragment in message, message

    with pytest.raises(ThemeError) as raised:
        load_theme_file(broken)
    assert str(raised.value) == message


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, "t.toml", 'name = "x"\nprimary = "#123456"\nsucess = "#00ff00"\n')
    with pytest.raises(ThemeError, match=r"unknown key 'sucess' \(did you mean 'success'\?\)"):
        load_theme_file(path)


def test_bad_toml_message_is_one_line(tmp_path):
    path = write(tmp_path, "t.toml", '[variables\nname = "x"\n')
    with pytest.raises(ThemeError) as raised:
        load_theme_file(path)
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith(f"{path}: not valid TOML: ")


def test_non_utf8_file_is_reported(tmp_path):
    folder = tmp_path / "themes"
    folder.mkdir()
    (folder / "bin.toml").write_bytes(b'name = "\xff"\n')
    themes, errors = load_themes([folder])
    assert themes == {}
    assert len(errors) == 1 and errors[0].startswith(str(folder / "bin.toml"))


def test_missing_folders_are_fine(tmp_path):
    themes, errors = load_themes([tmp_path / "nope", THEMES_DIR, tmp_path / "also-nope"])
    assert errors == []
    assert sorted(themes) == sorted(BUNDLED)


def test_same_name_twice_in_one_folder_is_an_error(tmp_path):
    write(tmp_path, "a.toml", GOOD.format(name="twin", primary="#111111"))
    second = write(tmp_path, "b.toml", GOOD.format(name="twin", primary="#222222"))
    themes, errors = load_themes([tmp_path])
    assert themes["twin"].primary == "#111111"
    assert len(errors) == 1
    assert errors[0].startswith(f"{second}: ") and "already defined" in errors[0]


def test_optional_keys_and_variables(tmp_path):
    path = write(
        tmp_path,
        "t.toml",
        'name = "terminal"\nansi = true\nluminosity_spread = 0.2\ndark = false\n'
        'primary = "ansi_blue"\nforeground = "ansi_default"\nbackground = "ansi_default"\n'
        '[variables]\ninput-selection-background = "#81a1c1 35%"\n'
        'block-cursor-text-style = "none"\nstate-running = "ansi_green"\n',
    )
    theme = load_theme_file(path)
    assert theme.ansi is True and theme.dark is False
    assert theme.luminosity_spread == 0.2
    assert theme.variables["input-selection-background"] == "#81a1c1 35%"


def _as_toml(theme: Theme, name: str) -> str:
    lines = [f"name = {json.dumps(name)}", f"dark = {'true' if theme.dark else 'false'}"]
    if theme.ansi:
        lines.append("ansi = true")
    for key in COLOUR_KEYS:
        if getattr(theme, key) is not None:
            lines.append(f"{key} = {json.dumps(getattr(theme, key))}")
    lines.append("[variables]")
    # Everything Textual itself generates must be accepted back.
    variables = {**theme.to_color_system().generate(), **theme.variables}
    lines += [f"{key} = {json.dumps(value)}" for key, value in variables.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", list(BUILTIN_THEMES))
def test_every_textual_builtin_theme_round_trips_through_a_file(tmp_path, name):
    path = write(tmp_path, f"{name}.toml", _as_toml(BUILTIN_THEMES[name], f"copy-of-{name}"))
    theme = load_theme_file(path)
    assert theme.name == f"copy-of-{name}"
    assert theme.primary == BUILTIN_THEMES[name].primary


# --- user themes -------------------------------------------------------------


def test_user_theme_overrides_bundled_one(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    user = user_themes_dir()
    write(user, "mine.toml", GOOD.format(name="switchboard-dark", primary="#ff00ff"))
    write(user, "extra.toml", GOOD.format(name="operator-extra", primary="#00ff00"))

    themes, errors = load_themes()

    assert errors == []
    assert themes["switchboard-dark"].primary == "#ff00ff"
    assert themes["operator-extra"].primary == "#00ff00"
    assert themes["switchboard-light"].primary == load_theme_file(
        THEMES_DIR / "switchboard-light.toml"
    ).primary


def test_broken_user_theme_keeps_the_bundled_one(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    broken = write(user_themes_dir(), "dark.toml", 'name = "switchboard-dark"\nprimary = "nope"\n')
    themes, errors = load_themes()
    assert themes["switchboard-dark"].primary == load_theme_file(
        THEMES_DIR / "switchboard-dark.toml"
    ).primary
    assert errors == [f"{broken}: colour 'primary' = \"nope\" is not a colour"]


# --- theme names ---------------------------------------------------------------


def test_resolve_theme_name():
    available = ["switchboard-dark", "ansi-dark", "textual-dark"]
    assert resolve_theme_name("ansi-dark", available) == "ansi-dark"
    with pytest.raises(ThemeError) as raised:
        resolve_theme_name("nope", available)
    assert str(raised.value) == (
        "unknown theme 'nope' (available: ansi-dark, switchboard-dark, textual-dark)"
    )


async def test_resolve_against_a_real_app():
    themes, _ = load_themes([THEMES_DIR])
    app = App()
    register_themes(app, themes)
    assert resolve_theme_name("switchboard-high-contrast", app.available_themes) == (
        "switchboard-high-contrast"
    )
    with pytest.raises(ThemeError, match=r"available: .*ansi-dark.*switchboard-dark"):
        resolve_theme_name("switchboard-dim", app.available_themes)
