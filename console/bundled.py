"""The files shipped inside the package: the themes, the default settings and the workflows.

In a checkout they are the top-level `themes/` and `config/` folders; pyproject.toml maps them
into the package as `console.themes`, `console.config` and `console.config.examples`, so they
are found the same way from a checkout, an editable install and an installed wheel.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from console.model import UserError

THEMES = "console.themes"
CONFIG = "console.config"
EXAMPLES = "console.config.examples"
# a workflow named on the command line without a file: name → (package, file)
WORKFLOWS = {
    "demo": (CONFIG, "demo.toml"),
    "shell-pipeline": (EXAMPLES, "shell-pipeline.toml"),
}


def _folder(package: str) -> Path:
    # pip installs a package unpacked, so its resources are files on disk; the theme loader
    # and the settings read them as paths (a zipped install would need an extraction step)
    folder = files(package)
    if not isinstance(folder, Path):
        raise RuntimeError(f"{package}: the package is not installed as files on disk ({folder!r})")
    return folder


def themes_dir() -> Path:
    """The folder of the bundled themes (one TOML file each)."""
    return _folder(THEMES)


def default_config() -> Path:
    """The default settings file, switchboard.toml."""
    return _folder(CONFIG) / "switchboard.toml"


def workflow_file(name: str) -> Path:
    """A bundled workflow by name (`demo`, `shell-pipeline`)."""
    package, file = WORKFLOWS[name]
    return _folder(package) / file


def resolve_workflow(given: str) -> Path:
    """A workflow argument as a file: the file when it exists, else a bundled workflow of that
    name; neither is a user's mistake, said in one line."""
    path = Path(given)
    if path.exists():
        return path
    if given in WORKFLOWS:
        return workflow_file(given)
    raise UserError(f"{given}: no such workflow file, nor a bundled workflow ({', '.join(sorted(WORKFLOWS))})")
