"""Labelled-text files (``label<TAB>text`` TSV, CSV with a header, JSON Lines as CLUE's) to DocBin
docs with ``doc.cats``, tokenized by ``spacy.blank("zh")`` (the character segmenter).

Invalid rows raise ``ConversionError`` naming ``file:line`` unless ``skip_invalid``, which skips them
and lists them in the report.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

from spacy.tokens import Doc

from .conversion_io import (
    LONE_SURROGATE,
    ConversionError,
    ConversionReport,
    PathLike,
    blank_zh,
    check_encoding,
    iter_lines,
    text_problem,
    write_docbin,
)

CLS_ATTRS = ["ORTH", "SPACY"]
CLS_FORMATS = ("tsv", "csv", "jsonl")
FORMAT_BY_SUFFIX = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
DEFAULT_TEXT_FIELDS = ("text", "sentence")


def convert_cls(
    input_path: PathLike,
    output_path: PathLike,
    *,
    file_format: Optional[str] = None,
    labels: Optional[Sequence[str]] = None,
    multilabel: bool = False,
    label_separator: str = "|",
    label_field: str = "label",
    text_field: Optional[str] = None,
    encoding: str = "utf-8",
    skip_invalid: bool = False,
    show_progress: Optional[bool] = None,
) -> ConversionReport:
    """Convert a labelled-text file (TSV, CSV or JSONL) to a DocBin at ``output_path``."""
    report = ConversionReport(task="cls", input=str(input_path), output=str(output_path))
    docs = read_cls_docs(input_path, report, file_format=file_format, labels=labels, multilabel=multilabel,
                         label_separator=label_separator, label_field=label_field, text_field=text_field,
                         encoding=encoding, skip_invalid=skip_invalid, show_progress=show_progress)
    write_docbin(docs, Path(output_path), CLS_ATTRS)
    return report


def read_cls_docs(
    input_path: PathLike,
    report: Optional[ConversionReport] = None,
    *,
    file_format: Optional[str] = None,
    labels: Optional[Sequence[str]] = None,
    multilabel: bool = False,
    label_separator: str = "|",
    label_field: str = "label",
    text_field: Optional[str] = None,
    encoding: str = "utf-8",
    skip_invalid: bool = False,
    show_progress: Optional[bool] = None,
) -> Iterator[Doc]:
    """Yield one doc per row of a labelled-text file with ``doc.cats`` over the label set.

    Formats: ``label<TAB>text`` lines (.tsv/.txt), CSV with a header (.csv) and JSON Lines
    (.jsonl/.json); ``file_format`` overrides the extension. The label set is ``labels`` or, if
    not given, the labels seen in the file. Exclusive classes unless ``multilabel`` (labels
    joined by ``label_separator``, or a JSON list). Invalid rows raise ``ConversionError`` unless
    ``skip_invalid``, which skips and reports them. ``text_field`` defaults to text or sentence.
    """
    report = report if report is not None else ConversionReport(task="cls", input=str(input_path))
    path = Path(input_path)
    report.encoding = check_encoding(encoding)
    file_format = _cls_format(path, file_format)
    reader = {"tsv": _read_tsv_rows, "csv": _read_csv_rows, "jsonl": _read_jsonl_rows}[file_format]
    raw_rows = reader(path, report, show_progress, label_field, text_field)
    fixed_labels = list(dict.fromkeys(labels)) if labels else None
    rows = _checked_rows(path, raw_rows, report, fixed_labels, multilabel, label_separator, skip_invalid)
    all_labels = fixed_labels or sorted({label for _, _, row_labels in rows for label in row_labels})
    class_counts = Counter(label for _, _, row_labels in rows for label in row_labels)
    report.docs_per_class = {label: class_counts[label] for label in all_labels}
    nlp = blank_zh()
    for _, text, row_labels in rows:
        doc = nlp.make_doc(text)
        doc.cats = dict.fromkeys(all_labels, 0.0)
        doc.cats.update(dict.fromkeys(row_labels, 1.0))
        report.docs += 1
        report.characters += len(text)
        yield doc


# --- classification -----------------------------------------------------------------------------

# A row read from a file: line number, label value (str, list or other JSON value), text, problem.
_RawRow = tuple[int, Any, Any, Optional[str]]


def _cls_format(path: Path, file_format: Optional[str]) -> str:
    """The format asked for, or the one the file extension says."""
    if file_format:
        if file_format.lower() not in CLS_FORMATS:
            raise ValueError(f"unknown format {file_format!r}; choose one of {', '.join(CLS_FORMATS)}")
        return file_format.lower()
    if path.suffix.lower() not in FORMAT_BY_SUFFIX:
        raise ConversionError(path, None, f"cannot tell the format from the extension {path.suffix!r}; "
                                          f"pass --format ({', '.join(CLS_FORMATS)})")
    return FORMAT_BY_SUFFIX[path.suffix.lower()]


def _read_tsv_rows(path: Path, report: ConversionReport, show_progress: Optional[bool],
                   label_field: str, text_field: Optional[str]) -> Iterator[_RawRow]:
    """``label<TAB>text`` lines, split on the first TAB (the text may hold more TABs)."""
    for line_number, line in iter_lines(path, report, show_progress):
        if not line.strip():
            report.blank_lines += 1
            continue
        label, tab, text = line.partition("\t")
        yield line_number, label, text, None if tab else "no TAB between label and text"


def _read_csv_rows(path: Path, report: ConversionReport, show_progress: Optional[bool],
                   label_field: str, text_field: Optional[str]) -> Iterator[_RawRow]:
    """CSV with a header row; quoted fields may span lines (rows are named by their first line) and
    keep their line ends as written."""
    lines = iter_lines(path, report, show_progress, keep_ends=True)
    reader = csv.reader(line for _, line in lines)
    try:
        header = next(reader, None)
        if header is None:
            raise ConversionError(path, None, "no header row")
        label_column = _column_index(path, header, label_field, "--label-field")
        text_column = _column_index(path, header, _pick_text_field(header, text_field), "--text-field")
        row_start = reader.line_num + 1
        for row in reader:
            line_number, row_start = row_start, reader.line_num + 1
            if not row or row == [""]:
                report.blank_lines += 1
            elif len(row) != len(header):
                yield line_number, None, None, f"{len(row)} fields, but the header has {len(header)}"
            else:
                yield line_number, row[label_column], row[text_column], None
    except csv.Error as error:
        raise ConversionError(path, reader.line_num, f"malformed CSV: {error}") from None


def _read_jsonl_rows(path: Path, report: ConversionReport, show_progress: Optional[bool],
                     label_field: str, text_field: Optional[str]) -> Iterator[_RawRow]:
    """JSON Lines: one object per line (CLUE style: label, label_des, sentence ...)."""
    for line_number, line in iter_lines(path, report, show_progress):
        if not line.strip():
            report.blank_lines += 1
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield line_number, None, None, f"invalid JSON ({error}); expected one JSON object per line"
            continue
        if not isinstance(record, dict):
            yield line_number, None, None, f"expected a JSON object, got {type(record).__name__}"
            continue
        fields = list(record)
        text_key = _pick_text_field(fields, text_field)
        missing = [name for name in (label_field, text_key) if name not in record]
        if missing:
            yield line_number, None, None, (f"no field {missing[0]!r} (fields: {', '.join(fields) or 'none'}); "
                                            f"choose with --label-field / --text-field")
            continue
        yield line_number, record[label_field], record[text_key], None


def _pick_text_field(fields: Sequence[str], text_field: Optional[str]) -> str:
    """The text field asked for, else the first of ``DEFAULT_TEXT_FIELDS`` present (else "text")."""
    if text_field:
        return text_field
    return next((name for name in DEFAULT_TEXT_FIELDS if name in fields), DEFAULT_TEXT_FIELDS[0])


def _column_index(path: Path, header: list[str], name: str, option: str) -> int:
    if name not in header:
        raise ConversionError(path, 1, f"no column {name!r} (columns: {', '.join(header)}); choose with {option}")
    return header.index(name)


def _checked_rows(path: Path, raw_rows: Iterable[_RawRow], report: ConversionReport,
                  fixed_labels: Optional[list[str]], multilabel: bool, separator: str,
                  skip_invalid: bool) -> list[tuple[int, str, tuple[str, ...]]]:
    """Validate rows into (line, text, labels); raise or (``skip_invalid``) skip and report bad ones."""
    rows = []
    for line_number, label_value, text, problem in raw_rows:
        if problem is None:
            labels, problem = _row_labels(label_value, fixed_labels, multilabel, separator)
        if problem is None:
            problem = text_problem(text)
        if problem is None:
            rows.append((line_number, text, labels))
        elif skip_invalid:
            report.skipped.append({"line": line_number, "reason": problem})
        else:
            raise ConversionError(path, line_number, f"{problem} (use --skip-invalid to skip such rows)")
    if not rows:
        detail = f"; first problem: line {report.skipped[0]['line']}: {report.skipped[0]['reason']}" \
            if report.skipped else ""
        raise ConversionError(path, None, f"no valid rows{detail}")
    return rows


def _row_labels(value: Any, fixed_labels: Optional[list[str]], multilabel: bool,
                separator: str) -> tuple[tuple[str, ...], Optional[str]]:
    """The row's labels and None, or () and the problem with them."""
    if isinstance(value, list) and not multilabel:
        return (), f"a list of labels {value!r} needs --multilabel"
    values = value if isinstance(value, list) else [value]
    if any(isinstance(item, (bool, dict, list)) or item is None for item in values):
        return (), f"a label must be a string or a number, got {value!r}"
    labels = [str(item).strip() for item in values]
    if multilabel and not isinstance(value, list):
        labels = [part.strip() for part in labels[0].split(separator)]
    if not labels or not all(labels):
        return (), f"empty label in {value!r}"
    if any(LONE_SURROGATE.search(label) for label in labels):
        return (), f"label {value!r} holds a lone surrogate (a JSON escape such as \\ud800 without its pair)"
    unknown = [label for label in labels if fixed_labels is not None and label not in fixed_labels]
    if unknown:
        return (), f"label {unknown[0]!r} is not one of --labels ({', '.join(fixed_labels or [])})"
    return tuple(dict.fromkeys(labels)), None
