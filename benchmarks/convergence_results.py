"""The convergence runs' tasks and result files: reading them back, the learning-curve plot, the
summary table, the pooled differences and the band of runs on one sequence of batches
(benchmarks/convergence.py trains and writes them; `--replot`, `--pool` and `--band` come here)."""
from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class Task:
    kind: str            # "ner" or "cls"
    folder: str          # under ../shared/data
    suffix: str          # of train/dev/test files
    metric: str          # spaCy score that picks the best checkpoint
    title: str
    published: tuple     # (figure, what it is)
    train_size: int      # examples in one epoch (the shared corpus' train split)


TASKS = {
    "resume": Task("ner", "resume_ner", "bmes", "ents_f", "Resume NER: entity F1",
                   (95.9, "bert-base-chinese + CRF, test (published)"), 3821),
    "chnsenticorp": Task("cls", "chnsenticorp", "tsv", "cats_accuracy", "ChnSentiCorp: accuracy",
                         (95.0, "bert-base-chinese, test (published)"), 9600),
}


def result_path(results: Path, task: str, system: str, seed: int) -> Path:
    return results / f"convergence_{task}_{system}_seed{seed}.json"


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
    both systems (the mean over the seeds of ``comparable_runs``, and each seed faintly when there
    are several); below, the difference of the mean curves (ours - HF). Then the summary table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_runs(results)
    if not runs:
        sys.exit(f"no convergence_*_*_seed*.json in {results}")
    figure, axes = plt.subplots(2, len(runs), figsize=(5.5 * len(runs), 5.5), squeeze=False, sharex="col",
                                gridspec_kw={"height_ratios": (3, 1)})
    for column, (name, systems) in enumerate(runs.items()):
        plot_task(axes[0][column], name, comparable_runs(systems))
        plot_difference(axes[1][column], systems)
    figure.tight_layout()
    png = results / "convergence.png"
    figure.savefig(png, dpi=120)
    print(f"wrote {png}")
    print_summary(runs)
    print_differences(runs)


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
    """(step, examples, ours - HF) of the mean dev curves over the seeds both systems ran, at the
    steps both reached, after the first evaluation (one update: both still at chance)."""
    paired = paired_runs(systems)
    hf = {step: dev for step, _, dev in mean_curve(paired["hf_baseline"])}
    return [(step, examples, dev - hf[step]) for step, examples, dev in mean_curve(paired["ours"])
            if step in hf and step > 1]


def paired_runs(systems: dict) -> dict:
    """Each system's runs of the seeds that both systems ran (a run without a seed pairs with
    none): a seed one system has not run yet (or at all) would compare different seeds' curves."""
    seeds = {system: {run.get("args", {}).get("seed") for run in systems.get(system, [])} - {None}
             for system in ("ours", "hf_baseline")}
    common = seeds["ours"] & seeds["hf_baseline"]
    return {system: [run for run in systems.get(system, []) if run.get("args", {}).get("seed") in common]
            for system in ("ours", "hf_baseline")}


def comparable_runs(systems: dict) -> dict:
    """The runs the plot's curves and the summary average: the seeds both systems ran, once there
    is one (a mean of HF over seeds 0 and 1 against ours of seed 0 alone would compare different
    batches); until then, every run (one system alone, or unpaired seeds)."""
    paired = paired_runs(systems)
    if not paired["ours"]:
        return systems
    return {system: runs for system, runs in paired.items() if runs}


def unpaired_runs(systems: dict) -> list:
    """(system, seed) of each run that ``comparable_runs`` leaves out."""
    kept = comparable_runs(systems)
    return [(system, run.get("args", {}).get("seed")) for system, runs in systems.items() for run in runs
            if run not in kept.get(system, [])]


def seed_differences(systems: dict) -> dict:
    """{seed: {step: (examples, ours - HF in points)}} for each seed both systems ran, at the steps
    both reached."""
    paired = paired_runs(systems)
    hf = {run["args"]["seed"]: {p["step"]: p["dev"] for p in run["curve"]} for run in paired["hf_baseline"]}
    differences = {}
    for run in sorted(paired["ours"], key=lambda run: run["args"]["seed"]):
        hf_dev = hf[run["args"]["seed"]]
        differences[run["args"]["seed"]] = {p["step"]: (p["examples"], 100 * (p["dev"] - hf_dev[p["step"]]))
                                            for p in run["curve"] if p["step"] in hf_dev}
    return differences


