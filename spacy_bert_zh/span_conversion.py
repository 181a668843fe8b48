"""Character-span JSON (CLUENER, doccano, Label Studio) to DocBin docs of one token per character.

``doc.text`` is the record's text exactly: nothing stripped or normalised, and every character,
spaces and line ends included, is its own token with no trailing space (as U+3000 is in NER files),
so an entity covers exactly its characters. Offsets are checked: integers, in range, start before
end, and equal to the entity text where the format gives it (CLUENER's key, Label Studio's
``value.text``).

- CLUENER, JSON lines: ``{"text": ..., "label": {TYPE: {ENTITY: [[start, end], ...]}}}``, ends
  *inclusive*. A line without ``label`` (or ``null``; CLUENER's test split) is unlabelled: its doc
  has no entity annotation at all (missing, not "no entities"); ``"label": {}`` means no entities.
- doccano, JSON lines: ``{"text": ..., "label": [[start, end, TYPE], ...]}`` (older exports:
  ``labels``) or ``{"text": ..., "entities": [{"start_offset", "end_offset", "label"}, ...]}``,
  ends exclusive; a record with none of the three is unlabelled; relations are not converted.
- Label Studio, the JSON export (an array of tasks): the text is ``data[text_field]``; the spans are
  the ``labels`` results of the first annotation not ``was_cancelled`` (a task without one is
  unlabelled); ``value.start``/``value.end`` exclusive, exactly one label per result.

Overlapping or nested spans are an error unless ``overlap`` is ``longest`` (the longest span wins,
then the leftmost) or ``first`` (the leftmost wins, then the longest); ties go to the span first in
the file, and each dropped span is counted in the report's repairs (identical spans are merged and
counted too). Fields no format defines are listed in the report, or are an error under ``strict``.
Invalid records raise ``ConversionError`` naming ``file:line`` (Label Studio: the task's first
line and its index in the array) unless ``skip_invalid``, which skips and lists them.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional

from spacy.tokens import Doc, Span

from .conversion_io import (
    ConversionError,
    ConversionReport,
    PathLike,
    blank_zh,
    check_encoding,
    iter_lines,
    json_array_items,
    text_problem,
    write_docbin,
)
from .ner_conversion import NER_ATTRS

SPAN_FORMATS = ("cluener", "doccano", "labelstudio")
OVERLAP_POLICIES = ("error", "longest", "first")
# Top-level fields each format's exports carry besides the text; others are reported as unknown.
KNOWN_FIELDS = {
    "cluener": {"id", "label"},  # the test split has id and text, no label
    "doccano": {"id", "label", "labels", "entities", "relations", "Comments", "comments", "meta",
                "annotation_approver"},
    "labelstudio": {"id", "data", "annotations", "predictions", "drafts", "meta", "file_upload", "project",
                    "inner_id", "created_at", "updated_at", "updated_by", "total_annotations",
                    "cancelled_annotations", "total_predictions", "comment_count", "unresolved_comment_count",
                    "last_comment_updated_at", "comment_authors", "annotators", "is_labeled"},
}
SKIP_HINT = "use --skip-invalid to skip such records"


def convert_spans(
    input_path: PathLike,
    output_path: PathLike,
    *,
    file_format: Optional[str] = None,
    overlap: str = "error",
    text_field: str = "text",
    strict: bool = False,
    skip_invalid: bool = False,
    encoding: str = "utf-8",
    show_progress: Optional[bool] = None,
) -> ConversionReport:
    """Convert a CLUENER, doccano or Label Studio file to a DocBin at ``output_path``."""
    report = ConversionReport(task="spans", input=str(input_path), output=str(output_path))
    docs = read_span_docs(input_path, report, file_format=file_format, overlap=overlap, text_field=text_field,
                          strict=strict, skip_invalid=skip_invalid, encoding=encoding, show_progress=show_progress)
    write_docbin(docs, Path(output_path), NER_ATTRS)
    return report


def read_span_docs(
    input_path: PathLike,
    report: Optional[ConversionReport] = None,
    *,
    file_format: Optional[str] = None,
    overlap: str = "error",
    text_field: str = "text",
    strict: bool = False,
    skip_invalid: bool = False,
    encoding: str = "utf-8",
    show_progress: Optional[bool] = None,
) -> Iterator[Doc]:
    """Yield one doc per record. ``file_format`` is detected unless given: a JSON array is Label
    Studio; in JSON lines, the first record with labels tells (a ``label`` object: CLUENER; a
    ``label``/``labels`` list or ``entities``: doccano). Fills ``report`` as it goes."""
    report = report if report is not None else ConversionReport(task="spans", input=str(input_path))
    if file_format is not None and file_format.lower() not in SPAN_FORMATS:
        raise ValueError(f"unknown format {file_format!r}; choose one of {', '.join(SPAN_FORMATS)}")
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"unknown overlap policy {overlap!r}; choose one of {', '.join(OVERLAP_POLICIES)}")
    path = Path(input_path)
    report.encoding = check_encoding(encoding)
    report.format, records = _read_records(path, report, show_progress, file_format and file_format.lower())
    report.format_detected = not file_format
    entity_counts: Counter = Counter()
    vocab = blank_zh().vocab
    for record in records:
        try:
            text, spans, ignored, unknown = _parse_record(record, report.format, text_field, strict)
            spans = None if spans is None else _without_overlaps(record, text, spans, overlap, report)
        except _Invalid as problem:
            _handle_invalid(path, record, problem, report, skip_invalid)
            continue
        _note_ignored(report, record, ignored, unknown)
        report.docs += 1
        report.characters += len(text)
        if spans is None:
            report.unlabelled_docs += 1
        else:
            entity_counts.update(span.label for span in spans)
        yield _span_doc(vocab, text, spans)
    report.entities_per_label = dict(sorted(entity_counts.items()))
    if not report.docs:
        first = f"; first problem: line {report.skipped[0]['line']}: {report.skipped[0]['reason']}" \
            if report.skipped else ""
        raise ConversionError(path, None, f"no valid records{first}")


# --- reading records ----------------------------------------------------------------------------


@dataclass
class _Record:
    """A JSON value read from the file: its line, its index among the tasks (Label Studio) and the
    reason it could not be read, if so."""

    line: int
    value: Any
    task: Optional[int] = None
    problem: Optional[str] = None

    def where(self) -> str:
        """``task index 3 (id 17)`` for a Label Studio task, else nothing."""
        if self.task is None:
            return ""
        task_id = self.value.get("id") if isinstance(self.value, dict) else None
        return f"task index {self.task}" + (f" (id {task_id})" if task_id is not None else "")

    def located(self, message: str) -> str:
        """``message`` after ``where()``."""
        return f"{self.where()}: {message}" if self.task is not None else message


class _Invalid(Exception):
    """A record that cannot be converted; ``hint`` says how to get past it."""

    def __init__(self, message: str, hint: str = SKIP_HINT):
        super().__init__(message)
        self.message, self.hint = message, hint


def _read_records(path: Path, report: ConversionReport, show_progress: Optional[bool],
                  file_format: Optional[str]) -> tuple[str, list[_Record]]:
    """The format (given or detected) and the file's records."""
    lines = [line for _, line in iter_lines(path, report, show_progress, keep_ends=True)]
    first_char = next((line.lstrip(" \t\r\n")[:1] for line in lines if line.strip(" \t\r\n")), "")
    if file_format == "labelstudio" or (file_format is None and first_char == "["):
        tasks = json_array_items(path, "".join(lines), "tasks (Label Studio's JSON export)")
        return "labelstudio", [_Record(line, task, index) for index, (line, task) in enumerate(tasks)]
    if first_char == "[":
        raise ConversionError(path, None, f"a JSON array, not JSON lines as {file_format} files are; "
                                          f"is it a Label Studio export (--format labelstudio)?")
    records = list(_jsonl_records(lines, report))
    return file_format or _detect_jsonl_format(records), records


