"""The hidden-state stage of ``distill``: the student's encoder moves towards the teacher's vectors
on the texts, the held-out rows are never trained on, and ``distill --hidden-steps`` records it."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import spacy
import torch

from spacy_bert_zh.distill import DistillError, DistillOptions, distill, encoder_of, make_student
from spacy_bert_zh.distill_hidden import HiddenOptions, match_hidden_states, read_rows

TEXTS = ["王小明在北京大学读书。", "这家酒店的服务很好，房间也干净。", "上海的天气今天不错", "手机电池不耐用，差评",
         "李华去了广州参加会议。", "这本书写得很有意思", "苹果很甜，下次还买", "热水器安装师傅很专业"]


@pytest.fixture
def texts_parquet(tmp_path):
    path = tmp_path / "texts.parquet"
    pq.write_table(pa.table({"text": TEXTS * 4 + ["", None]}), path)
    return path


def test_read_rows_counts_rows_not_texts(texts_parquet):
    assert list(read_rows(texts_parquet, "text", 0, 2)) == TEXTS[:2]
    assert list(read_rows(texts_parquet, "text", 30, None)) == TEXTS[6:]   # blank and null rows skipped


def test_the_student_moves_towards_the_teacher(untrained_pipeline, texts_parquet, tmp_path):
    teacher_nlp = spacy.load(untrained_pipeline)
    teacher = encoder_of(teacher_nlp)
    teacher_before = {name: tensor.clone() for name, tensor in teacher.state_dict().items()}
    student = encoder_of(make_student(untrained_pipeline, 1))
    options = HiddenOptions(steps=15, batch_size=8, learn_rate=5e-4, progress=False)
    report = match_hidden_states(teacher, student, teacher_nlp.get_pipe("transformer").model.tokenizer,
                                 texts_parquet, "text", 8, options, tmp_path / "hidden.json")
    assert report.steps == 15 and report.sequences_seen == 15 * 8
    assert report.heldout_rows == 8
    # the held-out rows (the first 8) are other rows of the same texts: the error falls on them too
    assert report.heldout_mse_after < 0.7 * report.heldout_mse_before, report
    assert report.heldout_cosine_after > report.heldout_cosine_before
    assert json.loads((tmp_path / "hidden.json").read_text())["steps"] == 15
    assert all(torch.equal(tensor, teacher_before[name]) for name, tensor in teacher.state_dict().items())


def test_distill_refuses_texts_that_are_all_held_out(untrained_pipeline, texts_parquet, tmp_path):
    options = DistillOptions(holdout=len(TEXTS) * 4 + 2, hidden_steps=5, progress=False)
    with pytest.raises(DistillError, match="all held out"):
        distill(untrained_pipeline, texts_parquet, tmp_path / "student", options)
    with pytest.raises(DistillError, match="--hidden-steps"):
        DistillOptions(hidden_steps=-1)


@pytest.mark.slow
def test_distill_with_a_hidden_stage_writes_its_report(untrained_pipeline, texts_parquet, tmp_path):
    options = DistillOptions(layers=1, hidden_steps=4, max_steps=2, eval_frequency=2, holdout=4,
                             batch_size=4, progress=False)
    student = distill(untrained_pipeline, texts_parquet, tmp_path / "student", options)
    report = json.loads((tmp_path / "student.work" / "hidden.json").read_text())
    assert report["steps"] == 4 and report["heldout_rows"] == 4
    assert encoder_of(spacy.load(student)).config.num_hidden_layers == 1
