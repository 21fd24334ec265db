"""What the wheel carries: every console subpackage, the bundled themes and config (the top-level
themes/ and config/ folders, mapped into the package) and the console's CSS; and that the
program finds them through importlib.resources, wherever it is installed. The installed wheel
itself is exercised by tests/wheel_smoke.py (CI)."""

from __future__ import annotations

import tomllib
import zipfile
from importlib.resources import files

from conftest import ROOT
from wheel_smoke import build_wheel

from console import bundled
from console.tui.app import SwitchboardApp
from console.tui.themes import load_themes

THEMES = {"switchboard-dark", "switchboard-high-contrast", "switchboard-light"}


def setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_console_subpackage_is_listed_for_the_wheel():
    # the list is explicit (package discovery does not see the mapped folders): a new
    # subpackage left out of it would be missing from the wheel without a word
    listed = set(setuptools_config()["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "console").rglob("__init__.py")}
    assert found - listed == set()


def test_every_listed_package_is_a_folder_of_the_checkout():
    config = setuptools_config()
    mapped = config["package-dir"]
    for package in config["packages"]:
        folder = ROOT / mapped.get(package, package.replace(".", "/"))
        assert (folder / "__init__.py").is_file(), package
    assert set(mapped) <= set(config["packages"])


def test_the_bundled_files_are_found_through_importlib_resources():
    assert {p.stem for p in files("console.themes").iterdir() if p.name.endswith(".toml")} == THEMES
    assert (files("console.config") / "switchboard.toml").is_file()
    assert (files("console.config") / "demo.toml").is_file()
    assert (files("console.config.examples") / "shell-pipeline.toml").is_file()
    assert (files("console.tui") / SwitchboardApp.CSS_PATH).is_file()
    # the program reads those same files
    assert bundled.themes_dir() == files("console.themes")
    assert bundled.default_config() == files("console.config") / "switchboard.toml"
    assert bundled.workflow_file("demo") == files("console.config") / "demo.toml"
    themes, errors = load_themes([bundled.themes_dir()])
    assert set(themes) == THEMES and errors == []


def test_the_wheel_carries_the_themes_the_config_and_the_css(tmp_path):
    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        names = set(wheel.namelist())
    expected = {f"console/themes/{name}.toml" for name in THEMES} | {
        "console/config/switchboard.toml", "console/config/demo.toml",
        "console/config/examples/shell-pipeline.toml", "console/tui/app.tcss",
        "console/store/sql/postgres/statements.sql", "console/store/sql/postgres/001_schema.sql"}
    assert expected - names == set()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "console").rglob("*.py")}
    assert modules - names == set()
    # the product's code and data only: no tests, no top-level folders of the checkout
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"console"}

