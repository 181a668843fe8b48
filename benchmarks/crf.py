"""CRF transitions against the softmax tagger: test entity F1 of configs/cpu.cfg's ``ner_tagger``
with ``crf = false`` and with ``crf = true``, on MSRA NER and Resume NER from ../shared/data.

NER only: the pipeline is transformer + ner (textcat removed, score weights on ``ents_f``). Each
seed draws its own samples of the training, dev and test sentences; both taggers train on that
sample with that seed, for the same steps and batch size, and are scored on the test sample with
the last model (the dev sample only feeds spaCy's log: nothing is selected on it). Prints mean ±
standard deviation (and min-max) over the seeds and writes every run as JSON.

    python benchmarks/crf.py                           # 300 steps, seeds 0,1,2, MSRA and Resume
    python benchmarks/crf.py --max-steps 5 --n-train 50 --n-test 50 --n-dev 20 --seeds 0 \\
        --output /tmp/crf_smoke.json                   # smoke run
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.data import SHARED_DATA, one_task_config, read_sentence_blocks  # noqa: E402
from spacy_bert_zh.conversion import convert_ner  # noqa: E402
from spacy_bert_zh.encoder import fetch_encoder  # noqa: E402
from spacy_bert_zh.evaluation import evaluate_pipeline  # noqa: E402

# corpus -> (folder under SHARED_DATA, file suffix, tag scheme); files {train,dev,test}.<suffix>
CORPORA = {"msra": ("msra_ner", "bio", "bio"), "resume": ("resume_ner", "bmes", "bmes")}
TAGGERS = {"softmax": False, "crf": True}
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "crf.json"


def main() -> None:
    args = parse_args()
    if not SHARED_DATA.is_dir():
        sys.exit(f"{SHARED_DATA} is absent: this benchmark needs the real corpora")
    encoder = args.encoder or str(fetch_encoder(ROOT / "encoders" / "m3e-small"))
    print(f"encoder {encoder}; {args.n_train} training sentences per corpus and seed; "
          f"{args.max_steps} steps of {args.batch_size}; seeds {args.seeds}")
    runs = []
    for corpus in args.corpora:
        for seed in args.seeds:
            runs.extend(run_seed(corpus, seed, encoder, args))
    summary = summarize(runs)
    print_table(summary)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"summary": summary, "runs": runs, "args": vars(args)},
                                 ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"wrote {output}")


def run_seed(corpus: str, seed: int, encoder: str, args) -> list:
    """Both taggers on the samples of ``corpus`` drawn with ``seed`` (the seed of their training too)."""
    folder, suffix, scheme = CORPORA[corpus]
    rng = random.Random(seed)
    sizes = {"train": args.n_train, "dev": args.n_dev, "test": args.n_test}
    samples = {}
    for split, size in sizes.items():
        sentences = read_sentence_blocks(SHARED_DATA / folder / f"{split}.{suffix}")
        samples[split] = rng.sample(sentences, min(size, len(sentences)))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for split, sentences in samples.items():
            raw = tmp / f"{split}.{suffix}"
            raw.write_text("".join(block + "\n\n" for block in sentences), encoding="utf-8")
            convert_ner(raw, tmp / split / "ner.spacy", scheme=scheme, show_progress=False)
        for tagger, crf in TAGGERS.items():
            start = time.perf_counter()
            scores = train_and_score(tmp, crf, encoder, seed, args)
            run = {"corpus": corpus, "seed": seed, "tagger": tagger, "f": scores["f"], "p": scores["p"],
                   "r": scores["r"], "test_sentences": len(samples["test"]),
                   "seconds": time.perf_counter() - start}
            print(json.dumps(run), flush=True)
            runs.append(run)
    return runs


def train_and_score(data: Path, crf: bool, encoder: str, seed: int, args) -> dict:
    """`spacy train` the NER-only configs/cpu.cfg (``crf`` on or off); entity P/R/F of model-last on test."""
    from spacy.cli.train import train

    out = data / ("out_crf" if crf else "out_softmax")
    config_path = out.with_suffix(".cfg")
    ner_only_config(crf).to_disk(config_path)
    train(config_path, out, use_gpu=args.gpu_id, overrides={
        "paths.train": str(data / "train"), "paths.dev": str(data / "dev"), "paths.encoder": encoder,
        "system.seed": seed, "training.max_steps": args.max_steps, "training.eval_frequency": args.max_steps,
        "training.batcher.size": args.batch_size,
        "training.optimizer.learn_rate.initial_rate": args.learn_rate})
    return evaluate_pipeline(out / "model-last", [data / "test"])["ner"]


def ner_only_config(crf: bool):
    """configs/cpu.cfg without textcat, scored on entity F1 alone, with ``crf`` for the ner."""
    config = one_task_config("ner", {"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None})
    config["components"]["ner"]["crf"] = crf
    return config


def summarize(runs: list) -> dict:
    """Per corpus and tagger: mean, standard deviation, min and max of test F1 over seeds; and the
    mean over seeds of crf F1 minus softmax F1 (the same sample and seed)."""
    summary = {}
    for corpus in dict.fromkeys(run["corpus"] for run in runs):
        rows = {tagger: [run for run in runs if run["corpus"] == corpus and run["tagger"] == tagger]
                for tagger in TAGGERS}
        summary[corpus] = {tagger: spread([run["f"] for run in tagger_runs]) | {
            "seconds": statistics.mean(run["seconds"] for run in tagger_runs)}
            for tagger, tagger_runs in rows.items() if tagger_runs}
        paired = [c["f"] - s["f"] for c, s in zip(rows["crf"], rows["softmax"])]
        if paired:
            summary[corpus]["crf_minus_softmax"] = spread(paired)
    return summary


def spread(values: list) -> dict:
    return {"mean": statistics.mean(values), "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def print_table(summary: dict) -> None:
    print(f"\n{'':28}{'test entity F1, mean ± stdev (min-max)':>44}{'seconds/run':>14}")
    for corpus, taggers in summary.items():
        for tagger in (*TAGGERS, "crf_minus_softmax"):
            if tagger in taggers:
                row = taggers[tagger]
                figures = (f"{100 * row['mean']:.1f} ± {100 * row['stdev']:.1f} "
                           f"({100 * row['min']:.1f}-{100 * row['max']:.1f}), n={row['n']}")
                seconds = f"{row['seconds']:.0f}" if "seconds" in row else ""
                print(f"{corpus + ', ' + tagger:28}{figures:>44}{seconds:>14}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--n-train", type=int, default=2000, help="training sentences per corpus and seed")
    parser.add_argument("--n-dev", type=int, default=200, help="dev sentences (spaCy's log only)")
    parser.add_argument("--n-test", type=int, default=1000, help="test sentences (all of them when fewer)")
    parser.add_argument("--corpora", type=lambda text: text.split(","), default=list(CORPORA),
                        help="comma-separated: " + ",".join(CORPORA))
    parser.add_argument("--seeds", type=lambda text: [int(x) for x in text.split(",")], default=[0, 1, 2],
                        help="comma-separated; one sample and one training run per tagger and seed")
    parser.add_argument("--encoder", default=None, help="HF name or folder (default: m3e-small)")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--learn-rate", type=float, default=1e-4)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSON of all runs and the summary")
    return parser.parse_args()


if __name__ == "__main__":
    main()
