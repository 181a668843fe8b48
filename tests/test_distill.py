"""``spacy-bert-zh distill``: the student's layers, its errors before work, and a short real
distillation of the pipeline trained on the embedded corpus (loads, is faster, agrees)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import spacy
import torch
from typer.testing import CliRunner

from spacy_bert_zh.annotation import annotate_table
from spacy_bert_zh.cli import app
from spacy_bert_zh.distill import (DistillError, DistillOptions, distill, encoder_of, kept_layers,
                                   make_student, save_student, write_student_config)
from spacy_bert_zh.evaluation import read_docbins
from spacy_bert_zh.quantize import quantize_pipeline

STUDENT_LAYERS = 2
DISTILL_STEPS = 120


@pytest.mark.parametrize("total, keep, expected", [(4, 1, [0]), (4, 2, [0, 1]), (4, 3, [0, 1, 2]),
                                                    (12, 4, [0, 1, 2, 3])])
def test_the_student_keeps_the_bottom_layers(total, keep, expected):
    assert kept_layers(total, keep) == expected


@pytest.fixture
def texts_parquet(tmp_path) -> Path:
    path = tmp_path / "texts.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "text": ["王小明在北京工作。", "这本书很好看", "上海"]}), path)
    return path


def run_cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["distill", *map(str, args)])
    return result.exit_code, result.output


def test_bad_inputs_are_refused_before_any_work(untrained_pipeline, texts_parquet, tmp_path):
    output = tmp_path / "student"
    cases = [
        ((untrained_pipeline, texts_parquet, output, "--layers", "4"), "fewer layers than its teacher's 4"),
        ((untrained_pipeline, texts_parquet, output, "--text-column", "body"), "body"),
        ((untrained_pipeline, texts_parquet, output, "--text-column", "id"), "not a string type"),
        ((untrained_pipeline, tmp_path / "none.parquet", output), "is not a Parquet file"),
        ((untrained_pipeline, texts_parquet, output, "--layers", "0"), "at least 1"),
        ((tmp_path / "no_pipeline", texts_parquet, output), "cannot load the teacher"),
    ]
    for args, message in cases:
        code, said = run_cli(*args)
        assert code == 2 and message in said, (args, said)
    assert not output.exists() and not Path(f"{output}.work").exists()
    output.mkdir()
    code, said = run_cli(untrained_pipeline, texts_parquet, output)
    assert code == 2 and "exists; pass --overwrite" in said


def test_a_teacher_without_textcat_is_refused(untrained_pipeline, texts_parquet, tmp_path):
    nlp = spacy.load(untrained_pipeline)
    nlp.remove_pipe("textcat")
    nlp.to_disk(tmp_path / "ner_only")
    code, said = run_cli(tmp_path / "ner_only", texts_parquet, tmp_path / "student")
    assert code == 2 and "has no textcat pipe" in said


def test_the_training_options_reach_the_student_config(untrained_pipeline, tmp_path):
    def training(options: DistillOptions, name: str) -> dict:
        (tmp_path / name).mkdir()
        config = write_student_config(untrained_pipeline, tmp_path / "silver.parquet",
                                      tmp_path / name / "distill.cfg", options)
        return spacy.util.load_config(config)["training"]

    def creation_callback(teacher: Path, name: str) -> dict:
        (tmp_path / name).mkdir()
        config = write_student_config(teacher, tmp_path / "silver.parquet", tmp_path / name / "distill.cfg",
                                      DistillOptions())
        return spacy.util.load_config(config)["nlp"]["after_pipeline_creation"]

    teacher = spacy.util.load_config(untrained_pipeline / "config.cfg")["training"]
    default = training(DistillOptions(max_steps=40), "default")
    assert default["dropout"] == teacher["dropout"]
    assert default["optimizer"]["learn_rate"]["initial_rate"] == teacher["optimizer"]["learn_rate"]["initial_rate"]
    assert default["optimizer"]["learn_rate"]["total_steps"] == 40
    chosen = training(DistillOptions(learn_rate=3e-4, dropout=0.0), "chosen")
    assert chosen["dropout"] == 0.0 and chosen["optimizer"]["learn_rate"]["initial_rate"] == 3e-4
    for bad in (-0.1, 1.0):
        with pytest.raises(DistillError, match="--dropout must be in"):
            DistillOptions(dropout=bad)
    # a teacher trained before step_after_listeners: its student steps its encoder on time anyway
    old_teacher = tmp_path / "old_teacher"
    spacy.load(untrained_pipeline, config={"nlp": {"after_pipeline_creation": None}}).to_disk(old_teacher)
    assert not spacy.util.load_config(old_teacher / "config.cfg")["nlp"]["after_pipeline_creation"]
    expected = {"@callbacks": "spacy_bert_zh.step_after_listeners.v1"}
    assert creation_callback(old_teacher, "old") == expected == creation_callback(untrained_pipeline, "new")


def test_dropout_reaches_the_students_encoder_through_its_saved_config(untrained_pipeline, tmp_path):
    """``[training] dropout`` does not reach the Hugging Face encoder's own dropout: --dropout must."""
    def train_mode_outputs(pipeline) -> list[torch.Tensor]:
        encoder = encoder_of(pipeline)
        encoder.train()
        with torch.no_grad():
            return [encoder(torch.tensor([[101, 1000, 2000, 3000, 102]])).last_hidden_state for _ in range(2)]

    teacher = spacy.load(untrained_pipeline)
    assert encoder_of(teacher).config.hidden_dropout_prob > 0
    assert not torch.equal(*train_mode_outputs(teacher))
    student = spacy.load(save_student(make_student(untrained_pipeline, 1, dropout=0.0), tmp_path / "student"))
    config = encoder_of(student).config
    assert config.hidden_dropout_prob == config.attention_probs_dropout_prob == 0.0
    assert torch.equal(*train_mode_outputs(student))


