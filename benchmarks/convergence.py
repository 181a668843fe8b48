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
    python benchmarks/convergence.py --task chnsenticorp --band benchmarks/results/batches_of_seed0
    python benchmarks/convergence.py --task chnsenticorp --band benchmarks/results/batches_of_seed0/head_init \
        --band-baseline benchmarks/results/batches_of_seed0 --band-against benchmarks/results/batches_of_seed0
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import spacy
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.convergence_results import TASKS, Task, plot_curves, print_band, print_pooled, result_path  # noqa: E402
from benchmarks.data import SHARED_DATA, one_task_config, read_bio_sentences, read_tsv_rows  # noqa: E402
from benchmarks.hf_baseline import SequenceClassifier, TokenTagger, fine_tune, training_order  # noqa: E402
from spacy_bert_zh.conversion import CLS_ATTRS, NER_ATTRS, convert_cls, convert_ner  # noqa: E402
from spacy_bert_zh.cpu_autocast import CALLBACK as CPU_BF16_CALLBACK, Bfloat16Autocast  # noqa: E402
from spacy_bert_zh.encoder import fetch_encoder  # noqa: E402
from spacy_bert_zh.evaluation import evaluate_pipeline  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CURVE_LOGGER = "benchmarks.curve_logger.v1"


def main() -> None:
    args = parse_args()
    if args.replot:
        plot_curves(args.results)
        return
    if args.pool:
        print_pooled(args.pool, args.task)
        return
    if args.band:
        print_band(args.band, args.task, args.band_baseline, args.band_against)
        return
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    if not (SHARED_DATA / task.folder).is_dir():
        sys.exit(f"{SHARED_DATA / task.folder} is absent: this benchmark needs the real corpora")
    encoder = args.encoder or str(fetch_encoder(ROOT / "encoders" / "m3e-small"))
    steps = planned_steps(args)
    if args.system in ("ours", "both"):
        ours = new_result(args, "ours")
        with tempfile.TemporaryDirectory() as work:
            train_ours(task, encoder, args, Path(work), ours, result_path(args.results, args.task, "ours", args.seed))
        steps = [point["step"] for point in ours["curve"]]  # where ours stopped, with patience
    if args.system in ("hf", "both"):
        baseline = new_result(args, "hf_baseline")
        train_baseline(task, encoder, args, steps, baseline,
                       result_path(args.results, args.task, "hf_baseline", args.seed))
    plot_curves(args.results)


def new_result(args, system: str) -> dict:
    """A run's result before its first evaluation: what ran, and an empty curve."""
    return {"task": args.task, "system": system, "script": script_name(), "args": run_arguments(args), "curve": []}


def run_arguments(args) -> dict:
    """The command line as JSON values: paths as strings, relative to the repository inside it."""
    return {key: recorded(value) for key, value in vars(args).items()}


def recorded(value):
    """``value`` as a JSON value; an absolute path inside the repository relative to it."""
    if not isinstance(value, (str, Path)) or not Path(value).is_absolute():
        return str(value) if isinstance(value, Path) else value
    path = Path(value).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def script_name() -> str:
    """The script this run was started as (a trial script patches convergence.main)."""
    return recorded(Path(sys.argv[0]).resolve())


def planned_steps(args) -> list:
    """The steps after which spaCy evaluates ours (its step counter starts at 0, after one update)."""
    return [step + 1 for step in range(0, args.max_steps + 1, args.eval_every)]


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
    parser.add_argument("--pool", type=Path, nargs="+", help="only print ours - HF of every paired run of "
                        "--task in these folders, averaged over the first epoch and after it, then over the runs")
    parser.add_argument("--band", type=Path, help="only print, for the runs of --task in this folder (all on one "
                        "sequence of batches: benchmarks/trial_batch_seed.py), each system's mean dev and range "
                        "at every step, and ours - HF with its standard error")
    parser.add_argument("--band-baseline", type=Path, help="with --band: read the HF runs from this folder "
                        "instead (a trial's runs of ours against the baseline's runs on the same batches)")
    parser.add_argument("--band-against", type=Path, help="with --band: also print ours - the runs of ours in "
                        "this folder (another variant of ours on the same batches), with its standard error")
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
    texts = split_texts(task, "train")
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


def split_texts(task: Task, split: str) -> list:
    """The texts of a split, in file order (an NER sentence's characters joined)."""
    rows = read_split(task, split)
    return [text for _, text in rows] if task.kind == "cls" else ["".join(chars) for chars, _ in rows]


def save(result: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
