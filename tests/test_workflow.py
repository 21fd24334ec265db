"""Workflow parsing: tomllib reads the file; an entry already plain is taken as it is
(console.compat, held to the models in tests/test_compat.py), any other goes through the
pydantic models, which convert it or word the error naming the file, the entry and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.engine import workflow as wfmod
from console.model import UserError

ROOT = Path(__file__).resolve().parent.parent


def parse(text: str):
    return wfmod.parse_workflow_text(text, "wf.toml", ROOT)


def test_entries_are_converted_or_refused_naming_the_field():
    wf = parse('[[process]]\nid = "a"\nkind = "shell"\ncommand = ["true"]\nmax_attempts = "4"\nhold = 1\n'
               '[[process]]\nid = "b"\nkind = "shell"\ncommand = ["true"]\nresources = { io_intensive = 1.0 }\n'
               '[[dependency]]\ndependent = "b"\ndependency = "a"\nrequired_completion_percent = "50"\n')
    a, b = wf.processes
    assert (a.max_attempts, "a" in wf.held, b.resources) == (4, True, {"io_intensive": 1})
    assert wf.dependencies[0].required_completion_percent == 50.0
    with pytest.raises(UserError, match=r"wf.toml: process 'a': field 'max_attempts': Input should be less than"):
        parse('[[process]]\nid = "a"\nkind = "shell"\ncommand = ["true"]\nmax_attempts = 1001\n')
    with pytest.raises(UserError, match=r"wf.toml: dependency #1 \(b → a\): field 'required_completion_percent'"):
        parse('[[process]]\nid = "a"\nkind = "shell"\ncommand = ["true"]\n'
              '[[dependency]]\ndependent = "b"\ndependency = "a"\nrequired_completion_percent = 0\n')
    with pytest.raises(UserError, match=r"wf.toml: not valid TOML"):
        parse('[[process]]\nid = "a"\nid = "b"\n')


def test_each_process_has_its_own_spec():
    wf = parse("".join(f'[[process]]\nid = "p{i}"\nkind = "shell"\ncommand = ["true"]\nenv = {{ A = "1" }}\n'
                       for i in range(3)))
    specs = [p.spec for p in wf.processes]
    assert specs[0] == specs[1] == specs[2]
    assert specs[0] is not specs[1] and specs[0]["command"] is not specs[1]["command"]
    assert specs[0]["env"] is not specs[1]["env"]
    assert specs[0]["cwd"] == str(ROOT)
