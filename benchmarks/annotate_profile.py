"""Where ``annotate`` spends its time: inside the BERT encoder's layers, or around them.

For each pipeline, ``annotate_table`` runs on seeded MSRA test sentences + shopping reviews (the
texts of ``distill.py``'s speed runs) with timing hooks on the encoder's embeddings and on each of
its layers (no profiler, so Python-heavy code is not over-counted). Best of ``--repeats``
interleaved runs. From the split it prints the fp32 ceiling of a k-layer student of that
pipeline: the speed-up if the student's layers cost k/L of the teacher's and everything else
(tokenizer, embeddings, heads, docs, Arrow) cost nothing less and nothing more —

    ceiling(k) = total / (total - layers * (1 - k / L))

    python benchmarks/annotate_profile.py TEACHER [STUDENT ...] --output profile.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.quantize_speed import annotate, sample_msra, sample_reviews  # noqa: E402
from benchmarks.timing import interleaved_best  # noqa: E402


def main() -> None:
    args = parse_args()
    import spacy
    import torch

    torch.set_num_threads(args.threads)
    texts = sample_msra(args.texts, args.seed) + sample_reviews(args.texts, args.seed)
    table = pa.table({"text": texts})
    pipelines = {path: spacy.load(path) for path in args.pipelines}
    chars = sum(map(len, texts))
    results = {path: {**split, "chars_per_s": chars / split["total_s"], "ceiling": ceilings(split)}
               for path, split in fastest_splits(pipelines, table, args.repeats).items()}
    for path, result in results.items():
        print(f"{path}: {result['total_s']:.2f} s, layers {result['layers_s']:.2f} s "
              f"({100 * result['layers_s'] / result['total_s']:.0f}%), embeddings "
              f"{result['embeddings_s']:.2f} s, outside the encoder {result['outside_s']:.2f} s; "
              f"{result['n_layers']} layers; fp32 ceiling of a k-layer student: "
              + ", ".join(f"k={k} {value:.2f}x" for k, value in result["ceiling"].items()))
    if args.output:
        Path(args.output).write_text(json.dumps({"results": results, "args": vars(args)}, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipelines", nargs="+")
    parser.add_argument("--texts", type=int, default=300, help="per corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output")
    return parser.parse_args()


def fastest_splits(pipelines: dict, table: pa.Table, repeats: int) -> dict[str, dict]:
    """Each pipeline's time split of its fastest run, the runs interleaved."""
    clocks = {path: attach_clocks(nlp) for path, nlp in pipelines.items()}
    best = {}

    def keep_if_fastest(path: str, seconds: float) -> None:
        split = clocks[path].split(seconds)
        clocks[path].reset()
        if path not in best or seconds < best[path]["total_s"]:
            best[path] = split

    interleaved_best({path: partial(annotate, nlp, table) for path, nlp in pipelines.items()}, repeats,
                     on_run=keep_if_fastest)
    return best


class Clock:
    """Seconds spent inside the hooked modules, summed per group."""

    def __init__(self):
        self.n_layers = 0
        self.reset()

    def reset(self) -> None:
        self.seconds = {"layers": 0.0, "embeddings": 0.0}

    def hook(self, module, group: str) -> None:
        starts = []
        module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))

        def stop(*_):
            self.seconds[group] += time.perf_counter() - starts.pop()

        module.register_forward_hook(stop)

    def split(self, total: float) -> dict:
        layers, embeddings = self.seconds["layers"], self.seconds["embeddings"]
        return {"total_s": total, "layers_s": layers, "embeddings_s": embeddings,
                "outside_s": total - layers - embeddings, "n_layers": self.n_layers}


def attach_clocks(nlp) -> Clock:
    """Hooks on the HF encoder of the pipeline's transformer (fp32: an int8 encoder has no layers)."""
    from spacy_bert_zh.quantize import transformer_shims

    clock = Clock()
    for shim in transformer_shims(nlp):
        bert = shim._model   # a transformers BertModel
        clock.hook(bert.embeddings, "embeddings")
        for layer in bert.encoder.layer:
            clock.hook(layer, "layers")
            clock.n_layers += 1
    return clock


def ceilings(split: dict) -> dict[int, float]:
    """The speed-up of a k-layer student if only the layers' time shrinks, by k/L."""
    total, layers, count = split["total_s"], split["layers_s"], split["n_layers"]
    return {k: total / (total - layers * (1 - k / count)) for k in range(1, count)}


if __name__ == "__main__":
    main()
