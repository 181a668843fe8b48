"""benchmarks/annotate_profile.py: the timing hooks see every encoder layer, the split adds up,
and the ceiling formula gives what a k-layer student could reach if only its layers shrank."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.annotate_profile import attach_clocks, ceilings, fastest_splits  # noqa: E402


def test_the_ceiling_is_what_is_left_when_only_the_layers_shrink():
    split = {"total_s": 10.0, "layers_s": 8.0, "n_layers": 4}
    assert ceilings(split) == pytest.approx({1: 10 / 4.0, 2: 10 / 6.0, 3: 10 / 8.0})
    assert ceilings({"total_s": 10.0, "layers_s": 0.0, "n_layers": 4}) == {1: 1.0, 2: 1.0, 3: 1.0}


def test_the_clock_times_every_layer_inside_the_run(untrained_pipeline):
    import spacy

    nlp = spacy.load(untrained_pipeline)
    clock = attach_clocks(nlp)
    assert clock.n_layers == 4
    clock.reset()
    started = time.perf_counter()
    list(nlp.pipe(["张三在北京大学读书。", "这家酒店很好。"] * 4))
    split = clock.split(time.perf_counter() - started)
    assert 0 < split["layers_s"] < split["total_s"]
    assert 0 < split["embeddings_s"] < split["layers_s"]
    assert split["outside_s"] == pytest.approx(split["total_s"] - split["layers_s"] - split["embeddings_s"])
    clock.reset()
    assert clock.seconds == {"layers": 0.0, "embeddings": 0.0}


def test_each_pipeline_keeps_the_split_of_its_fastest_run(untrained_pipeline):
    import pyarrow as pa
    import spacy

    table = pa.table({"text": ["张三在北京大学读书。", "这家酒店很好。"] * 4})
    splits = fastest_splits({"p": spacy.load(untrained_pipeline)}, table, 2)
    split = splits["p"]
    assert split["n_layers"] == 4
    assert 0 < split["layers_s"] < split["total_s"]      # one run's layers, not two runs' summed
    assert split["outside_s"] == pytest.approx(split["total_s"] - split["layers_s"] - split["embeddings_s"])
