"""Accuracy on real corpora: our spaCy pipeline against the plain Hugging Face baseline.

Trains configs/{cpu,gpu}.cfg (transformer + ner + textcat, one encoder) on seeded samples of MSRA
NER and online_shopping_10_cats from ../shared/data for ``--max-steps`` steps, and, in the same
run, the script a user would otherwise write: BertForTokenClassification and
BertForSequenceClassification on the same encoder, the same samples, the same batch size, and the
same number of examples seen. Prints test entity F1 and accuracy of both side by side.

    python benchmarks/accuracy.py --max-steps 300 --seeds 0,1,2   # CPU budget, three samples
    python benchmarks/accuracy.py --max-steps 3000 --gpu-id 0 --config gpu --n-train 20000
    python benchmarks/accuracy.py --seeds 0 --skip-baseline --save /tmp/msra_shop_pipeline  # keep it
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.data import SHARED_DATA, read_bio_sentences, read_tsv_rows  # noqa: E402
from benchmarks.hf_baseline import SequenceClassifier, TokenTagger, fine_tune  # noqa: E402
from spacy_bert_zh.conversion import convert_cls, convert_ner  # noqa: E402
from spacy_bert_zh.cpu_autocast import CALLBACK as CPU_BF16_CALLBACK  # noqa: E402
from spacy_bert_zh.encoder import fetch_encoder  # noqa: E402
from spacy_bert_zh.evaluation import evaluate_pipeline  # noqa: E402


def main() -> None:
    args = parse_args()
    encoder = args.encoder or str(fetch_encoder(ROOT / "encoders" / "m3e-small"))
    device = f"cuda:{args.gpu_id}" if args.gpu_id >= 0 else "cpu"
    print(f"encoder {encoder}; {args.n_train} NER + {args.n_train} cls training examples per seed; "
          f"{args.max_steps} steps of {args.batch_size} = {args.max_steps * args.batch_size} examples seen")
    runs = [run_seed(seed, encoder, device, args) for seed in args.seeds]
    print_table(runs)
    if args.output:
        Path(args.output).write_text(json.dumps({"runs": runs, "args": vars(args)}, ensure_ascii=False,
                                                indent=2))


def run_seed(seed: int, encoder: str, device: str, args) -> dict:
    """Both systems on the samples drawn with ``seed`` (the seed of their training too)."""
    data = sample_data(random.Random(seed), args)
    run = {"seed": seed}
    if not args.skip_ours:
        start = time.perf_counter()
        run["ours"] = train_spacy(data, encoder, seed, args)
        run["ours"]["seconds"] = time.perf_counter() - start
    if not args.skip_baseline:
        # Ours sees a shuffled mix of both tasks; each baseline model sees its task's share of it.
        examples_seen = args.max_steps * args.batch_size
        share = len(data["ner_train"]) / (len(data["ner_train"]) + len(data["cls_train"]))
        start = time.perf_counter()
        run["hf_baseline"] = {
            "ner_f": train_hf_ner(data, encoder, round(examples_seen * share), seed, args, device),
            "accuracy": train_hf_cls(data, encoder, round(examples_seen * (1 - share)), seed, args, device)}
        run["hf_baseline"]["seconds"] = time.perf_counter() - start
    print(json.dumps(run), flush=True)
    return run


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--n-train", type=int, default=2000, help="training examples per task")
    parser.add_argument("--n-test", type=int, default=1000, help="test examples per task")
    parser.add_argument("--config", default="cpu", help="cpu, gpu (configs/*.cfg) or a .cfg path")
    parser.add_argument("--skip-baseline", action="store_true", help="train only our pipeline")
    parser.add_argument("--skip-ours", action="store_true", help="train only the HF baseline")
    parser.add_argument("--encoder", default=None, help="HF name or folder (default: m3e-small)")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--learn-rate", type=float, default=1e-4)
    parser.add_argument("--seeds", type=lambda text: [int(x) for x in text.split(",")], default=[0],
                        help="comma-separated; one sample and one training run per seed, e.g. 0,1,2")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    parser.add_argument("--save", default=None, help="keep our trained pipeline (model-best) in this folder "
                        "(one subfolder seed<N> per seed when there are several seeds)")
    return parser.parse_args()


def sample_data(rng: random.Random, args) -> dict:
    """Seeded random samples (never the head: online_shopping is sorted by class)."""
    if not SHARED_DATA.is_dir():
        sys.exit(f"{SHARED_DATA} is absent: this benchmark needs the real corpora")
    ner_train = read_bio_sentences(SHARED_DATA / "msra_ner" / "train.bio")
    ner_test = read_bio_sentences(SHARED_DATA / "msra_ner" / "test.bio")
    cls_train = read_tsv_rows(SHARED_DATA / "online_shopping_10_cats" / "train.tsv")
    cls_test = read_tsv_rows(SHARED_DATA / "online_shopping_10_cats" / "test.tsv")
    return {"ner_train": rng.sample(ner_train, args.n_train), "ner_test": rng.sample(ner_test, args.n_test),
            "cls_train": rng.sample(cls_train, args.n_train), "cls_test": rng.sample(cls_test, args.n_test),
            "labels": sorted({label for label, _ in cls_train})}


def train_spacy(data: dict, encoder: str, seed: int, args) -> dict:
    """Convert the samples with our converters, `spacy train`, evaluate on the test samples."""
    from spacy.cli.train import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for split in ("train", "test"):
            write_bio(tmp / f"ner_{split}.bio", data[f"ner_{split}"])
            write_tsv(tmp / f"cls_{split}.tsv", data[f"cls_{split}"])
            convert_ner(tmp / f"ner_{split}.bio", tmp / split / "ner.spacy", show_progress=False)
            convert_cls(tmp / f"cls_{split}.tsv", tmp / split / "cls.spacy", labels=data["labels"],
                        show_progress=False)
        overrides = {"paths.train": str(tmp / "train"), "paths.dev": str(tmp / "test"),
                     "paths.encoder": encoder, "system.seed": seed, "training.max_steps": args.max_steps,
                     "training.eval_frequency": args.max_steps,
                     "training.optimizer.learn_rate.initial_rate": args.learn_rate}
        config = Path(args.config) if args.config.endswith(".cfg") else ROOT / "configs" / f"{args.config}.cfg"
        config_text = config.read_text()
        if "batch_by_sequence" in config_text:
            overrides["training.batcher.size"] = args.batch_size
        if CPU_BF16_CALLBACK in config_text:   # float32, as the HF baseline, on any CPU
            overrides["initialize.after_init.enabled"] = "off"
        train(config, tmp / "out", use_gpu=args.gpu_id, overrides=overrides)
        scores = evaluate_pipeline(tmp / "out" / "model-last", [tmp / "test"])
        if args.save:
            dest = Path(args.save) / f"seed{seed}" if len(args.seeds) > 1 else Path(args.save)
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(tmp / "out" / "model-best", dest)
    return {"ner_f": scores["ner"]["f"], "accuracy": scores["textcat"]["accuracy"]}


def train_hf_ner(data: dict, encoder: str, n_examples: int, seed: int, args, device: str) -> float:
    """BertForTokenClassification on characters (first sub-token labelled); test entity F1."""
    tags = {tag for _, sentence_tags in data["ner_train"] for tag in sentence_tags}
    tagger = TokenTagger(encoder, tags, "bio", seed, device)
    fine_tune(tagger, data["ner_train"], max(1, n_examples // args.batch_size), seed=seed,
              batch_size=args.batch_size, learn_rate=args.learn_rate)
    return tagger.score(data["ner_test"])


def train_hf_cls(data: dict, encoder: str, n_examples: int, seed: int, args, device: str) -> float:
    """BertForSequenceClassification over whole texts (truncated at 256); test accuracy."""
    classifier = SequenceClassifier(encoder, data["labels"], seed, device)
    fine_tune(classifier, data["cls_train"], max(1, n_examples // args.batch_size), seed=seed,
              batch_size=args.batch_size, learn_rate=args.learn_rate)
    return classifier.score(data["cls_test"])


def write_bio(path: Path, sentences: list) -> None:
    path.write_text("".join("".join(f"{c}\t{t}\n" for c, t in zip(chars, tags)) + "\n"
                            for chars, tags in sentences), encoding="utf-8")


def write_tsv(path: Path, rows: list) -> None:
    path.write_text("".join(f"{label}\t{text}\n" for label, text in rows), encoding="utf-8")


def print_table(runs: list) -> None:
    """One row per system and seed, then the mean over seeds."""
    print(f"\n{'':32}{'entity F1 (MSRA test)':>24}{'accuracy (shopping test)':>26}{'seconds':>10}")
    for system, title in (("ours", "spacy-bert-zh pipeline"), ("hf_baseline", "HF baseline (2 models)")):
        rows = [run[system] for run in runs if system in run]
        for run, row in zip(runs, rows):
            print(f"{title + ', seed ' + str(run['seed']):32}{100 * row['ner_f']:>24.1f}"
                  f"{100 * row['accuracy']:>26.1f}{row['seconds']:>10.0f}")
        if len(rows) > 1:
            print(f"{title + ', mean':32}" + "".join(
                f"{100 * statistics.mean(row[key] for row in rows):>{width}.1f}"
                for key, width in (("ner_f", 24), ("accuracy", 26))) +
                f"{statistics.mean(row['seconds'] for row in rows):>10.0f}")


if __name__ == "__main__":
    main()
