"""benchmarks/convergence.py's reading of several seeds: the mean curve, the summary and the plot
(on result files the test writes, not on a training run); the precision it pins; where the
benchmarks look for the shared corpora; padding_cost.py's count of the encoder's work."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
from spacy.util import load_config_from_str

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.convergence import ROOT, read_split, run_arguments, set_cpu_bf16  # noqa: E402
from benchmarks.convergence_results import (TASKS, load_runs, mean_curve, paired_standard_errors, plot_curves,  # noqa: E402
                                            print_band, print_pooled, result_path)
from benchmarks.data import one_task_config  # noqa: E402
from benchmarks.padding_cost import our_window_lengths, padded_cost  # noqa: E402
from conftest import corpus  # noqa: E402

CPU_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cpu.cfg"


def write_run(results: Path, system: str, seed: int, devs: dict, test: float = None) -> None:
    run = {"task": "chnsenticorp", "system": system, "args": {"seed": seed},
           "curve": [{"step": step, "examples": 8 * step, "dev": dev} for step, dev in devs.items()]}
    if test is not None:
        run.update(test=test, best_dev=max(devs.values()))
    result_path(results, "chnsenticorp", system, seed).write_text(json.dumps(run), encoding="utf-8")


def test_the_mean_curve_averages_the_steps_every_seed_reached(tmp_path):
    write_run(tmp_path, "ours", 0, {1: 0.5, 101: 0.80, 201: 0.90})
    write_run(tmp_path, "ours", 3, {1: 0.5, 101: 0.86})            # cut short after step 101
    seeds = load_runs(tmp_path)["chnsenticorp"]["ours"]
    assert len(seeds) == 2
    assert [(step, examples) for step, examples, _ in mean_curve(seeds)] == [(1, 8), (101, 808)]
    assert abs(mean_curve(seeds)[1][2] - 0.83) < 1e-9


def test_the_summary_compares_mean_curves_after_the_first_point(tmp_path, capsys):
    write_run(tmp_path, "ours", 0, {1: 0.40, 101: 0.80, 201: 0.90}, test=0.91)
    write_run(tmp_path, "ours", 1, {1: 0.40, 101: 0.84, 201: 0.88}, test=0.89)
    write_run(tmp_path, "hf_baseline", 0, {1: 0.60, 101: 0.80, 201: 0.87}, test=0.86)
    write_run(tmp_path, "hf_baseline", 1, {1: 0.60, 101: 0.80, 201: 0.89}, test=0.88)
    plot_curves(tmp_path)
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| ChnSentiCorp"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "2"                       # seeds
    assert cells[3] == "89.00 / 90.00"           # ours: mean best dev (0.90, 0.88), mean test
    assert cells[4] == "88.00 / 87.00"
    assert cells[6] == "+1.00 (201)"             # 0.82 - 0.80 at 101, 0.89 - 0.88 at 201; step 1 (-0.20) left out
    assert "ours - HF on dev: +2.00 ± 2.00 (808); +1.00 ± 2.00 (1,608)" in out   # seeds' differences 0, +4; +3, -1
    assert "behind at 0 of 2 points, by more than one standard error at 0" in out
    assert (tmp_path / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_command_line_is_written_as_json_with_paths_as_strings(tmp_path):
    arguments = run_arguments(argparse.Namespace(results=tmp_path / "trial", seed=1, task="resume",
                                                 config=str(ROOT / "configs" / "cpu.cfg"), system="ours"))
    assert json.loads(json.dumps(arguments)) == {"results": str(tmp_path / "trial"), "seed": 1, "task": "resume",
                                                 "config": "configs/cpu.cfg", "system": "ours"}


@pytest.mark.parametrize("enabled", ["off", "on"])
def test_both_systems_precision_is_pinned_whatever_the_cpu(enabled):
    """cpu.cfg's "auto" would put ours alone in bfloat16 on some CPUs: the run names it instead."""
    config = one_task_config("textcat", {"cats_accuracy": 1.0})
    assert config["initialize"]["after_init"]["enabled"] == "auto"
    set_cpu_bf16(config, enabled)
    assert load_config_from_str(config.to_str())["initialize"]["after_init"]["enabled"] == enabled


def test_bfloat16_asked_of_a_config_without_the_callback_stops_the_run():
    config = one_task_config("textcat", {"cats_accuracy": 1.0})
    config["initialize"]["after_init"] = None
    set_cpu_bf16(config, "off")                     # nothing to switch off
    with pytest.raises(SystemExit, match="after_init"):
        set_cpu_bf16(config, "on")


