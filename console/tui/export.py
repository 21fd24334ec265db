"""A list written out as the operator sees it: CSV and JSON files in the data dir."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from console.model import Event, Process
from console.tui.widgets import RowList, cell_parts


async def export_list(rows: RowList, folder: Path) -> tuple[int, Path]:
    """Writes `rows`' items to <folder>/<list>-<time>.csv and .json; (how many, the files' stem)."""
    items = [export_row(item, rows) for item in rows.items]
    stem = folder / f"{rows.id}-{time.strftime('%Y%m%d-%H%M%S')}"
    await asyncio.to_thread(write_exports, stem, items)
    return len(items), stem


def export_row(item: Any, rows: RowList) -> dict[str, Any]:
    """Processes and events as their JSON; other rows as the columns shown, by title."""
    if isinstance(item, Process):
        return item.summary()
    if isinstance(item, Event):
        return item.to_json()
    cells = rows.render_row(item)
    return {c.title.lower(): "".join(part for part, _ in cell_parts(v)).strip() for c, v in zip(rows.columns, cells)}


def write_exports(stem: Path, rows: list[dict[str, Any]]) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=2, default=str))
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys or ["value"])
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
    stem.with_suffix(".csv").write_text(buf.getvalue())
