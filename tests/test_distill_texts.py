"""The texts a student is distilled on: the first N rows, and the gold corpus's texts mixed in
(``--gold-targets teacher``): held-out rows first and unchanged, nothing lost or doubled, a mix."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import spacy
from spacy.tokens import DocBin

from spacy_bert_zh.distill import DistillError, DistillOptions, distill, write_student_config
from spacy_bert_zh.distill_texts import write_first_rows, write_with_gold_texts

UNLABELLED = [f"无标{i}号" for i in range(1000)]
GOLD = [f"金标{i}号" for i in range(1000)]


@pytest.fixture
def unlabelled(tmp_path):
    path = tmp_path / "unlabelled.parquet"
    pq.write_table(pa.table({"id": list(range(len(UNLABELLED))), "body": UNLABELLED}), path)
    return path


@pytest.fixture
def gold(tmp_path):
    nlp = spacy.blank("zh")
    folder = tmp_path / "gold"
    folder.mkdir()
    DocBin(docs=[nlp.make_doc(text) for text in GOLD[:600]]).to_disk(folder / "ner.spacy")
    DocBin(docs=[nlp.make_doc(text) for text in GOLD[600:]]).to_disk(folder / "cls.spacy")
    return folder


def texts_of(path, column="body"):
    return pq.read_table(path).column(column).to_pylist()


def test_the_first_rows(unlabelled, tmp_path):
    dest = write_first_rows(unlabelled, tmp_path / "first.parquet", 25, "body")
    assert texts_of(dest) == UNLABELLED[:25]
    assert not list(tmp_path.glob(".*partial"))


def test_gold_texts_are_mixed_in_after_the_held_out_rows(unlabelled, gold, tmp_path):
    dest = write_with_gold_texts(unlabelled, gold, tmp_path / "mixed.parquet", 100, "body", seed=0)
    texts = texts_of(dest)
    assert texts[:100] == UNLABELLED[:100]
    rest = texts[100:]
    assert sorted(rest) == sorted(UNLABELLED[100:] + GOLD)
    assert [text for text in rest if text.startswith("无标")] == UNLABELLED[100:]   # their order kept
    # a mix, not gold at the end (nor the ner file's texts before the cls file's)
    first_half = rest[:len(rest) // 2]
    assert 0.4 < sum(text.startswith("金标") for text in first_half) / len(first_half) < 0.6
    assert any(text in GOLD[600:] for text in rest[:100])
    assert texts_of(write_with_gold_texts(unlabelled, gold, tmp_path / "again.parquet", 100, "body",
                                          seed=0)) == texts


def test_gold_targets_are_checked():
    with pytest.raises(DistillError, match="one of labels, teacher"):
        DistillOptions(gold_targets="soft")
    with pytest.raises(DistillError, match="needs --gold"):
        DistillOptions(gold_targets="teacher")


def test_the_student_config_reads_gold_labels_only_for_gold_targets_labels(untrained_pipeline, gold, tmp_path):
    readers = {}
    for targets in ("labels", "teacher"):
        options = DistillOptions(gold=gold, gold_targets=targets)
        (tmp_path / targets).mkdir()
        config = write_student_config(untrained_pipeline, tmp_path / "silver.parquet",
                                      tmp_path / targets / "distill.cfg", options)
        readers[targets] = spacy.util.load_config(config)["corpora"]["train"]
    assert readers["labels"]["gold"] == str(gold.resolve())
    assert readers["teacher"]["gold"] is None


@pytest.mark.slow
def test_the_teacher_annotates_the_gold_texts_too(untrained_pipeline, sample_corpus, tmp_path):
    path = tmp_path / "unlabelled.parquet"
    pq.write_table(pa.table({"text": ["王小明在北京工作。", "这本书很好看", "上海", "手机电池不耐用"] * 5}), path)
    options = DistillOptions(layers=1, gold=sample_corpus / "train", gold_targets="teacher", max_steps=2,
                             eval_frequency=2, holdout=4, batch_size=4, progress=False)
    distill(untrained_pipeline, path, tmp_path / "student", options)
    annotated = texts_of(tmp_path / "student.work" / "teacher-annotations.parquet", "text")
    gold_texts = [doc.text for doc in DocBin().from_disk(sample_corpus / "train" / "ner.spacy")
                  .get_docs(spacy.blank("zh").vocab)]
    assert len(annotated) == 20 + len(gold_texts) + 400   # 400 texts in the embedded cls train split
    assert set(gold_texts) <= set(annotated)
