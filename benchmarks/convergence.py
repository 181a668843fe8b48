"""Learning curves until dev scores stop rising: our pipeline against the plain HF fine-tune.

One task per run, on its full training set from ../shared/data: Resume NER (BMES, 3,821 sentences)
or ChnSentiCorp (9,600 reviews). Ours is configs/cpu.cfg with only that task's component
(transformer + ner, or transformer + textcat), scored on dev every ``--eval-every`` steps, and
stopped when the dev score has not risen for ``--patience`` evaluations (or at ``--max-steps``).
The HF baseline (benchmarks/hf_baseline.py) trains with the same batch size and learning-rate
schedule (warm-up, linear decay to ``--max-steps``), on the same sequence of training examples
(``--order paired``, the default: ours streams the baseline's shuffled order instead of spaCy's
own shuffling), and is scored on dev after the same steps:
with ``--system both`` for as many steps as ours took; with ``--system hf`` (a second process
beside ``--system ours --patience 0``) for ``--max-steps``. Each system's best dev checkpoint is
scored on test. Both run in float32 unless ``--cpu-bf16 on`` puts both encoders under bfloat16
autocast (cpu.cfg's default "auto" would switch ours alone, on CPUs with bfloat16 instructions).

Writes benchmarks/results/convergence_<task>_<system>_seed<N>.json after every evaluation (a run
cut short keeps its curve) and benchmarks/results/convergence.png from all of them (`--results DIR`
for trial runs that must not replace them). With several seeds of a task, the plot and the
summary compare the two systems' mean dev curves (each seed's own curve faint behind its mean):

    python benchmarks/convergence.py --task resume --max-steps 2400 --eval-every 150
    python benchmarks/convergence.py --task chnsenticorp --system ours --max-steps 800 --eval-every 100 --patience 0 --threads 1 &
    python benchmarks/convergence.py --task chnsenticorp --system hf --max-steps 800 --eval-every 100 --threads 1
    python benchmarks/convergence.py --task chnsenticorp --system ours ... --seed 1 --threads 1 &
    python benchmarks/convergence.py --replot
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import spacy
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.data import SHARED_DATA, one_task_config, read_bio_sentences, read_tsv_rows  # noqa: E402
from benchmarks.hf_baseline import SequenceClassifier, TokenTagger, fine_tune, training_order  # noqa: E402
from spacy_bert_zh.conversion import CLS_ATTRS, NER_ATTRS, convert_cls, convert_ner  # noqa: E402
from spacy_bert_zh.cpu_autocast import CALLBACK as CPU_BF16_CALLBACK, Bfloat16Autocast  # noqa: E402
from spacy_bert_zh.encoder import fetch_encoder  # noqa: E402
from spacy_bert_zh.evaluation import evaluate_pipeline  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CURVE_LOGGER = "benchmarks.curve_logger.v1"


@dataclass(frozen=True)
class Task:
    kind: str            # "ner" or "cls"
    folder: str          # under ../shared/data
    suffix: str          # of train/dev/test files
    metric: str          # spaCy score that picks the best checkpoint
    title: str
    published: tuple     # (figure, what it is)


TASKS = {
    "resume": Task("ner", "resume_ner", "bmes", "ents_f", "Resume NER: entity F1",
                   (95.9, "bert-base-chinese + CRF, test (published)")),
    "chnsenticorp": Task("cls", "chnsenticorp", "tsv", "cats_accuracy", "ChnSentiCorp: accuracy",
                         (95.0, "bert-base-chinese, test (published)")),
}


def main() -> None:
    args = parse_args()
    if args.replot:
        plot_curves(args.results)
        return
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    if not (SHARED_DATA / task.folder).is_dir():
        sys.exit(f"{SHARED_DATA / task.folder} is absent: this benchmark needs the real corpora")
    encoder = args.encoder or str(fetch_encoder(ROOT / "encoders" / "m3e-small"))
    steps = planned_steps(args)
    if args.system in ("ours", "both"):
        ours = {"task": args.task, "system": "ours", "args": run_arguments(args), "curve": []}
        with tempfile.TemporaryDirectory() as work:
            train_ours(task, encoder, args, Path(work), ours, result_path(args.results, args.task, "ours", args.seed))
        steps = [point["step"] for point in ours["curve"]]  # where ours stopped, with patience
    if args.system in ("hf", "both"):
        baseline = {"task": args.task, "system": "hf_baseline", "args": run_arguments(args), "curve": []}
        train_baseline(task, encoder, args, steps, baseline,
                       result_path(args.results, args.task, "hf_baseline", args.seed))
    plot_curves(args.results)


def run_arguments(args) -> dict:
    """The command line as JSON values (paths as strings)."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}


