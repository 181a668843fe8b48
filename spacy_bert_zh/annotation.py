"""Annotate Arrow tables with a spaCy pipeline: one row in, one row out, one schema for all engines.

``annotate_table`` is the single row-to-Arrow conversion: the local engine (``annotate_files``)
and the Ray Data engine (``distributed.py``) both call it, so their output cannot disagree.
Output columns: the kept input columns, then ``entities`` (list of text/label/start_char/end_char,
character offsets into the input string), ``cats`` (every textcat label's score) and ``label``
(the top class); a column whose component is absent or not run is left out.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import pyarrow as pa
import spacy
from spacy.language import Language
from spacy.tokens import Doc

ENTITY_TYPE = pa.struct([
    pa.field("text", pa.string()),
    pa.field("label", pa.string()),
    pa.field("start_char", pa.int32()),
    pa.field("end_char", pa.int32()),
])
ENTITIES_FIELD = pa.field("entities", pa.list_(ENTITY_TYPE))
CATS_FIELD = pa.field("cats", pa.map_(pa.string(), pa.float32()))
LABEL_FIELD = pa.field("label", pa.string())
OUTPUT_COLUMNS = (ENTITIES_FIELD.name, CATS_FIELD.name, LABEL_FIELD.name)


class AnnotationError(ValueError):
    """The input, the output or the pipeline cannot be annotated as asked (the message says why)."""


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
    nlp = spacy.load(model)
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
) -> pa.Table:
    """Run ``nlp`` over ``table[text_column]``; return one output row per input row, in order.

    Null, empty and whitespace-only texts are not sent to the pipeline: their row gets no
    entities and null ``cats``/``label``. ``sort_by_length`` feeds the texts longest-first
    inside this table to cut padding (the output order is unchanged).
    """
    check_text_column(table.schema, text_column, "input table")
    schema = output_schema(nlp, table.schema, keep_columns)
    kept = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
    kept = kept.select(kept_column_names(table.schema, keep_columns))
    texts = table.column(text_column).to_pylist()
    results = list(annotate_texts(nlp, texts, batch_size=batch_size, sort_by_length=sort_by_length))
    return results_to_table(results, kept, schema)


# --- rows → docs → compact results ----------------------------------------------------------

def annotate_texts(
    nlp: Language,
    texts: Sequence[str | None],
    batch_size: int = 64,
    sort_by_length: bool = True,
    n_process: int = 1,
) -> Iterator[tuple | None]:
    """Yield one compact result (see ``doc_result``) per text, in input order; None for blank texts."""
    order = pipeline_order(texts, sort_by_length)
    results: list[tuple | None] = [None] * len(texts)
    docs = nlp.pipe(((texts[i], i) for i in order), as_tuples=True,
                    batch_size=batch_size, n_process=n_process)
    for doc, index in docs:
        results[index] = doc_result(doc)
    yield from results


def pipeline_order(texts: Sequence[str | None], sort_by_length: bool) -> list[int]:
    """Indices of the texts worth annotating (not null or blank), longest first if asked."""
    indices = [i for i, text in enumerate(texts) if text is not None and not text.isspace() and text]
    if sort_by_length:
        indices.sort(key=lambda i: len(texts[i]), reverse=True)
    return indices


def doc_result(doc: Doc) -> tuple:
    """The compact prediction of one doc: ``(entities, cats)``, entities as (text, label, start, end)."""
    entities = [(ent.text, ent.label_, ent.start_char, ent.end_char) for ent in doc.ents]
    return entities, dict(doc.cats)


# --- compact results → Arrow ----------------------------------------------------------------

def results_to_table(results: Sequence[tuple | None], kept: pa.Table, schema: pa.Schema) -> pa.Table:
    """Append the predicted columns of ``schema`` (those after the kept ones), built from ``results``."""
    builders = {ENTITIES_FIELD.name: entities_array, CATS_FIELD.name: cats_array,
                LABEL_FIELD.name: label_array}
    predicted = schema.names[kept.num_columns:]
    columns = list(kept.columns) + [builders[name](results) for name in predicted]
    return pa.Table.from_arrays(columns, schema=schema)


def entities_array(results: Sequence[tuple | None]) -> pa.Array:
    """``list<struct<text, label, start_char, end_char>>``; an empty list for unannotated rows."""
    offsets, flat = [0], []
    for result in results:
        if result is not None:
            flat.extend(result[0])
        offsets.append(len(flat))
    fields = [pa.array([entity[k] for entity in flat], type=ENTITY_TYPE.field(k).type)
              for k in range(4)]
    values = pa.StructArray.from_arrays(fields, fields=list(ENTITY_TYPE))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=ENTITIES_FIELD.type)


def cats_array(results: Sequence[tuple | None]) -> pa.Array:
    """``map<string, float>`` with every label's score; null for unannotated rows."""
    offsets, keys, scores, mask = [0], [], [], []
    for result in results:
        cats = result[1] if result is not None else None
        if cats:
            keys.extend(cats)
            scores.extend(cats.values())
        offsets.append(len(keys))
        mask.append(not cats)
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(scores, pa.float32()),
        type=CATS_FIELD.type, mask=pa.array(mask, pa.bool_()))


def label_array(results: Sequence[tuple | None]) -> pa.Array:
    """The top class per row; null for unannotated rows."""
    return pa.array([top_label(result[1]) if result is not None else None for result in results],
                    pa.string())


def top_label(cats: dict[str, float]) -> str | None:
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
