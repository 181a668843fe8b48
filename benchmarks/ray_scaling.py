"""Throughput of ``annotate --engine ray`` with 1 and 2 workers on this machine, and the ratio.

Every configuration annotates the same Parquet input (a seeded random sample of
online_shopping_10_cats/test.tsv when ../shared/data is there, else generated Chinese text:
``annotate_throughput.sample_texts``) through ``distributed.annotate_with_ray`` on one local Ray
session. A configuration is WORKERSxCPUS: that many pipeline actors, each reserving CPUS CPUs and
running that many torch threads, so no two workers fight over a core. Reported per configuration:

- end to end: rows/s and chars/s of the whole call (checks, actor start, model loads, write);
- steady: the same rate with the fixed cost removed, i.e. (N - n) / (t(N) - t(n)) where n is a
  tiny input (one batch per worker) run just before, so start-up does not hide the scaling.

The local engine (``annotate_files``, one process, all cores as torch threads) is timed on the same
input for reference, end to end with its own model load. Runs are sequential; the figures are only
meaningful on an otherwise idle machine.

    .venv/bin/python benchmarks/ray_scaling.py [--model PIPELINE] [--texts 800] [--configs 1x1,2x1,1x2]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    args = parse_args()
    helpers = load_throughput_helpers()
    texts = helpers.sample_texts(args.texts, args.seed)
    configs = [tuple(int(x) for x in item.split("x")) for item in args.configs.split(",")]
    best: dict[str, list[float]] = {}  # name -> [full seconds, tiny seconds], fastest of repeats
    tiny_texts = {}

    def keep(name: str, *seconds: float) -> None:
        best[name] = [min(old, new) for old, new in zip(best.get(name, seconds), seconds)]

    with tempfile.TemporaryDirectory(prefix="ray-scaling-") as tmp:
        tmp = Path(tmp)
        model = args.model or str(helpers.build_untrained(tmp / "pipeline"))
        full = write_input(tmp / "full.parquet", texts)
        import ray
        from spacy_bert_zh.distributed import IO_CPUS

        ray.init(num_cpus=(os.cpu_count() or 1) + IO_CPUS, include_dashboard=False,
                 log_to_driver=False)
        quiet_ray_data()
        try:
            warm_up = write_input(tmp / "warm-up.parquet", texts[:args.batch_size])
            time_ray(model, warm_up, tmp / "out", 1, 1, args.batch_size, args.batch_size)
            for _ in range(args.repeats):  # interleaved, fastest kept: fair on a busy machine
                if not args.no_local:
                    keep("local engine", time_local(model, full, tmp / "local", args.batch_size,
                                                    texts), float("nan"))
                for workers, cpus in configs:
                    name = f"ray {workers}x{cpus}"
                    tiny_texts[name] = texts[:args.batch_size * workers]
                    tiny = write_input(tmp / f"tiny-{workers}.parquet", tiny_texts[name])
                    fixed = time_ray(model, tiny, tmp / "out", workers, cpus, args.batch_size,
                                     len(tiny_texts[name]))
                    total = time_ray(model, full, tmp / "out", workers, cpus, args.batch_size,
                                     len(texts))
                    keep(name, total, fixed)
        finally:
            ray.shutdown()
    report(best, tiny_texts, texts, args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="pipeline folder or package (default: untrained, built here)")
    parser.add_argument("--texts", type=int, default=800, help="number of texts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--configs", default="1x1,2x1,1x2",
                        help="comma list of WORKERSxCPUS_PER_WORKER (default 1x1,2x1,1x2)")
    parser.add_argument("--no-local", action="store_true", help="skip the local engine reference")
    parser.add_argument("--repeats", type=int, default=2, help="timings per measure (fastest kept)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def load_throughput_helpers():
    """``sample_texts`` and ``build_untrained`` of benchmarks/annotate_throughput.py (same input)."""
    spec = importlib.util.spec_from_file_location(
        "annotate_throughput", REPO / "benchmarks" / "annotate_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_input(path: Path, texts: list[str]) -> Path:
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), path)
    return path


def quiet_ray_data() -> None:
    """No Ray Data progress output or INFO logs (they would be most of what this script prints)."""
    import logging

    from ray.data import DataContext

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)

    context = DataContext.get_current()
    for name in ("enable_progress_bars", "enable_operator_progress_bars"):
        if hasattr(context, name):
            setattr(context, name, False)


def time_local(model: str, source: Path, dest: Path, batch_size: int, texts: list[str]) -> tuple:
    """The local engine end to end (model load included, as in the Ray runs)."""
    from spacy_bert_zh.annotation import annotate_files

    started = time.perf_counter()
    summary = annotate_files(model, source, dest / "out.parquet", batch_size=batch_size,
                             progress=False, overwrite=True)
    seconds = time.perf_counter() - started
    assert summary.ok and summary.rows == len(texts)
    print(f"  local engine: {seconds:.1f}s", file=sys.stderr)
    return seconds


def time_ray(model: str, source: Path, dest: Path, workers: int, cpus: int, batch_size: int,
             expected_rows: int) -> float:
    """One ``annotate_with_ray`` call, end to end; checks that every row came back once."""
    from spacy_bert_zh.annotate_options import RayOptions
    from spacy_bert_zh.distributed import annotate_with_ray

    started = time.perf_counter()
    summary = annotate_with_ray(model, [source], dest, id_column="id", batch_size=batch_size,
                                overwrite=True,
                                ray_options=RayOptions(workers=workers, cpus_per_worker=cpus))
    seconds = time.perf_counter() - started
    ids = pq.read_table(dest, columns=["id"]).column("id").to_pylist()
    assert summary.rows_out == expected_rows == len(ids) == len(set(ids)), summary
    print(f"  ray {workers}x{cpus}, {expected_rows} rows: {seconds:.1f}s", file=sys.stderr)
    return seconds


def report(best: dict[str, list[float]], tiny_texts: dict[str, list[str]], texts: list[str],
           args: argparse.Namespace) -> None:
    chars = sum(map(len, texts))
    print(f"{len(texts)} texts, {chars:,} characters, batch size {args.batch_size}, "
          f"{os.cpu_count()} CPU cores, fastest of {args.repeats}; "
          f"WORKERSxCPUS = actors x (CPUs = torch threads each)")
    print(f"{'':14} {'seconds':>8} {'rows/s':>8} {'chars/s':>8} | steady: {'rows/s':>8} {'chars/s':>8}")
    steady = {}
    for name, (seconds, fixed) in best.items():
        line = f"{name:14} {seconds:8.1f} {len(texts) / seconds:8.1f} {chars / seconds:8,.0f}"
        if name in tiny_texts:
            tiny = tiny_texts[name]
            marginal = seconds - fixed
            steady[name] = ((len(texts) - len(tiny)) / marginal,
                            (chars - sum(map(len, tiny))) / marginal)
            line += (f" | {steady[name][0]:14.1f} {steady[name][1]:8,.0f}"
                     f"   (fixed cost: {len(tiny)} rows in {fixed:.1f}s)")
        print(line)
    if "ray 1x1" in steady and "ray 2x1" in steady:
        print(f"2 workers / 1 worker (1 CPU each): end to end "
              f"{best['ray 1x1'][0] / best['ray 2x1'][0]:.2f}x, "
              f"steady {steady['ray 2x1'][0] / steady['ray 1x1'][0]:.2f}x")
    if "ray 1x2" in steady and "ray 2x1" in steady:
        print(f"2 workers x 1 CPU / 1 worker x 2 CPUs (same cores): end to end "
              f"{best['ray 1x2'][0] / best['ray 2x1'][0]:.2f}x, "
              f"steady {steady['ray 2x1'][0] / steady['ray 1x2'][0]:.2f}x")


if __name__ == "__main__":
    main()