def _jsonl_records(lines: list[str], report: ConversionReport) -> Iterator[_Record]:
    """One record per non-blank line."""
    for line_number, line in enumerate(lines, 1):
        if not line.strip():
            report.blank_lines += 1
            continue
        try:
            yield _Record(line_number, json.loads(line))
        except json.JSONDecodeError as error:
            yield _Record(line_number, None, problem=f"invalid JSON ({error}); expected one JSON object per line")


def _detect_jsonl_format(records: list[_Record]) -> str:
    """The format of the first record that has labels; CLUENER if none has (both formats read
    records without labels the same way: unlabelled)."""
    for record in records:
        if isinstance(record.value, dict):
            label = record.value.get("label")
            if isinstance(label, dict):
                return "cluener"
            if isinstance(label, list) or "labels" in record.value or "entities" in record.value:
                return "doccano"
    return "cluener"


# --- parsing records ----------------------------------------------------------------------------


class _Span(NamedTuple):
    start: int
    end: int
    label: str


def _parse_record(record: _Record, file_format: str, text_field: str,
                  strict: bool) -> tuple[str, Optional[list[_Span]], Counter, list[str]]:
    """The text, the spans (None: unlabelled), what was ignored and the unknown fields of a record."""
    if record.problem:
        raise _Invalid(record.problem)
    if not isinstance(record.value, dict):
        raise _Invalid(f"expected a JSON object, got {type(record.value).__name__}")
    known = KNOWN_FIELDS[file_format] | ({text_field} if file_format != "labelstudio" else set())
    unknown = [name for name in record.value if name not in known]
    if unknown and strict:
        raise _Invalid(f"unknown fields {', '.join(map(repr, unknown))} for {file_format}",
                       "without --strict they are only listed in the report")
    ignored: Counter = Counter()
    if file_format == "labelstudio":
        data = record.value.get("data")
        if not isinstance(data, dict):
            raise _Invalid(f"'data' must be an object holding the text, got {_short(data)}")
        text = _text(data, text_field, "data field")
        spans = _labelstudio_spans(record.value, text, ignored)
    else:
        text = _text(record.value, text_field, "field")
        spans = _cluener_spans(record.value, text) if file_format == "cluener" \
            else _doccano_spans(record.value, text, ignored)
    return text, spans, ignored, unknown


