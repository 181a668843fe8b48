"""benchmarks/timing.py: the runs are interleaved, each keeps its fastest timing and last result."""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import interleaved_best  # noqa: E402


def test_every_run_once_per_round_and_the_fastest_kept():
    calls, timings = [], []
    pauses = {"a": iter([0.03, 0.0, 0.02]), "b": iter([0.0, 0.02, 0.02])}

    def run(name):
        def once():
            calls.append(name)
            time.sleep(next(pauses[name]))
            return len(calls)
        return once

    results, best = interleaved_best({"a": run("a"), "b": run("b")}, 3,
                                     on_run=lambda name, seconds: timings.append((name, seconds)))
    assert calls == ["a", "b"] * 3
    assert results == {"a": 5, "b": 6}                    # the last round's results
    assert [name for name, _ in timings] == calls
    for name in ("a", "b"):
        assert best[name] == min(seconds for n, seconds in timings if n == name)
        assert best[name] < 0.015                          # the round without a pause
    assert timings[0][1] >= 0.03
