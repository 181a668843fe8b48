"""Does domain-adaptive MLM pretraining help? textcat accuracy with and without it, same steps and seeds.

The labelled set is a seeded sample of ``--n-labelled`` online_shopping_10_cats training reviews
(../shared/data/online_shopping_10_cats/train.tsv); the other training reviews, without their
labels, are the raw texts that ``spacy_bert_zh.pretrain.pretrain`` trains m3e-small's masked
language model on (``--mlm-steps`` steps; ``--whole-word`` for jieba whole-word masking). Then our
pipeline (configs/cpu.cfg with only transformer + textcat) is fine-tuned on the labelled sample
from each encoder, m3e-small and the pretrained one, with the same steps and seeds, and scored on a
seeded sample of the test reviews. Prints the accuracies, their mean ± standard deviation over the
seeds and the difference; writes benchmarks/results/pretrain.json (with pretrain.json's report).

    python benchmarks/pretrain.py --mlm-steps 2000 --whole-word --max-steps 300 --seeds 0,1,2
    python benchmarks/pretrain.py --dapt encoders/shop-dapt ...    # reuse a pretrained encoder
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.data import SHARED_DATA, one_task_config, read_tsv_rows  # noqa: E402
from spacy_bert_zh.conversion import convert_cls  # noqa: E402
from spacy_bert_zh.encoder import fetch_encoder  # noqa: E402
from spacy_bert_zh.evaluation import evaluate_pipeline  # noqa: E402
from spacy_bert_zh.pretrain import PretrainOptions, pretrain  # noqa: E402

CORPUS = SHARED_DATA / "online_shopping_10_cats"


def main() -> None:
    args = parse_args()
    import torch

    if not CORPUS.is_dir():
        sys.exit(f"{CORPUS} is absent: this benchmark needs the real corpora")
    torch.set_num_threads(args.threads)
    encoder = args.encoder or str(fetch_encoder(ROOT / "encoders" / "m3e-small"))
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        labelled, unlabelled, test, labels = sample(args)
        print(f"{len(labelled)} labelled reviews, {len(unlabelled)} unlabelled, {len(test)} test; "
              f"{len(labels)} classes", flush=True)
        result = {"args": vars(args), "texts": {"labelled": len(labelled), "unlabelled": len(unlabelled),
                                                "test": len(test)}}
        if args.dapt:
            dapt = Path(args.dapt)
            report_path = dapt / "pretrain.json"
            result["pretrain"] = json.loads(report_path.read_text()) if report_path.is_file() else None
        else:
            dapt = work / "dapt"
            texts = work / "unlabelled.parquet"
            pq.write_table(pa.table({"text": unlabelled}), texts)
            options = PretrainOptions(max_steps=args.mlm_steps, batch_size=args.mlm_batch_size,
                                      max_length=args.max_length, learn_rate=args.mlm_learn_rate,
                                      whole_word=args.whole_word, holdout=args.holdout, seed=args.sample_seed,
                                      overwrite=True, progress=not args.quiet)
            report = pretrain(encoder, texts, dapt, options)
            print(report.summary(), flush=True)
            result["pretrain"] = json.loads((dapt / "pretrain.json").read_text())
        for name, rows in (("train", labelled), ("test", test)):
            tsv = work / f"{name}.tsv"
            tsv.write_text("".join(f"{label}\t{text}\n" for label, text in rows), encoding="utf-8")
            convert_cls(tsv, work / name / "cls.spacy", labels=labels, show_progress=False)
        config = write_textcat_config(work / "textcat.cfg")
        runs = {"m3e-small": [], "m3e-small + MLM": []}
        for seed in args.seeds:
            for system, path in (("m3e-small", encoder), ("m3e-small + MLM", str(dapt))):
                start = time.perf_counter()
                accuracy = fine_tune(config, path, work, seed, args)
                runs[system].append({"seed": seed, "accuracy": accuracy, "seconds": time.perf_counter() - start})
                print(json.dumps({"system": system, **runs[system][-1]}), flush=True)
    result["runs"] = runs
    result["summary"] = {system: spread([run["accuracy"] for run in seeds]) for system, seeds in runs.items()}
    differences = [b["accuracy"] - a["accuracy"] for a, b in zip(runs["m3e-small"], runs["m3e-small + MLM"])]
    result["summary"]["difference"] = spread(differences)
    print_table(result["summary"])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"wrote {args.output}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-labelled", type=int, default=1000, help="labelled training reviews")
    parser.add_argument("--n-unlabelled", type=int, default=None,
                        help="MLM texts: a sample of the other training reviews (default: all of them)")
    parser.add_argument("--n-test", type=int, default=1000, help="test reviews (a seeded sample)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the samples and of the MLM run")
    parser.add_argument("--seeds", type=lambda text: [int(x) for x in text.split(",")], default=[0, 1, 2],
                        help="fine-tuning seeds, comma-separated (each system trains once per seed)")
    parser.add_argument("--mlm-steps", type=int, default=2000)
    parser.add_argument("--mlm-batch-size", type=int, default=32)
    parser.add_argument("--mlm-learn-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128, help="MLM sequence length (pieces)")
    parser.add_argument("--whole-word", action="store_true", help="jieba whole-word masking")
    parser.add_argument("--holdout", type=int, default=500, help="MLM texts scored, not trained on")
    parser.add_argument("--dapt", default=None, help="an encoder pretrain already wrote: skip the MLM run")
    parser.add_argument("--max-steps", type=int, default=300, help="fine-tuning steps")
    parser.add_argument("--batch-size", type=int, default=8, help="fine-tuning batch size")
    parser.add_argument("--learn-rate", type=float, default=1e-4, help="fine-tuning learning rate")
    parser.add_argument("--encoder", default=None, help="HF folder (default: m3e-small)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quiet", action="store_true", help="no MLM progress bar")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "pretrain.json"))
    return parser.parse_args()


def sample(args):
    """Labelled, unlabelled (the rest of train, texts only) and test reviews; the class names."""
    rng = random.Random(args.sample_seed)
    train = read_tsv_rows(CORPUS / "train.tsv")
    chosen = set(rng.sample(range(len(train)), args.n_labelled))
    labelled = [train[i] for i in sorted(chosen)]
    rng.shuffle(labelled)
    unlabelled = [text for i, (_, text) in enumerate(train) if i not in chosen]
    if args.n_unlabelled is not None:
        unlabelled = rng.sample(unlabelled, min(args.n_unlabelled, len(unlabelled)))
    test = read_tsv_rows(CORPUS / "test.tsv")
    test = rng.sample(test, min(args.n_test, len(test)))
    return labelled, unlabelled, test, sorted({label for label, _ in train})


def write_textcat_config(path: Path) -> Path:
    """configs/cpu.cfg with only transformer + textcat, scored by accuracy."""
    one_task_config("textcat", {"cats_accuracy": 1.0}).to_disk(path)
    return path


def fine_tune(config: Path, encoder: str, work: Path, seed: int, args) -> float:
    """``spacy train`` from ``encoder`` on the labelled sample; accuracy of model-last on test."""
    from spacy.cli.train import train

    out = work / "out"
    train(config, out, use_gpu=-1, overrides={
        "paths.train": str(work / "train"), "paths.dev": str(work / "test"), "paths.encoder": encoder,
        "system.seed": seed, "training.max_steps": args.max_steps, "training.eval_frequency": args.max_steps,
        "training.batcher.size": args.batch_size, "training.optimizer.learn_rate.initial_rate": args.learn_rate})
    return evaluate_pipeline(out / "model-last", [work / "test"])["textcat"]["accuracy"]


def spread(values: list) -> dict:
    return {"mean": statistics.mean(values), "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def print_table(summary: dict) -> None:
    print("\n| encoder | test accuracy, mean ± s.d. over seeds |\n|---|---|")
    for system, figures in summary.items():
        print(f"| {system} | {100 * figures['mean']:.2f} ± {100 * figures['stdev']:.2f} |")


if __name__ == "__main__":
    main()