def paired_standard_errors(systems: dict, steps: list) -> Optional[list]:
    """At each step, the standard error (points) of the mean of ours - HF over the seeds both ran;
    None with fewer than two such seeds."""
    by_seed = seed_differences(systems)
    if len(by_seed) < 2:
        return None
    errors = []
    for step in steps:
        differences = [points[step][1] for points in by_seed.values() if step in points]
        errors.append(statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else 0.0)
    return errors


def print_summary(runs: dict) -> None:
    """A Markdown row per task: mean test scores of the best dev checkpoints (of the seeds both
    systems ran, once there is one), the published figure, and the smallest difference of the mean
    dev curves (ours - HF) and where, after the first evaluation (one update: both at chance)."""
    print("| task | seeds | steps (examples) | ours: best dev / test | HF: best dev / test | published | ours - HF on dev, min (step) |")
    print("|---|---|---|---|---|---|---|")
    for name, systems in runs.items():
        systems = comparable_runs(systems)
        ours = mean_curve(systems.get("ours", []))
        low = min(((difference, step) for step, _, difference in mean_differences(systems)), default=None)
        last = ours[-1] if ours else (0, 0, 0.0)
        n_seeds = max(len(seeds) for seeds in systems.values())
        print(f"| {TASKS[name].title} | {n_seeds} | {last[0]:,} ({last[1]:,}) | {score_pair(systems.get('ours', []))} | "
              f"{score_pair(systems.get('hf_baseline', []))} | {TASKS[name].published[0]} | "
              + (f"{100 * low[0]:+.2f} ({low[1]:,}) |" if low else "- |"))


def print_differences(runs: dict) -> None:
    """Per task, ours - HF of the mean dev curves at every point after the first (examples seen in
    brackets), with one standard error of the seed-by-seed differences where there are two seeds
    or more, and how many points are behind by more than that error."""
    labels = {system: label for system, label, *_ in SYSTEMS}
    for name, systems in runs.items():
        for system, seed in unpaired_runs(systems):
            print(f"{TASKS[name].title}: {labels[system]} seed {seed} left out until the other system runs it")
        points = mean_differences(systems)
        if not points:
            continue
        errors = paired_standard_errors(systems, [step for step, _, _ in points]) or [None] * len(points)
        cells = [f"{100 * difference:+.2f}" + (f" ± {error:.2f}" if error is not None else "") + f" ({examples:,})"
                 for (_, examples, difference), error in zip(points, errors)]
        behind = sum(difference < 0 for _, _, difference in points)
        clearly = sum(error is not None and 100 * difference < -error for (_, _, difference), error in zip(points, errors))
        print(f"{TASKS[name].title}, ours - HF on dev: " + "; ".join(cells))
        print(f"  behind at {behind} of {len(points)} points, by more than one standard error at {clearly}")


def score_pair(seeds: list) -> str:
    """Best dev / test, means over the seeds that finished."""
    done = [seed for seed in seeds if "test" in seed]
    if not done:
        return "(no run scored on test yet)"
    return (f"{100 * sum(s['best_dev'] for s in done) / len(done):.2f} / "
            f"{100 * sum(s['test'] for s in done) / len(done):.2f}")


def first_epoch_differences(folders: list, name: str) -> list:
    """(folder, seed, ours - HF averaged over the points in the first epoch, and over the points
    after it, None where there are none), in points, for every seed both systems ran in each
    folder; the first evaluation (one update, both at chance) left out."""
    epoch = TASKS[name].train_size
    rows = []
    for folder in folders:
        for seed, points in seed_differences(load_runs(Path(folder)).get(name, {})).items():
            later = [(examples, d) for step, (examples, d) in points.items() if step > 1]
            rows.append((str(folder), seed, mean_or_none([d for examples, d in later if examples <= epoch]),
                         mean_or_none([d for examples, d in later if examples > epoch])))
    return rows


