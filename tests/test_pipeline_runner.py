"""A row that makes the pipeline raise (pipeline_runner.run_batch) costs that row, not the file."""
from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from spacy.language import Language

import spacy_bert_zh.pipeline_runner
from spacy_bert_zh.annotation import annotate_files, annotate_table, load_pipeline
from spacy_bert_zh.pipeline_runner import worker_threads

from test_annotation import run_cli, write_parquet

MARKER = "炸"
CALLS = {"docs": 0}


@Language.component("test_explode_on_marker")
def explode_on_marker(doc):
    """Raise on any doc containing MARKER, as a buggy component would on some input."""
    CALLS["docs"] += 1
    if MARKER in doc.text:
        raise RuntimeError(f"cannot handle {doc.text[:10]!r}")
    return doc


@pytest.fixture(scope="module")
def fragile_nlp(untrained_pipeline):
    nlp = load_pipeline(str(untrained_pipeline))
    nlp.add_pipe("test_explode_on_marker")
    return nlp


@pytest.fixture(scope="module")
def nlp(untrained_pipeline):
    return load_pipeline(str(untrained_pipeline))


def rows_with_bad_ones(review_texts: list[str]) -> list[str | None]:
    texts = list(review_texts[:40])
    texts[3] = "这一行会" + MARKER + "掉"
    texts[17] = ("正常的句子。" * 30) + MARKER + "在长文本的最后一段"  # a later piece of a long text
    texts[18] = None
    return texts


def test_failing_rows_get_an_error_and_no_predictions(fragile_nlp, nlp, review_texts):
    texts = rows_with_bad_ones(review_texts)
    table = pa.table({"text": texts})
    CALLS["docs"] = 0
    out = annotate_table(fragile_nlp, table, batch_size=8, max_chars=64).to_pylist()
    assert CALLS["docs"] > len(texts), "a failing batch is retried piece by piece"
    expected = annotate_table(nlp, table, batch_size=8, max_chars=64).to_pylist()
    for row, (got, want) in enumerate(zip(out, expected)):
        if row in (3, 17):
            assert got["error"].startswith("RuntimeError: cannot handle")
            assert got["entities"] == [] and got["cats"] is None and got["label"] is None
        else:
            assert got["error"] is None
            assert got["entities"] == want["entities"] and got["label"] == want["label"]


def test_annotate_files_counts_failed_rows_and_the_cli_exits_3(
        fragile_nlp, review_texts, tmp_path, monkeypatch, untrained_pipeline):
    texts = rows_with_bad_ones(review_texts)
    source = write_parquet(tmp_path / "in.parquet", id=list(range(len(texts))), text=texts)
    summary = annotate_files(fragile_nlp, source, tmp_path / "out.parquet", window_rows=16,
                             max_chars=64, progress=False)
    assert summary.ok and summary.rows == len(texts) and summary.failed_rows == 2
    assert "2 row(s) made the pipeline fail" in summary.describe()
    errors = pq.read_table(tmp_path / "out.parquet").column("error").to_pylist()
    assert [row for row, error in enumerate(errors) if error] == [3, 17]

    monkeypatch.setattr(spacy_bert_zh.pipeline_runner, "load_pipeline", lambda *args: fragile_nlp)
    result = run_cli(untrained_pipeline, source, tmp_path / "cli.parquet", "--quiet")
    assert result.exit_code == 3, result.output
    assert "2 row(s) made the pipeline fail" in result.output
    assert pq.read_table(tmp_path / "cli.parquet").num_rows == len(texts)


@pytest.mark.parametrize("n_process", [2, 64])
def test_spawned_workers_share_the_threads(n_process):
    """Workers started inside ``worker_threads`` run threads // n_process torch threads (at least 1)."""
    import multiprocessing

    import torch

    before = os.environ.get("OMP_NUM_THREADS")
    expected = max(1, torch.get_num_threads() // n_process)
    with worker_threads(n_process), multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(torch.get_num_threads) == expected
    assert os.environ.get("OMP_NUM_THREADS") == before
