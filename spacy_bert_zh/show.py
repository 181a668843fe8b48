"""A quick look at an ``annotate`` output: displaCy HTML of a few annotated rows of its Parquet.

``show_annotated`` reads only the rows it shows (the row groups before ``offset`` are skipped
from the file's metadata, then batches are read until ``rows`` are in), so a 50M-row output
costs no more than a small one. Each row is one displaCy doc: the text with its entities, and
as title the row number, the top category with its score, or the row's error.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Dict, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from .arrow_output import CATS_FIELD, ENTITIES_FIELD, ERROR_FIELD

STYLES = ("ent",)
READ_BATCH_ROWS = 1024


class ShowError(ValueError):
    """The file cannot be shown as asked (the message says why)."""


def show_annotated(path: Path, output: Path, rows: int = 10, offset: int = 0,
                   text_column: str = "text", style: str = "ent") -> int:
    """Write displaCy HTML of ``rows`` rows of the annotated Parquet ``path`` from row ``offset``
    to ``output``; return how many rows it shows (fewer when the file ends first)."""
    shown = read_rows(path, rows, offset, text_column)
    page = render_annotated(shown, style)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    return len(shown)


def read_rows(path: Path, rows: int, offset: int = 0, text_column: str = "text") -> List[Dict[str, Any]]:
    """Rows ``offset`` … ``offset + rows - 1`` of the annotated Parquet ``path`` as dicts of the
    text, entities, cats (None without a textcat) and error columns, plus ``row`` (its number)."""
    if rows <= 0:
        raise ShowError(f"--rows must be at least 1, not {rows}")
    if offset < 0:
        raise ShowError(f"--offset must be 0 or more, not {offset}")
    parquet = open_parquet(Path(path))
    columns = needed_columns(parquet.schema_arrow, text_column, Path(path))
    total = parquet.metadata.num_rows
    if offset >= total and total:
        raise ShowError(f"{path}: --offset {offset} is past the last row (the file has {total:,} rows)")
    first_group, skipped = 0, 0
    while (first_group < parquet.num_row_groups
           and skipped + parquet.metadata.row_group(first_group).num_rows <= offset):
        skipped += parquet.metadata.row_group(first_group).num_rows
        first_group += 1
    batches, have = [], 0
    groups = list(range(first_group, parquet.num_row_groups))
    for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, row_groups=groups, columns=columns):
        batches.append(batch)
        have += batch.num_rows
        if have >= offset - skipped + rows:
            break
    if not batches:
        return []
    table = pa.Table.from_batches(batches).slice(offset - skipped, rows)
    result = []
    for i, record in enumerate(table.to_pylist()):
        cats = record.get(CATS_FIELD.name)
        result.append({"row": offset + i, "text": record[text_column] or "",
                       "entities": record[ENTITIES_FIELD.name] or [],
                       "cats": dict(cats) if cats is not None else None,
                       "error": record.get(ERROR_FIELD.name)})
    return result


def render_annotated(rows: List[Dict[str, Any]], style: str = "ent") -> str:
    """displaCy page HTML of rows from ``read_rows`` (manual mode: no pipeline needed)."""
    from spacy import displacy

    if style not in STYLES:
        raise ShowError(f"--style must be one of {', '.join(STYLES)}, not {style!r}")
    docs = [{"text": row["text"], "title": html.escape(row_title(row)),  # displaCy escapes only the text
             "ents": [{"start": ent["start_char"], "end": ent["end_char"], "label": ent["label"]}
                      for ent in row["entities"]]} for row in rows]
    return displacy.render(docs, style=style, manual=True, page=True, jupyter=False)


def row_title(row: Dict[str, Any]) -> str:
    """``row 12 · 正面 0.93``; the error instead when the pipeline failed on the row."""
    title = f"row {row['row']:,}"
    if row.get("error"):
        return f"{title} · error: {row['error']}"
    top = top_category(row.get("cats"))
    return f"{title} · {top[0]} {top[1]:.2f}" if top else title


def top_category(cats: Optional[Dict[str, float]]) -> Optional[tuple]:
    """(label, score) of the highest score; None without scores."""
    if not cats:
        return None
    label = max(cats, key=cats.__getitem__)
    return label, cats[label]


def open_parquet(path: Path) -> pq.ParquetFile:
    """The Parquet file at ``path``, or ``ShowError`` saying why it cannot be read."""
    if not path.exists():
        raise ShowError(f"{path}: no such file")
    if not path.is_file():
        raise ShowError(f"{path}: not a file (show reads one annotated Parquet file)")
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        raise ShowError(f"{path}: not a readable Parquet file ({error})") from error


def needed_columns(schema: pa.Schema, text_column: str, path: Path) -> List[str]:
    """The columns to read: text and entities (required), cats and error (when present)."""
    missing = [name for name in (text_column, ENTITIES_FIELD.name) if name not in schema.names]
    if missing:
        raise ShowError(
            f"{path}: no column(s) {', '.join(repr(name) for name in missing)}; show needs the output "
            f"of `spacy-bert-zh annotate` with a ner (columns: {', '.join(schema.names) or 'none'}"
            f"{'; choose the text column with --text-column' if text_column in missing else ''})")
    optional = [name for name in (CATS_FIELD.name, ERROR_FIELD.name) if name in schema.names]
    return [text_column, ENTITIES_FIELD.name, *optional]
