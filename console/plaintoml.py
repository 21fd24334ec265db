"""TOML as our files are usually written, read without `tomllib` (a cold start reads two: the
config file and a workflow).

Plain lines are: [table] and [dotted.table] headers, [[array]] headers, `key = value` with a
basic string (no escapes), a decimal number, a boolean, a one-line array of strings or an
inline table of those, blank lines and comments. `loads_plain` returns exactly what
`tomllib.loads` would for a document made only of them, and None for anything else, valid or
not; `loads` then hands the document to `tomllib`, which reads it or words the error. A
property test holds the two readers to the same answers (tests/test_workflow.py)."""

from __future__ import annotations

import re
from typing import Any

from console.model import UserError

_BARE = r"[A-Za-z0-9_-]+"
_STR = r'"[^"\\\x00-\x08\x0a-\x1f\x7f]*"'  # a basic string without escapes
_NUM = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"
_SCALAR = rf"{_STR}|true|false|{_NUM}"
_ARRAY = rf"\[[ \t]*(?:{_STR}[ \t]*(?:,[ \t]*{_STR}[ \t]*)*,?[ \t]*)?\]"
_INLINE = (rf"\{{[ \t]*(?:{_BARE}[ \t]*=[ \t]*(?:{_SCALAR})[ \t]*"
           rf"(?:,[ \t]*{_BARE}[ \t]*=[ \t]*(?:{_SCALAR})[ \t]*)*)?\}}")
_LINE = re.compile(
    rf"[ \t]*(?:\[\[[ \t]*(?P<aot>{_BARE})[ \t]*\]\]|\[[ \t]*(?P<table>{_BARE}(?:[ \t]*\.[ \t]*{_BARE})*)[ \t]*\]"
    rf"|(?P<key>{_BARE})[ \t]*=[ \t]*(?:(?P<str>{_STR})|(?P<array>{_ARRAY})|(?P<inline>{_INLINE})"
    rf"|(?P<other>true|false|{_NUM})))?"
    r"[ \t]*(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?"
)
_ITEM = re.compile(rf"({_BARE})[ \t]*=[ \t]*({_SCALAR})")
_ARRAY_ITEM = re.compile(_STR)


def _scalar(text: str) -> Any:
    if text[0] == '"':
        return text[1:-1]
    if text == "true":
        return True
    if text == "false":
        return False
    return float(text) if "." in text else int(text)


def loads_plain(text: str) -> dict[str, Any] | None:
    """What `tomllib.loads(text)` returns, for a document made only of plain lines (see the
    module's docstring); None for anything else, valid or not (tomllib then decides)."""
    root: dict[str, Any] = {}
    current = root
    arrays: set[str] = set()  # names of arrays of tables made by [[name]] headers
    tables = {id(root)}  # the dicts made by [headers] (not by values): [a.b] may add to them
    match = _LINE.fullmatch
    if text.endswith("\r"):  # a CR must come before an LF
        return None
    for line in text.split("\n"):
        if not line:
            continue
        if line[-1] == "\r":
            line = line[:-1]
        m = match(line)
        if m is None:
            return None
        what = m.lastgroup
        if what is None:  # blank or comment
            continue
        if what == "aot":
            name = m.group(what)
            current = {}
            if name in arrays:
                root[name].append(current)
            elif name in root:
                return None
            else:
                arrays.add(name)
                root[name] = [current]
            continue
        if what == "table":  # [a] or [a.b.c]: each part before the last a table already, or new
            *parents, name = [part.strip(" \t") for part in m.group(what).split(".")]
            node = root
            for part in parents:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                    tables.add(id(child))
                elif id(child) not in tables:  # a value, an inline table or an array of tables
                    return None
                node = child
            if name in node:  # defined twice, or a table made implicitly defined later: tomllib decides
                return None
            current = node[name] = {}
            tables.add(id(current))
            continue
        key = m.group("key")
        if key in current:
            return None
        value = m.group(what)
        if what == "str":
            current[key] = value[1:-1]
        elif what == "other":
            current[key] = _scalar(value)
        elif what == "array":
            current[key] = [x[1:-1] for x in _ARRAY_ITEM.findall(value)]
        else:
            table: dict[str, Any] = {}
            for k, v in _ITEM.findall(value):
                if k in table:
                    return None
                table[k] = _scalar(v)
            current[key] = table
    return root


def loads(text: str, source: str) -> dict[str, Any]:
    """The document as `tomllib.loads` reads it; a UserError naming `source` if it is not TOML."""
    data = loads_plain(text)
    if data is not None:
        return data
    import tomllib  # plain lines are the usual case (~7 ms to import, ~2x slower to read)

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{source}: not valid TOML: {e}") from None
