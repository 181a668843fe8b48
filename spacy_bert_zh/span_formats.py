"""Parsing one record of each span-JSON format (CLUENER, doccano, Label Studio) into checked
character spans: offsets integers, in range, start before end, and equal to the entity text where
the format gives it. ``span_conversion`` reads the files, resolves overlaps and builds the docs.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, NamedTuple, Optional

from .conversion_io import text_problem

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


class InvalidRecord(Exception):
    """A record that cannot be converted; ``hint`` says how to get past it."""

    def __init__(self, message: str, hint: str = SKIP_HINT):
        super().__init__(message)
        self.message, self.hint = message, hint


class CharSpan(NamedTuple):
    start: int
    end: int
    label: str


def parse_record(value: Any, file_format: str, text_field: str,
                 strict: bool) -> tuple[str, Optional[list[CharSpan]], Counter, list[str]]:
    """The text, the spans (None: unlabelled), what was ignored and the unknown fields of a record."""
    if not isinstance(value, dict):
        raise InvalidRecord(f"expected a JSON object, got {type(value).__name__}")
    known = KNOWN_FIELDS[file_format] | ({text_field} if file_format != "labelstudio" else set())
    unknown = [name for name in value if name not in known]
    if unknown and strict:
        raise InvalidRecord(f"unknown fields {', '.join(map(repr, unknown))} for {file_format}",
                            "without --strict they are only listed in the report")
    ignored: Counter = Counter()
    if file_format == "labelstudio":
        data = value.get("data")
        if not isinstance(data, dict):
            raise InvalidRecord(f"'data' must be an object holding the text, got {short(data)}")
        text = _text(data, text_field, "data field")
        spans = _labelstudio_spans(value, text, ignored)
    else:
        text = _text(value, text_field, "field")
        spans = _cluener_spans(value, text) if file_format == "cluener" \
            else _doccano_spans(value, text, ignored)
    return text, spans, ignored, unknown


def _text(fields: dict, text_field: str, what: str) -> str:
    if text_field not in fields:
        raise InvalidRecord(f"no {what} {text_field!r} (there: {', '.join(map(repr, fields)) or 'none'}); "
                            f"choose with --text-field")
    problem = text_problem(fields[text_field])
    if problem:
        raise InvalidRecord(problem)
    return fields[text_field]


def _cluener_spans(record: dict, text: str) -> Optional[list[CharSpan]]:
    """``label``: ``{type: {entity text: [[start, end], ...]}}``, ends inclusive."""
    label = record.get("label")
    if label is None:
        return None
    if not isinstance(label, dict) or not all(isinstance(entities, dict) for entities in label.values()):
        raise InvalidRecord(f"'label' must be an object {{type: {{entity text: [[start, end], ...]}}}}, "
                            f"got {short(label)}")
    spans = []
    for entity_type, entities in label.items():
        for entity_text, positions in entities.items():
            if not isinstance(positions, list) or not all(isinstance(p, list) and len(p) == 2 for p in positions):
                raise InvalidRecord(f"{entity_type} {entity_text!r}: expected a list of [start, end] pairs, "
                                    f"got {short(positions)}")
            for start, end in positions:
                written = f"{entity_type} {entity_text!r} [{start}, {end}] (end inclusive)"
                end = end + 1 if _is_int(end) else end
                spans.append(_checked_span(text, start, end, entity_type, entity_text, written))
    return spans


def _doccano_spans(record: dict, text: str, ignored: Counter) -> Optional[list[CharSpan]]:
    """``label``/``labels``: ``[[start, end, type], ...]``, or ``entities``: a list of objects."""
    keys = [key for key in ("label", "labels", "entities") if key in record]
    if not keys:
        return None
    if len(keys) > 1:
        raise InvalidRecord(f"both {keys[0]!r} and {keys[1]!r}: expected one list of spans")
    items, objects = record[keys[0]], keys[0] == "entities"
    if not isinstance(items, list):
        raise InvalidRecord(f"{keys[0]!r} must be a list of spans, got {short(items)}")
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
            raise InvalidRecord(f"{keys[0]!r}: expected {shape} for each span, got {short(item)}")
        spans.append(_checked_span(text, start, end, label, None, short(item)))
    return spans


def _labelstudio_spans(task: dict, text: str, ignored: Counter) -> Optional[list[CharSpan]]:
    """The ``labels`` results of the task's first annotation not ``was_cancelled``."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list) or not all(isinstance(item, dict) for item in annotations):
        raise InvalidRecord(f"'annotations' must be a list of objects, got {short(annotations)}")
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
            raise InvalidRecord(f"result [{start}, {end}): expected exactly one label, got {short(labels)}")
        written = f"{labels[0]} [{start}, {end})"
        spans.append(_checked_span(text, start, end, labels[0], value.get("text"), written))
    return spans


# --- checking spans -----------------------------------------------------------------------------


def _checked_span(text: str, start: Any, end: Any, label: Any, given: Optional[str], written: str) -> CharSpan:
    """The span ``start:end`` (end exclusive) of ``text``, or why it is not one; ``written`` is the
    span as the file has it."""
    if not (_is_int(start) and _is_int(end)):
        raise InvalidRecord(f"span {written}: the offsets must be integers")
    if not isinstance(label, str) or not label.strip():
        raise InvalidRecord(f"span {written}: the label must be a non-empty string")
    if start < 0 or end > len(text):
        raise InvalidRecord(f"span {written}: out of range for a text of {len(text)} characters"
                            f"{_utf16_hint(text, start, end, given)}")
    if start >= end:
        raise InvalidRecord(f"span {written}: the start must be before the end")
    if given is not None and text[start:end] != given:
        raise InvalidRecord(f"span {written}: the text has {text[start:end]!r} there, the file says {given!r}"
                            f"{_utf16_hint(text, start, end, given)}")
    return CharSpan(start, end, label)


def _utf16_hint(text: str, start: int, end: int, given: Optional[str]) -> str:
    """A hint when the offsets count UTF-16 code units (as JavaScript does; a known Label Studio
    problem after emoji and CJK extension characters)."""
    units = text.encode("utf-16-le")[2 * max(start, 0):2 * end].decode("utf-16-le", errors="replace")
    if given is None or units != given:
        return ""
    return " (the offsets count UTF-16 code units, as JavaScript does, not characters)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def short(value: Any, limit: int = 80) -> str:
    """``value`` as JSON, cut to ``limit`` characters."""
    written = json.dumps(value, ensure_ascii=False)
    return written if len(written) <= limit else written[:limit - 3] + "..."
