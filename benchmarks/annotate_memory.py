"""Peak memory of ``spacy-bert-zh annotate`` on N and 10×N rows: it must not grow with the input.

Each input is annotated by the CLI in a fresh subprocess; its peak RSS comes from ``os.wait4``
(the rusage of that one child). Prints both peaks and their ratio, and exits 1 when the larger
exceeds the smaller by more than ``--max-ratio`` (default 1.2).

    .venv/bin/python benchmarks/annotate_memory.py [--model PIPELINE] [--rows 2000]

Peak RSS rises during the first few thousand rows (the C heap settles as batches of different
shapes come and go; annotation.release_free_heap trims it after every batch) and is flat after
that: one 20,000-row run measured 1.0 GiB after ~2,000 rows, 1.08 GiB from ~6,000 to 20,000.
So N should be past that warm-up; with N = 1,000 the ratio is ~1.2 for that reason alone.

Without ``--model`` the untrained pipeline of tests/conftest.py is built (same architecture and
memory as a trained one). Texts: seeded random draws from online_shopping_10_cats/test.tsv when
../shared/data is there (found relative to the repository, ``data.py``), else generated ones (see annotate_throughput.py).
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from annotate_throughput import build_untrained, sample_texts  # noqa: E402

ROW_GROUP_ROWS = 5_000


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="annotate-memory-") as tmp:
        tmp = Path(tmp)
        model = args.model or str(build_untrained(tmp / "pipeline"))
        peaks = {}
        for rows in (args.rows, 10 * args.rows):
            source = write_input(tmp / f"in-{rows}.parquet", rows, args.seed)
            peaks[rows] = peak_rss_of_annotate(model, source, tmp / f"out-{rows}.parquet", args)
            assert pq.read_metadata(tmp / f"out-{rows}.parquet").num_rows == rows
    small, large = peaks[args.rows], peaks[10 * args.rows]
    ratio = max(small, large) / min(small, large)
    for rows, peak in peaks.items():
        print(f"{rows:>8,} rows: peak RSS {peak / 2**20:8,.0f} MiB")
    print(f"ratio {ratio:.3f} (limit {args.max_ratio})")
    sys.exit(0 if ratio <= args.max_ratio else 1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="pipeline folder or package (default: untrained, built here)")
    parser.add_argument("--rows", type=int, default=2000, help="N (the second input has 10×N rows)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-ratio", type=float, default=1.2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def write_input(path: Path, rows: int, seed: int) -> Path:
    """``rows`` texts drawn at random (seeded, with replacement) from the sample texts."""
    texts = sample_texts(2000, seed)
    rng = random.Random(seed)
    table = pa.table({"id": list(range(rows)), "text": [rng.choice(texts) for _ in range(rows)]})
    pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)
    return path


def peak_rss_of_annotate(model: str, source: Path, dest: Path, args: argparse.Namespace) -> int:
    """Run ``spacy-bert-zh annotate`` in a fresh process; return its peak RSS in bytes."""
    command = [sys.executable, "-m", "spacy_bert_zh.cli", "annotate", model, str(source), str(dest),
               "--quiet", "--batch-size", str(args.batch_size)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"annotate failed ({process.returncode}): {' '.join(command)}")
    return usage.ru_maxrss * 1024  # Linux reports KiB


if __name__ == "__main__":
    main()
