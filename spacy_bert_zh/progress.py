"""A progress bar over rows that also shows characters/s (tqdm), for long annotation runs."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

ProgressCallback = Callable[[int, int], None]  # (rows, characters) just done


@contextmanager
def progress_bar(total_rows: int, enabled: bool = True) -> Iterator[ProgressCallback]:
    """A tqdm bar over rows (rows/s, ETA) that also shows characters/s; a no-op if not ``enabled``."""
    if not enabled:
        yield lambda rows, characters: None
        return
    from tqdm import tqdm

    with tqdm(total=total_rows, unit="rows", unit_scale=True, smoothing=0.05) as bar:
        characters = [0, time.perf_counter()]  # characters so far, last postfix update

        def advance(rows: int, chars: int) -> None:
            characters[0] += chars
            bar.update(rows)
            now = time.perf_counter()
            if now - characters[1] > 1.0:
                elapsed = bar.format_dict["elapsed"] or 1e-9
                bar.set_postfix_str(f"{characters[0] / elapsed:,.0f} chars/s", refresh=False)
                characters[1] = now

        yield advance
