"""Console themes as files: one Textual theme per TOML file.

Themes are loaded at start from the bundled themes (the top-level ``themes/`` folder,
shipped in the package as ``console.themes``) and then
from the user's themes folder (``$XDG_CONFIG_HOME/switchboard/themes``,
default ``~/.config/switchboard/themes``); a user theme with the same name
replaces a bundled one.  They are registered with Textual next to its
built-in themes (``textual-dark``, ``ansi-dark``, ``ansi-light``, ...), which
stay available.

File format::

    name = "switchboard-dark"     # required: letters, digits, '-' and '_'
    dark = true                   # optional, default true
    primary = "#4c9bd6"           # required
    secondary = "#5a7a99"         # optional colours: secondary accent
    ...                           #   foreground background surface panel
                                  #   boost warning error success
    # ansi = false                # optional: terminal-native (ansi_*) colours
    # luminosity_spread = 0.15    # optional: 0..1

    [variables]                   # optional Textual CSS variables (strings)
    border = "#4c9bd6"
    input-selection-background = "#4c9bd6 35%"
    state-running = "#4c9bd6"     # custom: usable from CSS as $state-running

Colours are anything ``textual.color.Color.parse`` accepts (``#rgb``,
``#rrggbb``, ``#rrggbbaa``, ``rgb(...)``, ``hsl(...)``, names, ``ansi_*``).

Custom variables (such as ``state-*``) *are* usable from CSS as ``$name``,
but only while the current theme defines them: a stylesheet that uses
``$state-running`` fails to parse under a theme that lacks it (every Textual
built-in).  An app whose CSS uses them must therefore supply fallbacks::

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return state_variable_defaults(self.current_theme)
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import BUILTIN_THEMES, Theme

from console.bundled import themes_dir

THEMES_DIR = themes_dir()

COLOUR_KEYS: tuple[str, ...] = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
    "warning",
    "error",
    "success",
)
_TOP_LEVEL_KEYS = frozenset(
    {"name", "dark", "ansi", "luminosity_spread", "variables", *COLOUR_KEYS}
)

STATES: tuple[str, ...] = (
    "queued",
    "waiting",
    "running",
    "completed",
    "failed",
    "interrupted",
    "cancelled",
    "blocked",
    "pending",
)
STATE_VARIABLES: tuple[str, ...] = tuple(f"state-{state}" for state in STATES)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_VARIABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# "<colour>" or "<colour> <alpha>%" (as Textual's own themes write e.g. "#81a1c1 35%")
_COLOUR_WITH_ALPHA_RE = re.compile(r"(?P<colour>.+?)(?:\s+\d+(?:\.\d+)?%)?")
_COLOUR_KEYWORDS = frozenset({"auto", "initial"})


class ThemeError(Exception):
    """A theme file (or theme name) is wrong; the message is one line."""


def user_themes_dir() -> Path:
    """The user's themes folder: ``$XDG_CONFIG_HOME/switchboard/themes``."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    config = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return config / "switchboard" / "themes"


def _display(path: Path) -> str:
    """The path as shown in messages: a bundled theme as themes/<file>."""
    try:
        return Path(path).resolve().relative_to(THEMES_DIR.resolve().parent).as_posix()
    except (ValueError, OSError):
        return str(path)


