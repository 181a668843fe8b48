"""Tests for ``spacy-bert-zh annotate`` (annotation.py, parquet_io.py) on an untrained pipeline.

They check plumbing, not accuracy: row order and count, schema, character offsets, blank and
long texts, bad inputs, atomic outputs, kill + ``--resume``, and that the per-table conversion
(used by the Ray engine) and the streaming file engine give the same output.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from spacy_bert_zh.annotation import AnnotationError, annotate_files, annotate_table, load_pipeline
from spacy_bert_zh.arrow_output import (CATS_FIELD, ENTITIES_FIELD, LABEL_FIELD, check_text_column,
                                        output_schema)
from spacy_bert_zh.pieces import budget_batches, piece_bounds
from spacy_bert_zh.checkpoint import parts_dir
from spacy_bert_zh.cli import app
from spacy_bert_zh.parquet_io import (METADATA_KEY, InputError, partial_path, plan_jobs,
                                      read_annotation_metadata)

from conftest import NER_LABELS, TEXTCAT_LABELS

OFFLINE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TRICKY_TEXTS = [
    "北京大学的王小明去了上海。",
    "Apple 公司 在 加州 库比蒂诺",             # ASCII spaces
    "马云　在　杭州　创办了阿里巴巴",            # full-width spaces
    "第一行\n第二行\r\n\t第三行  结束",          # newlines, tabs, double spaces
    "😀表情🇨🇳国旗𠀋字（扩展B）和👨‍👩‍👧家庭",  # astral characters, ZWJ sequence
    "  前后有空格  ",
    "ＡＢＣ全角字母１２３和mixed ASCII text 2024年",
]


@pytest.fixture(scope="module")
def nlp(untrained_pipeline):
    return load_pipeline(str(untrained_pipeline))


def write_parquet(path: Path, **columns) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def run_cli(*args: str):
    return CliRunner().invoke(app, ["annotate", *map(str, args)], env={"HF_HUB_OFFLINE": "1"})


def assert_offsets_match(texts: list[str | None], table: pa.Table) -> int:
    """Every entity's text is ``text[start_char:end_char]``; return how many entities there are."""
    count = 0
    for text, entities in zip(texts, table.column("entities").to_pylist()):
        for entity in entities:
            assert text[entity["start_char"]:entity["end_char"]] == entity["text"]
            assert entity["label"] in NER_LABELS
            count += 1
    return count


# --- the shared conversion -----------------------------------------------------------------

def test_annotate_table_schema_order_and_offsets(nlp):
    table = pa.table({"id": list(range(len(TRICKY_TEXTS))), "text": TRICKY_TEXTS})
    out = annotate_table(nlp, table, batch_size=3)
    assert out.schema.names == ["id", "text", "entities", "cats", "label", "error"]
    assert out.schema.field("entities").type == ENTITIES_FIELD.type
    assert out.schema.field("cats").type == CATS_FIELD.type == pa.map_(pa.string(), pa.float32())
    assert out.column("id").to_pylist() == list(range(len(TRICKY_TEXTS)))
    assert out.column("text").to_pylist() == TRICKY_TEXTS
    assert assert_offsets_match(TRICKY_TEXTS, out) > len(TRICKY_TEXTS)  # untrained NER: many
    for cats, label in zip(out.column("cats").to_pylist(), out.column("label").to_pylist()):
        scores = dict(cats)
        assert set(scores) == set(TEXTCAT_LABELS)
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
        assert label == max(scores, key=scores.get)


def test_blank_rows_kept_with_no_predictions(nlp):
    texts = ["上海是一座城市", None, "", "   ", "\u3000\n\t", "杭州"]
    out = annotate_table(nlp, pa.table({"text": pa.array(texts, pa.string())}))
    rows = out.to_pylist()
    assert len(rows) == len(texts)
    for row in rows[1:5]:
        assert row["entities"] == [] and row["cats"] is None and row["label"] is None
    for row in (rows[0], rows[5]):
        assert row["cats"] is not None and row["label"] in TEXTCAT_LABELS


def test_sorting_by_length_does_not_change_the_output(nlp, review_texts):
    table = pa.table({"text": review_texts[:60]})
    sorted_out = annotate_table(nlp, table, batch_size=8, sort_by_length=True)
    plain_out = annotate_table(nlp, table, batch_size=8, sort_by_length=False)
    assert sorted_out.column("text").equals(plain_out.column("text"))
    assert sorted_out.column("entities").to_pylist() == plain_out.column("entities").to_pylist()
    for a, b in zip(sorted_out.column("cats").to_pylist(), plain_out.column("cats").to_pylist()):
        assert dict(a) == pytest.approx(dict(b), abs=1e-4)


