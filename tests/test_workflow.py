"""Workflow parsing's fast paths give exactly what tomllib and the pydantic models give, or
step aside for them."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from console.bench.engine import shell_dag_workflow
from console import plaintoml
from console.engine import workflow as wfmod
from console.model import UserError

ROOT = Path(__file__).resolve().parent.parent


def typed(value):
    """A form where 1, 1.0 and True differ."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, value)


def reference(text: str):
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return "error"


def assert_plain_agrees(text: str) -> None:
    fast = plaintoml.loads_plain(text)
    if fast is not None:
        ref = reference(text)
        assert ref != "error", f"accepted what tomllib refuses: {text!r}"
        assert typed(fast) == typed(ref)


keys = st.sampled_from(["id", "kind", "command", "a", "b-2", "x_y", "1", "true", "process", "resources"])
plain_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\')
strings = st.text(plain_chars, max_size=8).map(lambda s: '"' + s + '"')
numbers = st.one_of(st.integers(-10**6, 10**20).map(str), st.sampled_from(
    ["0", "-0", "01", "+1", "1_000", "0x10", "1.5", "-0.0", "1.", ".5", "1e3", "inf", "nan", "3.25"]))
scalars = st.one_of(strings, numbers, st.sampled_from(["true", "false", "True", "'lit'", '"esc\\n"']))
arrays = st.lists(strings, max_size=3).flatmap(
    lambda items: st.sampled_from([", ", ",", " , "]).map(lambda sep: "[" + sep.join(items) + "]"))
inlines = st.lists(st.tuples(keys, scalars), max_size=3).map(
    lambda items: "{ " + ", ".join(f"{k} = {v}" for k, v in items) + " }")
values = st.one_of(scalars, arrays, inlines, st.sampled_from(["[1, 2]", "{a=1,}", "[\n", '"""x"""', ""]))
spaces = st.sampled_from(["", " ", "\t", "  "])
comments = st.sampled_from(["", " # note", "# x = 1", " #\x7f", " # [[x]]"])
headers = st.sampled_from(["[[process]]", "[[dependency]]", "[resources]", "[ process ]", "[[ process ]]",
                           "[a]", "[a.b]", "[[a]]", "[process]", "[[resources]]", "[ [x] ]", "[ a . b ]",
                           "[a.b.c]", "[a.1]", "[process.x]", "[resources.a]", "[a..b]", "[a.]", "[.a]",
                           "[[a.b]]", "[a . b-2 .c]"])
lines = st.one_of(
    st.tuples(spaces, headers, spaces, comments).map("".join),
    st.tuples(spaces, keys, spaces, st.just("="), spaces, values, spaces, comments).map("".join),
    st.tuples(spaces, comments).map("".join),
)
documents = st.tuples(st.lists(lines, max_size=12), st.sampled_from(["\n", "\r\n", "\r"])).map(
    lambda d: d[1].join(d[0]))


@hsettings(max_examples=600, deadline=None)
@given(documents)
def test_plain_toml_is_what_tomllib_reads_or_nothing(text):
    assert_plain_agrees(text)


@hsettings(max_examples=300, deadline=None)
@given(documents, st.integers(0, 200), st.sampled_from(list('"\\#=[]{},\n\r\t \x00\x01\x7fé.')))
def test_damaged_plain_toml_never_gets_past_the_fast_path(text, where, char):
    pos = where % (len(text) + 1)
    assert_plain_agrees(text[:pos] + char + text[pos:])


@pytest.mark.parametrize("path", sorted((ROOT / "config").rglob("*.toml")))
def test_the_shipped_files(path):
    assert_plain_agrees(path.read_text())


def test_the_default_config_takes_the_fast_path():
    # dotted headers ([engine.resources], [tui.keymap]) and comments after values included
    text = (ROOT / "config" / "switchboard.toml").read_text()
    assert plaintoml.loads_plain(text) == tomllib.loads(text)


