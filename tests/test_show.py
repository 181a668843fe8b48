"""Tests for ``spacy-bert-zh show`` (show.py) on an output the real annotate path wrote
(the untrained pipeline, whose random ner predicts entities): entities and labels in the HTML,
the top category as title, --rows and --offset across row groups, clear errors."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from spacy_bert_zh.annotation import annotate_files, load_pipeline
from spacy_bert_zh.cli import app
from spacy_bert_zh.show import ShowError, read_rows, render_annotated, show_annotated

N_ROWS = 30
WINDOW_ROWS = 8   # one row group per window: --offset has groups to skip


@pytest.fixture(scope="module")
def annotated(untrained_pipeline, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("show")
    texts = [f"第{i}条：王小明在北京大学和上海工作。" for i in range(N_ROWS)]
    pq.write_table(pa.table({"id": list(range(N_ROWS)), "text": texts}), root / "texts.parquet")
    nlp = load_pipeline(str(untrained_pipeline))
    summary = annotate_files(nlp, root / "texts.parquet", root / "annotated.parquet",
                             window_rows=WINDOW_ROWS, progress=False)
    assert summary.ok
    return root / "annotated.parquet"


def run_show(*args):
    return CliRunner().invoke(app, ["show", *map(str, args)])


def test_show_renders_entities_labels_and_top_category_of_the_first_rows(annotated, tmp_path):
    table = pq.read_table(annotated)
    assert pq.ParquetFile(annotated).num_row_groups > 1
    result = run_show(annotated, tmp_path / "show.html", "--rows", 5)
    assert result.exit_code == 0, result.output
    assert "wrote 5 row(s)" in result.output
    html = (tmp_path / "show.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert html.count('class="entities"') == 5
    entities = [ent for row in table.column("entities").to_pylist()[:5] for ent in row]
    assert entities, "the untrained pipeline's random ner predicts entities"
    for ent in entities:
        assert ent["text"] in html and f">{ent['label']}</span>" in html
    for i, cats in enumerate(table.column("cats").to_pylist()[:5]):
        label, score = max(cats, key=lambda item: item[1])
        assert f"row {i} · {label} {score:.2f}</h2>" in html
    assert "row 5 ·" not in html


def test_offset_reads_rows_across_row_groups(annotated):
    table = pq.read_table(annotated)
    rows = read_rows(annotated, rows=6, offset=WINDOW_ROWS + 3)   # starts in the second row group, ends in the third
    assert [row["row"] for row in rows] == list(range(11, 17))
    assert [row["text"] for row in rows] == table.column("text").to_pylist()[11:17]
    assert [row["entities"] for row in rows] == table.column("entities").to_pylist()[11:17]
    assert len(read_rows(annotated, rows=100, offset=N_ROWS - 2)) == 2   # the file ends first


def test_rows_with_an_error_show_it_escaped():
    html = render_annotated([{"row": 3, "text": "文本<b>", "entities": [], "cats": None,
                              "error": "ValueError: <bad>"}])
    assert "row 3 · error: ValueError: &lt;bad&gt;</h2>" in html
    assert "文本&lt;b&gt;" in html


def test_missing_columns_say_which_and_that_an_annotate_output_is_needed(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"body": ["你好"]}), plain)
    with pytest.raises(ShowError, match=r"'text', 'entities'.*spacy-bert-zh annotate.*--text-column"):
        read_rows(plain, rows=1)
    result = run_show(plain, tmp_path / "out.html")
    assert result.exit_code == 2 and "annotate" in result.output
    assert not (tmp_path / "out.html").exists()


@pytest.mark.parametrize("args, message", [
    (["--rows", "0"], "--rows must be at least 1"),
    (["--rows", "-3"], "--rows must be at least 1"),
    (["--offset", "-1"], "--offset must be 0 or more"),
    (["--offset", str(N_ROWS)], "past the last row"),
    (["--style", "dep"], "--style must be one of ent"),
])
def test_bad_arguments_exit_2(annotated, tmp_path, args, message):
    result = run_show(annotated, tmp_path / "out.html", *args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ShowError, match="no such file"):
        show_annotated(tmp_path / "nope.parquet", tmp_path / "out.html")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(ShowError, match="not a readable Parquet file"):
        show_annotated(tmp_path / "broken.parquet", tmp_path / "out.html")