def test_components_subset_leaves_out_their_columns(untrained_pipeline):
    only_ner = load_pipeline(str(untrained_pipeline), components=["ner"])
    assert only_ner.pipe_names == ["transformer", "ner"]  # the listened-to transformer runs too
    out = annotate_table(only_ner, pa.table({"text": ["南京长江大桥"]}))
    assert out.schema.names == ["text", "entities", "error"]
    only_textcat = load_pipeline(str(untrained_pipeline), components=["textcat"])
    out = annotate_table(only_textcat, pa.table({"text": ["南京长江大桥"]}), keep_columns=[])
    assert out.schema.names == ["cats", "label", "error"]
    with pytest.raises(AnnotationError, match="unknown component.*parser.*transformer, ner, textcat"):
        load_pipeline(str(untrained_pipeline), components=["parser"])


def test_column_checks(nlp):
    schema = pa.schema([("id", pa.int64()), ("body", pa.string()), ("label", pa.string())])
    with pytest.raises(AnnotationError, match="no text column 'text'.*id, body, label"):
        check_text_column(schema, "text", "x.parquet")
    with pytest.raises(AnnotationError, match="'id' has type int64, not a string"):
        check_text_column(schema, "id", "x.parquet")
    check_text_column(pa.schema([("t", pa.large_string())]), "t", "x")
    check_text_column(pa.schema([("t", pa.dictionary(pa.int32(), pa.string()))]), "t", "x")
    with pytest.raises(AnnotationError, match="label.*would be overwritten"):
        output_schema(nlp, schema, None)
    with pytest.raises(AnnotationError, match="nope not in the input"):
        output_schema(nlp, schema, ["nope"])
    assert output_schema(nlp, schema, ["body"]).names == ["body", "entities", "cats", "label", "error"]
    assert LABEL_FIELD.name == "label"


def test_long_text_in_pieces_with_bounded_memory(nlp, review_texts):
    text = ("。".join(review_texts) * 40)[:100_000] + " 结尾🙂"
    rss_before = reset_peak_rss()
    out = annotate_table(nlp, pa.table({"text": [text, "短文本"]}))
    if rss_before is not None:  # ~0.3 GB in pieces; the whole text at once needs ~1.5-3 GB more
        assert peak_rss() - rss_before < 600 * 2**20
    entities = out.column("entities")[0].as_py()
    assert assert_offsets_match([text], out.slice(0, 1)) > 1000
    assert max(entity["end_char"] for entity in entities) > len(text) - 200  # the end is covered
    starts = [entity["start_char"] for entity in entities]
    assert starts == sorted(starts)
    assert sum(dict(out.column("cats")[0].as_py()).values()) == pytest.approx(1.0, abs=1e-4)