def _note_ignored(report: ConversionReport, record: _Record, ignored: Counter, unknown: list[str]) -> None:
    """Add a converted record's ignored parts and unknown fields to the report."""
    for what, n in ignored.items():
        if n:
            report.ignored[what] = report.ignored.get(what, 0) + n
    for name in unknown:
        entry = report.unknown_fields.setdefault(name, {"count": 0, "first_line": record.line})
        entry["count"] += 1


def _text(fields: dict, text_field: str, what: str) -> str:
    if text_field not in fields:
        raise _Invalid(f"no {what} {text_field!r} (there: {', '.join(map(repr, fields)) or 'none'}); "
                       f"choose with --text-field")
    problem = text_problem(fields[text_field])
    if problem:
        raise _Invalid(problem)
    return fields[text_field]


def _cluener_spans(record: dict, text: str) -> Optional[list[_Span]]:
    """``label``: ``{type: {entity text: [[start, end], ...]}}``, ends inclusive."""
    label = record.get("label")
    if label is None:
        return None
    if not isinstance(label, dict) or not all(isinstance(entities, dict) for entities in label.values()):
        raise _Invalid(f"'label' must be an object {{type: {{entity text: [[start, end], ...]}}}}, "
                       f"got {_short(label)}")
    spans = []
    for entity_type, entities in label.items():
        for entity_text, positions in entities.items():
            if not isinstance(positions, list) or not all(isinstance(p, list) and len(p) == 2 for p in positions):
                raise _Invalid(f"{entity_type} {entity_text!r}: expected a list of [start, end] pairs, "
                               f"got {_short(positions)}")
            for start, end in positions:
                written = f"{entity_type} {entity_text!r} [{start}, {end}] (end inclusive)"
                end = end + 1 if _is_int(end) else end
                spans.append(_checked_span(text, start, end, entity_type, entity_text, written))
    return spans


def _doccano_spans(record: dict, text: str, ignored: Counter) -> Optional[list[_Span]]:
    """``label``/``labels``: ``[[start, end, type], ...]``, or ``entities``: a list of objects."""
    keys = [key for key in ("label", "labels", "entities") if key in record]
    if not keys:
        return None
    if len(keys) > 1:
        raise _Invalid(f"both {keys[0]!r} and {keys[1]!r}: expected one list of spans")
    items, objects = record[keys[0]], keys[0] == "entities"
    if not isinstance(items, list):
        raise _Invalid(f"{keys[0]!r} must be a list of spans, got {_short(items)}")
    if record.get("relations"):
        ignored["doccano relations (not converted)"] += len(record["relations"])
    spans = []
    for item in items:
        if objects and isinstance(item, dict):
            start, end, label = item.get("start_offset"), item.get("end_offset"), item.get("label")
        elif not objects and isinstance(item, list) and len(item) == 3:
            start, end, label = item
        else:
            shape = "{start_offset, end_offset, label}" if objects else "[start, end, label]"
            raise _Invalid(f"{keys[0]!r}: expected {shape} for each span, got {_short(item)}")
        spans.append(_checked_span(text, start, end, label, None, _short(item)))
    return spans


