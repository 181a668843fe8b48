"""Annotate Parquet with a spaCy pipeline: one row in, one row out, one schema for all engines.

``annotate_files`` is the local engine behind ``spacy-bert-zh annotate``: it streams each input
file through the pipeline in windows of rows and writes each window as a row group, so memory
depends on the window, the batch and the pipeline, never on the input size.
``annotate_table`` is the same row-to-Arrow conversion for one table; the Ray Data engine
(``distributed.py``) calls it, so the two engines cannot disagree. Output columns: the kept
input columns, then ``entities`` (list of text/label/start_char/end_char, character offsets
into the input string), ``cats`` (every textcat label's score) and ``label`` (the top class);
a column whose component is absent or not run is left out.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import spacy
from spacy.language import Language
from spacy.tokens import Doc

from .parquet_io import (FileJob, InputError, atomic_parquet_writer, is_complete_output,
                         plan_jobs, with_annotation_metadata)

ENTITY_TYPE = pa.struct([
    pa.field("text", pa.string()),
    pa.field("label", pa.string()),
    pa.field("start_char", pa.int32()),
    pa.field("end_char", pa.int32()),
])
ENTITIES_FIELD = pa.field("entities", pa.list_(ENTITY_TYPE))
CATS_FIELD = pa.field("cats", pa.map_(pa.string(), pa.float32()))
LABEL_FIELD = pa.field("label", pa.string())
DEFAULT_BATCH_SIZE = 64
DEFAULT_WINDOW_ROWS = 1024
DEFAULT_MAX_CHARS = 2_000     # longer texts are annotated in pieces cut at sentence ends
BATCH_CHARS_PER_TEXT = 256    # a batch holds at most batch_size * this many characters
SENTENCE_ENDS = "。！？!?\n；;…"
# Errors that mean "this input file is unreadable" (the run goes on with the other files).
FILE_ERRORS = (OSError, pa.ArrowException)

ProgressCallback = Callable[[int, int], None]  # (rows, characters) just annotated


class AnnotationError(ValueError):
    """The input, the output or the pipeline cannot be annotated as asked (the message says why)."""


@dataclass
class AnnotationSummary:
    """What ``annotate_files`` did: files written, skipped (``--resume``) and failed (with the reason)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    rows: int = 0
    characters: int = 0
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
        lines += [f"FAILED {source}: {reason}" for source, reason in self.failed.items()]
        return "\n".join(lines)