def print_pooled(folders: list, name: str) -> None:
    """Each paired run's mean ours - HF in the first epoch and after it, then their mean over the
    runs with one standard error (each run one sample, though one seed's runs on different
    schedules see the same batches)."""
    rows = first_epoch_differences(folders, name)
    for folder, seed, first, later in rows:
        print(f"{folder} seed {seed}: first epoch {signed(first)}, after it {signed(later)}")
    for column, label in ((2, "first epoch"), (3, "after it")):
        values = [row[column] for row in rows if row[column] is not None]
        if len(values) > 1:
            error = statistics.stdev(values) / len(values) ** 0.5
            print(f"{TASKS[name].title}, ours - HF, {label}: {statistics.mean(values):+.2f} ± {error:.2f} "
                  f"(mean of {len(values)} runs ± one standard error)")


def print_band(folder: Path, name: str, baseline_folder: Optional[Path] = None,
               against_folder: Optional[Path] = None) -> None:
    """For runs of both systems that all saw one sequence of batches, with different seeds for the
    heads' initialisation and dropout (benchmarks/trial_batch_seed.py), at each step after the first
    that every run reached: each system's mean dev and its lowest and highest run, and ours - HF of
    the means with the standard error of that difference (Welch's: each system's runs are independent
    samples, not pairs). Ours' runs are read from ``folder``; the baseline's from ``baseline_folder``
    when given (a trial's runs of ours against the baseline runs kept elsewhere), else ``folder``.
    With ``against_folder`` (another variant's runs of ours on the same batches), each line also gives
    ours - those runs, the same way."""
    baseline_folder = baseline_folder or folder
    ours = band_runs(folder, name, "ours", "ours")
    hf = band_runs(baseline_folder, name, "hf_baseline", "the HF fine-tune")
    other = band_runs(against_folder, name, "ours", "ours") if against_folder else []
    print(f"{TASKS[name].title}: {len(ours)} runs of ours, {len(hf)} of the HF fine-tune, one sequence of batches"
          + (f"; against {len(other)} runs of ours in {against_folder}" if other else ""))
    behind = clearly = 0
    steps = [(step, examples) for step, examples, _ in mean_curve(ours + hf + other) if step > 1]
    for step, examples in steps:
        ours_dev, hf_dev = dev_at(ours, step), dev_at(hf, step)
        difference, error = welch(ours_dev, hf_dev)
        behind += difference < 0
        clearly += difference < -error
        line = (f"  step {step:,} ({examples:,} examples): ours {spread(ours_dev)}, HF {spread(hf_dev)}, "
                f"ours - HF {difference:+.2f} ± {error:.2f}")
        if other:
            line += ", against the other ours {:+.2f} ± {:.2f}".format(*welch(ours_dev, dev_at(other, step)))
        print(line)
    print(f"  behind at {behind} of {len(steps)} points, by more than one standard error at {clearly}")


def band_runs(folder: Path, name: str, system: str, described: str) -> list:
    """The runs of ``system`` on ``name`` in ``folder``: two or more, else exit naming the folder."""
    runs = load_runs(Path(folder)).get(name, {}).get(system, [])
    if len(runs) < 2:
        sys.exit(f"--band needs two runs or more of each system on {name}: {len(runs)} of {described} in {folder}")
    return runs


def welch(first: list, second: list) -> tuple:
    """Mean of ``first`` - mean of ``second``, and the standard error of that difference (Welch's)."""
    difference = statistics.mean(first) - statistics.mean(second)
    error = (statistics.variance(first) / len(first) + statistics.variance(second) / len(second)) ** 0.5
    return difference, error


def dev_at(runs: list, step: int) -> list:
    """Each run's dev score at ``step``, in points."""
    return [100 * next(point["dev"] for point in run["curve"] if point["step"] == step) for run in runs]


def spread(values: list) -> str:
    return f"{statistics.mean(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def mean_or_none(values: list) -> Optional[float]:
    return statistics.mean(values) if values else None


def signed(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:+.2f}"
