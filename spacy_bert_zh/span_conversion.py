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
from typing import Any, Iterator, Optional

from spacy.tokens import Doc, Span

from .conversion_io import (
    ConversionError,
    ConversionReport,
    PathLike,
    blank_zh,
    check_encoding,
    iter_lines,
    json_array_items,
    write_docbin,
)
from .ner_conversion import NER_ATTRS
from .span_formats import CharSpan, InvalidRecord, parse_record

SPAN_FORMATS = ("cluener", "doccano", "labelstudio")
OVERLAP_POLICIES = ("error", "longest", "first")


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
            if record.problem:
                raise InvalidRecord(record.problem)
            text, spans, ignored, unknown = parse_record(record.value, report.format, text_field, strict)
            spans = None if spans is None else _without_overlaps(record, text, spans, overlap, report)
        except InvalidRecord as problem:
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


def _note_ignored(report: ConversionReport, record: _Record, ignored: Counter, unknown: list[str]) -> None:
    """Add a converted record's ignored parts and unknown fields to the report."""
    for what, n in ignored.items():
        if n:
            report.ignored[what] = report.ignored.get(what, 0) + n
    for name in unknown:
        entry = report.unknown_fields.setdefault(name, {"count": 0, "first_line": record.line})
        entry["count"] += 1


def _without_overlaps(record: _Record, text: str, spans: list[CharSpan], overlap: str,
                      report: ConversionReport) -> list[CharSpan]:
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
    kept: list[CharSpan] = []
    for span in order:
        blocker = next((other for other in kept if other.start < span.end and span.start < other.end), None)
        if blocker is None:
            kept.append(span)
        elif overlap == "error":
            raise InvalidRecord(f"overlapping spans {_describe(text, blocker)} and {_describe(text, span)}",
                                "use --overlap longest or --overlap first to keep one, or --skip-invalid")
        else:
            report.add_repair(f"overlapping span dropped (--overlap {overlap})",
                              f"{at}: dropped {_describe(text, span)}, kept {_describe(text, blocker)}")
    return sorted(kept)


def _describe(text: str, span: CharSpan) -> str:
    return f"{span.label} {text[span.start:span.end]!r} [{span.start}, {span.end})"


def _handle_invalid(path: Path, record: _Record, problem: InvalidRecord, report: ConversionReport,
                    skip_invalid: bool) -> None:
    message = record.located(problem.message)
    if not skip_invalid:
        raise ConversionError(path, record.line, f"{message} ({problem.hint})")
    report.skipped.append({"line": record.line, "reason": message})


def _span_doc(vocab, text: str, spans: Optional[list[CharSpan]]) -> Doc:
    """A doc of one token per character; entities set (the rest O) unless ``spans`` is None."""
    doc = Doc(vocab, words=list(text), spaces=[False] * len(text))
    if spans is not None:
        doc.set_ents([Span(doc, span.start, span.end, span.label) for span in spans], default="outside")
    return doc