@pytest.mark.parametrize("text", [
    "[a]\nb = { x = 1 }\n[a.b]\n",  # an inline table cannot be extended
    "[[a]]\n[a.b]\n",  # a sub-table of the last [[a]]: tomllib's to read
    "[a.b]\n[a]\nc = 1\n",  # a table made implicitly, then defined
    "[a.b]\n[a.b]\n",
    "[a]\nb = 1\n[a.b]\n",
])
def test_dotted_headers_beyond_the_plain_go_to_tomllib(text):
    assert plaintoml.loads_plain(text) is None
    assert_plain_agrees(text)


def test_the_benchmark_dag_takes_the_fast_path():
    text = shell_dag_workflow(50)
    assert plaintoml.loads_plain(text) == tomllib.loads(text)


process_values = {
    "id": st.one_of(st.sampled_from(["p1", "a b", "", "x" * 201, "ok\n", "é", "a/b:c@d.e-f_g"]), st.integers()),
    "kind": st.one_of(st.just("shell"), st.integers(), st.booleans()),
    "priority": st.one_of(st.sampled_from(["low", "medium", "high", "critical", "HIGH", "urgent"]), st.integers()),
    "resources": st.one_of(
        st.dictionaries(st.sampled_from(["cpu_intensive", "io_intensive"]),
                        st.one_of(st.integers(-1, 3), st.booleans(), st.floats(0, 3), st.just("2"))),
        st.just([1])),
    "max_attempts": st.one_of(st.integers(-1, 1002), st.booleans(), st.floats(0, 5), st.just("3")),
    "hold": st.one_of(st.booleans(), st.integers(0, 2), st.just("true")),
}
dependency_values = {
    "dependent": st.one_of(st.sampled_from(["a", "b"]), st.integers()),
    "dependency": st.one_of(st.sampled_from(["a", "b", "c"]), st.integers()),
    "type": st.one_of(st.sampled_from(["sequential", "data", "parallel", "resource", "Data", "x"]), st.integers()),
    "required_completion_percent": st.one_of(st.integers(-5, 105), st.floats(allow_nan=True), st.booleans(),
                                             st.just("80"), st.integers(10**16, 10**17)),
    "timeout_minutes": st.one_of(st.integers(-2, 5), st.floats(allow_nan=True, allow_infinity=True),
                                 st.booleans(), st.just("1")),
    "surprise": st.just(1),
}


def entries(fields):
    return st.fixed_dictionaries({}, optional=fields)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries(process_values), st.dictionaries(st.sampled_from(["command", "env"]), st.just(["true"]), max_size=1))
def test_plain_process_entries_are_what_the_model_gives(raw, extra):
    raw = {**raw, **extra}
    fast = wfmod._plain_process(raw)
    if fast is None:
        return
    model = wfmod._entry_models()[0].model_validate(raw)
    expected = (model.id, model.kind, model.priority, model.resources, model.max_attempts, model.hold)
    assert typed(list(fast)) == typed(list(expected))
    assert {k: v for k, v in raw.items() if k not in wfmod._PROCESS_FIELDS} == dict(model.model_extra)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries(dependency_values))
def test_plain_dependency_entries_are_what_the_model_gives(raw):
    fast = wfmod._plain_dependency(raw)
    if fast is None:
        return
    model = wfmod._entry_models()[1].model_validate(raw)
    expected = (model.dependent, model.dependency, model.type, model.required_completion_percent,
                model.timeout_minutes)
    assert typed(list(fast)) == typed(list(expected))


def parse(text: str):
    return wfmod.parse_workflow_text(text, "wf.toml", ROOT)


def test_entries_off_the_fast_path_are_converted_or_refused_as_before():
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


def test_a_plain_workflow_is_parsed_without_the_models(tmp_path):
    import subprocess
    import sys

    (tmp_path / "dag.toml").write_text(shell_dag_workflow(20))
    code = ("from console.engine import workflow\n"
            f"wf = workflow.parse_workflow({str(tmp_path / 'dag.toml')!r})\n"
            "print(len(wf.processes), len(wf.dependencies), workflow._models is None)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["20", "20", "True"]