def annotate_files(
    model: str | Language,
    input_spec: str | Path,
    output: str | Path,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    keep_columns: list[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    window_rows: int = DEFAULT_WINDOW_ROWS,
    sort_by_length: bool = True,
    max_chars: int = DEFAULT_MAX_CHARS,
    n_process: int = 1,
    components: list[str] | None = None,
    gpu_id: int = -1,
    half: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> AnnotationSummary:
    """Annotate INPUT (a Parquet file, a folder of them or a glob) into OUTPUT, file by file.

    Every argument problem (missing text column, existing output, unknown component...) raises
    ``AnnotationError`` before any annotation; an unreadable input file is recorded in
    ``summary.failed`` and the others are still annotated. ``resume`` skips outputs that are
    already complete (file granularity: an interrupted file is redone from its start).
    ``components``, ``gpu_id`` apply when ``model`` is a name; a loaded ``Language`` runs as is.
    """
    if resume and overwrite:
        raise AnnotationError("--resume and --overwrite exclude each other: choose one")
    started = time.perf_counter()
    try:
        jobs = plan_jobs(input_spec, output)
    except InputError as error:
        raise AnnotationError(str(error)) from error
    nlp = model if isinstance(model, Language) else load_pipeline(model, gpu_id, components)
    if half:
        use_mixed_precision(nlp, gpu_id)
    keep_columns = with_id_column(keep_columns, id_column)
    summary = AnnotationSummary()
    todo = preflight(nlp, jobs, text_column, id_column, keep_columns, resume, overwrite, summary)
    with progress_bar(sum(rows for _, rows in todo), enabled=progress) as advance:
        for job, _ in todo:
            try:
                rows, characters = annotate_file(
                    nlp, job, text_column, keep_columns, batch_size=batch_size,
                    window_rows=window_rows, sort_by_length=sort_by_length,
                    max_chars=max_chars, n_process=n_process, on_progress=advance)
            except FILE_ERRORS as error:
                summary.failed[job.source] = f"{type(error).__name__}: {error}"
                continue
            summary.written.append(job.dest)
            summary.rows += rows
            summary.characters += characters
    summary.seconds = time.perf_counter() - started
    return summary


# .. # Interface for distributed.py ---------------------------------------------------------
# load_pipeline, check_text_column, output_schema and annotate_table are the contract shared
# with the Ray Data engine: keep their signatures stable.

def load_pipeline(model: str, gpu_id: int = -1, components: list[str] | None = None) -> Language:
    """Load an installed pipeline package or a pipeline folder, on GPU ``gpu_id`` (-1: CPU).

    ``components`` names the pipes to run (all by default); the others are disabled. A component
    that listens to a shared transformer/tok2vec keeps that upstream pipe running.
    """
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    try:
        nlp = spacy.load(model)
    except OSError as error:
        raise AnnotationError(f"cannot load the pipeline {model!r} (an installed package name or "
                              f"a pipeline folder): {error}") from error
    if components:
        nlp.select_pipes(enable=pipes_to_enable(nlp, components))
    return nlp


def check_text_column(schema: pa.Schema, text_column: str, source: str) -> None:
    """Raise ``AnnotationError`` unless ``schema`` has a string column ``text_column``."""
    if text_column not in schema.names:
        raise AnnotationError(
            f"{source}: no text column {text_column!r}; available columns: "
            f"{', '.join(schema.names) or '(none)'} (choose one with --text-column)")
    column_type = schema.field(text_column).type
    if not is_string_type(column_type):
        raise AnnotationError(
            f"{source}: text column {text_column!r} has type {column_type}, not a string type; "
            f"cast it to string first or choose another column with --text-column")


def output_schema(nlp: Language, input_schema: pa.Schema, keep_columns: list[str] | None) -> pa.Schema:
    """The schema of the annotated table: the kept input columns, then the predicted columns.

    ``keep_columns`` None keeps every input column, ``[]`` none. A kept column that the input
    lacks, or that has the name of a predicted column, raises ``AnnotationError``.
    """
    predicted = predicted_fields(nlp)
    kept = kept_column_names(input_schema, keep_columns)
    clashes = [name for name in kept if name in {field.name for field in predicted}]
    if clashes:
        raise AnnotationError(
            f"input column(s) {', '.join(clashes)} would be overwritten by the pipeline's output "
            f"column(s) of the same name; leave them out with --keep-columns")
    return pa.schema([input_schema.field(name) for name in kept] + predicted)


def annotate_table(
    nlp: Language,
    table: pa.Table | pa.RecordBatch,
    text_column: str = "text",
    keep_columns: list[str] | None = None,
    batch_size: int = 64,
    sort_by_length: bool = True,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> pa.Table:
    """Run ``nlp`` over ``table[text_column]``; return one output row per input row, in order.

    Null, empty and whitespace-only texts are not sent to the pipeline: their row gets no
    entities and null ``cats``/``label``. ``sort_by_length`` feeds the texts longest-first
    inside this table to cut padding (the output order is unchanged). Texts longer than
    ``max_chars`` are annotated in pieces cut at sentence ends (bounded memory); their entities
    are merged with offsets into the whole text, their cats averaged weighted by piece length.
    """
    check_text_column(table.schema, text_column, "input table")
    schema = output_schema(nlp, table.schema, keep_columns)
    kept = kept_column_names(table.schema, keep_columns)
    annotated = annotate_batches(nlp, [table], text_column, kept, schema, batch_size=batch_size,
                                 sort_by_length=sort_by_length, max_chars=max_chars)
    return next(iter(annotated))


# --- the local engine: files → windows → pipeline batches → row groups ----------------------

def annotate_file(
    nlp: Language,
    job: FileJob,
    text_column: str,
    keep_columns: list[str] | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    window_rows: int = DEFAULT_WINDOW_ROWS,
    sort_by_length: bool = True,
    max_chars: int = DEFAULT_MAX_CHARS,
    n_process: int = 1,
    on_progress: ProgressCallback | None = None,
) -> tuple[int, int]:
    """Annotate ``job.source`` into ``job.dest`` (atomically); return (rows, characters)."""
    source = pq.ParquetFile(job.source)
    schema = output_schema(nlp, source.schema_arrow, keep_columns)
    kept = kept_column_names(source.schema_arrow, keep_columns)
    needed = list(dict.fromkeys([*kept, text_column]))
    counts = [0, 0]

    def count(rows: int, characters: int) -> None:
        counts[0] += rows
        counts[1] += characters
        if on_progress:
            on_progress(rows, characters)

    metadata = pipeline_info(nlp, str(job.source), text_column, source.metadata.num_rows)
    with atomic_parquet_writer(job.dest, with_annotation_metadata(schema, metadata)) as writer:
        batches = source.iter_batches(batch_size=window_rows, columns=needed)
        for table in annotate_batches(nlp, batches, text_column, kept, schema,
                                      batch_size=batch_size, sort_by_length=sort_by_length,
                                      n_process=n_process, max_chars=max_chars,
                                      on_progress=count):
            writer.write_table(table)
    return counts[0], counts[1]


def preflight(nlp: Language, jobs: list[FileJob], text_column: str, id_column: str | None,
              keep_columns: list[str] | None, resume: bool, overwrite: bool,
              summary: AnnotationSummary) -> list[tuple[FileJob, int]]:
    """Check every input and output before any work; return the (job, rows) still to annotate.

    Unreadable inputs go to ``summary.failed``, complete outputs (with ``resume``) to
    ``summary.skipped``; a bad column choice or an output in the way raises ``AnnotationError``.
    """
    todo, in_the_way = [], []
    for job in jobs:
        try:
            source = pq.ParquetFile(job.source)
            schema, rows = source.schema_arrow, source.metadata.num_rows
        except FILE_ERRORS as error:
            summary.failed[job.source] = (f"not a readable Parquet file "
                                          f"({type(error).__name__}: {error})")
            continue
        check_columns(nlp, schema, str(job.source), text_column, id_column, keep_columns)
        if job.dest.exists() and not overwrite:
            if resume and is_complete_output(job.dest, rows):
                summary.skipped.append(job.dest)
                continue
            in_the_way.append(job.dest)
        todo.append((job, rows))
    if in_the_way:
        raise AnnotationError(existing_output_message(in_the_way, resume))
    return todo


def check_columns(nlp: Language, schema: pa.Schema, source: str, text_column: str,
                  id_column: str | None, keep_columns: list[str] | None) -> None:
    """Raise ``AnnotationError`` unless the text, id and kept columns fit ``schema`` and the pipeline."""
    check_text_column(schema, text_column, source)
    if id_column is not None and id_column not in schema.names:
        raise AnnotationError(f"{source}: no id column {id_column!r}; available columns: "
                              f"{', '.join(schema.names)}")
    try:
        output_schema(nlp, schema, keep_columns)
    except AnnotationError as error:
        raise AnnotationError(f"{source}: {error}") from error


def existing_output_message(paths: list[Path], resume: bool) -> str:
    """Why existing output files stop the run, and what to pass instead."""
    shown = ", ".join(str(path) for path in paths[:5]) + (" ..." if len(paths) > 5 else "")
    if resume:
        return (f"{len(paths)} output file(s) exist but are not complete annotations of their "
                f"input ({shown}); pass --overwrite to replace them")
    return (f"{len(paths)} output file(s) already exist ({shown}); pass --overwrite to replace "
            f"them or --resume to keep the complete ones and finish the rest")


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


def annotate_batches(
    nlp: Language,
    tables: Iterable[pa.Table | pa.RecordBatch],
    text_column: str,
    kept: list[str],
    schema: pa.Schema,
    batch_size: int = DEFAULT_BATCH_SIZE,
    sort_by_length: bool = True,
    n_process: int = 1,
    max_chars: int = DEFAULT_MAX_CHARS,
    on_progress: ProgressCallback | None = None,
) -> Iterator[pa.Table]:
    """Annotate a stream of tables as one pipeline stream; yield one output table per input, in order.

    Each table is a window: texts longer than ``max_chars`` are cut into pieces at sentence ends,
    the pieces enter the pipeline longest-first (if ``sort_by_length``) in batches of at most
    ``batch_size`` pieces and ``batch_size * BATCH_CHARS_PER_TEXT`` characters, and the window's
    output is yielded as soon as its last piece comes back.
    """
    windows: dict[int, Window] = {}
    pieces = window_pieces(tables, text_column, kept, windows, sort_by_length, max_chars)
    ready = 0
    for doc, (number, row, start) in run_pipeline(nlp, pieces, batch_size, n_process):
        row_done = windows[number].add(row, start, doc)
        if on_progress:
            on_progress(int(row_done), len(doc.text))
        while ready in windows and windows[ready].pending == 0:
            yield finish_window(windows.pop(ready), schema, on_progress)
            ready += 1
    while ready in windows:
        yield finish_window(windows.pop(ready), schema, on_progress)
        ready += 1


def window_pieces(tables: Iterable[pa.Table | pa.RecordBatch], text_column: str, kept: list[str],
                  windows: dict[int, "Window"], sort_by_length: bool,
                  max_chars: int) -> Iterator[tuple[str, tuple[int, int, int]]]:
    """Register each table in ``windows`` and yield its pieces as (text, (window, row, start))."""
    for number, table in enumerate(tables):
        texts = table.column(text_column).to_pylist()
        rows: list[RowResult | None] = [None] * len(texts)
        pieces = []
        for row, text in enumerate(texts):
            if is_blank(text):
                continue
            row_pieces = [(text[start:end], (number, row, start))
                          for start, end in piece_bounds(text, max_chars)]
            row_pieces = [piece for piece in row_pieces if not piece[0].isspace()]
            rows[row] = RowResult(pieces_left=len(row_pieces))
            pieces.extend(row_pieces)
        if sort_by_length:
            pieces.sort(key=lambda piece: len(piece[0]), reverse=True)
        windows[number] = Window(table.select(kept), rows, pending=len(pieces))
        yield from pieces


def run_pipeline(nlp: Language, pieces: Iterable[tuple[str, tuple]], batch_size: int,
                 n_process: int) -> Iterator[tuple[Doc, tuple]]:
    """(doc, context) for each (text, context), in order.

    In one process the batches are bounded in pieces and in characters (so memory is too);
    with ``n_process`` > 1 spaCy's multiprocessing ``nlp.pipe`` batches by count only, in
    *spawned* workers (forked ones deadlock in PyTorch).
    """
    if n_process > 1:
        with start_method("spawn"):
            yield from nlp.pipe(pieces, as_tuples=True, batch_size=batch_size, n_process=n_process)
        return
    for batch in budget_batches(pieces, batch_size, batch_size * BATCH_CHARS_PER_TEXT):
        yield from nlp.pipe(batch, as_tuples=True, batch_size=len(batch))
        release_free_heap()


def release_free_heap() -> None:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    The tensors of each batch are freed into a heap that fragments; without this, peak memory
    creeps up over a long run (~1.8x after 10,000 rows) although nothing is kept.
    """
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


@contextmanager
def start_method(method: str) -> Iterator[None]:
    """Use the ``multiprocessing`` start ``method`` inside the block (spaCy uses the default one)."""
    import multiprocessing

    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(method, force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(previous, force=True)


def budget_batches(pieces: Iterable[tuple[str, tuple]], max_pieces: int,
                   max_chars: int) -> Iterator[list[tuple[str, tuple]]]:
    """Group pieces into lists of at most ``max_pieces`` pieces and ``max_chars`` characters
    (a single longer piece makes a batch of its own)."""
    batch, chars = [], 0
    for piece in pieces:
        if batch and (len(batch) == max_pieces or chars + len(piece[0]) > max_chars):
            yield batch
            batch, chars = [], 0
        batch.append(piece)
        chars += len(piece[0])
    if batch:
        yield batch


def piece_bounds(text: str, max_chars: int) -> list[tuple[int, int]]:
    """(start, end) of consecutive pieces of ``text`` of at most ``max_chars`` characters each,
    cut after a sentence end (or else a space) in the second half of a piece when there is one."""
    bounds, start = [], 0
    while len(text) - start > max_chars:
        end = cut_point(text, start + max_chars // 2, start + max_chars)
        bounds.append((start, end))
        start = end
    bounds.append((start, len(text)))
    return bounds


def cut_point(text: str, low: int, high: int) -> int:
    """The position after the last sentence end (else whitespace) in ``text[low:high]``, else ``high``."""
    for stops in (SENTENCE_ENDS, " \t\u3000"):
        found = max(text.rfind(stop, low, high) for stop in stops)
        if found >= 0:
            return found + 1
    return high


@dataclass
class RowResult:
    """The predictions for one row, merged over its pieces (entity offsets into the whole text)."""

    pieces_left: int
    entities: list[tuple[str, str, int, int]] = field(default_factory=list)
    cat_sums: dict[str, float] = field(default_factory=dict)
    chars: int = 0

    def add(self, doc: Doc, start: int) -> bool:
        """Merge the doc of the piece at ``start``; True when it was the row's last piece."""
        self.entities.extend((ent.text, ent.label_, ent.start_char + start, ent.end_char + start)
                             for ent in doc.ents)
        weight = len(doc.text)
        for label, score in doc.cats.items():
            self.cat_sums[label] = self.cat_sums.get(label, 0.0) + score * weight
        self.chars += weight
        self.pieces_left -= 1
        return self.pieces_left == 0

    def sorted_entities(self) -> list[tuple[str, str, int, int]]:
        """The entities in text order (pieces may come back in any order)."""
        return sorted(self.entities, key=lambda entity: entity[2])

    def cats(self) -> dict[str, float] | None:
        """Each label's score, averaged over the pieces weighted by their length (None if none)."""
        return {label: total / self.chars for label, total in self.cat_sums.items()} or None


@dataclass
class Window:
    """The rows of one input table while their pieces are in the pipeline."""

    kept: pa.Table | pa.RecordBatch
    rows: list[RowResult | None]
    pending: int

    def add(self, row: int, start: int, doc: Doc) -> bool:
        """Merge the doc of one piece of ``row``; True when the row is complete."""
        self.pending -= 1
        return self.rows[row].add(doc, start)


def finish_window(window: Window, schema: pa.Schema, on_progress: ProgressCallback | None) -> pa.Table:
    """The output table of a finished window (its blank rows are counted as progress here)."""
    blank_rows = sum(result is None for result in window.rows)
    if on_progress and blank_rows:
        on_progress(blank_rows, 0)
    return results_to_table(window.rows, window.kept, schema)


def is_blank(text: str | None) -> bool:
    """True for null, empty and whitespace-only texts (they are not sent to the pipeline)."""
    return text is None or not text or text.isspace()


# --- row results → Arrow --------------------------------------------------------------------

def results_to_table(results: Sequence[RowResult | None], kept: pa.Table | pa.RecordBatch,
                     schema: pa.Schema) -> pa.Table:
    """Append the predicted columns of ``schema`` (those after the kept ones), built from ``results``."""
    builders = {ENTITIES_FIELD.name: entities_array, CATS_FIELD.name: cats_array,
                LABEL_FIELD.name: label_array}
    predicted = schema.names[kept.num_columns:]
    columns = list(kept.columns) + [builders[name](results) for name in predicted]
    return pa.Table.from_arrays(columns, schema=schema)


def entities_array(results: Sequence[RowResult | None]) -> pa.Array:
    """``list<struct<text, label, start_char, end_char>>``; an empty list for unannotated rows."""
    offsets, flat = [0], []
    for result in results:
        if result is not None:
            flat.extend(result.sorted_entities())
        offsets.append(len(flat))
    fields = [pa.array([entity[k] for entity in flat], type=ENTITY_TYPE.field(k).type)
              for k in range(ENTITY_TYPE.num_fields)]
    values = pa.StructArray.from_arrays(fields, fields=list(ENTITY_TYPE))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=ENTITIES_FIELD.type)


def cats_array(results: Sequence[RowResult | None]) -> pa.Array:
    """``map<string, float>`` with every label's score; null for unannotated rows."""
    offsets, keys, scores, mask = [0], [], [], []
    for result in results:
        cats = result.cats() if result is not None else None
        if cats:
            keys.extend(cats)
            scores.extend(cats.values())
        offsets.append(len(keys))
        mask.append(not cats)
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(scores, pa.float32()),
        type=CATS_FIELD.type, mask=pa.array(mask, pa.bool_()))


def label_array(results: Sequence[RowResult | None]) -> pa.Array:
    """The top class per row; null for unannotated rows."""
    return pa.array([top_label(result.cats()) if result is not None else None
                     for result in results], pa.string())


def top_label(cats: dict[str, float] | None) -> str | None:
    """The label with the highest score (None when there are no scores)."""
    return max(cats, key=cats.__getitem__) if cats else None


# --- schema and pipeline helpers ------------------------------------------------------------

def predicted_fields(nlp: Language) -> list[pa.Field]:
    """The output fields the running pipes can fill: entities for ``doc.ents``, cats+label for ``doc.cats``."""
    assigned = {attr for name in nlp.pipe_names for attr in nlp.get_pipe_meta(name).assigns}
    fields = [ENTITIES_FIELD] if "doc.ents" in assigned else []
    return fields + ([CATS_FIELD, LABEL_FIELD] if "doc.cats" in assigned else [])


def kept_column_names(input_schema: pa.Schema, keep_columns: list[str] | None) -> list[str]:
    """The input columns to copy to the output, checked against ``input_schema``."""
    if keep_columns is None:
        return list(input_schema.names)
    missing = [name for name in keep_columns if name not in input_schema.names]
    if missing:
        raise AnnotationError(f"--keep-columns names {', '.join(missing)} not in the input; "
                              f"available columns: {', '.join(input_schema.names)}")
    return list(dict.fromkeys(keep_columns))


def pipes_to_enable(nlp: Language, components: Iterable[str]) -> list[str]:
    """``components`` plus the transformer/tok2vec pipes they listen to, in pipeline order."""
    components = list(components)
    unknown = [name for name in components if name not in nlp.component_names]
    if unknown:
        raise AnnotationError(f"unknown component(s) {', '.join(unknown)}; the pipeline has: "
                              f"{', '.join(nlp.component_names)}")
    wanted = set(components)
    for name in nlp.component_names:
        listeners = getattr(nlp.get_pipe(name), "listener_map", {})
        if wanted & set(listeners):
            wanted.add(name)
    return [name for name in nlp.component_names if name in wanted]


def is_string_type(arrow_type: pa.DataType) -> bool:
    """True for Arrow string columns (plain, large, view, or dictionary-encoded strings)."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_string_view(arrow_type))


def with_id_column(keep_columns: list[str] | None, id_column: str | None) -> list[str] | None:
    """``keep_columns`` with the id column first (None still means every column)."""
    if keep_columns is None or id_column is None:
        return keep_columns
    return [id_column] + [name for name in keep_columns if name != id_column]


def use_mixed_precision(nlp: Language, gpu_id: int) -> int:
    """Run the pipeline's PyTorch models under float16 autocast (GPU only); return how many.

    This is spacy-transformers' own ``mixed_precision`` switch, set after loading: matrix
    products run in half precision, layer norms and the outputs stay float32.
    """
    from thinc.shims import PyTorchShim

    if gpu_id < 0:
        raise AnnotationError("--half needs a GPU (--gpu-id 0 or higher); on CPU the pipeline "
                              "runs in float32")
    shims = [shim for _, pipe in nlp.pipeline if hasattr(pipe, "model")
             for node in pipe.model.walk() for shim in node.shims if isinstance(shim, PyTorchShim)]
    for shim in shims:
        shim._mixed_precision = True
    return len(shims)


@contextmanager
def progress_bar(total_rows: int, enabled: bool = True) -> Iterator[ProgressCallback]:
    """A tqdm bar over rows (rows/s, ETA) that also shows characters/s; a no-op if not ``enabled``."""
    if not enabled:
        yield lambda rows, characters: None
        return
    from tqdm import tqdm

    with tqdm(total=total_rows, unit="rows", unit_scale=True, smoothing=0.05) as bar:
        characters = [0, time.perf_counter()]  # characters so far, last postfix update

        def advance(rows: int, chars: int) -> None:
            characters[0] += chars
            bar.update(rows)
            now = time.perf_counter()
            if now - characters[1] > 1.0:
                elapsed = bar.format_dict["elapsed"] or 1e-9
                bar.set_postfix_str(f"{characters[0] / elapsed:,.0f} chars/s", refresh=False)
                characters[1] = now

        yield advance
