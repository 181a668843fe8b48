"""Distilled students against their teacher: accuracy on real test sets and annotate speed on CPU.

The teacher is a pipeline of ``benchmarks/accuracy.py --save`` (MSRA NER + online_shopping_10_cats,
seeded samples). Its unlabelled texts are the train texts that sample left out, without their
labels (a seeded sample of ``--n-unlabelled``, half from each corpus). For each ``--layers`` k,
``spacy_bert_zh.distill.distill`` builds and trains a k-layer student on the teacher's
annotations (soft targets; silver labels too for ``--silver-layers``; for ``--hidden-layers``, the
hidden-state stage of ``distill_hidden.py`` before the soft targets), all in one run. Then:

  accuracy  entity F1 on the MSRA test sample and accuracy on the online_shopping test sample
            that accuracy.py drew with the same seed (gold labels), teacher and students;
  speed     ``annotate_table`` chars/s of teacher and students, fp32, int8 and bf16, on seeded
            samples of MSRA test sentences and shopping reviews, best of ``--repeats`` interleaved runs;
  plot      speed-up against the teacher vs test scores (PNG, ``--plot``; ``--replot JSON``
            redraws it from a results file). int8 and bf16 points are placed at the fp32 scores.

Goals: the 2-layer student >= 1.8x the teacher's chars/s, entity F1 and accuracy within 1.5 points
of the teacher, and the 2-layer student in int8 >= 3x the fp32 teacher.

    python benchmarks/accuracy.py --max-steps 5000 --n-train 20000 --seeds 0 --skip-baseline --save T
    python benchmarks/distill.py --teacher T --layers 2 --silver-layers ""

(the defaults: 40,000 unlabelled texts, nearly every MSRA train sentence that teacher left out, and
4,000 steps; with 8,000 texts the 2-layer student stayed 5.5 entity F1 under it, with 40,000 2.6;
``--max-steps 8000`` brought that to 2.2 in twice the time; with ``--gold --gold-targets teacher
--dropout 0`` as well, 1.4, every goal met.)
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.accuracy import sample_data, write_bio, write_tsv  # noqa: E402
from benchmarks.data import SHARED_DATA, read_bio_sentences, read_tsv_rows  # noqa: E402
from benchmarks.quantize_speed import best_of, sample_msra, sample_reviews  # noqa: E402

GOALS = {"speedup_2": 1.8, "points": 1.5, "speedup_2_int8": 3.0}


def main() -> None:
    args = parse_args()
    if args.replot:
        plot(json.loads(Path(args.replot).read_text())["results"], Path(args.plot))
        return
    import torch

    if not SHARED_DATA.is_dir():
        sys.exit(f"{SHARED_DATA} is absent: this benchmark needs the real corpora")
    if not args.teacher:
        sys.exit("--teacher is required (a pipeline of accuracy.py --save)")
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    data = sample_data(random.Random(args.seed), argparse.Namespace(n_train=args.teacher_n_train,
                                                                    n_test=args.n_test))
    unlabelled = write_unlabelled(data, work / "unlabelled.parquet", args)
    test = write_test_corpus(data, work / "test")
    students = train_students(args, unlabelled, work)
    pipelines = {"teacher": Path(args.teacher), **students}
    results = {"scores": {name: gold_scores(path, test) for name, path in pipelines.items()}}
    results["hidden_stage"] = {name: json.loads((work / f"{name}.hidden.json").read_text())
                               for name in students if (work / f"{name}.hidden.json").is_file()}
    results["speed"] = speeds(pipelines, args)
    results["goals"] = check_goals(results)
    report(results)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"results": results, "args": vars(args)}, indent=2))
    if args.plot:
        plot(results, Path(args.plot))
        print(f"plot written to {args.plot}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="pipeline of accuracy.py --save")
    parser.add_argument("--replot", default=None, help="only draw --plot from this results JSON")
    parser.add_argument("--teacher-n-train", type=int, default=20000,
                        help="the --n-train the teacher was trained with (its samples are left out)")
    parser.add_argument("--seed", type=int, default=0, help="the accuracy.py seed of the teacher")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--n-unlabelled", type=int, default=40000, help="texts, half from each corpus")
    parser.add_argument("--layers", type=lambda text: [int(x) for x in text.split(",")], default=[1, 2, 3])
    parser.add_argument("--silver-layers", type=lambda text: [int(x) for x in text.split(",") if x],
                        default=[2], help="also train these students on silver labels")
    parser.add_argument("--hidden-layers", type=lambda text: [int(x) for x in text.split(",") if x],
                        default=[], help="also train these students with the hidden-state stage first")
    parser.add_argument("--hidden-steps", type=int, default=300, help="steps of that stage (32 sequences each)")
    parser.add_argument("--gold", action="store_true", help="mix the teacher's gold training samples in")
    parser.add_argument("--gold-targets", choices=["labels", "teacher"], default="labels",
                        help="with --gold: learn their gold labels, or the teacher's soft targets on their texts")
    parser.add_argument("--max-steps", type=int, default=4000)
    parser.add_argument("--eval-frequency", type=int, default=1000)
    parser.add_argument("--learn-rate", type=float, default=None, help="the students' (default: the teacher's)")
    parser.add_argument("--dropout", type=float, default=None, help="the students' (default: the teacher's)")
    parser.add_argument("--speed-texts", type=int, default=300, help="per corpus, for the speed runs")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved speed runs (best kept)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", default=str(ROOT / "benchmarks" / "work" / "distill"))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "distill.json"))
    parser.add_argument("--plot", default=str(ROOT / "benchmarks" / "results" / "distill_tradeoff.png"))
    return parser.parse_args()


# --- data ---------------------------------------------------------------------------------------

def write_unlabelled(data: dict, dest: Path, args) -> Path:
    """Train texts the teacher was not trained on, labels dropped: half MSRA, half shopping."""
    seen_ner = {"".join(chars) for chars, _ in data["ner_train"]}
    seen_cls = {text for _, text in data["cls_train"]}
    ner = ["".join(chars) for chars, _ in read_bio_sentences(SHARED_DATA / "msra_ner" / "train.bio")]
    cls = [text for _, text in read_tsv_rows(SHARED_DATA / "online_shopping_10_cats" / "train.tsv")]
    rng = random.Random(args.seed + 1000)
    half = args.n_unlabelled // 2
    ner, cls = [t for t in ner if t not in seen_ner], [t for t in cls if t not in seen_cls]
    if half > len(ner) or args.n_unlabelled - half > len(cls):
        sys.exit(f"--n-unlabelled {args.n_unlabelled}: the teacher left out only {len(ner):,} MSRA and "
                 f"{len(cls):,} shopping train texts (half of the unlabelled texts come from each)")
    texts = rng.sample(ner, half) + rng.sample(cls, args.n_unlabelled - half)
    rng.shuffle(texts)
    if not dest.exists() or pq.read_table(dest).column("text").to_pylist() != texts:
        pq.write_table(pa.table({"text": texts}), dest)
    print(f"unlabelled: {len(texts):,} texts ({sum(map(len, texts)):,} characters), none of the "
          f"teacher's {len(seen_ner):,} + {len(seen_cls):,} training texts")
    return dest


def write_test_corpus(data: dict, dest: Path) -> Path:
    """The gold test samples as DocBins (our converters), as accuracy.py evaluates on."""
    from spacy_bert_zh.conversion import convert_cls, convert_ner

    dest.mkdir(parents=True, exist_ok=True)
    write_bio(dest / "ner.bio", data["ner_test"])
    write_tsv(dest / "cls.tsv", data["cls_test"])
    convert_ner(dest / "ner.bio", dest / "docs" / "ner.spacy", show_progress=False)
    convert_cls(dest / "cls.tsv", dest / "docs" / "cls.spacy", labels=data["labels"], show_progress=False)
    if not (dest / "gold").exists():
        write_bio(dest / "train_ner.bio", data["ner_train"])
        write_tsv(dest / "train_cls.tsv", data["cls_train"])
        convert_ner(dest / "train_ner.bio", dest / "gold" / "ner.spacy", show_progress=False)
        convert_cls(dest / "train_cls.tsv", dest / "gold" / "cls.spacy", labels=data["labels"],
                    show_progress=False)
    return dest


# --- students -----------------------------------------------------------------------------------

def train_students(args, unlabelled: Path, work: Path) -> dict[str, Path]:
    """Every student, soft targets first (their annotations, with tag probabilities, serve all)."""
    from spacy_bert_zh.distill import DistillOptions, distill

    runs = ([(k, True, 0) for k in args.layers] + [(k, False, 0) for k in args.silver_layers]
            + [(k, True, args.hidden_steps) for k in args.hidden_layers])
    students = {}
    for layers, soft, hidden_steps in runs:
        name = f"student{layers}" + ("" if soft else "-silver") + ("-hidden" if hidden_steps else "")
        options = DistillOptions(layers=layers, soft=soft, hidden_steps=hidden_steps, max_steps=args.max_steps,
                                 eval_frequency=args.eval_frequency, seed=args.seed,
                                 learn_rate=args.learn_rate, dropout=args.dropout,
                                 gold=work / "test" / "gold" if args.gold else None, gold_targets=args.gold_targets,
                                 work_dir=work / "distill-work", overwrite=False)
        started = time.perf_counter()
        dest = work / name
        if dest.exists():
            print(f"{name}: kept from an earlier run ({dest})")
        else:
            distill(args.teacher, unlabelled, dest, options)
            print(f"{name}: distilled in {time.perf_counter() - started:.0f}s", flush=True)
            if hidden_steps:
                shutil.copy(work / "distill-work" / "hidden.json", work / f"{name}.hidden.json")
        students[name] = dest
    return students


# --- measures -----------------------------------------------------------------------------------

def gold_scores(pipeline: Path, test: Path) -> dict[str, float]:
    from spacy_bert_zh.evaluation import evaluate_pipeline

    scores = evaluate_pipeline(pipeline, [test / "docs"])
    return {"ner_f": scores["ner"]["f"], "accuracy": scores["textcat"]["accuracy"]}


def speeds(pipelines: dict[str, Path], args) -> dict[str, float]:
    """chars/s of every pipeline, fp32, int8 and bf16, on the same texts, interleaved, best of repeats."""
    import spacy

    from spacy_bert_zh.quantize import quantize_pipeline

    loaded = {}
    for name, path in pipelines.items():
        if is_variant(name):
            continue  # same architecture as the plain soft student: same speed
        loaded[name] = spacy.load(path)
        for mode in REDUCED_MODES:
            loaded[f"{name}+{mode}"] = quantize_pipeline(spacy.load(path), mode)
    texts = sample_msra(args.speed_texts, args.seed) + sample_reviews(args.speed_texts, args.seed)
    _, seconds = best_of(loaded, pa.table({"text": texts}), args.repeats)
    chars = sum(map(len, texts))
    return {name: chars / value for name, value in seconds.items()}


VARIANTS = ("-silver", "-hidden")
REDUCED_MODES = ("int8", "bf16")   # bf16: bfloat16 weights (AMX / AVX512-BF16 CPUs), no goal of the issue


def is_variant(name: str) -> bool:
    """A student trained another way than the plain soft one of its size (same speed)."""
    return name.endswith(VARIANTS)


def architecture(name: str) -> str:
    for suffix in VARIANTS:
        name = name.replace(suffix, "")
    return name


def check_goals(results: dict) -> dict[str, bool]:
    speed, scores = results["speed"], results["scores"]
    if "student2" not in speed:
        return {}
    goals = {"student2 >= 1.8x teacher": speed["student2"] / speed["teacher"] >= GOALS["speedup_2"],
             "student2+int8 >= 3x teacher": speed["student2+int8"] / speed["teacher"] >= GOALS["speedup_2_int8"]}
    for name in (name for name in scores if architecture(name) == "student2"):
        points = max(100 * abs(scores["teacher"][key] - scores[name][key]) for key in ("ner_f", "accuracy"))
        goals[f"{name} within 1.5 points"] = points <= GOALS["points"]
    return goals


def report(results: dict) -> None:
    speed, scores = results["speed"], results["scores"]
    modes = [""] + [f"+{mode}" for mode in REDUCED_MODES if f"teacher+{mode}" in speed]
    print(f"\n{'':18}{'MSRA test F1':>14}{'shopping acc.':>15}"
          + "".join(f"{(mode[1:] + ' ' if mode else '') + 'chars/s':>14}{'x teacher':>11}" for mode in modes))
    for name, row in scores.items():
        base = architecture(name)
        cells = "".join(f"{speed[base + mode]:>14,.0f}{speed[base + mode] / speed['teacher']:>10.2f}x"
                        for mode in modes if base + mode in speed)
        print(f"{name:18}{100 * row['ner_f']:>14.2f}{100 * row['accuracy']:>15.2f}{cells}")
    for goal, ok in results["goals"].items():
        print(f"goal {goal}: {'ok' if ok else 'MISSED'}")


def plot(results: dict, dest: Path) -> None:
    """Speed-up against the fp32 teacher (x) vs MSRA F1 and shopping accuracy (two panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed, scores = results["speed"], results["scores"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, key, title in ((axes[0], "ner_f", "MSRA test entity F1"),
                             (axes[1], "accuracy", "online_shopping test accuracy")):
        for suffix, marker, label in (("", "o", "fp32"),
                                      ("+int8", "s", "int8 speed (scores: fp32's; int8 moved the\n"
                                                     "teacher's by <= 0.3, quantize_speed.py)"),
                                      ("+bf16", "D", "bf16 speed (scores: fp32's; bf16 moved the\n"
                                                     "teacher's by <= 0.3, quantize_speed.py)")):
            if f"teacher{suffix}" not in speed:
                continue  # results of a run before bf16
            names = sorted((name for name in scores if not is_variant(name)),
                           key=lambda name: speed[name + suffix])
            xs = [speed[name + suffix] / speed["teacher"] for name in names]
            ys = [100 * scores[name][key] for name in names]
            axis.plot(xs, ys, marker=marker, linestyle="-" if not suffix else "--", label=label)
            for x, y, name in zip(xs, ys, names):
                axis.annotate(name.replace("student", "k=").replace("teacher", "teacher (4)"),
                              (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        for name in filter(is_variant, scores):
            x = speed[architecture(name)] / speed["teacher"]
            hidden = name.endswith("-hidden")
            axis.plot([x], [100 * scores[name][key]], marker="^" if hidden else "x",
                      color="tab:green" if hidden else "black", linestyle="none",
                      label="hidden-state stage first (fp32)" if hidden else "silver labels (fp32)")
        axis.set_xlabel("annotate chars/s, x the fp32 teacher (CPU)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("Distilled students of a 4-layer m3e-small pipeline: speed against accuracy")
    figure.tight_layout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(dest, dpi=120)


if __name__ == "__main__":
    main()
