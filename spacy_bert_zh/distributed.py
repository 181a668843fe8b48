"""Annotate Parquet on a Ray cluster: read_parquet → map_batches(the pipeline) → write_parquet.

This is ``spacy-bert-zh annotate --engine ray``. It has no row conversion of its own: every
batch goes through ``annotation.annotate_table`` (the local engine's row-to-Arrow code) inside a
Ray Data actor that loads the pipeline once with ``annotation.load_pipeline``, and the inputs are
checked with the local engine's checks before Ray starts. So both engines give the same columns,
types and values; only the row order and the file layout differ:

- OUTPUT is always a *folder* of Parquet files named by Ray (``pyarrow.parquet.read_table(OUTPUT)``
  reads it back as one table), not one file per input file as with the local engine;
- rows come back in no particular order (keep an ``--id-column`` to join them to the input);
- the folder is written under a hidden sibling name (``.OUTPUT.ray-XXXXXXXX``) and renamed to
  OUTPUT only after every row is written and counted, so OUTPUT is complete or absent.

Ray is an optional extra (``pip install 'spacy-bert-zh[ray]'``), imported only inside
``annotate_with_ray``. On a cluster (``address``), the model, the input and the output must be
reachable under the same paths from this machine and every node (a shared file system), and this
package and the model package must be installed on every node.
"""
from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .annotate_options import AnnotateOptions, AnnotationError, RayOptions
from .annotation import annotate_table, pipeline_info
from .arrow_output import ERROR_FIELD, check_columns, output_schema
from .pipeline_runner import as_pipeline, prepare_pipeline
from .parquet_io import InputError, input_files, with_annotation_metadata

RAY_INSTALL_HINT = "pip install 'spacy-bert-zh[ray]'"
IO_CPUS = 1                  # logical CPUs kept free for Ray Data's list/read/write tasks
BLOCKS_PER_WORKER = 4        # a block (the unit Ray hands to one worker) is small enough for
MAX_BATCHES_PER_BLOCK = 16   # every worker to get ~4 of them, but holds at most 16 batches
ROWS_PER_FILE = 100_000      # blocks are gathered into output files of at least this many rows


@dataclass
class RaySummary:
    """What a Ray annotation run did (``rows_in`` equals ``rows_out``, or the run fails)."""

    rows_in: int
    rows_out: int
    files: int
    seconds: float
    workers: int
    output: Path
    failed_rows: int = 0

    def __str__(self) -> str:
        rate = self.rows_out / self.seconds if self.seconds else 0.0
        return (f"annotated {self.rows_in:,} rows with {self.workers} Ray worker(s) into "
                f"{self.files} file(s) in the folder {self.output} in {self.seconds:.1f}s "
                f"({rate:,.1f} rows/s, Ray start-up and model loading included)"
                + (f"; {self.failed_rows:,} row(s) made the pipeline fail (see their 'error' "
                   f"column)" if self.failed_rows else ""))


