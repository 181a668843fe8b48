"""The annotated table's schema and its Arrow columns, shared by the local and the Ray engine.

Output columns: the kept input columns, then ``entities`` (list of text/label/start_char/end_char,
character offsets into the input string), ``cats`` (every textcat label's score) and ``label``
(the top class) where a running pipe fills them, ``tag_probs`` when asked (``--tag-probs``: per
character of the text, the ner's probability of each tag named in the field's metadata, or an
empty list where no token starts), and always ``error`` (null, or why the pipeline failed on that
row, whose predictions are then empty).
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

import numpy
import pyarrow as pa
from spacy.language import Language

from .annotate_options import AnnotationError
from .pieces import RowResult

ENTITY_TYPE = pa.struct([
    pa.field("text", pa.string()),
    pa.field("label", pa.string()),
    pa.field("start_char", pa.int32()),
    pa.field("end_char", pa.int32()),
])
ENTITIES_FIELD = pa.field("entities", pa.list_(ENTITY_TYPE))
CATS_FIELD = pa.field("cats", pa.map_(pa.string(), pa.float32()))
LABEL_FIELD = pa.field("label", pa.string())
ERROR_FIELD = pa.field("error", pa.string())
TAG_PROBS_TYPE = pa.list_(pa.list_(pa.float32()))
TAG_PROBS_NAME = "tag_probs"
TAGS_METADATA_KEY = b"tags"   # the tag_probs field's metadata: a JSON list of the tag names


# --- schema and checks ----------------------------------------------------------------------

def output_schema(nlp: Language, input_schema: pa.Schema, keep_columns: Optional[list[str]]) -> pa.Schema:
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


def predicted_fields(nlp: Language) -> list[pa.Field]:
    """The output fields: entities for ``doc.ents``, cats+label for ``doc.cats``, and error."""
    assigned = {attr for name in nlp.pipe_names for attr in nlp.get_pipe_meta(name).assigns}
    fields = [ENTITIES_FIELD] if "doc.ents" in assigned else []
    fields += [CATS_FIELD, LABEL_FIELD] if "doc.cats" in assigned else []
    fields += [tag_probs_field(pipe.labels) for _, pipe in nlp.pipeline
               if getattr(pipe, "keep_probabilities", False)][:1]
    return fields + [ERROR_FIELD]


def tag_probs_field(tags: Sequence[str]) -> pa.Field:
    """The ``tag_probs`` field, naming its tags (in column order) in the field's metadata."""
    return pa.field(TAG_PROBS_NAME, TAG_PROBS_TYPE,
                    metadata={TAGS_METADATA_KEY: json.dumps(list(tags), ensure_ascii=False)})


def tag_names(field: pa.Field) -> list[str]:
    """The tags of a ``tag_probs`` field, in column order."""
    return json.loads((field.metadata or {})[TAGS_METADATA_KEY])


def kept_column_names(input_schema: pa.Schema, keep_columns: Optional[list[str]]) -> list[str]:
    """The input columns to copy to the output, checked against ``input_schema``."""
    if keep_columns is None:
        return list(input_schema.names)
    missing = [name for name in keep_columns if name not in input_schema.names]
    if missing:
        raise AnnotationError(f"--keep-columns names {', '.join(missing)} not in the input; "
                              f"available columns: {', '.join(input_schema.names)}")
    return list(dict.fromkeys(keep_columns))


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


def check_columns(nlp: Language, schema: pa.Schema, source: str, text_column: str,
                  id_column: Optional[str], keep_columns: Optional[list[str]]) -> None:
    """Raise ``AnnotationError`` unless the text, id and kept columns fit ``schema`` and the pipeline."""
    check_text_column(schema, text_column, source)
    if id_column is not None and id_column not in schema.names:
        raise AnnotationError(f"{source}: no id column {id_column!r}; available columns: "
                              f"{', '.join(schema.names)}")
    try:
        output_schema(nlp, schema, keep_columns)
    except AnnotationError as error:
        raise AnnotationError(f"{source}: {error}") from error


def is_string_type(arrow_type: pa.DataType) -> bool:
    """True for Arrow string columns (plain, large, view, or dictionary-encoded strings)."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_string_view(arrow_type))


# --- row results → Arrow --------------------------------------------------------------------

def results_to_table(results: Sequence[Optional[RowResult]], kept: pa.Table | pa.RecordBatch,
                     schema: pa.Schema) -> pa.Table:
    """Append the predicted columns of ``schema`` (those after the kept ones), built from ``results``."""
    builders = {ENTITIES_FIELD.name: entities_array, CATS_FIELD.name: cats_array,
                LABEL_FIELD.name: label_array, ERROR_FIELD.name: error_array,
                TAG_PROBS_NAME: lambda rows: tag_probs_array(rows, len(tag_names(schema.field(TAG_PROBS_NAME))))}
    predicted = schema.names[kept.num_columns:]
    columns = list(kept.columns) + [builders[name](results) for name in predicted]
    return pa.Table.from_arrays(columns, schema=schema)


def tag_probs_array(results: Sequence[Optional[RowResult]], n_tags: int) -> pa.Array:
    """``list<list<float>>``: per character, the tag probabilities (empty where no token starts);
    an empty list for blank and failed rows."""
    row_offsets, char_offsets, values = [0], [0], []
    for result in results:
        if result is not None and result.tag_probs:
            probs, has_token = result.character_tag_probs(n_tags)
            values.append(probs[has_token].ravel())
            char_offsets.extend(char_offsets[-1] + numpy.cumsum(has_token * n_tags))
            row_offsets.append(row_offsets[-1] + result.length)
        else:
            row_offsets.append(row_offsets[-1])
    flat = numpy.concatenate(values) if values else numpy.zeros(0, dtype=numpy.float32)
    chars = pa.ListArray.from_arrays(pa.array(char_offsets, pa.int32()), pa.array(flat, pa.float32()))
    return pa.ListArray.from_arrays(pa.array(row_offsets, pa.int32()), chars, type=TAG_PROBS_TYPE)


def entities_array(results: Sequence[Optional[RowResult]]) -> pa.Array:
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


def cats_array(results: Sequence[Optional[RowResult]]) -> pa.Array:
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


def label_array(results: Sequence[Optional[RowResult]]) -> pa.Array:
    """The top class per row; null for unannotated rows."""
    return pa.array([top_label(result.cats()) if result is not None else None
                     for result in results], pa.string())


def error_array(results: Sequence[Optional[RowResult]]) -> pa.Array:
    """Why the pipeline failed on each row; null for the rows it annotated (or skipped as blank)."""
    return pa.array([result.error if result is not None else None for result in results],
                    pa.string())


def top_label(cats: Optional[dict[str, float]]) -> Optional[str]:
    """The label with the highest score (None when there are no scores)."""
    return max(cats, key=cats.__getitem__) if cats else None