def _show(value: Any) -> str:
    """A value as written in TOML, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return " ".join(repr(value).split())


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _is_colour(value: str) -> bool:
    try:
        Color.parse(value)
    except (ColorParseError, ValueError, TypeError):
        return False
    return True


def _is_colour_variable(name: str) -> bool:
    """Variables whose value Textual uses as a colour (validated on load)."""
    return (
        name.startswith("state-")
        or name.endswith(("-foreground", "-background", "-color"))
        or name in {"border", "border-blurred"}
        or name.startswith("scrollbar")
    )


def _is_colour_value(value: str) -> bool:
    """A CSS colour value: a colour or ``auto``, optionally followed by ``NN%``."""
    match = _COLOUR_WITH_ALPHA_RE.fullmatch(value.strip())
    if match is None:
        return False
    colour = match.group("colour")
    return colour in _COLOUR_KEYWORDS or _is_colour(colour)


def load_theme_file(path: Path | str) -> Theme:
    """Load one theme file; raise ThemeError (one line, naming the file) if it is wrong."""
    path = Path(path)
    where = _display(path)

    def fail(message: str) -> ThemeError:
        return ThemeError(f"{where}: {_one_line(message)}")

    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise fail(f"not valid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise fail(f"not valid UTF-8: {error.reason} at byte {error.start}") from None
    except OSError as error:
        raise fail(f"cannot read: {error.strerror or error}") from None

    unknown = [key for key in data if key not in _TOP_LEVEL_KEYS]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(key, sorted(_TOP_LEVEL_KEYS), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise fail(f"unknown key {key!r}{suggestion}")

    if "name" not in data:
        raise fail("missing 'name'")
    name = data["name"]
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise fail(
            f"'name' = {_show(name)} is not a valid theme name "
            "(letters, digits, '-' and '_', not starting with '-' or '_')"
        )
    if name in BUILTIN_THEMES:
        raise fail(f"name {name!r} is a built-in Textual theme; choose another name")

    if "primary" not in data:
        raise fail("missing 'primary'")
    colours: dict[str, str] = {}
    for key in COLOUR_KEYS:
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, str) or not _is_colour(value):
            raise fail(f"colour {key!r} = {_show(value)} is not a colour")
        colours[key] = value

    options: dict[str, Any] = {}
    for key in ("dark", "ansi"):
        if key in data:
            if not isinstance(data[key], bool):
                raise fail(f"{key!r} = {_show(data[key])} must be true or false")
            options[key] = data[key]
    if "luminosity_spread" in data:
        spread = data["luminosity_spread"]
        if (
            isinstance(spread, bool)
            or not isinstance(spread, (int, float))
            or not 0 <= spread <= 1
        ):
            raise fail(f"'luminosity_spread' = {_show(spread)} must be a number from 0 to 1")
        options["luminosity_spread"] = float(spread)

    variables: dict[str, str] = {}
    table = data.get("variables", {})
    if not isinstance(table, dict):
        raise fail(f"'variables' = {_show(table)} must be a table ([variables])")
    for key, value in table.items():
        if not _VARIABLE_NAME_RE.fullmatch(key):
            raise fail(f"variable {key!r} is not a valid CSS variable name")
        if not isinstance(value, str):
            raise fail(f"variable {key!r} = {_show(value)} must be a string")
        if _is_colour_variable(key) and not _is_colour_value(value):
            raise fail(f"variable {key!r} = {_show(value)} is not a colour")
        variables[key] = value

    theme = Theme(name=name, variables=variables, **colours, **options)
    try:
        # Let Textual derive its whole colour system now, so a theme that would
        # break it is reported here rather than when it is made current.
        theme.to_color_system().generate()
    except Exception as error:  # pragma: no cover - defensive
        raise fail(f"rejected by Textual: {error}") from None
    return theme


def load_themes(
    dirs: list[Path] | None = None,
) -> tuple[dict[str, Theme], list[str]]:
    """Load every ``*.toml`` theme in ``dirs`` (default: bundled, then user).

    Missing folders are skipped.  A theme in a later folder replaces one of the
    same name from an earlier folder; two files of one name in the same folder
    is an error for the second.  Returns the themes by name and one-line error
    messages for the files that could not be loaded.  Never raises.
    """
    if dirs is None:
        dirs = [THEMES_DIR, user_themes_dir()]
    themes: dict[str, Theme] = {}
    errors: list[str] = []
    for folder in dirs:
        folder = Path(folder)
        try:
            if not folder.exists():
                continue
            if not folder.is_dir():
                errors.append(f"{_display(folder)}: not a folder")
                continue
            files = sorted(p for p in folder.glob("*.toml") if p.is_file())
        except OSError as error:
            errors.append(f"{_display(folder)}: cannot read: {_one_line(error.strerror or error)}")
            continue
        seen: dict[str, Path] = {}
        for file in files:
            try:
                theme = load_theme_file(file)
            except ThemeError as error:
                errors.append(str(error))
                continue
            except Exception as error:  # never let one file stop the others
                errors.append(f"{_display(file)}: {type(error).__name__}: {_one_line(error)}")
                continue
            if theme.name in seen:
                errors.append(
                    f"{_display(file)}: theme {theme.name!r} is already defined "
                    f"by {_display(seen[theme.name])}"
                )
                continue
            seen[theme.name] = file
            themes[theme.name] = theme
    return themes, errors


def register_themes(app: Any, themes: Mapping[str, Theme] | Iterable[Theme]) -> None:
    """Register themes with a Textual app (next to its built-in themes)."""
    values = themes.values() if isinstance(themes, Mapping) else themes
    for theme in values:
        app.register_theme(theme)


def resolve_theme_name(name: str, available: Iterable[str]) -> str:
    """Return ``name`` if it is available, else raise ThemeError listing the choices."""
    names = sorted(set(available))
    if name in names:
        return name
    raise ThemeError(f"unknown theme {name!r} (available: {', '.join(names)})")


_ANSI_STATE_DEFAULTS = {
    "state-queued": "ansi_cyan",
    "state-waiting": "ansi_yellow",
    "state-running": "ansi_blue",
    "state-completed": "ansi_green",
    "state-failed": "ansi_red",
    "state-interrupted": "ansi_bright_red",
    "state-cancelled": "ansi_bright_black",
    "state-blocked": "ansi_magenta",
    "state-pending": "ansi_default",
}


def state_variable_defaults(theme: Theme) -> dict[str, str]:
    """Fallback ``$state-*`` values for a theme that does not define them.

    Use from ``App.get_theme_variable_defaults`` so that CSS using
    ``$state-running`` etc. still parses under Textual's built-in themes.
    The theme's own ``variables`` take precedence over these.
    """
    if theme.ansi:
        return dict(_ANSI_STATE_DEFAULTS)
    system = theme.to_color_system()
    generated = system.generate()

    def colour(key: str) -> Color:
        return Color.parse(generated[key])

    background = colour("background")
    foreground = colour("foreground")
    return {
        "state-queued": colour("secondary").hex,
        "state-waiting": colour("warning").hex,
        "state-running": colour("primary").hex,
        "state-completed": colour("success").hex,
        "state-failed": colour("error").hex,
        "state-interrupted": colour("warning").blend(colour("error"), 0.5).hex,
        "state-cancelled": foreground.blend(background, 0.45).hex,
        "state-blocked": colour("accent").hex,
        "state-pending": foreground.blend(background, 0.3).hex,
    }
