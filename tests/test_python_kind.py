"""The python kind's `entry` check: "module:function", the whole value and nothing more."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.engine.workflow import parse_workflow_text
from console.model import UserError

TESTS = Path(__file__).resolve().parent


def parse_entry(entry: str):
    toml = f'[[process]]\nid = "x"\nkind = "python"\nentry = "{entry}"\npath = "."\n'
    return parse_workflow_text(toml, "wf.toml", TESTS)


def test_an_entry_is_module_colon_function():
    assert parse_entry("steps:noop").processes[0].spec["entry"] == "steps:noop"
    assert parse_entry("pkg.steps:noop").processes[0].spec["entry"] == "pkg.steps:noop"


@pytest.mark.parametrize("entry", [r"steps:noop\n", r"steps:noop\n\n", "steps:", ":noop", "steps:no op",
                                   "steps:noop:again", "9steps:noop"])
def test_anything_more_or_less_is_refused_naming_the_field(entry):
    # TOML's "\n" escape is a newline in the value: `$` with `match` let one trailing newline through
    with pytest.raises(UserError, match=r"^wf.toml: process 'x': field 'entry': must be \"module:function\"$"):
        parse_entry(entry)