def planned_steps(args) -> list:
    """The steps after which spaCy evaluates ours (its step counter starts at 0, after one update)."""
    return [step + 1 for step in range(0, args.max_steps + 1, args.eval_every)]


def result_path(results: Path, task: str, system: str, seed: int) -> Path:
    return results / f"convergence_{task}_{system}_seed{seed}.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="resume")
    parser.add_argument("--system", choices=("both", "ours", "hf"), default="both",
                        help="both: ours, then the baseline for the steps ours took; ours or hf alone "
                             "(e.g. in two processes at once): --max-steps steps, no early stop for hf")
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--patience", type=int, default=4, help="evaluations without a better dev score "
                                                                 "before ours stops (0: never)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learn-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder", default=None, help="HF name or folder (default: m3e-small)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu.cfg"), help="ours: the config to train")
    parser.add_argument("--order", choices=("paired", "spacy"), default="paired",
                        help="ours: the baseline's sequence of training examples (paired), or spaCy's "
                             "own shuffling (the runs before session 27)")
    parser.add_argument("--cpu-bf16", choices=("off", "on"), default="off",
                        help="both systems: float32 (off), or the encoder under bfloat16 autocast "
                             "(on, cpu.cfg's [initialize.after_init]); cpu.cfg's own 'auto' would switch "
                             "only ours, and only on CPUs with bfloat16 instructions")
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from the JSON files")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder of the JSON files and the PNG (another one for trial runs)")
    return parser.parse_args()


# --- ours: spacy train with a logger that records the dev curve ------------------------------


@spacy.registry.loggers(CURVE_LOGGER)
def make_curve_logger(progress_bar: bool = False):
    """spaCy's console logger, plus ``on_score(info)`` for every evaluation (set by ``train_ours``)."""
    from spacy.training.loggers import console_logger

    console = console_logger(progress_bar=progress_bar)

    def setup(nlp, stdout=sys.stdout, stderr=sys.stderr):
        log_step, finalize = console(nlp, stdout, stderr)

        def log_and_record(info):
            log_step(info)
            if info is not None:
                make_curve_logger.on_score(info)
        return log_and_record, finalize
    return setup


make_curve_logger.on_score = lambda info: None


def train_ours(task: Task, encoder: str, args, work: Path, result: dict, output: Path) -> None:
    """Convert the splits, train the one-task pipeline, score its best checkpoint on test."""
    from spacy.cli.train import train

    for split in ("train", "dev", "test"):
        source = SHARED_DATA / task.folder / f"{split}.{task.suffix}"
        if task.kind == "ner":
            convert_ner(source, work / split / "docs.spacy", show_progress=False)
        else:
            convert_cls(source, work / split / "docs.spacy", show_progress=False)
    labels = write_in_baseline_order(task, work / "train" / "docs.spacy", args) if args.order == "paired" else None
    config_path = write_one_task_config(task, args, work / "config.cfg", labels)
    start = time.perf_counter()
    curve = result["curve"]

    def on_score(info):
        curve.append({"step": info["step"] + 1, "examples": (info["step"] + 1) * args.batch_size,
                      "dev": info["other_scores"][task.metric], "seconds": time.perf_counter() - start})
        save(result, output)
    make_curve_logger.on_score = on_score
    train(config_path, work / "out", use_gpu=-1,
          overrides={"paths.train": str(work / "train"), "paths.dev": str(work / "dev"), "paths.encoder": encoder})
    scores = evaluate_pipeline(work / "out" / "model-best", [work / "test"])
    result.update(test=scores["ner"]["f"] if task.kind == "ner" else scores["textcat"]["accuracy"],
                  seconds=time.perf_counter() - start, best_dev=max(p["dev"] for p in curve))
    save(result, output)
    print(f"ours: best dev {100 * result['best_dev']:.2f}, test {100 * result['test']:.2f}", flush=True)


