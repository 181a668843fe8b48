"""Shared pieces of the corpus converters: the error, the report, reading lines, writing DocBins.

``ConversionError`` names ``file:line``; the ``ConversionReport`` counts what was read, repaired and
skipped; ``iter_lines`` decodes a file line by line behind a progress bar (``json_array_items``
splits a JSON array, keeping each item's line); ``write_docbin`` writes nothing unless every doc
converted. The converters are ``ner_conversion``, ``cls_conversion`` and
``span_conversion`` (all re-exported by ``conversion``).
"""
from __future__ import annotations

import codecs
import json
import os
import re
import sys
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

from spacy.tokens import Doc, DocBin

PathLike = Union[str, Path]

MAX_REPAIR_EXAMPLES = 10
# A lone surrogate, as a JSON escape such as "\ud800" without its pair gives, is not text (UTF-8
# and spaCy's string store cannot hold it).
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_SPACE = re.compile(r"[ \t\r\n]*")


class ConversionError(Exception):
    """Bad input: the message starts with ``path:line:`` (or ``path:`` for whole-file problems)."""

    def __init__(self, path: PathLike, line: Optional[int], message: str):
        self.path, self.line, self.message = str(path), line, message
        where = f"{path}:{line}" if line else f"{path}"
        super().__init__(f"{where}: {message}")