def reset_peak_rss() -> int | None:
    """Reset this process's peak RSS (Linux) and return the current RSS in bytes (None if unsupported)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return proc_status_kib("VmRSS") * 1024
    except OSError:
        return None


def peak_rss() -> int:
    return proc_status_kib("VmHWM") * 1024


def proc_status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"no {key} in /proc/self/status")


def test_piece_bounds_and_budget_batches():
    text = "甲乙丙。" * 30 + "x" * 50
    bounds = piece_bounds(text, 40)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a_end == b_start for (_, a_end), (b_start, _) in zip(bounds, bounds[1:]))
    assert all(0 < end - start <= 40 for start, end in bounds)
    assert all(text[end - 1] == "。" for _, end in bounds[:3])  # cut after a sentence end
    assert piece_bounds("短", 40) == [(0, 1)]
    pieces = [("a" * n, (0, i, 0)) for i, n in enumerate([30, 30, 30, 5, 100, 1])]
    pieces += [("a", (1, 0, 0)), ("a", (1, 1, 0))]  # a new window starts a new batch
    batches = list(budget_batches(pieces, max_pieces=2, max_chars=64))
    assert [[key[:2] for _, key in batch] for batch in batches] == \
        [[(0, 0), (0, 1)], [(0, 2), (0, 3)], [(0, 4)], [(0, 5)], [(1, 0), (1, 1)]]


# --- the file engine and the CLI -------------------------------------------------------------

def test_annotate_files_matches_annotate_table(nlp, tmp_path, review_texts):
    texts = review_texts[:100] + TRICKY_TEXTS + [None, " "]
    ids = list(range(len(texts)))
    source = write_parquet(tmp_path / "in.parquet", id=ids, gold=["x"] * len(texts), text=texts)
    summary = annotate_files(nlp, source, tmp_path / "out.parquet", window_rows=16,
                             keep_columns=["text"], id_column="id", progress=False)
    assert summary.ok and summary.rows == len(texts) and summary.written == [tmp_path / "out.parquet"]
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.names == ["id", "text", "entities", "cats", "label", "error"]
    assert out.column("id").to_pylist() == ids
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_row_groups == 7  # one per window
    assert_offsets_match(texts, out)
    expected = annotate_table(nlp, pq.read_table(source), keep_columns=["id", "text"])
    assert out.column("entities").to_pylist() == expected.column("entities").to_pylist()
    assert out.column("label").to_pylist() == expected.column("label").to_pylist()
    info = read_annotation_metadata(tmp_path / "out.parquet")
    assert info["pipeline"] == "zh_untrained_test" and info["version"] == "0.0.0"
    assert info["components"] == ["transformer", "ner", "textcat"]
    assert METADATA_KEY in pq.read_metadata(tmp_path / "out.parquet").metadata


def test_plan_jobs_for_folder_glob_and_file(tmp_path):
    for name in ("a.parquet", "sub/b.parquet", "sub/.hidden.parquet", "notes.txt"):
        write_parquet(tmp_path / "in" / name, text=["x"])
    folder_jobs = plan_jobs(tmp_path / "in", tmp_path / "out")
    assert [(job.source.relative_to(tmp_path), job.dest.relative_to(tmp_path)) for job in folder_jobs] \
        == [(Path("in/a.parquet"), Path("out/a.parquet")),
            (Path("in/sub/b.parquet"), Path("out/sub/b.parquet"))]
    glob_jobs = plan_jobs(str(tmp_path / "in" / "**" / "*.parquet"), tmp_path / "out")
    assert [job.dest for job in glob_jobs] == [job.dest for job in folder_jobs]
    file_job, = plan_jobs(tmp_path / "in" / "a.parquet", tmp_path / "one.parquet")
    assert file_job.dest == tmp_path / "one.parquet"
    with pytest.raises(InputError, match="no Parquet files"):
        plan_jobs(tmp_path / "in" / "*.csv", tmp_path / "out")


def test_resume_refuses_a_foreign_file_at_the_output_name(nlp, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", text=["你好"])
    write_parquet(tmp_path / "out.parquet", text=["not an annotation"])
    with pytest.raises(AnnotationError, match="not complete annotations.*--overwrite"):
        annotate_files(nlp, source, tmp_path / "out.parquet", resume=True, progress=False)
    assert pq.read_table(tmp_path / "out.parquet").column("text").to_pylist() == ["not an annotation"]


def test_cli_n_process_2_gives_the_same_output(untrained_pipeline, tmp_path, review_texts):
    source = write_parquet(tmp_path / "in.parquet", text=review_texts[:24])
    command = [sys.executable, "-m", "spacy_bert_zh.cli", "annotate", str(untrained_pipeline),
               str(source), str(tmp_path / "out.parquet"), "--quiet", "--n-process", "2",
               "--batch-size", "4"]
    done = subprocess.run(command, env=OFFLINE_ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    single = run_cli(untrained_pipeline, source, tmp_path / "single.parquet", "--quiet")
    assert single.exit_code == 0, single.output
    parallel, serial = pq.read_table(tmp_path / "out.parquet"), pq.read_table(tmp_path / "single.parquet")
    assert parallel.column("text").to_pylist() == review_texts[:24]
    assert parallel.column("entities").to_pylist() == serial.column("entities").to_pylist()


def test_cli_folder_with_a_corrupt_file(untrained_pipeline, tmp_path, review_texts):
    inputs = tmp_path / "in"
    write_parquet(inputs / "a.parquet", text=review_texts[:20])
    write_parquet(inputs / "sub" / "b.parquet", text=review_texts[20:35])
    (inputs / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    result = run_cli(untrained_pipeline, inputs, tmp_path / "out", "--quiet")
    assert result.exit_code == 1, result.output
    assert "broken.parquet" in result.output and "1 failed" in result.output
    assert pq.read_table(tmp_path / "out" / "a.parquet").num_rows == 20
    assert pq.read_table(tmp_path / "out" / "sub" / "b.parquet").num_rows == 15
    assert not (tmp_path / "out" / "broken.parquet").exists()
    assert not list((tmp_path / "out").rglob("*.partial"))


def test_cli_missing_text_column_fails_before_any_work(untrained_pipeline, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", id=[1], content=["你好"])
    result = run_cli(untrained_pipeline, source, tmp_path / "out.parquet", "--quiet")
    assert result.exit_code == 2
    assert "no text column 'text'" in result.output and "id, content" in result.output
    assert not (tmp_path / "out.parquet").exists()
    assert not partial_path(tmp_path / "out.parquet").exists()


def test_cli_non_string_text_column(untrained_pipeline, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", text=[1, 2])
    result = run_cli(untrained_pipeline, source, tmp_path / "out.parquet", "--quiet")
    assert result.exit_code == 2 and "type int64, not a string type" in result.output


def test_cli_existing_output_needs_overwrite(untrained_pipeline, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", text=["你好世界", "再见"])
    dest = tmp_path / "out.parquet"
    dest.write_bytes(b"precious")
    result = run_cli(untrained_pipeline, source, dest, "--quiet")
    assert result.exit_code == 2 and "already exist" in result.output and "--overwrite" in result.output
    assert dest.read_bytes() == b"precious"
    result = run_cli(untrained_pipeline, source, dest, "--quiet", "--overwrite")
    assert result.exit_code == 0, result.output
    assert pq.read_table(dest).column("text").to_pylist() == ["你好世界", "再见"]


def test_half_precision_needs_a_gpu(nlp, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", text=["你好"])
    with pytest.raises(AnnotationError, match="--half needs a GPU"):
        annotate_files(nlp, source, tmp_path / "out.parquet", half=True, progress=False)


def test_sigkill_leaves_no_complete_looking_output_and_resume_finishes(
        untrained_pipeline, tmp_path, review_texts):
    inputs, output = tmp_path / "in", tmp_path / "out"
    sources = {}
    for k in range(3):
        ids = list(range(k * 1000, k * 1000 + 120))
        texts = [review_texts[i % len(review_texts)] for i in ids]
        sources[f"part-{k}.parquet"] = write_parquet(inputs / f"part-{k}.parquet", id=ids, text=texts)
    options = ["--quiet", "--window-rows", "8", "--batch-size", "8"]
    command = [sys.executable, "-m", "spacy_bert_zh.cli", "annotate", str(untrained_pipeline),
               str(inputs), str(output), *options]
    process = subprocess.Popen(command, env=OFFLINE_ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (output / "part-0.parquet").exists()
                 and parts_dir(output / "part-1.parquet").exists(), process, timeout=300)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert parts_dir(output / "part-1.parquet").exists()
    assert not (output / "part-1.parquet").exists() and not (output / "part-2.parquet").exists()
    assert pq.read_table(output).num_rows == 120  # a dataset reader sees only the complete file
    done_before = (output / "part-0.parquet").stat().st_mtime_ns

    result = run_cli(untrained_pipeline, inputs, output, *options)
    assert result.exit_code == 2 and "--resume" in result.output
    result = run_cli(untrained_pipeline, inputs, output, *options, "--resume")
    assert result.exit_code == 0, result.output
    assert "1 already complete (skipped)" in result.output
    assert (output / "part-0.parquet").stat().st_mtime_ns == done_before
    for name, source in sources.items():
        assert pq.read_table(output / name).column("id").to_pylist() == \
            pq.read_table(source).column("id").to_pylist()
    assert not list(output.glob(".*.partial")) and not list(output.glob(".*.parts"))


def wait_for(condition, process: subprocess.Popen, timeout: float) -> None:
    """Poll ``condition`` until true; fail if the process ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"annotate ended (rc {process.returncode}) before it could be killed: "
                        f"{process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail("annotate did not start writing in time")
        time.sleep(0.02)