def write_in_baseline_order(task: Task, docbin: Path, args) -> list:
    """Rewrite the training DocBin as the sequence of examples the HF baseline trains on
    (``training_order``), for ``--order paired``: spaCy then streams it (``max_epochs = -1``,
    no shuffling) and both systems see the same batches in the same order. Returns the labels."""
    from spacy.tokens import DocBin

    nlp = spacy.blank("zh")
    docs = list(DocBin().from_disk(docbin).get_docs(nlp.vocab))
    rows = read_split(task, "train")
    texts = [text for _, text in rows] if task.kind == "cls" else ["".join(chars) for chars, _ in rows]
    if [doc.text for doc in docs] != texts:
        sys.exit(f"{docbin}: the converted training docs differ from the baseline's examples")
    order = training_order(len(docs), (args.max_steps + 1) * args.batch_size, args.seed)  # steps 0 to max
    attrs = CLS_ATTRS if task.kind == "cls" else NER_ATTRS
    DocBin(attrs=list(attrs), docs=[docs[i] for i in order]).to_disk(docbin)
    # a streamed corpus initializes on its first 100 examples only: give the labels of all of them
    return sorted({label for doc in docs for label in (doc.cats if task.kind == "cls"
                                                        else [ent.label_ for ent in doc.ents])})


def write_one_task_config(task: Task, args, path: Path, labels: Optional[list] = None) -> Path:
    """``--config`` with one task's component (and its ``labels`` if given), the run's schedule
    and the curve logger."""
    component = "ner" if task.kind == "ner" else "textcat"
    config = one_task_config(component, {task.metric: 1.0}, Path(args.config))
    if labels is not None:
        config["initialize"].setdefault("components", {})[component] = {"labels": labels}
    training = config["training"]
    training.update(max_steps=args.max_steps, eval_frequency=args.eval_every,  # patience 0: never stop early
                    patience=args.patience * args.eval_every, max_epochs=-1 if args.order == "paired" else 0)
    training["optimizer"]["learn_rate"].update(initial_rate=args.learn_rate)
    training["batcher"]["size"] = args.batch_size
    training["logger"] = {"@loggers": CURVE_LOGGER, "progress_bar": False}
    config["system"]["seed"] = args.seed
    set_cpu_bf16(config, args.cpu_bf16)
    config.to_disk(path)
    return path


def set_cpu_bf16(config, enabled: str) -> None:
    """Pin the config's CPU bfloat16 callback to ``enabled`` (its "auto" would depend on the CPU)."""
    callback = config["initialize"].get("after_init") or {}
    if callback.get("@callbacks") == CPU_BF16_CALLBACK:
        callback["enabled"] = enabled
    elif enabled == "on":
        sys.exit(f"--cpu-bf16 on: the config's [initialize.after_init] is not {CPU_BF16_CALLBACK}")


# --- the HF baseline, the same steps -----------------------------------------------------------


