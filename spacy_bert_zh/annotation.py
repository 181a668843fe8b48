"""Annotate Parquet with a spaCy pipeline: one row in, one row out, one schema for all engines.

``annotate_files`` is the local engine behind ``spacy-bert-zh annotate``: it streams each input
file through the pipeline in windows of rows and keeps each finished window (``checkpoint.py``),
so memory depends on the window, the batch and the pipeline, never on the input size, and a
killed run resumes after its last finished window. ``annotate_table`` is the same row-to-Arrow
conversion for one table; the Ray Data engine (``distributed.py``) calls it, so the two engines
cannot disagree. The modules behind it: ``annotate_options`` (what to do), ``pieces`` (windows,
pieces, batches), ``pipeline_runner`` (loading, precision, running), ``arrow_output`` (schema and
columns), ``checkpoint`` (resume) and ``progress`` (the bar).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq
import spacy
from spacy.language import Language

from .alignment import use_offset_alignment
from .annotate_options import AnnotateOptions, AnnotationError
from .arrow_output import check_columns, check_text_column, kept_column_names, output_schema, results_to_table
from .checkpoint import Checkpoint, existing_checkpoint, pipeline_hash, run_identity
from .parquet_io import FileJob, InputError, is_complete_output, plan_jobs, with_annotation_metadata
from .pieces import Window, text_length, window_pieces
from .pipeline_runner import as_pipeline, keep_tag_probabilities, load_pipeline, run_pipeline, set_precision
from .progress import progress_bar

__all__ = ["AnnotateOptions", "AnnotationError", "AnnotationSummary", "annotate_files",
           "annotate_table", "load_pipeline"]

# Errors that mean "this input file is unreadable" (the run goes on with the other files).
FILE_ERRORS = (OSError, pa.ArrowException)


@dataclass
class Tally:
    """Rows and characters annotated, rows the pipeline failed on; forwarded to a progress bar."""

    rows: int = 0
    characters: int = 0
    failed_rows: int = 0
    on_progress: Optional[Callable[[int, int], None]] = None

    def add(self, rows: int, characters: int) -> None:
        self.rows += rows
        self.characters += characters
        if self.on_progress:
            self.on_progress(rows, characters)


@dataclass
class AnnotationSummary:
    """What ``annotate_files`` did: files written, skipped (``--resume``) and failed (with the reason)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    rows: int = 0
    characters: int = 0
    kept_rows: int = 0        # rows of interrupted runs kept by --resume (not annotated again)
    failed_rows: int = 0      # rows the pipeline raised on (empty predictions, see ``error``)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no input file failed."""
        return not self.failed

    def describe(self) -> str:
        """A few human-readable lines for the end of a run."""
        rate = self.rows / self.seconds if self.seconds else 0.0
        lines = [f"annotated {self.rows:,} rows ({self.characters:,} characters) into "
                 f"{len(self.written)} file(s) in {self.seconds:.1f}s ({rate:,.1f} rows/s); "
                 f"{len(self.skipped)} already complete (skipped), {len(self.failed)} failed"]
        if self.kept_rows:
            lines.append(f"resumed: {self.kept_rows:,} rows kept from the interrupted run")
        if self.failed_rows:
            lines.append(f"{self.failed_rows:,} row(s) made the pipeline fail: their predictions "
                         f"are empty and their 'error' column says why")
        lines += [f"FAILED {source}: {reason}" for source, reason in self.failed.items()]
        return "\n".join(lines)


def annotate_files(model: str | Language, input_spec: str | Path, output: str | Path,
                   options: Optional[AnnotateOptions] = None, **changes) -> AnnotationSummary:
    """Annotate INPUT (a Parquet file, a folder of them or a glob) into OUTPUT, file by file.

    ``options`` (or keyword ``changes`` to the defaults) say how. Every argument problem (missing
    text column, existing output, unknown component...) raises ``AnnotationError`` before any
    annotation; an unreadable input file is recorded in ``summary.failed`` and the others are
    still annotated. ``resume`` skips complete outputs and continues interrupted ones after their
    last finished window.
    """
    options = AnnotateOptions.of(options, **changes)
    started = time.perf_counter()
    try:
        jobs = plan_jobs(input_spec, output)
    except InputError as error:
        raise AnnotationError(str(error)) from error
    nlp = as_pipeline(model, options)
    pipeline_id = pipeline_hash(nlp)  # before quantizing: the weights that were trained
    set_precision(nlp, options)
    summary = AnnotationSummary()
    todo = preflight(nlp, jobs, options, pipeline_id, summary)
    with progress_bar(sum(rows for _, rows, _ in todo), enabled=options.progress) as advance:
        for job, _, identity in todo:
            tally = Tally(on_progress=advance)
            try:
                summary.kept_rows += annotate_file(nlp, job, options, identity, tally)
            except FILE_ERRORS as error:
                summary.failed[job.source] = f"{type(error).__name__}: {error}"
                continue
            summary.written.append(job.dest)
            summary.rows += tally.rows
            summary.characters += tally.characters
            summary.failed_rows += tally.failed_rows
    summary.seconds = time.perf_counter() - started
    return summary