def _labelstudio_spans(task: dict, text: str, ignored: Counter) -> Optional[list[_Span]]:
    """The ``labels`` results of the task's first annotation not ``was_cancelled``."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list) or not all(isinstance(item, dict) for item in annotations):
        raise _Invalid(f"'annotations' must be a list of objects, got {_short(annotations)}")
    active = [annotation for annotation in annotations if not annotation.get("was_cancelled")]
    ignored["cancelled Label Studio annotations"] += len(annotations) - len(active)
    if not active:
        return None
    ignored["Label Studio annotations after a task's first (not converted)"] += len(active) - 1
    results = active[0].get("result") or []
    spans = []
    for result in results if isinstance(results, list) else [results]:
        value = result.get("value") if isinstance(result, dict) else None
        if not isinstance(value, dict) or "labels" not in value:
            kind = result.get("type") if isinstance(result, dict) else None
            ignored[f"Label Studio results of type {kind!r} (not labels)"] += 1
            continue
        labels, start, end = value["labels"], value.get("start"), value.get("end")
        if not isinstance(labels, list) or len(labels) != 1:
            raise _Invalid(f"result [{start}, {end}): expected exactly one label, got {_short(labels)}")
        written = f"{labels[0]} [{start}, {end})"
        spans.append(_checked_span(text, start, end, labels[0], value.get("text"), written))
    return spans


# --- checking spans -----------------------------------------------------------------------------


def _checked_span(text: str, start: Any, end: Any, label: Any, given: Optional[str], written: str) -> _Span:
    """The span ``start:end`` (end exclusive) of ``text``, or why it is not one; ``written`` is the
    span as the file has it."""
    if not (_is_int(start) and _is_int(end)):
        raise _Invalid(f"span {written}: the offsets must be integers")
    if not isinstance(label, str) or not label.strip():
        raise _Invalid(f"span {written}: the label must be a non-empty string")
    if start < 0 or end > len(text):
        raise _Invalid(f"span {written}: out of range for a text of {len(text)} characters"
                       f"{_utf16_hint(text, start, end, given)}")
    if start >= end:
        raise _Invalid(f"span {written}: the start must be before the end")
    if given is not None and text[start:end] != given:
        raise _Invalid(f"span {written}: the text has {text[start:end]!r} there, the file says {given!r}"
                       f"{_utf16_hint(text, start, end, given)}")
    return _Span(start, end, label)


def _utf16_hint(text: str, start: int, end: int, given: Optional[str]) -> str:
    """A hint when the offsets count UTF-16 code units (as JavaScript does; a known Label Studio
    problem after emoji and CJK extension characters)."""
    units = text.encode("utf-16-le")[2 * max(start, 0):2 * end].decode("utf-16-le", errors="replace")
    if given is None or units != given:
        return ""
    return " (the offsets count UTF-16 code units, as JavaScript does, not characters)"


def _without_overlaps(record: _Record, text: str, spans: list[_Span], overlap: str,
                      report: ConversionReport) -> list[_Span]:
    """The spans in text order, identical ones merged and overlaps resolved by ``overlap`` (error:
    raise on the first overlap); merges and drops are counted in the report's repairs."""
    at = f"line {record.line}" + (f" ({record.where()})" if record.task is not None else "")
    unique = list(dict.fromkeys(spans))
    for _ in range(len(spans) - len(unique)):
        report.add_repair("identical spans merged", at)
    if overlap == "longest":
        order = sorted(unique, key=lambda span: (span.start - span.end, span.start))
    else:
        order = sorted(unique, key=lambda span: (span.start, span.start - span.end))
    kept: list[_Span] = []
    for span in order:
        blocker = next((other for other in kept if other.start < span.end and span.start < other.end), None)
        if blocker is None:
            kept.append(span)
        elif overlap == "error":
            raise _Invalid(f"overlapping spans {_describe(text, blocker)} and {_describe(text, span)}",
                           f"use --overlap longest or --overlap first to keep one, or --skip-invalid")
        else:
            report.add_repair(f"overlapping span dropped (--overlap {overlap})",
                              f"{at}: dropped {_describe(text, span)}, kept {_describe(text, blocker)}")
    return sorted(kept)


def _describe(text: str, span: _Span) -> str:
    return f"{span.label} {text[span.start:span.end]!r} [{span.start}, {span.end})"


def _handle_invalid(path: Path, record: _Record, problem: _Invalid, report: ConversionReport,
                    skip_invalid: bool) -> None:
    message = record.located(problem.message)
    if not skip_invalid:
        raise ConversionError(path, record.line, f"{message} ({problem.hint})")
    report.skipped.append({"line": record.line, "reason": message})


def _span_doc(vocab, text: str, spans: Optional[list[_Span]]) -> Doc:
    """A doc of one token per character; entities set (the rest O) unless ``spans`` is None."""
    doc = Doc(vocab, words=list(text), spaces=[False] * len(text))
    if spans is not None:
        doc.set_ents([Span(doc, span.start, span.end, span.label) for span in spans], default="outside")
    return doc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any, limit: int = 80) -> str:
    """``value`` as JSON, cut to ``limit`` characters."""
    written = json.dumps(value, ensure_ascii=False)
    return written if len(written) <= limit else written[:limit - 3] + "..."
