"""int8 annotate with one PyTorch thread beside CTranslate2's pool, against PyTorch's threads untouched.

``annotate`` runs an int8 pipeline's batches with one PyTorch thread
(``quantize.one_torch_thread_beside_int8``). This times ``annotate_table`` on the same seeded MSRA
test sentences and shopping reviews, best of ``--repeats`` interleaved runs in one process: the
fp32 pipeline (ratios are against it), the int8 pipeline as annotate runs it, and the int8 pipeline
with that context switched off (PyTorch keeps ``--threads``):

    python benchmarks/int8_threads.py --model PIPELINE [--threads 2] [--repeats 4]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.quantize_speed import annotate, sample_msra, sample_reviews  # noqa: E402


def main() -> None:
    import spacy
    import torch

    import spacy_bert_zh.quantize as quantize

    args = parse_args()
    torch.set_num_threads(args.threads)
    one_thread = quantize.one_torch_thread_beside_int8
    untouched = lambda nlp: contextlib.nullcontext()  # noqa: E731
    runs = {"fp32": (spacy.load(args.model), one_thread),
            "int8, PyTorch threads untouched": (quantize.quantize_pipeline(spacy.load(args.model)), untouched),
            "int8, one PyTorch thread (annotate)": (quantize.quantize_pipeline(spacy.load(args.model)), one_thread)}
    table = pa.table({"text": sample_msra(args.texts, args.seed) + sample_reviews(args.texts, args.seed)})
    chars = sum(map(len, table.column("text").to_pylist()))
    best = {name: float("inf") for name in runs}
    try:
        for _ in range(args.repeats):
            for name, (nlp, context) in runs.items():
                quantize.one_torch_thread_beside_int8 = context  # what run_pipeline imports per call
                started = time.perf_counter()
                annotate(nlp, table)
                best[name] = min(best[name], time.perf_counter() - started)
    finally:
        quantize.one_torch_thread_beside_int8 = one_thread
    for name, seconds in best.items():
        print(f"{name:38s} {seconds:6.2f} s {chars / seconds:8,.0f} chars/s  {best['fp32'] / seconds:.2f}x fp32")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained pipeline folder")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads, and CTranslate2's")
    parser.add_argument("--texts", type=int, default=300, help="per corpus")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main()