def test_tag_probs_give_each_character_the_ners_probabilities(nlp, tmp_path):
    """--tag-probs: per character, the ner's tag probabilities (as the ner computes them), an
    empty list where no token starts (a space kept as trailing whitespace), the tag names in
    the field's metadata; pieces of a long text are put back at their offsets."""
    import numpy

    from spacy_bert_zh.arrow_output import tag_names
    from spacy_bert_zh.ner_tagger import TAG_PROBS_KEY

    texts = ["Apple 公司 在 加州", None, "北京" * 30]
    out = annotate_table(nlp, pa.table({"text": texts}), tag_probs=True, max_chars=40)
    ner = nlp.get_pipe("ner")
    assert tag_names(out.schema.field("tag_probs")) == list(ner.labels)
    rows = out.column("tag_probs").to_pylist()
    assert [len(row) for row in rows] == [len(texts[0]), 0, 60]
    assert [len(chars) for chars in rows[0]][5:8] == [0, 7, 7]  # "Apple" then " " then 公
    doc = nlp.make_doc(texts[0])
    expected = ner.model.predict([nlp.get_pipe("transformer")(doc)])[0]
    numpy.testing.assert_allclose([rows[0][token.idx] for token in doc], expected, rtol=1e-4, atol=1e-6)
    assert all(abs(sum(chars) - 1.0) < 1e-4 for chars in rows[2])
    assert "tag_probs" not in annotate_table(nlp, pa.table({"text": texts})).schema.names
    assert TAG_PROBS_KEY not in nlp("北京").user_data
    source = write_parquet(tmp_path / "in.parquet", text=texts)
    result = run_cli(nlp.path, source, tmp_path / "out.parquet", "--tag-probs", "--max-chars", "40", "-q")
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "out.parquet").column("tag_probs").to_pylist() == rows