def annotate_with_ray(model: str, input_paths: list[Path], output: Path,
                      options: AnnotateOptions | None = None, ray_options: RayOptions | None = None,
                      **changes) -> RaySummary:
    """Annotate the Parquet files (or folders, globs) ``input_paths`` into the folder ``output``.

    ``options`` (or keyword ``changes`` to the defaults) are the local engine's; the Ray engine
    uses the columns, ``batch_size``, ``max_chars``, ``sort_by_length``, ``components`` and
    ``overwrite``, and refuses ``resume``. ``ray_options.address`` joins a running cluster
    (``"auto"``, ``"ray://HOST:10001"``); None starts a local Ray on this machine (and stops it at
    the end); an already initialized Ray is used as it is. ``workers`` actors each hold one copy
    of the pipeline, with ``gpus_per_worker`` GPUs (0: CPU) and ``cpus_per_worker`` CPUs, which
    is also their number of torch threads (see ``plan_workers`` for the defaults). Every input
    problem raises ``AnnotationError`` before Ray starts; ``output`` must not exist unless
    ``overwrite``.
    """
    options = AnnotateOptions.of(options, **changes)
    ray_options = ray_options or RayOptions()
    if options.resume:
        raise AnnotationError("the Ray engine cannot resume (it writes rows in no fixed order); "
                              "use the local engine or --overwrite")
    started = time.perf_counter()
    ray = import_ray()
    files = parquet_files(input_paths)
    output = Path(output).absolute()
    refuse_existing_output(output, options.overwrite)
    if Path(model).exists():
        model = str(Path(model).absolute())  # the workers do not share our working directory
    columns, schema, info = preflight(model, files, options)
    rows_in = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    staging = output.parent / f".{output.name}.ray-{uuid.uuid4().hex[:8]}"
    staging.parent.mkdir(parents=True, exist_ok=True)
    we_started_ray = not ray.is_initialized()
    if we_started_ray:
        start_ray(ray, ray_options.address)
    try:
        plan = plan_workers(ray.cluster_resources(), ray_options)
        if plan.gpus and options.quantize:
            raise AnnotationError(f"--quantize {options.quantize} runs on CPU only; with "
                                  "--gpus-per-worker use --half instead")
        dataset = ray.data.read_parquet([str(path) for path in files]).select_columns(columns)
        # Ray hands a whole block to one worker: cut the input into blocks small enough for
        # every worker to get several (streaming, nothing is shuffled or held back).
        dataset = dataset.repartition(
            target_num_rows_per_block=rows_per_block(rows_in, options.batch_size, plan.workers))
        annotated = dataset.map_batches(
            PipelineWorker,
            fn_constructor_kwargs=dict(model=model, options=options, use_gpu=plan.gpus > 0,
                                       threads=max(1, int(plan.cpus)), info=info),
            batch_format="pyarrow", batch_size=options.batch_size,
            compute=ray.data.ActorPoolStrategy(size=plan.workers),
            num_cpus=plan.cpus, num_gpus=plan.gpus or None)
        annotated.write_parquet(str(staging), min_rows_per_file=ROWS_PER_FILE)
        written = sorted(staging.glob("*.parquet")) if staging.exists() else []
        if rows_in == 0 and not written:
            written = [write_empty_output(staging, schema)]
        rows_out = sum(pq.ParquetFile(path).metadata.num_rows for path in written)
        if rows_out != rows_in:
            raise AnnotationError(f"Ray wrote {rows_out} rows for {rows_in} input rows; "
                                  f"{output} was not written")
        failed_rows = count_failed_rows(written)
        move_into_place(staging, output, options.overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if we_started_ray:
            ray.shutdown()
    return RaySummary(rows_in=rows_in, rows_out=rows_out, files=len(written),
                      seconds=time.perf_counter() - started, workers=plan.workers, output=output,
                      failed_rows=failed_rows)


class PipelineWorker:
    """A Ray Data actor: loads the pipeline once, then annotates Arrow batches with it."""

    def __init__(self, model: str, options: AnnotateOptions, use_gpu: bool, threads: int,
                 info: dict):
        import torch

        torch.set_num_threads(threads)
        # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU, so it is GPU 0 here.
        self.options = AnnotateOptions.of(options, gpu_id=0 if use_gpu else -1,
                                          half=options.half and use_gpu)
        self.nlp = prepare_pipeline(model, self.options)
        self.info = info

    def __call__(self, batch: pa.Table) -> pa.Table:
        table = annotate_table(self.nlp, batch, self.options)
        return table.replace_schema_metadata(
            with_annotation_metadata(table.schema, self.info).metadata)


# --- before Ray: inputs, pipeline, output ---------------------------------------------------

def import_ray() -> Any:
    """Import ``ray`` and ``ray.data``, or say how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise AnnotationError(f"--engine ray needs Ray Data, which is not installed ({error}); "
                              f"install it with: {RAY_INSTALL_HINT}") from error
    return ray


def parquet_files(input_paths: list[Path]) -> list[Path]:
    """The Parquet files of ``input_paths`` (files, folders or globs, as for the local engine)."""
    if not input_paths:
        raise AnnotationError("no input given")
    try:
        files = [path for spec in input_paths for path in input_files(spec)]
    except InputError as error:
        raise AnnotationError(str(error)) from error
    return [path.absolute() for path in dict.fromkeys(files)]


def preflight(model: str, files: list[Path], options: AnnotateOptions,
              ) -> tuple[list[str], pa.Schema, dict]:
    """Check every input as the local engine does, before any Ray work.

    Return the input columns to read, the output schema and the output metadata. The pipeline
    is loaded here once (on CPU) to know its output columns, then dropped.
    """
    nlp = as_pipeline(model, AnnotateOptions.of(options, gpu_id=-1, half=False))
    text_column, keep_columns = options.text_column, options.kept_columns
    schema = None
    for path in files:
        try:
            file_schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as error:
            raise AnnotationError(f"{path}: not a readable Parquet file ({error})") from error
        check_columns(nlp, file_schema, str(path), text_column, options.id_column, keep_columns)
        file_schema = pa.schema([file_schema.field(name) for name in
                                 needed_columns(file_schema, text_column, keep_columns)])
        if schema is None:
            schema = file_schema
        elif not file_schema.equals(schema):
            raise AnnotationError(f"{path}: its columns differ from those of {files[0]}; "
                                  f"annotate them in separate runs")
    info = ray_output_info(nlp, files, text_column)
    return schema.names, with_annotation_metadata(output_schema(nlp, schema, keep_columns), info), info


def count_failed_rows(files: list[Path]) -> int:
    """Rows of the written ``files`` whose ``error`` column is set."""
    columns = [pq.read_table(path, columns=[ERROR_FIELD.name]).column(0) for path in files]
    return sum(len(column) - column.null_count for column in columns)


def needed_columns(schema: pa.Schema, text_column: str, keep_columns: list[str] | None) -> list[str]:
    """The input columns to read: the kept ones (all by default) and the text column."""
    keep = schema.names if keep_columns is None else keep_columns
    return [name for name in schema.names if name in keep or name == text_column]


def ray_output_info(nlp, files: list[Path], text_column: str) -> dict:
    """The annotation metadata of the output files (the local engine's keys, one per input file)."""
    source = os.path.commonpath([str(path) for path in files])
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    return {**pipeline_info(nlp, source, text_column, rows), "engine": "ray"}


def refuse_existing_output(output: Path, overwrite: bool) -> None:
    """Raise if ``output`` exists and ``overwrite`` is not set."""
    if output.exists() and not overwrite:
        raise AnnotationError(f"{output} already exists; pass --overwrite to replace it")


def write_empty_output(folder: Path, schema: pa.Schema) -> Path:
    """Write a 0-row file with the output schema (Ray writes no file for an empty input)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-0.parquet"
    pq.write_table(schema.empty_table(), path)
    return path


def move_into_place(staging: Path, output: Path, overwrite: bool) -> None:
    """Rename the finished ``staging`` folder to ``output``, replacing it if ``overwrite``."""
    if not output.exists():
        os.replace(staging, output)
        return
    refuse_existing_output(output, overwrite)
    old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(output, old)
    os.replace(staging, output)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()


# --- Ray resources --------------------------------------------------------------------------

@dataclass
class WorkerPlan:
    """How many pipeline actors to run and what each one reserves."""

    workers: int
    cpus: float
    gpus: float


def init_kwargs(address: str | None) -> dict[str, Any]:
    """``ray.init`` arguments: join ``address``, or start a local Ray on this machine's CPUs.

    A local Ray gets ``IO_CPUS`` logical CPU more than the machine has: a slot for Ray Data's
    list, read and write tasks, light next to the model, but which cannot be scheduled at all
    once the actors hold every logical CPU (the job would wait forever).
    """
    if address:
        return dict(address=address)
    return dict(num_cpus=(os.cpu_count() or 1) + IO_CPUS, include_dashboard=False)


def start_ray(ray: Any, address: str | None) -> None:
    """``ray.init`` with ``init_kwargs``; a cluster that cannot be reached is an ``AnnotationError``."""
    try:
        ray.init(**init_kwargs(address))
    except ConnectionError as error:
        raise AnnotationError(f"cannot reach a Ray cluster at --address {address} ({error}); start "
                              f"one with `ray start --head`, or leave --address out to run Ray "
                              f"on this machine only") from error


def plan_workers(resources: dict[str, float], ray_options: RayOptions) -> WorkerPlan:
    """Size the actor pool from the cluster's resources (``ray.cluster_resources()``).

    ``IO_CPUS`` CPU stays free for reading and writing. On CPU: one CPU per worker and as many
    workers as fit, or with ``workers`` given, the free CPUs shared out between them. With GPUs:
    as many workers as the GPUs allow, one CPU each unless ``cpus_per_worker`` says otherwise.
    """
    workers, gpus_per_worker = ray_options.workers, ray_options.gpus_per_worker
    cpus_per_worker = ray_options.cpus_per_worker
    if (workers is not None and workers < 1) or gpus_per_worker < 0 or (
            cpus_per_worker is not None and cpus_per_worker <= 0):
        raise AnnotationError("--workers must be at least 1, --gpus-per-worker at least 0 and "
                              "CPUs per worker more than 0")
    free_cpus = resources.get("CPU", 0.0) - IO_CPUS
    total_gpus = resources.get("GPU", 0.0)
    if gpus_per_worker > 0:
        workers = workers or max(1, int(total_gpus // gpus_per_worker))
        if workers * gpus_per_worker > total_gpus:
            raise AnnotationError(f"{workers} worker(s) x {gpus_per_worker:g} GPU need more than "
                                  f"the Ray cluster's {total_gpus:g} GPU(s)")
        cpus_per_worker = cpus_per_worker or 1.0
    elif cpus_per_worker is None:
        cpus_per_worker = float(max(1, int(free_cpus // workers))) if workers else 1.0
    workers = workers or max(1, int(free_cpus // cpus_per_worker))
    if workers * cpus_per_worker > free_cpus:
        raise AnnotationError(
            f"{workers} worker(s) x {cpus_per_worker:g} CPU need more than the {free_cpus:g} "
            f"CPU(s) the Ray cluster has free ({IO_CPUS} kept for reading and writing); "
            f"ask for fewer --workers")
    return WorkerPlan(workers, cpus_per_worker, gpus_per_worker)


def rows_per_block(rows: int, batch_size: int, workers: int) -> int:
    """Rows per block: ``BLOCKS_PER_WORKER`` blocks per worker, 1 to 16 batches each."""
    per_block = math.ceil(rows / (BLOCKS_PER_WORKER * workers))
    return max(batch_size, min(per_block, batch_size * MAX_BATCHES_PER_BLOCK))
