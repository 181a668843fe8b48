"""int8 and bf16 against fp32 on CPU: ``annotate`` speed, agreement, and (``--gold``) accuracy on real corpora.

One pipeline, loaded once per mode: as saved (fp32) and through ``quantize_pipeline`` for each of
``--modes`` (int8: CTranslate2; bf16: bfloat16 weights, fast on CPUs with AMX or AVX512-BF16).
On the same texts and the same torch threads:
  speed      ``annotate_table`` chars/s of each, timed ``--repeats`` times interleaved, best kept;
             texts: a seeded sample of online_shopping_10_cats test reviews and one of MSRA test
             sentences (from ../shared/data, found relative to the repository, see ``data.py``);
  agreement  on those texts, the rows whose top label is identical, and the entity F1 of each
             mode taking fp32's entities as the reference;
  --gold     entity F1 (MSRA test) and accuracy (online_shopping test) of each against the gold
             annotation, on the test samples ``benchmarks/accuracy.py --seeds N`` evaluates on.
Goals (each mode): >= 1.8x fp32 chars/s; >= 97% identical labels and entity F1 >= 97 against fp32;
gold F1 and accuracy within 0.5 point of fp32; the same output schema.

    .venv/bin/python benchmarks/accuracy.py --max-steps 300 --seeds 0 --skip-baseline \\
        --save /tmp/msra_shop_pipeline
    .venv/bin/python benchmarks/quantize_speed.py --model /tmp/msra_shop_pipeline --gold
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from functools import partial
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.data import SHARED_DATA, read_bio_sentences, read_tsv_rows  # noqa: E402
from benchmarks.timing import interleaved_best  # noqa: E402

REVIEWS_TSV = SHARED_DATA / "online_shopping_10_cats" / "test.tsv"
MSRA_BIO = SHARED_DATA / "msra_ner" / "test.bio"
GOALS = {"speedup": 1.8, "same_label": 0.97, "entity_f_vs_fp32": 0.97, "gold_points": 0.5}


def main() -> None:
    args = parse_args()
    import spacy
    import torch

    from spacy_bert_zh.quantize import quantize_pipeline

    if not SHARED_DATA.is_dir():
        sys.exit(f"{SHARED_DATA} is absent: this benchmark needs the real corpora")
    torch.set_num_threads(args.threads)
    pipelines = {"fp32": spacy.load(args.model)}
    for mode in args.modes:
        started = time.perf_counter()
        pipelines[mode] = quantize_pipeline(spacy.load(args.model), mode)
        print(f"model {args.model}; torch threads {args.threads}; {mode} in "
              f"{time.perf_counter() - started:.1f}s")
    results = {"speed": {}, "agreement": {}}
    corpora = {"reviews": sample_reviews(args.texts, args.seed), "msra": sample_msra(args.texts, args.seed)}
    every = {name: [] for name in pipelines}
    for name, texts in corpora.items():
        table = pa.table({"text": texts})
        outputs, seconds = best_of(pipelines, table, args.repeats)
        for mode in args.modes:
            if outputs["fp32"].schema != outputs[mode].schema:
                sys.exit(f"output schemas differ:\n{outputs['fp32'].schema}\n---\n{outputs[mode].schema}")
        chars = sum(map(len, texts))
        results["speed"][name] = {key: chars / value for key, value in seconds.items()}
        results["agreement"][name] = {mode: agreement(outputs["fp32"], outputs[mode]) for mode in args.modes}
        report_speed(name, texts, results["speed"][name], results["agreement"][name])
        for key, tables in every.items():
            tables.append(outputs[key])
    both = {key: pa.concat_tables(tables) for key, tables in every.items()}
    results["agreement"]["both"] = {mode: agreement(both["fp32"], both[mode]) for mode in args.modes}
    for mode, agree in results["agreement"]["both"].items():
        report_agreement(f"both corpora, {mode}", agree)
    if args.gold:
        results["gold"] = gold_scores(pipelines, args)
        report_gold(results["gold"])
    if args.output:
        Path(args.output).write_text(json.dumps({"results": results, "args": vars(args)}, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="pipeline folder or package (a trained one)")
    parser.add_argument("--texts", type=int, default=300, help="texts per corpus for speed and agreement")
    parser.add_argument("--seed", type=int, default=0, help="of the speed/agreement samples")
    parser.add_argument("--modes", type=lambda text: text.split(","), default=["int8", "bf16"],
                        help="comma list of quantize_pipeline modes to set against fp32")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (int8 uses as many)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gold", action="store_true", help="also score both against the gold labels")
    parser.add_argument("--gold-seed", type=int, default=0,
                        help="the accuracy.py seed whose test samples to score on")
    parser.add_argument("--n-test", type=int, default=1000, help="gold test examples per task")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    return parser.parse_args()


def sample_reviews(count: int, seed: int) -> list[str]:
    """A seeded sample of online_shopping test reviews (never the head: the file is sorted by class)."""
    texts = [text for _, text in read_tsv_rows(REVIEWS_TSV)]
    return random.Random(seed).sample(texts, min(count, len(texts)))


def sample_msra(count: int, seed: int) -> list[str]:
    """A seeded sample of MSRA test sentences."""
    texts = ["".join(chars) for chars, _ in read_bio_sentences(MSRA_BIO)]
    return random.Random(seed).sample(texts, min(count, len(texts)))


def annotate(nlp, table: pa.Table) -> pa.Table:
    from spacy_bert_zh.annotation import annotate_table

    return annotate_table(nlp, table, text_column="text")


def best_of(pipelines: dict, table: pa.Table, repeats: int) -> tuple[dict[str, pa.Table], dict[str, float]]:
    """Each pipeline's output and fastest of ``repeats`` timings, the runs interleaved."""
    return interleaved_best({name: partial(annotate, nlp, table) for name, nlp in pipelines.items()}, repeats)


