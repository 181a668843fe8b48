"""The Ray Data engine (distributed.py) against the local engine on the same input.

One local Ray per module (2 CPUs for the workers + 1 for Ray Data's read/write tasks, see
``distributed.IO_CPUS``); the pipeline is conftest's untrained one (plumbing, not accuracy).
Tests that need Ray skip when it is not installed; the import and error-message tests do not.
"""
from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spacy_bert_zh.annotate_options import AnnotationError, RayOptions
from spacy_bert_zh.annotation import annotate_files
from spacy_bert_zh.distributed import (IO_CPUS, RAY_INSTALL_HINT, WorkerPlan, annotate_with_ray,
                                       import_ray, plan_workers, rows_per_block, start_ray)

WORKER_CPUS = 2
MAX_CHARS = 120  # small, so that the long texts take the "annotate in pieces" path
SENTENCES = [
    "王小明在北京大学读书，他的老师是李华。",
    "上海市政府昨天宣布了新的交通计划。",
    "这本书的质量很好，物流也很快，五星好评！",
    "手机屏幕有划痕，客服态度很差，不推荐购买。",
    "张伟和刘洋代表中国银行参加了在广州举行的会议。",
    "酒店离西湖很近，早餐一般，房间干净。",
    "华为公司在深圳发布了新款笔记本电脑。",
    "水果不新鲜，有几个已经烂了。",
]


def sample_rows(seed: int = 0, n: int = 48) -> list[dict]:
    """``n`` rows with shuffled ids: short and long texts, plus null, empty and blank ones."""
    rng = random.Random(seed)
    texts = ["".join(rng.choices(SENTENCES, k=rng.randint(1, 4))) for _ in range(n)]
    texts[1] = None
    texts[4] = ""
    texts[7] = "  \n "
    texts[10] = "".join(SENTENCES) * 2  # ~330 characters: cut into pieces at MAX_CHARS
    ids = rng.sample(range(1000, 9999), n)
    return [{"id": i, "source": f"s{k % 3}", "text": t} for k, (i, t) in enumerate(zip(ids, texts))]


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray for the module: WORKER_CPUS CPUs for the actors plus the read/write slot."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'spacy-bert-zh[ray]'")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=WORKER_CPUS + IO_CPUS, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def input_folder(tmp_path_factory) -> Path:
    """Two Parquet files (two row groups each) of the same sample, in one folder."""
    folder = tmp_path_factory.mktemp("ray_input") / "texts"
    folder.mkdir()
    rows = sample_rows()
    for number, part in enumerate((rows[:30], rows[30:])):
        pq.write_table(pa.Table.from_pylist(part), folder / f"part-{number}.parquet",
                       row_group_size=16)
    return folder


@pytest.fixture(scope="module")
def local_output(untrained_pipeline, input_folder, tmp_path_factory) -> pa.Table:
    """The local engine's output for ``input_folder``, read back as one table."""
    output = tmp_path_factory.mktemp("local_out") / "annotated"
    summary = annotate_files(str(untrained_pipeline), input_folder, output, id_column="id",
                             batch_size=8, max_chars=MAX_CHARS, progress=False)
    assert summary.ok and summary.rows == 48
    return pq.read_table(output)


@pytest.fixture(scope="module")
def ray_run(ray_session, untrained_pipeline, input_folder, tmp_path_factory):
    """(summary, output table) of the Ray engine on ``input_folder`` with 2 workers."""
    output = tmp_path_factory.mktemp("ray_out") / "annotated"
    summary = annotate_with_ray(str(untrained_pipeline), [input_folder], output, id_column="id",
                                batch_size=8, ray_options=RayOptions(workers=2), max_chars=MAX_CHARS)
    return summary, pq.read_table(output)


def by_id(table: pa.Table) -> dict:
    rows = table.to_pylist()
    assert len({row["id"] for row in rows}) == len(rows), "duplicated ids"
    return {row["id"]: row for row in rows}


def test_ray_output_equals_local_output(ray_run, local_output):
    summary, ray_table = ray_run
    assert ray_table.schema.equals(local_output.schema, check_metadata=False)
    local_rows, ray_rows = by_id(local_output), by_id(ray_table)
    assert ray_rows.keys() == local_rows.keys()
    for key, local in local_rows.items():
        got = ray_rows[key]
        assert {k: v for k, v in got.items() if k != "cats"} == \
               {k: v for k, v in local.items() if k != "cats"}, key
        if local["cats"] is None:
            assert got["cats"] is None
        else:
            local_cats, got_cats = dict(local["cats"]), dict(got["cats"])
            assert got_cats.keys() == local_cats.keys()
            for label, score in local_cats.items():
                assert math.isclose(got_cats[label], score, rel_tol=1e-4, abs_tol=1e-5), (key, label)
    assert any(row["entities"] for row in ray_rows.values())  # the untrained NER does predict


