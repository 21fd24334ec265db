"""Scale of history: what the store keeps in memory for processes a run has finished."""

from __future__ import annotations

import json

from console.model import Process, State
from console.store.rows import SpecJson, process_row


def test_spec_json_holds_nothing_for_completed_processes() -> None:
    spec_json = SpecJson()
    live = [Process(id=f"p{i}", kind="python", spec={"entry": "m:f", "path": "/x"}, resources={"gpu": 1})
            for i in range(3)]
    for p in live:
        p.state = State.RUNNING
        process_row(p, spec_json)
    assert len(spec_json) == 3
    for p in live[:2]:
        p.state = State.COMPLETED
        row = process_row(p, spec_json)
        assert (json.loads(row[3]), json.loads(row[4])) == ({"entry": "m:f", "path": "/x"}, {"gpu": 1})
    assert len(spec_json) == 1  # only the one still running
    # a completed process written again (a resume of a later failure, say) is encoded afresh
    again = process_row(live[0], spec_json)
    assert json.loads(again[3]) == {"entry": "m:f", "path": "/x"} and len(spec_json) == 1
