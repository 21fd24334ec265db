"""The built wheel, installed as a user installs it: not editable, in a fresh venv, used from a
folder outside the checkout. CI runs it after the test suite:

    python3 tests/wheel_smoke.py

It builds the wheel (pip wheel, from a copy of the sources so that nothing is written into the
checkout), installs it with its dependencies, runs the bundled demo workflow headless and starts
the console under Textual's Pilot. Exit status 0 when all of it works, 1 otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# what a source tree holds besides the sources (a stale build/lib would end up in the wheel)
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".hypothesis", "*.db", "*.db-wal", "*.db-shm", ".env")

# Run by the installed venv's python: the console as `switchboard demo` builds it, headless.
CONSOLE_CHECK = """
import asyncio, sys
from pathlib import Path

import console
from console.demo.seed import demo_settings, seed
from console.settings import load_settings
from console.tui.app import SwitchboardApp
from console.tui.widgets import RowList

DEMO = {"ingest", "transcribe", "redact", "train", "evaluate", "report"}


async def main(data: Path) -> None:
    settings = demo_settings(load_settings(data_dir=data), str(data / "demo.db"))
    app = SwitchboardApp(settings, prepare=seed)
    assert not app.theme_errors, app.theme_errors
    assert app.theme == "switchboard-dark", app.theme
    async with app.run_test(size=(120, 36)) as pilot:
        panes = {name: app.screen.query_one("#" + name, RowList)
                 for name in ("queue", "active", "graph", "calls", "events")}
        assert panes["queue"].styles.border_top[0] == "round", "app.tcss is not applied"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            shown = {p.id for p in panes["queue"].items} | {p.id for p in panes["active"].items}
            if shown & DEMO and panes["calls"].items and panes["events"].items:
                break
            assert loop.time() < deadline, f"the demo did not show: {shown}"
            await pilot.pause(0.1)
    print(f"console: panes {sorted(panes)}, theme {app.theme}, demo processes {sorted(shown & DEMO)}")


assert not Path(console.__file__).is_relative_to(sys.argv[2]), console.__file__
asyncio.run(main(Path(sys.argv[1])))
"""

RESOURCES = """
import sys
from importlib.resources import files
from pathlib import Path

import console

here = Path(console.__file__).parent
assert not here.is_relative_to(sys.argv[1]), f"console imported from the checkout: {here}"
found = [files("console.themes") / "switchboard-dark.toml", files("console.config") / "switchboard.toml",
         files("console.config") / "demo.toml", files("console.config.examples") / "shell-pipeline.toml",
         files("console.tui") / "app.tcss"]
for path in found:
    assert path.is_file() and Path(path).is_relative_to(here), path
print(found[2])
"""


def copy_sources(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=NOT_SOURCES)
    return dest


def build_wheel(dest: Path) -> Path:
    """The project's wheel, built into `dest`."""
    with tempfile.TemporaryDirectory(prefix="switchboard-src-") as tmp:
        source = copy_sources(Path(tmp) / "src")
        run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), str(source)])
    wheels = list(dest.glob("switchboard_console-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"wheel_smoke: expected one wheel in {dest}, found {wheels}")
    return wheels[0]


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        shown = " ".join(arg if len(arg) < 80 else arg[:20] + "…" for arg in argv)
        raise SystemExit(f"wheel_smoke: {shown} -> exit {result.returncode}\n"
                         f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="switchboard-wheel-") as tmp:
        tmp_path = Path(tmp)
        wheel = build_wheel(tmp_path / "dist")
        venv = tmp_path / "venv"
        run([sys.executable, "-m", "venv", str(venv)])
        python, switchboard = venv / "bin" / "python", venv / "bin" / "switchboard"
        run([str(python), "-m", "pip", "install", "-q", str(wheel)])
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        # the user's environment only: no settings, data or keys of whoever runs this
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "GROQ_", "PYTHON"))}
        env.update(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"),
                   SWITCHBOARD_ENGINE__RETRY_BASE_S="0.2")
        at = {"cwd": outside, "env": env}

        demo = run([str(python), "-c", RESOURCES, str(ROOT)], **at).stdout.strip()
        for n, workflow in enumerate((demo, "demo")):  # the bundled file, and the same by name
            run([str(switchboard), "run", "--db", str(tmp_path / f"run-{n}.db"), "--workflow", workflow,
                 "--until-idle"], timeout=300, **at)
        bad = subprocess.run([str(switchboard), "run", "--db", str(tmp_path / "bad.db"), "--workflow", "nosuch"],
                             capture_output=True, text=True, timeout=60, **at)
        if bad.returncode != 2 or bad.stderr.count("\n") != 1:
            raise SystemExit(f"wheel_smoke: an unknown workflow name: exit {bad.returncode}\n{bad.stderr}")
        print(run([str(python), "-c", CONSOLE_CHECK, str(tmp_path / "console-data"), str(ROOT)],
                  timeout=300, **at).stdout.strip())
        print(f"wheel_smoke: {wheel.name} installed in a fresh venv runs the demo and the console")
    return 0


if __name__ == "__main__":
    sys.exit(main())
