"""Full collections paced by the loop (console/heap.py). Each check runs in a fresh interpreter:
settling freezes the heap and changes the collector's thresholds for the whole process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import ROOT

SCRIPT = textwrap.dedent("""
    import asyncio, gc, json, sys, time, weakref
    from console import heap

    heap.FULL_EVERY_S = float(sys.argv[1])
    BUSY = sys.argv[2] == "busy"

    class Node:
        pass

    def cycle_in_generation_2():
        a, b = Node(), Node()
        a.other, b.other = b, a
        gc.collect(1)  # survives two young collections: promoted to the oldest generation
        gc.collect(1)
        return weakref.ref(a)

    async def main():
        heap.settle()
        out = {"threshold_1": gc.get_threshold()[1], "threshold_2": gc.get_threshold()[2]}
        gone = cycle_in_generation_2()
        # churn: young collections run, generation 2 grows, as under work
        keep = [[Node() for _ in range(50)] for _ in range(200)]
        started = time.monotonic()
        while gone() is not None and time.monotonic() - started < 20:
            if BUSY:  # the process never quiet: it works all the time
                until = time.perf_counter() + 0.02
                while time.perf_counter() < until:
                    pass
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(0.05)
        out["collected_after_s"] = None if gone() is not None else round(time.monotonic() - started, 2)
        out["full_collections"] = heap.full_collections
        print(json.dumps(out))

    asyncio.run(main())
""")


def run(full_every_s: float, mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(full_every_s), mode], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_quiet_loop_collects_cycles_the_collector_left_to_it():
    out = run(30.0, "quiet")
    assert out["threshold_2"] >= 1 << 30  # the collector's own full collections are off
    assert out["threshold_1"] == 2  # shorter middle collections (see console/heap.py)
    # quiet: long before the interval (the collector did not just wait for it to pass)
    assert out["collected_after_s"] is not None and out["collected_after_s"] < 10.0
    assert out["full_collections"] >= 1


def test_a_loop_that_is_never_quiet_still_collects_at_the_latest_interval():
    out = run(1.0, "busy")
    assert out["collected_after_s"] is not None
    # not while busy before the interval, but soon after it (a loaded machine only adds to it)
    assert 0.9 <= out["collected_after_s"] < 10.0