def annotate_table(nlp: Language, table: pa.Table | pa.RecordBatch,
                   options: Optional[AnnotateOptions] = None, **changes) -> pa.Table:
    """Run ``nlp`` over the text column of ``table``; return one output row per input row, in order.

    Null, empty and whitespace-only texts are not sent to the pipeline: their row gets no
    entities and null ``cats``/``label``. ``sort_by_length`` feeds the texts longest-first
    inside this table to cut padding (the output order is unchanged). Texts longer than
    ``max_chars`` are annotated in pieces cut at sentence ends (bounded memory); their entities
    are merged with offsets into the whole text, their cats averaged weighted by piece length.
    A row that makes the pipeline raise gets empty predictions and its ``error``. ``tag_probs``
    switches the ner's probabilities (the ``tag_probs`` column) on or off for ``nlp``, and its
    transformer is switched to the array alignment of ``alignment.py`` (same output), as in
    ``annotate_files``.
    """
    options = AnnotateOptions.of(options, **changes)
    keep_tag_probabilities(nlp, options.tag_probs)
    use_offset_alignment(nlp)
    check_text_column(table.schema, options.text_column, "input table")
    schema = output_schema(nlp, table.schema, options.kept_columns)
    kept = kept_column_names(table.schema, options.kept_columns)
    return next(iter(annotate_batches(nlp, [table], kept, schema, options)))


# --- the local engine: files → windows → pipeline batches → row groups ----------------------

def annotate_file(nlp: Language, job: FileJob, options: AnnotateOptions, identity: dict,
                  tally: Tally) -> int:
    """Annotate ``job.source`` into ``job.dest`` (atomically); return the rows kept from an
    interrupted run (their windows are not annotated again)."""
    source = pq.ParquetFile(job.source)
    schema = output_schema(nlp, source.schema_arrow, options.kept_columns)
    kept = kept_column_names(source.schema_arrow, options.kept_columns)
    needed = list(dict.fromkeys([*kept, options.text_column]))
    resumable = options.resume and existing_checkpoint(job.dest) is not None
    checkpoint = (Checkpoint.resume if resumable else Checkpoint.start)(job.dest, identity)
    finished = checkpoint.finished()
    done, kept_rows = len(finished), sum(pq.read_metadata(path).num_rows for path in finished)
    if tally.on_progress:
        tally.on_progress(kept_rows, 0)
    windows = skip_windows(source.iter_batches(batch_size=options.window_rows, columns=needed),
                           done, kept_rows, job.source)
    tables = annotate_batches(nlp, windows, kept, schema, options, tally, first_window=done)
    for number, table in enumerate(tables, start=done):
        checkpoint.write(number, table)
    metadata = pipeline_info(nlp, str(job.source), options.text_column, source.metadata.num_rows)
    checkpoint.merge_into(job.dest, with_annotation_metadata(schema, metadata))
    return kept_rows


def skip_windows(windows: Iterator[pa.RecordBatch], count: int, rows: int,
                 source: Path) -> Iterator[pa.RecordBatch]:
    """``windows`` after the first ``count``, which must hold ``rows`` rows (else the input changed)."""
    skipped = sum(window.num_rows for window in itertools.islice(windows, count))
    if skipped != rows:
        raise AnnotationError(f"{source}: the interrupted run's windows hold {rows} rows, but the "
                              f"same windows of the input now hold {skipped}; pass --overwrite")
    return windows