def test_no_row_lost_or_duplicated_and_blank_texts_kept(ray_run, input_folder):
    summary, table = ray_run
    source = pq.read_table(input_folder)
    assert summary.rows_in == summary.rows_out == source.num_rows == table.num_rows == 48
    assert set(table.column("id").to_pylist()) == set(source.column("id").to_pylist())
    assert table.schema.names == ["id", "source", "text", "entities", "cats", "label", "error"]
    blank = [row for row in table.to_pylist() if not (row["text"] or "").strip()]
    assert len(blank) == 3
    assert all(row["entities"] == [] and row["cats"] is None and row["label"] is None
               for row in blank)
    assert summary.workers == 2 and summary.files >= 1
    assert summary.output.is_dir()
    assert not list(summary.output.parent.glob(f".{summary.output.name}*"))  # staging is gone


def test_missing_text_column_fails_before_ray_work(ray_session, untrained_pipeline, input_folder,
                                                   tmp_path):
    output = tmp_path / "never"
    with pytest.raises(AnnotationError, match=r"no text column 'body'.*id, source, text"):
        annotate_with_ray(str(untrained_pipeline), [input_folder], output, text_column="body")
    with pytest.raises(AnnotationError, match="no id column 'key'"):
        annotate_with_ray(str(untrained_pipeline), [input_folder], output, id_column="key")
    assert list(tmp_path.iterdir()) == []


def test_cli_engine_ray_refuses_then_overwrites(ray_session, untrained_pipeline, input_folder,
                                                tmp_path):
    from typer.testing import CliRunner

    from spacy_bert_zh.cli import app

    output = tmp_path / "out"
    output.mkdir()
    (output / "old.parquet").write_bytes(b"not parquet")
    args = ["annotate", str(untrained_pipeline), str(input_folder / "part-1.parquet"), str(output),
            "--engine", "ray", "--workers", "1", "--keep-columns", "text", "--id-column", "id",
            "--components", "ner"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    no_resume = CliRunner().invoke(app, args + ["--resume"])
    assert no_resume.exit_code == 2 and "not supported with --engine ray" in no_resume.output
    with pytest.raises(AnnotationError, match="cannot resume.*no fixed order"):
        annotate_with_ray(str(untrained_pipeline), [input_folder], output, resume=True)
    done = CliRunner().invoke(app, args + ["--overwrite"])
    assert done.exit_code == 0, done.output
    table = pq.read_table(output)
    assert not (output / "old.parquet").exists()
    assert table.schema.names == ["id", "text", "entities", "error"]  # only ner ran: no cats, no label
    assert sorted(table.column("id").to_pylist()) == sorted(
        pq.read_table(input_folder / "part-1.parquet").column("id").to_pylist())


def test_empty_input_gives_an_empty_output_with_the_schema(ray_session, untrained_pipeline,
                                                           tmp_path):
    source = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}),
                   source)
    summary = annotate_with_ray(str(untrained_pipeline), [source], tmp_path / "out",
                                ray_options=RayOptions(workers=1))
    table = pq.read_table(tmp_path / "out")
    assert summary.rows_in == summary.rows_out == table.num_rows == 0
    assert table.schema.names == ["id", "text", "entities", "cats", "label", "error"]


def test_unreachable_cluster_is_a_clear_error():
    class NoCluster:
        def init(self, **kwargs):
            raise ConnectionError("Could not find any running Ray instance.")

    with pytest.raises(AnnotationError, match="ray start --head"):
        start_ray(NoCluster(), "auto")


def test_importing_the_package_does_not_import_ray():
    code = ("import sys, spacy_bert_zh, spacy_bert_zh.cli, spacy_bert_zh.annotation, "
            "spacy_bert_zh.distributed; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(AnnotationError, match=RAY_INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        import_ray()


def test_plan_workers():
    cpus = {"CPU": 2.0 + IO_CPUS}
    gpus = {"CPU": 16.0, "GPU": 2.0}
    assert plan_workers(cpus, RayOptions()) == WorkerPlan(2, 1.0, 0)
    assert plan_workers(cpus, RayOptions(workers=1)) == WorkerPlan(1, 2.0, 0)
    assert plan_workers(gpus, RayOptions(gpus_per_worker=1)) == WorkerPlan(2, 1.0, 1)
    assert plan_workers(gpus, RayOptions(gpus_per_worker=0.5)) == WorkerPlan(4, 1.0, 0.5)
    with pytest.raises(AnnotationError, match="kept for reading and writing"):
        plan_workers(cpus, RayOptions(workers=3))
    with pytest.raises(AnnotationError, match="GPU"):
        plan_workers(cpus, RayOptions(gpus_per_worker=1))


def test_rows_per_block_spreads_rows_over_workers():
    assert rows_per_block(48, 8, 2) == 8
    assert rows_per_block(1_000, 64, 2) == 125
    assert rows_per_block(10_000, 64, 2) == 64 * 16
    assert rows_per_block(10_000_000, 64, 8) == 64 * 16