def train_baseline(task: Task, encoder: str, args, steps: list, result: dict, output: Path) -> None:
    """The HF fine-tune for as many steps as ours took, scored on dev where ours was."""
    data = {split: read_split(task, split) for split in ("train", "dev", "test")}
    device = "cpu"
    if task.kind == "ner":
        tags = {tag for _, sentence_tags in data["train"] for tag in sentence_tags}
        system = TokenTagger(encoder, tags, "bmes" if task.suffix == "bmes" else "bio", args.seed, device)
    else:
        system = SequenceClassifier(encoder, {label for label, _ in data["train"]}, args.seed, device)
    if args.cpu_bf16 == "on":
        system.model.forward = Bfloat16Autocast(system.model)   # as cpu.cfg does to ours
    curve, best = result["curve"], {}
    start = time.perf_counter()

    def on_evaluate(step):
        score = system.score(data["dev"])
        curve.append({"step": step, "examples": step * args.batch_size, "dev": score,
                      "seconds": time.perf_counter() - start})
        if score > best.get("dev", -1.0):
            best.update(dev=score, state=copy.deepcopy(system.model.state_dict()))
        save(result, output)
        print(f"HF baseline step {step}: dev {100 * score:.2f}", flush=True)

    fine_tune(system, data["train"], max(steps), seed=args.seed, batch_size=args.batch_size,
              learn_rate=args.learn_rate, total_steps=args.max_steps, evaluate_at=set(steps),
              on_evaluate=on_evaluate)
    system.model.load_state_dict(best["state"])
    result.update(test=system.score(data["test"]), seconds=time.perf_counter() - start, best_dev=best["dev"])
    save(result, output)
    print(f"HF baseline: best dev {100 * best['dev']:.2f}, test {100 * result['test']:.2f}", flush=True)


def read_split(task: Task, split: str) -> list:
    path = SHARED_DATA / task.folder / f"{split}.{task.suffix}"
    return read_bio_sentences(path) if task.kind == "ner" else read_tsv_rows(path)