def preflight(nlp: Language, jobs: list[FileJob], options: AnnotateOptions, pipeline_id: str,
              summary: AnnotationSummary) -> list[tuple[FileJob, int, dict]]:
    """Check every input and output before any work; return the (job, rows, identity) to annotate.

    Unreadable inputs go to ``summary.failed``, complete outputs (with ``resume``) to
    ``summary.skipped``; a bad column choice, an output or checkpoint in the way, or a checkpoint
    of another pipeline, input or settings raises ``AnnotationError``.
    """
    todo, in_the_way = [], []
    for job in jobs:
        try:
            source = pq.ParquetFile(job.source)
            schema, rows = source.schema_arrow, source.metadata.num_rows
            identity = run_identity(pipeline_id, job.source, options.output_settings())
        except FILE_ERRORS as error:
            summary.failed[job.source] = (f"not a readable Parquet file "
                                          f"({type(error).__name__}: {error})")
            continue
        check_columns(nlp, schema, str(job.source), options.text_column, options.id_column,
                      options.kept_columns)
        if options.overwrite:
            todo.append((job, rows, identity))
            continue
        if job.dest.exists():
            if options.resume and is_complete_output(job.dest, rows):
                summary.skipped.append(job.dest)
                continue
            in_the_way.append(job.dest)
        elif (leftover := existing_checkpoint(job.dest)) is not None:
            if not options.resume:
                in_the_way.append(leftover)
            else:
                Checkpoint.resume(job.dest, identity)  # raises if it belongs to another run
        todo.append((job, rows, identity))
    if in_the_way:
        raise AnnotationError(existing_output_message(in_the_way, options.resume))
    return todo


def existing_output_message(paths: list[Path], resume: bool) -> str:
    """Why existing outputs (or an interrupted run's windows) stop the run, and what to pass instead."""
    shown = ", ".join(str(path) for path in paths[:5]) + (" ..." if len(paths) > 5 else "")
    if resume:
        return (f"{len(paths)} output file(s) exist but are not complete annotations of their "
                f"input ({shown}); pass --overwrite to replace them")
    return (f"{len(paths)} output file(s) or interrupted runs' windows already exist ({shown}); "
            f"pass --overwrite to replace them or --resume to keep the complete files and "
            f"windows and finish the rest")


def pipeline_info(nlp: Language, source: str, text_column: str, rows: int) -> dict:
    """What an output file records about how it was made (stored in its Parquet metadata)."""
    from . import __version__

    return {
        "pipeline": f"{nlp.meta.get('lang', nlp.lang)}_{nlp.meta.get('name', 'pipeline')}",
        "version": nlp.meta.get("version"),
        "components": list(nlp.pipe_names),
        "spacy_version": spacy.__version__,
        "spacy_bert_zh_version": __version__,
        "source": source,
        "source_rows": rows,
        "text_column": text_column,
    }


def annotate_batches(nlp: Language, tables: Iterable[pa.Table | pa.RecordBatch], kept: list[str],
                     schema: pa.Schema, options: AnnotateOptions, tally: Optional[Tally] = None,
                     first_window: int = 0) -> Iterator[pa.Table]:
    """Annotate a stream of tables as one pipeline stream; yield one output table per input, in order.

    Each table is a window (see ``pieces``); the window's output is yielded as soon as its last
    piece comes back. ``tally`` counts rows, characters and failed rows as they finish.
    """
    tally = tally or Tally()
    windows: dict[int, Window] = {}
    pieces = window_pieces(tables, options.text_column, kept, windows, options.sort_by_length,
                           options.max_chars, first_window)
    ready = first_window
    for doc, (number, row, start), error in run_pipeline(nlp, pieces, options.batch_size,
                                                         options.n_process):
        row_done = windows[number].add(row, start, doc, error)
        tally.add(int(row_done), text_length(doc) if doc is not None else 0)
        while ready in windows and windows[ready].pending == 0:
            yield finish_window(windows.pop(ready), schema, tally)
            ready += 1
    while ready in windows:
        yield finish_window(windows.pop(ready), schema, tally)
        ready += 1


def finish_window(window: Window, schema: pa.Schema, tally: Tally) -> pa.Table:
    """The output table of a finished window (its blank rows are counted as done here)."""
    tally.add(window.blank_rows, 0)
    tally.failed_rows += window.failed_rows
    return results_to_table(window.rows, window.kept, schema)