@pytest.fixture(scope="module")
def distilled(trained_pipeline, sample_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """(teacher, student): the embedded-corpus pipeline distilled on its own training texts."""
    nlp = spacy.blank("zh")
    texts = [doc.text for doc in read_docbins(nlp, [sample_corpus / "train"])]
    folder = tmp_path_factory.mktemp("distill")
    pq.write_table(pa.table({"text": texts}), folder / "unlabelled.parquet")
    options = DistillOptions(layers=STUDENT_LAYERS, max_steps=DISTILL_STEPS, eval_frequency=DISTILL_STEPS // 2,
                             holdout=100, progress=False)
    return trained_pipeline, distill(trained_pipeline, folder / "unlabelled.parquet", folder / "student", options)


@pytest.mark.slow
def test_the_student_is_an_ordinary_pipeline_with_fewer_layers(distilled, tmp_path):
    teacher, student = distilled
    nlp = spacy.load(student)
    assert nlp.pipe_names == ["transformer", "ner", "textcat"]
    model = encoder_of(nlp)
    assert model.config.num_hidden_layers == STUDENT_LAYERS == len(model.encoder.layer)
    assert encoder_of(spacy.load(teacher)).config.num_hidden_layers == 4
    assert nlp.meta["name"].endswith(f"_student{STUDENT_LAYERS}")
    assert "source" not in nlp.config["components"]["ner"]
    table = pa.table({"text": ["王小明在北京工作。", "这家酒店很干净"]})
    plain, int8 = annotate_table(nlp, table), annotate_table(quantize_pipeline(spacy.load(student)), table)
    assert plain.schema == int8.schema
    done = subprocess.run([sys.executable, "-m", "spacy", "package", str(student), str(tmp_path),
                           "--name", "student_test", "--version", "0.0.1", "--build", "wheel", "--force"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "zh_student_test-0.0.1" / "dist").glob("*.whl"))


def best_seconds(nlp, table: pa.Table, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        annotate_table(nlp, table, progress=False)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.slow
def test_the_student_is_faster_and_agrees_with_its_teacher(distilled, sample_corpus):
    teacher_nlp, student_nlp = (spacy.load(path) for path in distilled)
    dev = pa.table({"text": [doc.text for doc in read_docbins(spacy.blank("zh"), [sample_corpus / "dev"])]})
    # same texts, same process, interleaved; the student computes half the layers
    seconds = {"teacher": float("inf"), "student": float("inf")}
    for _ in range(2):
        for name, nlp in (("teacher", teacher_nlp), ("student", student_nlp)):
            seconds[name] = min(seconds[name], best_seconds(nlp, dev, repeats=1))
    assert seconds["student"] < 0.85 * seconds["teacher"], seconds
    teacher_out, student_out = annotate_table(teacher_nlp, dev), annotate_table(student_nlp, dev)
    same_label = [a == b for a, b in zip(teacher_out.column("label").to_pylist(),
                                         student_out.column("label").to_pylist())]
    assert sum(same_label) / len(same_label) >= 0.8

    def entities(table):
        return [{(e["start_char"], e["end_char"], e["label"]) for e in row}
                for row in table.column("entities").to_pylist()]

    reference, predicted = entities(teacher_out), entities(student_out)
    shared = sum(len(r & p) for r, p in zip(reference, predicted))
    f_vs_teacher = 2 * shared / (sum(map(len, reference)) + sum(map(len, predicted)))
    assert f_vs_teacher >= 0.8, f_vs_teacher