def entity_sets(table: pa.Table) -> list[set]:
    return [{(e["start_char"], e["end_char"], e["label"]) for e in row}
            for row in table.column("entities").to_pylist()]


def f_score(reference: list[set], predicted: list[set]) -> float:
    """Micro entity F1 of ``predicted`` against ``reference`` (exact span and label)."""
    total = sum(map(len, reference)) + sum(map(len, predicted))
    shared = sum(len(r & p) for r, p in zip(reference, predicted))
    return 2 * shared / total if total else 1.0


def agreement(fp32: pa.Table, other: pa.Table) -> dict[str, float]:
    labels = zip(fp32.column("label").to_pylist(), other.column("label").to_pylist())
    same = sum(a == b for a, b in labels) / fp32.num_rows
    return {"same_label": same, "entity_f_vs_fp32": f_score(entity_sets(fp32), entity_sets(other))}


def gold_scores(pipelines: dict, args) -> dict[str, dict[str, float]]:
    """Entity F1 on MSRA test and accuracy on online_shopping test, the samples of accuracy.py."""
    from benchmarks.accuracy import sample_data
    from spacy_bert_zh.tag_schemes import decode_entities

    data = sample_data(random.Random(args.gold_seed), argparse.Namespace(n_train=2000, n_test=args.n_test))
    ner_table = pa.table({"text": ["".join(chars) for chars, _ in data["ner_test"]]})
    gold_entities = [set(decode_entities(tags, "bio")[0]) for _, tags in data["ner_test"]]
    cls_table = pa.table({"text": [text for _, text in data["cls_test"]]})
    gold_labels = [label for label, _ in data["cls_test"]]
    scores = {}
    for name, nlp in pipelines.items():
        labels = annotate(nlp, cls_table).column("label").to_pylist()
        scores[name] = {"ner_f": f_score(gold_entities, entity_sets(annotate(nlp, ner_table))),
                        "accuracy": sum(a == b for a, b in zip(labels, gold_labels)) / len(gold_labels)}
    return scores


def report_speed(name: str, texts: list[str], rates: dict[str, float],
                 agree: dict[str, dict[str, float]]) -> None:
    print(f"{name}: {len(texts)} texts, {sum(map(len, texts)):,} characters; annotate_table chars/s "
          f"fp32 {rates['fp32']:,.0f}")
    for mode, mode_agree in agree.items():
        speedup = rates[mode] / rates["fp32"]
        print(f"  {mode} {rates[mode]:,.0f}: {speedup:.2f}x (goal {GOALS['speedup']}x "
              f"{mark(speedup >= GOALS['speedup'])})")
        report_agreement(f"{name}, {mode}", mode_agree)


def report_agreement(name: str, agree: dict[str, float]) -> None:
    same, entity_f = agree["same_label"], agree["entity_f_vs_fp32"]
    print(f"  {name} vs fp32: same label {100 * same:.1f}% {mark(same >= GOALS['same_label'])}, "
          f"entity F1 {100 * entity_f:.1f} {mark(entity_f >= GOALS['entity_f_vs_fp32'])}")


def report_gold(scores: dict[str, dict[str, float]]) -> None:
    print(f"\n{'':8}{'entity F1 (MSRA test)':>24}{'accuracy (shopping test)':>26}")
    for name, row in scores.items():
        print(f"{name:8}{100 * row['ner_f']:>24.2f}{100 * row['accuracy']:>26.2f}")
    for mode in (name for name in scores if name != "fp32"):
        for key in ("ner_f", "accuracy"):
            points = 100 * (scores[mode][key] - scores["fp32"][key])
            print(f"{mode} - fp32 {key}: {points:+.2f} points {mark(abs(points) <= GOALS['gold_points'])}")


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


if __name__ == "__main__":
    main()