@dataclass
class ConversionReport:
    """What a conversion read and wrote, and what it repaired or skipped (``summary``, ``to_dict``)."""

    task: str
    input: str
    output: str = ""
    encoding: str = "utf-8"
    docs: int = 0
    characters: int = 0
    sentences: int = 0
    scheme: str = ""
    scheme_detected: bool = False
    entities_per_label: dict = field(default_factory=dict)
    docs_per_class: dict = field(default_factory=dict)
    repairs: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    bom_stripped: bool = False
    crlf_lines: int = 0
    blank_lines: int = 0
    doc_markers: int = 0
    format: str = ""
    format_detected: bool = False
    unlabelled_docs: int = 0
    unknown_fields: dict = field(default_factory=dict)
    ignored: dict = field(default_factory=dict)

    def add_repair(self, kind: str, example: str) -> None:
        """Count a repair of ``kind``; the first ``MAX_REPAIR_EXAMPLES`` examples are kept."""
        entry = self.repairs.setdefault(kind, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < MAX_REPAIR_EXAMPLES:
            entry["examples"].append(example)

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        return "\n".join(_summary_lines(self))

    def to_dict(self) -> dict:
        """The report as a JSON-serialisable dict."""
        return asdict(self)

    def write_json(self, path: PathLike) -> None:
        """Write ``to_dict()`` as JSON to ``path``."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"
        write_atomically(Path(path), text.encode("utf-8"))


# --- reading lines ------------------------------------------------------------------------------


def iter_lines(path: Path, report: ConversionReport, show_progress: Optional[bool],
                keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) of a file, without the line end unless ``keep_ends``; decode errors
    name the line."""
    if not path.is_file():
        raise ConversionError(path, None, "no such file")
    size = path.stat().st_size
    if size == 0:
        raise ConversionError(path, None, "the file is empty")
    encoding = report.encoding
    with path.open("rb") as file, progress_bar(size, path, show_progress) as progress:
        pending_bytes = 0
        for line_number, raw in enumerate(file, 1):
            pending_bytes += len(raw)
            if pending_bytes > 1 << 20:
                progress.update(pending_bytes)
                pending_bytes = 0
            line_end = b"\r\n" if raw.endswith(b"\r\n") else b"\n" if raw.endswith(b"\n") else b""
            if line_end == b"\r\n":
                report.crlf_lines += 1
            if not keep_ends:
                raw = raw[:len(raw) - len(line_end)]
            if line_number == 1 and encoding == "utf-8" and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
                report.bom_stripped = True
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as error:
                raise ConversionError(path, line_number, _decode_error_message(error, encoding)) from None
            yield line_number, line
        progress.update(pending_bytes)


def json_array_items(path: Path, text: str, what: str) -> Iterator[tuple[int, Any]]:
    """(line, value) of each item of the JSON array ``text`` (of ``what``), the line it starts on."""
    decoder = json.JSONDecoder()
    position = _JSON_SPACE.match(text).end()
    if not text.startswith("[", position):
        raise ConversionError(path, None, f"expected a JSON array of {what}")
    position = _JSON_SPACE.match(text, position + 1).end()
    line, counted_to = 1, 0
    while not text.startswith("]", position):
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise ConversionError(path, error.lineno, f"invalid JSON: {error.msg} (column {error.colno})") from None
        line, counted_to = line + text.count("\n", counted_to, position), position
        yield line, value
        position = _JSON_SPACE.match(text, end).end()
        if text.startswith(",", position):
            position = _JSON_SPACE.match(text, position + 1).end()
        elif not text.startswith("]", position):
            where = line + text.count("\n", counted_to, position)
            raise ConversionError(path, where, "invalid JSON: expected ',' or ']' after an item")
    if text[position + 1:].strip(" \t\r\n"):
        raise ConversionError(path, None, "more JSON after the array")


def check_encoding(encoding: str) -> str:
    """The codec's canonical name; only encodings where a line ends with byte 0x0A are supported."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}") from None
    if name.startswith(("utf-16", "utf-32")):
        raise ValueError(f"encoding {encoding!r} is not supported: convert the file to UTF-8 first")
    return name


def _decode_error_message(error: UnicodeDecodeError, encoding: str) -> str:
    bad = error.object[error.start:error.start + 4].hex(" ")
    hint = "--encoding gbk (or gb18030)" if encoding == "utf-8" else "--encoding with the file's encoding"
    return (f"not valid {encoding} (bytes {bad} at byte {error.start + 1} of the line); "
            f"if the file uses another encoding, pass it with {hint}")


@contextmanager
def progress_bar(total_bytes: int, path: Path, show_progress: Optional[bool]):
    """A tqdm bar over the input bytes on stderr; off unless stderr is a terminal or asked for."""
    from tqdm import tqdm

    if show_progress is None:
        show_progress = sys.stderr.isatty()
    with tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=path.name,
              file=sys.stderr, disable=not show_progress, leave=False) as progress:
        yield progress


def text_problem(text: Any) -> Optional[str]:
    if not isinstance(text, str):
        return f"the text must be a string, got {text!r}"
    if not text.strip():
        return "empty text"
    surrogate = LONE_SURROGATE.search(text)
    if surrogate:
        return (f"the text holds a lone surrogate {surrogate.group()!r} at character {surrogate.start() + 1} "
                f"(a JSON escape such as \\ud800 without its pair)")
    return None


# --- writing ------------------------------------------------------------------------------------


def write_docbin(docs: Iterable[Doc], output_path: Path, attrs: list[str]) -> None:
    """Collect all docs (errors surface here, before anything is written), then write atomically."""
    doc_bin = DocBin(attrs=attrs, store_user_data=False)
    for doc in docs:
        doc_bin.add(doc)
    write_atomically(output_path, doc_bin.to_bytes())


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file next to ``path``, then rename it: no partial file on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.write(data)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


@lru_cache(maxsize=1)
def blank_zh():
    """``spacy.blank("zh")``: the character segmenter the trained pipelines use."""
    import spacy

    return spacy.blank("zh")


# --- summary ------------------------------------------------------------------------------------


def _summary_lines(report: ConversionReport) -> Iterator[str]:
    counts = f"{report.docs:,} docs, {report.characters:,} characters"
    if report.task == "ner":
        detected = "detected" if report.scheme_detected else "given"
        yield f"{report.input} -> {report.output}: {counts}, {report.sentences:,} sentences " \
              f"(scheme {report.scheme.upper()}, {detected})"
        yield _entities_line(report)
    elif report.task == "spans":
        detected = "detected" if report.format_detected else "given"
        yield f"{report.input} -> {report.output}: {counts} (format {report.format}, {detected})"
        yield _entities_line(report)
        if report.unlabelled_docs:
            yield f"{report.unlabelled_docs:,} docs unlabelled (no annotation: entities missing, not none)"
    else:
        yield f"{report.input} -> {report.output}: {counts}"
        yield "docs per class: " + ", ".join(f"{label} {n:,}" for label, n in report.docs_per_class.items())
    for kind, entry in report.repairs.items():
        yield f"repaired {entry['count']:,}x {kind} (e.g. {entry['examples'][0]})"
    if report.skipped:
        lines = ", ".join(str(row["line"]) for row in report.skipped[:MAX_REPAIR_EXAMPLES])
        more = ", ..." if len(report.skipped) > MAX_REPAIR_EXAMPLES else ""
        yield f"skipped {len(report.skipped):,} invalid rows (lines {lines}{more}); first: {report.skipped[0]['reason']}"
    if report.unknown_fields:
        yield "unknown fields, not converted: " + ", ".join(
            f"{name!r} ({entry['count']:,}x, first at line {entry['first_line']})"
            for name, entry in report.unknown_fields.items())
    for what, n in report.ignored.items():
        yield f"ignored {n:,} {what}"
    if report.bom_stripped:
        yield "stripped a UTF-8 byte order mark"
    if report.crlf_lines:
        yield f"read {report.crlf_lines:,} CRLF line ends"
    if report.blank_lines:
        yield f"ignored {report.blank_lines:,} blank lines"
    if report.doc_markers:
        yield f"started a new doc at {report.doc_markers:,} -DOCSTART- lines"


def _entities_line(report: ConversionReport) -> str:
    total = sum(report.entities_per_label.values())
    per_label = ", ".join(f"{label} {n:,}" for label, n in report.entities_per_label.items())
    return f"entities: {total:,} ({per_label})"