def save(result: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")


# --- the plot ----------------------------------------------------------------------------------


SYSTEMS = (("ours", "spacy-bert-zh", "o-", "C0"), ("hf_baseline", "HF fine-tune", "s--", "C1"))


def load_runs(results: Path) -> dict:
    """{task: {system: [result of each seed]}} for every result JSON in ``results``."""
    runs = {}
    for name in TASKS:
        for system, *_ in SYSTEMS:
            seeds = [json.loads(path.read_text(encoding="utf-8"))
                     for path in sorted(results.glob(f"convergence_{name}_{system}_seed*.json"))]
            if seeds:
                runs.setdefault(name, {})[system] = seeds
    return runs


def mean_curve(seeds: list) -> list:
    """(step, examples, mean dev) at each step every seed's curve reached."""
    dev_by_step = [{p["step"]: p for p in seed.get("curve", [])} for seed in seeds]
    common = sorted(set.intersection(*(set(curve) for curve in dev_by_step))) if dev_by_step else []
    return [(step, dev_by_step[0][step]["examples"], sum(c[step]["dev"] for c in dev_by_step) / len(seeds))
            for step in common]


def plot_curves(results: Path) -> None:
    """``results``/convergence.png: one column per task; on top, dev score against examples seen,
    both systems (the mean over seeds, and each seed faintly when there are several); below, the
    difference of the mean curves (ours - HF). Then the summary table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_runs(results)
    if not runs:
        sys.exit(f"no convergence_*_*_seed*.json in {results}")
    figure, axes = plt.subplots(2, len(runs), figsize=(5.5 * len(runs), 5.5), squeeze=False, sharex="col",
                                gridspec_kw={"height_ratios": (3, 1)})
    for column, (name, systems) in enumerate(runs.items()):
        plot_task(axes[0][column], name, systems)
        plot_difference(axes[1][column], systems)
    figure.tight_layout()
    png = results / "convergence.png"
    figure.savefig(png, dpi=120)
    print(f"wrote {png}")
    print_summary(runs)


def plot_task(axis, name: str, systems: dict) -> None:
    """Each system's mean dev curve (its seeds faint behind it) and the published figure."""
    for system, label, style, colour in SYSTEMS:
        seeds = systems.get(system, [])
        if len(seeds) > 1:
            for seed in seeds:
                axis.plot([p["examples"] for p in seed["curve"]], [100 * p["dev"] for p in seed["curve"]],
                          "-", color=colour, alpha=0.25, linewidth=0.8)
        curve = mean_curve(seeds)
        if curve:
            which = f"dev, mean of {len(seeds)} seeds" if len(seeds) > 1 else "dev"
            axis.plot([p[1] for p in curve], [100 * p[2] for p in curve], style, color=colour,
                      markersize=3, label=f"{label} ({which})")
    published, what = TASKS[name].published
    axis.axhline(published, color="grey", linestyle=":", label=what)
    later = [100 * dev for seeds in systems.values() for step, _, dev in mean_curve(seeds) if step > 1]
    if later:   # the first point (one update, chance level) below the frame
        axis.set_ylim(min(later) - 3, max(max(later), published) + 1)
    axis.set(title=f"{TASKS[name].title} (m3e-small, 4 layers)", ylabel="dev score (%)")
    axis.legend(loc="lower right", fontsize=8)
    axis.grid(alpha=0.3)


def plot_difference(axis, systems: dict) -> None:
    """ours - HF of the mean dev curves, in points, at the steps both reached (after the first);
    with several seeds run by both, an error bar of one standard error of the paired differences."""
    points = [(step, examples, 100 * difference) for step, examples, difference in mean_differences(systems)]
    if points:
        spacing = points[1][1] - points[0][1] if len(points) > 1 else points[0][1]
        errors = paired_standard_errors(systems, [step for step, _, _ in points])
        axis.bar([x for _, x, _ in points], [d for _, _, d in points], width=0.6 * spacing, yerr=errors,
                 capsize=2, color=["C0" if d >= 0 else "C3" for _, _, d in points])   # red: ours behind
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set(xlabel="training examples seen", ylabel="ours - HF (points)")
    axis.grid(alpha=0.3)


def mean_differences(systems: dict) -> list:
    """(step, examples, ours - HF) of the mean dev curves at the steps both reached, after the
    first evaluation (one update: both still at chance)."""
    hf = {step: dev for step, _, dev in mean_curve(systems.get("hf_baseline", []))}
    return [(step, examples, dev - hf[step]) for step, examples, dev in mean_curve(systems.get("ours", []))
            if step in hf and step > 1]


def paired_standard_errors(systems: dict, steps: list) -> Optional[list]:
    """At each step, the standard error (points) of the mean of ours - HF over the seeds both ran;
    None with fewer than two such seeds."""
    by_seed = {system: {run["args"]["seed"]: {p["step"]: p["dev"] for p in run["curve"]}
                        for run in systems.get(system, []) if "seed" in run.get("args", {})}
               for system in ("ours", "hf_baseline")}
    seeds = sorted(set(by_seed["ours"]) & set(by_seed["hf_baseline"]))
    if len(seeds) < 2:
        return None
    errors = []
    for step in steps:
        differences = [100 * (by_seed["ours"][seed][step] - by_seed["hf_baseline"][seed][step])
                       for seed in seeds if step in by_seed["ours"][seed] and step in by_seed["hf_baseline"][seed]]
        errors.append(statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else 0.0)
    return errors


def print_summary(runs: dict) -> None:
    """A Markdown row per task: mean test scores of the best dev checkpoints, the published
    figure, and the smallest difference of the mean dev curves (ours - HF) and where, after the
    first evaluation (one update: both still at chance)."""
    print("| task | seeds | steps (examples) | ours: best dev / test | HF: best dev / test | published | ours - HF on dev, min (step) |")
    print("|---|---|---|---|---|---|---|")
    for name, systems in runs.items():
        ours = mean_curve(systems.get("ours", []))
        low = min(((difference, step) for step, _, difference in mean_differences(systems)), default=None)
        last = ours[-1] if ours else (0, 0, 0.0)
        n_seeds = max(len(seeds) for seeds in systems.values())
        print(f"| {TASKS[name].title} | {n_seeds} | {last[0]:,} ({last[1]:,}) | {score_pair(systems.get('ours', []))} | "
              f"{score_pair(systems.get('hf_baseline', []))} | {TASKS[name].published[0]} | "
              + (f"{100 * low[0]:+.2f} ({low[1]:,}) |" if low else "- |"))


def score_pair(seeds: list) -> str:
    """Best dev / test, means over the seeds that finished."""
    done = [seed for seed in seeds if "test" in seed]
    if not done:
        return "(running)"
    return (f"{100 * sum(s['best_dev'] for s in done) / len(done):.2f} / "
            f"{100 * sum(s['test'] for s in done) / len(done):.2f}")


if __name__ == "__main__":
    main()