def test_the_error_bars_pair_the_systems_seed_by_seed():
    def run(seed, devs):
        return {"args": {"seed": seed}, "curve": [{"step": step, "examples": 8 * step, "dev": dev} for step, dev in devs.items()]}
    systems = {"ours": [run(0, {101: 0.90, 201: 0.92}), run(1, {101: 0.88, 201: 0.93}), run(5, {101: 0.5})],
               "hf_baseline": [run(1, {101: 0.86, 201: 0.93}), run(0, {101: 0.90, 201: 0.91})]}
    errors = paired_standard_errors(systems, [101, 201])   # seed 5 has no HF run: left out
    assert abs(errors[0] - 1.0) < 1e-9                     # differences 0 and +2 points: sd 1.41, se 1.0
    assert abs(errors[1] - 0.5) < 1e-9                     # +1 and 0
    assert paired_standard_errors({"ours": systems["ours"][:1], "hf_baseline": systems["hf_baseline"]}, [101]) is None


def test_the_differences_compare_only_seeds_both_systems_ran(tmp_path, capsys):
    write_run(tmp_path, "ours", 0, {1: 0.5, 101: 0.90, 201: 0.92}, test=0.91)
    write_run(tmp_path, "hf_baseline", 0, {1: 0.5, 101: 0.89, 201: 0.90}, test=0.90)
    write_run(tmp_path, "hf_baseline", 1, {1: 0.5, 101: 0.80, 201: 0.80}, test=0.70)   # ours of seed 1 not run yet
    plot_curves(tmp_path)
    out = capsys.readouterr().out
    assert "ours - HF on dev: +1.00 (808); +2.00 (1,608)" in out            # seed 0 against seed 0
    row = next(line for line in out.splitlines() if line.startswith("| ChnSentiCorp"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:5] == ["1", "201 (1,608)", "92.00 / 91.00", "90.00 / 90.00"]   # HF of seed 0 alone
    assert "HF fine-tune seed 1 left out until the other system runs it" in out
    write_run(tmp_path, "ours", 1, {1: 0.5})                                 # seed 1 started: one point
    plot_curves(tmp_path)
    assert "ours - HF on dev:" not in capsys.readouterr().out                # no step after the first reached by both


def test_the_pooled_differences_split_each_paired_run_at_one_epoch(tmp_path, capsys):
    short, long = tmp_path / "short", tmp_path / "long"                # ChnSentiCorp: 9,600 reviews an epoch
    short.mkdir()
    long.mkdir()
    write_run(short, "ours", 0, {1: 0.5, 600: 0.90, 1200: 0.92})       # 4,800 and 9,600 reviews
    write_run(short, "hf_baseline", 0, {1: 0.6, 600: 0.88, 1200: 0.93})
    write_run(long, "ours", 1, {1: 0.5, 600: 0.86, 1300: 0.95, 2400: 0.95})
    write_run(long, "hf_baseline", 1, {1: 0.5, 600: 0.87, 1300: 0.94, 2400: 0.92})
    write_run(long, "hf_baseline", 2, {1: 0.5, 600: 0.10})             # no ours of seed 2: left out
    print_pooled([short, long], "chnsenticorp")
    out = capsys.readouterr().out
    assert f"{short} seed 0: first epoch +0.50, after it -" in out      # (+2 - 1) / 2; step 1 left out
    assert f"{long} seed 1: first epoch -1.00, after it +2.00" in out   # +1 and +3 after 9,600 reviews
    assert "seed 2" not in out
    assert "first epoch: -0.25 ± 0.75 (mean of 2 runs" in out           # +0.5 and -1.0
    assert "after it:" not in out                                       # one run has points after it


def test_the_band_compares_every_run_of_one_batch_order_unpaired(tmp_path, capsys):
    write_run(tmp_path, "ours", 0, {1: 0.5, 100: 0.90, 200: 0.92})
    write_run(tmp_path, "ours", 2, {1: 0.5, 100: 0.86, 200: 0.92})
    write_run(tmp_path, "hf_baseline", 0, {1: 0.5, 100: 0.89, 200: 0.95})
    write_run(tmp_path, "hf_baseline", 4, {1: 0.5, 100: 0.87, 200: 0.93})   # no ours of seed 4: still counted
    write_run(tmp_path, "hf_baseline", 5, {1: 0.5, 100: 0.85, 200: 0.94})
    print_band(tmp_path, "chnsenticorp")
    out = capsys.readouterr().out
    assert "2 runs of ours, 3 of the HF fine-tune" in out
    # step 100: ours 88 (variance 8), HF 87 (variance 4): +1.00 ± sqrt(8 / 2 + 4 / 3)
    assert "step 100 (800 examples): ours 88.00 [86.00, 90.00], HF 87.00 [85.00, 89.00], ours - HF +1.00 ± 2.31" in out
    # step 200: ours 92 (variance 0), HF 94 (variance 1): -2.00 ± sqrt(1 / 3)
    assert "ours - HF -2.00 ± 0.58" in out
    assert "step 1 " not in out                                            # one update: both at chance
    assert "behind at 1 of 2 points, by more than one standard error at 1" in out
    (tmp_path / "convergence_chnsenticorp_ours_seed2.json").unlink()
    with pytest.raises(SystemExit, match="two runs or more of each system"):
        print_band(tmp_path, "chnsenticorp")


def test_a_band_reads_a_trials_runs_of_ours_against_the_baseline_kept_elsewhere(tmp_path, capsys):
    trial, baseline = tmp_path / "trial", tmp_path / "baseline"
    trial.mkdir(), baseline.mkdir()
    write_run(trial, "ours", 0, {1: 0.5, 100: 0.90})
    write_run(trial, "ours", 2, {1: 0.5, 100: 0.86})
    write_run(trial, "hf_baseline", 0, {1: 0.5, 100: 0.10})       # not read: the baseline is elsewhere
    write_run(baseline, "ours", 0, {1: 0.5, 100: 0.10})           # not read: ours is the trial's
    write_run(baseline, "hf_baseline", 0, {1: 0.5, 100: 0.89})
    write_run(baseline, "hf_baseline", 4, {1: 0.5, 100: 0.85})
    print_band(trial, "chnsenticorp", baseline)
    out = capsys.readouterr().out
    assert "2 runs of ours, 2 of the HF fine-tune" in out
    # ours 88 (variance 8), HF 87 (variance 8): +1.00 ± sqrt(8 / 2 + 8 / 2)
    assert "ours 88.00 [86.00, 90.00], HF 87.00 [85.00, 89.00], ours - HF +1.00 ± 2.83" in out


def test_a_band_compares_a_trials_runs_of_ours_against_another_variants(tmp_path, capsys):
    trial, default = tmp_path / "trial", tmp_path / "default"
    trial.mkdir(), default.mkdir()
    write_run(trial, "ours", 0, {1: 0.5, 100: 0.90})
    write_run(trial, "ours", 2, {1: 0.5, 100: 0.86})
    for seed, dev in [(0, 0.89), (4, 0.85)]:
        write_run(default, "hf_baseline", seed, {1: 0.5, 100: dev})
    for seed, dev in [(0, 0.84), (2, 0.85), (3, 0.86)]:
        write_run(default, "ours", seed, {1: 0.5, 100: dev})
    print_band(trial, "chnsenticorp", default, default)
    out = capsys.readouterr().out
    assert f"against 3 runs of ours in {default}" in out
    # the trial's 88 (variance 8) against the default's 85 (variance 1): +3.00 ± sqrt(8 / 2 + 1 / 3)
    assert "ours - HF +1.00 ± 2.83, against the other ours +3.00 ± 2.08" in out
    (default / "convergence_chnsenticorp_ours_seed2.json").unlink()
    (default / "convergence_chnsenticorp_ours_seed3.json").unlink()
    with pytest.raises(SystemExit, match=f"1 of ours in {default}"):
        print_band(trial, "chnsenticorp", default, default)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_an_epoch_is_the_shared_training_split(name):
    """--pool splits the curves at one epoch without reading the corpus: its size must be the split's."""
    task = TASKS[name]
    corpus(f"{task.folder}/train.{task.suffix}")       # skips when the shared corpora are absent
    assert task.train_size == len(read_split(task, "train"))


@pytest.mark.parametrize("variable", [None, ""])
def test_the_benchmarks_find_the_shared_corpora_beside_the_repository(monkeypatch, variable):
    import importlib

    import benchmarks.data

    if variable is None:
        monkeypatch.delenv("SPACY_BERT_ZH_SHARED_DATA", raising=False)
    else:
        monkeypatch.setenv("SPACY_BERT_ZH_SHARED_DATA", variable)
    try:
        shared = importlib.reload(benchmarks.data).SHARED_DATA
        assert shared == Path(__file__).resolve().parents[2] / "shared" / "data"
    finally:
        monkeypatch.undo()
        importlib.reload(benchmarks.data)


def test_a_padded_batch_costs_its_longest_window_for_every_window():
    assert padded_cost([3, 5, 4]) == (15, 75)


def test_our_windows_are_the_configs_whole_text_spans(encoder_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path))
    short, long = "好评", "很" * 600          # cpu.cfg: windows of 500 characters every 448
    assert our_window_lengths([short, long], CPU_CONFIG, tokenizer) == [[4], [502, 154]]
