"""The benchmarks' one way to time: each run's fastest of several, the runs interleaved, so that a
machine busy for a while slows every run alike instead of the one that happened to run then."""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional


def interleaved_best(runs: dict[str, Callable[[], object]], repeats: int,
                     on_run: Optional[Callable[[str, float], None]] = None) -> tuple[dict, dict[str, float]]:
    """Each run's last result and its fastest of ``repeats`` timings: every run once, then every run
    again, ``repeats`` rounds. ``on_run(name, seconds)`` is called after each timing."""
    results, best = {}, {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            results[name] = run()
            seconds = time.perf_counter() - started
            best[name] = min(best[name], seconds)
            if on_run is not None:
                on_run(name, seconds)
            print(f"  ({name}) {best[name]:.1f}s best so far", file=sys.stderr)
    return results, best
