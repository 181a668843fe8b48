"""Does domain-adaptive MLM pretraining help? The same fine-tuning with and without it, same steps and seeds.

``--task shopping`` (the default): the labelled set is a seeded sample of ``--n-labelled``
online_shopping_10_cats training reviews; the other training reviews, without their labels, are
the raw texts that ``spacy_bert_zh.pretrain.pretrain`` trains m3e-small's masked language model on
(``--mlm-steps`` steps; ``--whole-word`` for jieba whole-word masking); textcat accuracy on a
seeded sample of the test reviews. ``--task resume``: the same with Resume NER sentences
(../shared/data/resume_ner) and test entity F1 on its test sentences. Our pipeline (configs/cpu.cfg
with only transformer + that component) is fine-tuned on the labelled sample from each encoder,
m3e-small and the pretrained one, with the same steps and seeds. Prints the scores, their mean ±
standard deviation over the seeds and the difference; writes benchmarks/results/pretrain_TASK.json
(with pretrain.json's report).

    python benchmarks/pretrain.py --mlm-steps 1000 --mlm-batch-size 16 --max-length 64 --whole-word
    python benchmarks/pretrain.py --task resume --mlm-steps 1000 --mlm-batch-size 16 --max-length 64 --whole-word
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
from benchmarks.data import (SHARED_DATA, block_text, one_task_config, read_sentence_blocks,  # noqa: E402
                             read_tsv_rows)
from spacy_bert_zh.conversion import convert_cls, convert_ner  # noqa: E402
from spacy_bert_zh.encoder import fetch_encoder  # noqa: E402
from spacy_bert_zh.evaluation import evaluate_pipeline  # noqa: E402
from spacy_bert_zh.pretrain import PretrainOptions, pretrain  # noqa: E402


class ShoppingTask:
    """online_shopping_10_cats classification: (label, text) rows, scored by accuracy."""
    corpus = SHARED_DATA / "online_shopping_10_cats"
    metric = "accuracy"

    def sample(self, args):
        """Labelled rows, unlabelled texts (the rest of train) and test rows."""
        rng = random.Random(args.sample_seed)
        train = read_tsv_rows(self.corpus / "train.tsv")
        self.labels = sorted({label for label, _ in train})
        labelled, rest = split_sample(train, args.n_labelled, rng)
        test = read_tsv_rows(self.corpus / "test.tsv")
        return labelled, [text for _, text in rest], rng.sample(test, min(args.n_test, len(test)))

    def text(self, row) -> str:
        return row[1]

    def write(self, rows: list, folder: Path) -> None:
        tsv = folder.with_suffix(".tsv")
        tsv.write_text("".join(f"{label}\t{text}\n" for label, text in rows), encoding="utf-8")
        convert_cls(tsv, folder / "cls.spacy", labels=self.labels, show_progress=False)

    def config(self):
        return one_task_config("textcat", {"cats_accuracy": 1.0})

    def score(self, scores: dict) -> float:
        return scores["textcat"]["accuracy"]


class ResumeTask:
    """Resume NER: ``char<SPACE>BMES-tag`` sentence blocks, scored by entity F1."""
    corpus = SHARED_DATA / "resume_ner"
    metric = "entity F1"

    def sample(self, args):
        rng = random.Random(args.sample_seed)
        labelled, rest = split_sample(read_sentence_blocks(self.corpus / "train.bmes"), args.n_labelled, rng)
        test = read_sentence_blocks(self.corpus / "test.bmes")
        return labelled, [block_text(block) for block in rest], rng.sample(test, min(args.n_test, len(test)))

    def text(self, block: str) -> str:
        return block_text(block)

    def write(self, blocks: list, folder: Path) -> None:
        raw = folder.with_suffix(".bmes")
        raw.write_text("".join(block + "\n\n" for block in blocks), encoding="utf-8")
        convert_ner(raw, folder / "ner.spacy", scheme="bmes", show_progress=False)

    def config(self):
        return one_task_config("ner", {"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None})

    def score(self, scores: dict) -> float:
        return scores["ner"]["f"]


TASKS = {"shopping": ShoppingTask, "resume": ResumeTask}


def main() -> None:
    args = parse_args()
    task, encoder = open_task(args)
    output = Path(args.output or ROOT / "benchmarks" / "results" / f"pretrain_{args.task}.json")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        labelled, unlabelled, test = task.sample(args)
        if args.n_unlabelled is not None:
            unlabelled = random.Random(args.sample_seed).sample(unlabelled, min(args.n_unlabelled, len(unlabelled)))
        print(f"{args.task}: {len(labelled)} labelled, {len(unlabelled)} unlabelled, {len(test)} test",
              flush=True)
        result = {"args": vars(args), "metric": task.metric,
                  "texts": {"labelled": len(labelled), "unlabelled": len(unlabelled), "test": len(test)}}
        dapt, result["pretrain"] = pretrained_encoder(encoder, unlabelled, work, args)
        result["runs"], result["summary"] = compare_encoders(
            task, labelled, test, {"m3e-small": encoder, "m3e-small + MLM": str(dapt)}, work, args)
    write_result(result, output)


def open_task(args):
    """The ``--task`` object and the encoder (``--encoder``, else m3e-small); sets the threads."""
    import torch

    task = TASKS[args.task]()
    if not task.corpus.is_dir():
        sys.exit(f"{task.corpus} is absent: this benchmark needs the real corpora")
    torch.set_num_threads(args.threads)
    return task, args.encoder or str(fetch_encoder(ROOT / "encoders" / "m3e-small"))


def compare_encoders(task, labelled: list, test: list, encoders: dict, work: Path, args):
    """Fine-tune from each of ``encoders`` ({name: path}; the baseline first) with each seed; the
    runs per name and their summary, with the second minus the first paired by seed."""
    task.write(labelled, work / "train")
    task.write(test, work / "test")
    config = work / "task.cfg"
    task.config().to_disk(config)
    runs = {name: [] for name in encoders}
    for seed in args.seeds:
        for name, path in encoders.items():
            start = time.perf_counter()
            score = task.score(fine_tune(config, path, work, seed, args))
            runs[name].append({"seed": seed, "score": score, "seconds": time.perf_counter() - start})
            print(json.dumps({"system": name, **runs[name][-1]}), flush=True)
    summary = {name: spread([run["score"] for run in seeds]) for name, seeds in runs.items()}
    baseline, candidate = runs.values()
    summary["difference"] = spread([b["score"] - a["score"] for a, b in zip(baseline, candidate)])
    print_table(summary, task.metric)
    return runs, summary


def write_result(result: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"wrote {output}")


def pretrained_encoder(encoder: str, texts: list, work: Path, args):
    """The MLM-pretrained encoder folder (``--dapt``, or trained here on ``texts``) and its report."""
    if args.dapt:
        dapt = Path(args.dapt)
    else:
        dapt = work / "dapt"
        texts_path = work / "unlabelled.parquet"
        pq.write_table(pa.table({"text": texts}), texts_path)
        options = PretrainOptions(max_steps=args.mlm_steps, batch_size=args.mlm_batch_size,
                                  max_length=args.max_length, learn_rate=args.mlm_learn_rate,
                                  whole_word=args.whole_word, holdout=args.holdout, seed=args.sample_seed,
                                  overwrite=True, progress=not args.quiet)
        print(pretrain(encoder, texts_path, dapt, options).summary(), flush=True)
    report = dapt / "pretrain.json"
    return dapt, json.loads(report.read_text()) if report.is_file() else None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=list(TASKS), default="shopping")
    parser.add_argument("--n-labelled", type=int, default=1000, help="labelled training reviews or sentences")
    parser.add_argument("--n-unlabelled", type=int, default=None,
                        help="MLM texts: a sample of the other training texts (default: all of them)")
    parser.add_argument("--n-test", type=int, default=1000, help="test texts (a seeded sample; all when fewer)")
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
    parser.add_argument("--output", default=None, help="default: benchmarks/results/pretrain_TASK.json")
    return parser.parse_args()


def split_sample(items: list, size: int, rng: random.Random):
    """A seeded, shuffled sample of ``size`` items, and the other items in their order."""
    chosen = set(rng.sample(range(len(items)), size))
    sample = [items[i] for i in sorted(chosen)]
    rng.shuffle(sample)
    return sample, [item for i, item in enumerate(items) if i not in chosen]


def fine_tune(config: Path, encoder: str, work: Path, seed: int, args) -> dict:
    """``spacy train`` from ``encoder`` on the labelled sample; the scores of model-last on test."""
    from spacy.cli.train import train

    out = work / "out"
    train(config, out, use_gpu=-1, overrides={
        "paths.train": str(work / "train"), "paths.dev": str(work / "test"), "paths.encoder": encoder,
        "system.seed": seed, "training.max_steps": args.max_steps, "training.eval_frequency": args.max_steps,
        "training.batcher.size": args.batch_size, "training.optimizer.learn_rate.initial_rate": args.learn_rate})
    return evaluate_pipeline(out / "model-last", [work / "test"])


def spread(values: list) -> dict:
    return {"mean": statistics.mean(values), "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def print_table(summary: dict, metric: str) -> None:
    print(f"\n| encoder | test {metric}, mean ± s.d. over seeds |\n|---|---|")
    for system, figures in summary.items():
        print(f"| {system} | {100 * figures['mean']:.2f} ± {100 * figures['stdev']:.2f} |")


if __name__ == "__main__":
    main()
