"""Resume inside a file (checkpoint.py): a real SIGKILL in the middle of one file, then --resume.

The resumed run must annotate fewer rows than the file has, say how many it kept, and write a file
identical to an uninterrupted run's; a checkpoint of another pipeline, input or settings is refused.
"""
from __future__ import annotations

import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from thinc.api import get_current_ops

from spacy_bert_zh.annotate_options import AnnotationError
from spacy_bert_zh.annotation import annotate_files, load_pipeline
from spacy_bert_zh.checkpoint import PART_PATTERN, Checkpoint, parts_dir, pipeline_hash, run_identity
from spacy_bert_zh.parquet_io import partial_path

from test_annotation import OFFLINE_ENV, run_cli, wait_for, write_parquet

ROWS, WINDOW = 240, 8


@pytest.fixture(scope="module")
def nlp(untrained_pipeline):
    return load_pipeline(str(untrained_pipeline))


@pytest.fixture
def source(tmp_path, review_texts):
    texts = [review_texts[i % len(review_texts)] for i in range(ROWS)]
    texts[5], texts[77] = None, "  "
    return write_parquet(tmp_path / "in.parquet", id=list(range(ROWS)), text=texts)


def test_sigkill_inside_a_file_then_resume_gives_the_uninterrupted_output(
        untrained_pipeline, source, tmp_path):
    dest, reference = tmp_path / "out.parquet", tmp_path / "reference.parquet"
    options = ["--quiet", "--window-rows", str(WINDOW), "--batch-size", "4"]
    command = [sys.executable, "-m", "spacy_bert_zh.cli", "annotate", str(untrained_pipeline),
               str(source), str(dest), *options]
    process = subprocess.Popen(command, env=OFFLINE_ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (parts_dir(dest) / PART_PATTERN.format(3)).exists(), process, timeout=300)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    kept_windows = len(list(parts_dir(dest).glob("window-*.parquet")))
    assert 3 <= kept_windows < ROWS // WINDOW, "the kill must land inside the file"
    assert not dest.exists() and not partial_path(dest).exists()

    refused = run_cli(untrained_pipeline, source, dest, *options)
    assert refused.exit_code == 2 and "--resume" in refused.output
    other_settings = run_cli(untrained_pipeline, source, dest, *options, "--resume",
                             "--max-chars", "100")
    assert other_settings.exit_code == 2
    assert "another settings" in other_settings.output and "max_chars: 2000 -> 100" in other_settings.output

    resumed = run_cli(untrained_pipeline, source, dest, *options, "--resume")
    assert resumed.exit_code == 0, resumed.output
    kept = int(resumed.output.split("resumed: ")[1].split(" rows kept")[0].replace(",", ""))
    assert kept == kept_windows * WINDOW
    annotated = int(resumed.output.split("annotated ")[1].split(" rows")[0].replace(",", ""))
    assert annotated == ROWS - kept < ROWS
    assert not parts_dir(dest).exists()

    uninterrupted = run_cli(untrained_pipeline, source, reference, *options)
    assert uninterrupted.exit_code == 0, uninterrupted.output
    assert pq.read_table(dest).equals(pq.read_table(reference))
    assert pq.ParquetFile(dest).metadata.num_row_groups == ROWS // WINDOW


def test_resume_refuses_another_input_and_another_pipeline(nlp, source, tmp_path):
    dest = tmp_path / "out.parquet"
    settings = {"window_rows": WINDOW}
    identity = run_identity(pipeline_hash(nlp), source, settings)
    checkpoint = Checkpoint.start(dest, identity)
    checkpoint.write(0, pa.table({"id": [0]}))
    Checkpoint.resume(dest, identity)  # the same run: accepted

    write_parquet(source, id=[1, 2], text=["改过的输入", "另一行"])
    with pytest.raises(AnnotationError, match="another input"):
        Checkpoint.resume(dest, run_identity(pipeline_hash(nlp), source, settings))
    with pytest.raises(AnnotationError, match="another input"):
        annotate_files(nlp, source, dest, resume=True, window_rows=WINDOW, progress=False)


def test_pipeline_hash_sees_a_changed_weight(untrained_pipeline):
    nlp = load_pipeline(str(untrained_pipeline))
    before = pipeline_hash(nlp)
    assert pipeline_hash(nlp) == before
    softmax = nlp.get_pipe("ner").model.get_ref("softmax")
    weights = get_current_ops().to_numpy(softmax.get_param("W")).copy()
    weights[0, 0] += 1.0
    softmax.set_param("W", weights)
    assert pipeline_hash(nlp) != before


def test_a_kill_while_starting_leaves_no_folder_without_its_checkpoint(tmp_path, monkeypatch):
    """A run killed between creating the parts folder and writing checkpoint.json used to leave a
    folder that --resume refused as unreadable (seen in the SIGKILL test of test_annotation.py)."""
    import spacy_bert_zh.checkpoint as checkpoint_module

    dest, identity = tmp_path / "out.parquet", {"input": "x"}

    def killed(path, data):
        raise KeyboardInterrupt   # stands for the process dying before the file is written

    monkeypatch.setattr(checkpoint_module, "write_json_atomically", killed)
    with pytest.raises(KeyboardInterrupt):
        Checkpoint.start(dest, identity)
    assert not parts_dir(dest).exists()
    monkeypatch.undo()
    Checkpoint.start(dest, identity)   # the next run cleans the staging folder up and starts
    assert (parts_dir(dest) / "checkpoint.json").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == [parts_dir(dest).name]
    Checkpoint.resume(dest, identity)
