"""Convert Chinese corpora to spaCy DocBin files: character-per-line NER files and labelled texts.

Docs keep the original text exactly: NER docs hold one token per line (a character) and no spaces,
classification docs are tokenized by ``spacy.blank("zh")`` (the character segmenter). Bad input
raises ``ConversionError`` naming ``file:line``; repairs and skipped rows are counted in the
``ConversionReport``. Nothing is written unless the whole file converted.
"""
from __future__ import annotations

import codecs
import csv
import json
import os
import re
import sys
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

from spacy.tokens import Doc, DocBin, Span

from .tag_schemes import TagError, check_scheme, decode_entities, detect_scheme, encode_tags, parse_tag

PathLike = Union[str, Path]

NER_ATTRS = ["ORTH", "SPACY", "ENT_IOB", "ENT_TYPE", "SENT_START"]
CLS_ATTRS = ["ORTH", "SPACY"]
CLS_FORMATS = ("tsv", "csv", "jsonl")
FORMAT_BY_SUFFIX = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
DEFAULT_TEXT_FIELDS = ("text", "sentence")
DOC_MARKER = "-DOCSTART-"
# A NER line: the character, a run of TABs/ASCII spaces, the tag. Only TAB and ASCII space separate,
# so a full-width space (U+3000) can be the character (str.split() would eat it).
NER_LINE = re.compile(r"([^\t ]+)[\t ]+([^\t ]+)")
MAX_REPAIR_EXAMPLES = 10
# A lone surrogate, as a JSON escape such as "\ud800" without its pair gives, is not text (UTF-8
# and spaCy's string store cannot hold it).
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        return "\n".join(_summary_lines(self))

    def to_dict(self) -> dict:
        """The report as a JSON-serialisable dict."""
        return asdict(self)

    def write_json(self, path: PathLike) -> None:
        """Write ``to_dict()`` as JSON to ``path``."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"
        _write_atomically(Path(path), text.encode("utf-8"))


def convert_ner(
    input_path: PathLike,
    output_path: PathLike,
    *,
    scheme: Optional[str] = None,
    n_sents: int = 1,
    strict: bool = False,
    encoding: str = "utf-8",
    show_progress: Optional[bool] = None,
) -> ConversionReport:
    """Convert a character-per-line NER file to a DocBin at ``output_path`` and report on it."""
    report = ConversionReport(task="ner", input=str(input_path), output=str(output_path))
    docs = read_ner_docs(input_path, report, scheme=scheme, n_sents=n_sents, strict=strict,
                         encoding=encoding, show_progress=show_progress)
    _write_docbin(docs, Path(output_path), NER_ATTRS)
    return report


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
    _write_docbin(docs, Path(output_path), CLS_ATTRS)
    return report


def read_ner_docs(
    input_path: PathLike,
    report: Optional[ConversionReport] = None,
    *,
    scheme: Optional[str] = None,
    n_sents: int = 1,
    strict: bool = False,
    encoding: str = "utf-8",
    show_progress: Optional[bool] = None,
) -> Iterator[Doc]:
    """Yield the docs of a character-per-line NER file, ``n_sents`` sentences per doc (0: all
    sentences up to the next ``-DOCSTART-``). ``scheme`` is detected unless given; ``strict``
    turns repairs of broken tag sequences into errors. Fills ``report`` as it goes."""
    report = report if report is not None else ConversionReport(task="ner", input=str(input_path))
    if n_sents < 0:
        raise ValueError("n_sents must be 0 (no grouping) or more")
    path = Path(input_path)
    report.encoding = _check_encoding(encoding)
    sentences = _read_ner_sentences(path, report, show_progress)
    report.scheme = check_scheme(scheme) if scheme else detect_scheme(s.tags for s in sentences)
    report.scheme_detected = not scheme
    entity_counts: Counter = Counter()
    vocab = _blank_zh().vocab
    for group in _group_sentences(sentences, n_sents):
        entities = [_sentence_entities(path, sentence, report, strict) for sentence in group]
        doc = _ner_doc(vocab, group, entities)
        entity_counts.update(label for sentence_entities in entities for _, _, label in sentence_entities)
        report.docs += 1
        report.sentences += len(group)
        report.characters += sum(len(token) for sentence in group for token in sentence.tokens)
        yield doc
    report.entities_per_label = dict(sorted(entity_counts.items()))


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
    report.encoding = _check_encoding(encoding)
    file_format = _cls_format(path, file_format)
    reader = {"tsv": _read_tsv_rows, "csv": _read_csv_rows, "jsonl": _read_jsonl_rows}[file_format]
    raw_rows = reader(path, report, show_progress, label_field, text_field)
    fixed_labels = list(dict.fromkeys(labels)) if labels else None
    rows = _checked_rows(path, raw_rows, report, fixed_labels, multilabel, label_separator, skip_invalid)
    all_labels = fixed_labels or sorted({label for _, _, row_labels in rows for label in row_labels})
    class_counts = Counter(label for _, _, row_labels in rows for label in row_labels)
    report.docs_per_class = {label: class_counts[label] for label in all_labels}
    nlp = _blank_zh()
    for _, text, row_labels in rows:
        doc = nlp.make_doc(text)
        doc.cats = dict.fromkeys(all_labels, 0.0)
        doc.cats.update(dict.fromkeys(row_labels, 1.0))
        report.docs += 1
        report.characters += len(text)
        yield doc


def docs_to_ner_lines(docs: Iterable[Doc], *, scheme: str = "bio", separator: str = "\t") -> Iterator[str]:
    """Yield ``char<separator>tag`` lines of ``docs`` in ``scheme``, a blank line between sentences."""
    scheme = check_scheme(scheme)
    first_sentence = True
    for doc_index, doc in enumerate(docs):
        _check_writable(doc, doc_index)
        for start, end in _sentence_bounds(doc):
            if not first_sentence:
                yield ""
            first_sentence = False
            tags = encode_tags(end - start, _entities_within(doc, start, end), scheme)
            for i, tag in zip(range(start, end), tags):
                yield f"{doc[i].text}{separator}{tag}"


def write_ner_file(
    docs: Iterable[Doc],
    output_path: PathLike,
    *,
    scheme: str = "bio",
    separator: str = "\t",
    encoding: str = "utf-8",
) -> None:
    """Write ``docs`` as a character-per-line NER file (the reverse of ``read_ner_docs``)."""
    text = "".join(line + "\n" for line in docs_to_ner_lines(docs, scheme=scheme, separator=separator))
    _write_atomically(Path(output_path), text.encode(encoding))


# --- reading lines ------------------------------------------------------------------------------


def _iter_lines(path: Path, report: ConversionReport, show_progress: Optional[bool],
                keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) of a file, without the line end unless ``keep_ends``; decode errors
    name the line."""
    if not path.is_file():
        raise ConversionError(path, None, "no such file")
    size = path.stat().st_size
    if size == 0:
        raise ConversionError(path, None, "the file is empty")
    encoding = report.encoding
    with path.open("rb") as file, _progress_bar(size, path, show_progress) as progress:
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


def _check_encoding(encoding: str) -> str:
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
def _progress_bar(total_bytes: int, path: Path, show_progress: Optional[bool]):
    """A tqdm bar over the input bytes on stderr; off unless stderr is a terminal or asked for."""
    from tqdm import tqdm

    if show_progress is None:
        show_progress = sys.stderr.isatty()
    with tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=path.name,
              file=sys.stderr, disable=not show_progress, leave=False) as progress:
        yield progress


# --- NER ----------------------------------------------------------------------------------------


@dataclass
class _Sentence:
    """The tokens and tags of one sentence, its first line number and whether a doc starts here."""

    first_line: int
    tokens: list
    tags: list
    starts_doc: bool


def _read_ner_sentences(path: Path, report: ConversionReport, show_progress: Optional[bool]) -> list[_Sentence]:
    """Parse all sentences of a character-per-line file, checking each line and tag format."""
    sentences: list[_Sentence] = []
    current = _Sentence(0, [], [], True)
    valid_tags: set[str] = set()
    for line_number, line in _iter_lines(path, report, show_progress):
        body = line.rstrip(" \t")
        if not body or body.startswith(DOC_MARKER):
            if current.tokens:
                sentences.append(current)
                current = _Sentence(0, [], [], False)
            if body:
                report.doc_markers += 1
                current.starts_doc = True
            continue
        fields = NER_LINE.fullmatch(body)
        if fields is None:
            raise _ner_line_error(path, line_number, body)
        token, tag = fields.groups()
        if tag not in valid_tags:
            _check_tag_format(path, line_number, tag)
            valid_tags.add(tag)
        if not current.tokens:
            current.first_line = line_number
        current.tokens.append(token)
        current.tags.append(tag)
    if current.tokens:
        sentences.append(current)
    if not sentences:
        raise ConversionError(path, None, "no sentences found (only blank or -DOCSTART- lines)")
    return sentences


def _ner_line_error(path: Path, line_number: int, body: str) -> ConversionError:
    """Explain why ``body`` is not ``<character><TAB or spaces><tag>``."""
    cut = max(body.rfind("\t"), body.rfind(" "))
    if cut < 0:
        return ConversionError(path, line_number, f"no tag on this line: expected '<character><TAB><tag>', "
                                                  f"got {body!r}")
    if not body[:cut].strip(" \t"):
        return ConversionError(path, line_number, f"no character before the tag {body[cut + 1:]!r}")
    return ConversionError(path, line_number, f"expected two fields (character and tag), got {body!r}")


def _check_tag_format(path: Path, line_number: int, tag: str) -> None:
    try:
        parse_tag(tag)
    except TagError as error:
        raise ConversionError(path, line_number, str(error)) from None


def _group_sentences(sentences: list[_Sentence], n_sents: int) -> Iterator[list[_Sentence]]:
    """Group sentences into docs: ``n_sents`` per doc (0: no limit), a new doc after -DOCSTART-."""
    group: list[_Sentence] = []
    for sentence in sentences:
        if group and (sentence.starts_doc or len(group) == n_sents):
            yield group
            group = []
        group.append(sentence)
    yield group


def _sentence_entities(path: Path, sentence: _Sentence, report: ConversionReport,
                       strict: bool) -> list[tuple[int, int, str]]:
    """Decode a sentence's entities; record repairs, or raise them under ``strict``."""
    try:
        entities, repairs = decode_entities(sentence.tags, report.scheme)
    except TagError as error:
        raise ConversionError(path, sentence.first_line + error.index, str(error)) from None
    for repair in repairs:
        line_number = sentence.first_line + repair.index
        if strict:
            raise ConversionError(path, line_number, f"{repair.detail}: {repair.kind} (not repaired under --strict)")
        entry = report.repairs.setdefault(repair.kind, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < MAX_REPAIR_EXAMPLES:
            entry["examples"].append(f"line {line_number}: {repair.detail}")
    return entities


def _ner_doc(vocab, sentences: list[_Sentence], entities: list[list[tuple[int, int, str]]]) -> Doc:
    """One doc of ``sentences``: a token per character, no spaces, sentence starts and entities."""
    words: list[str] = []
    sent_starts: list[bool] = []
    spans: list[tuple[int, int, str]] = []
    for sentence, sentence_entities in zip(sentences, entities):
        offset = len(words)
        spans.extend((offset + start, offset + end, label) for start, end, label in sentence_entities)
        words.extend(sentence.tokens)
        sent_starts.append(True)
        sent_starts.extend([False] * (len(sentence.tokens) - 1))
    doc = Doc(vocab, words=words, spaces=[False] * len(words), sent_starts=sent_starts)
    doc.set_ents([Span(doc, start, end, label) for start, end, label in spans], default="outside")
    return doc


def _sentence_bounds(doc: Doc) -> Iterator[tuple[int, int]]:
    """(start, end) token offsets of the doc's sentences; the whole doc if it has none marked."""
    if doc.has_annotation("SENT_START"):
        for sent in doc.sents:
            yield sent.start, sent.end
    elif len(doc):
        yield 0, len(doc)


def _entities_within(doc: Doc, start: int, end: int) -> list[tuple[int, int, str]]:
    """The entities of tokens ``start:end`` relative to ``start``, cut at the sentence bounds: each
    sentence is tagged on its own (IOB1's B- never refers to the previous sentence)."""
    return [(max(ent.start, start) - start, min(ent.end, end) - start, ent.label_)
            for ent in doc.ents if ent.start < end and ent.end > start]


def _check_writable(doc: Doc, doc_index: int) -> None:
    """Refuse docs the character-per-line format cannot hold (spaces after or inside tokens)."""
    for token in doc:
        text = token.text
        if token.whitespace_ or any(char in text for char in " \t\r\n"):
            raise ValueError(f"doc {doc_index}, token {token.i} ({text!r}{token.whitespace_!r}): ASCII spaces, "
                             f"tabs and line ends cannot be written in the character-per-line format")


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
    for line_number, line in _iter_lines(path, report, show_progress):
        if not line.strip():
            report.blank_lines += 1
            continue
        label, tab, text = line.partition("\t")
        yield line_number, label, text, None if tab else "no TAB between label and text"


def _read_csv_rows(path: Path, report: ConversionReport, show_progress: Optional[bool],
                   label_field: str, text_field: Optional[str]) -> Iterator[_RawRow]:
    """CSV with a header row; quoted fields may span lines (rows are named by their first line) and
    keep their line ends as written."""
    lines = _iter_lines(path, report, show_progress, keep_ends=True)
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
    for line_number, line in _iter_lines(path, report, show_progress):
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
            problem = _text_problem(text)
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


def _text_problem(text: Any) -> Optional[str]:
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


def _write_docbin(docs: Iterable[Doc], output_path: Path, attrs: list[str]) -> None:
    """Collect all docs (errors surface here, before anything is written), then write atomically."""
    doc_bin = DocBin(attrs=attrs, store_user_data=False)
    for doc in docs:
        doc_bin.add(doc)
    _write_atomically(output_path, doc_bin.to_bytes())


def _write_atomically(path: Path, data: bytes) -> None:
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
def _blank_zh():
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
        total = sum(report.entities_per_label.values())
        per_label = ", ".join(f"{label} {n:,}" for label, n in report.entities_per_label.items())
        yield f"entities: {total:,} ({per_label})"
    else:
        yield f"{report.input} -> {report.output}: {counts}"
        yield "docs per class: " + ", ".join(f"{label} {n:,}" for label, n in report.docs_per_class.items())
    for kind, entry in report.repairs.items():
        yield f"repaired {entry['count']:,}x {kind} (e.g. {entry['examples'][0]})"
    if report.skipped:
        lines = ", ".join(str(row["line"]) for row in report.skipped[:MAX_REPAIR_EXAMPLES])
        more = ", ..." if len(report.skipped) > MAX_REPAIR_EXAMPLES else ""
        yield f"skipped {len(report.skipped):,} invalid rows (lines {lines}{more}); first: {report.skipped[0]['reason']}"
    if report.bom_stripped:
        yield "stripped a UTF-8 byte order mark"
    if report.crlf_lines:
        yield f"read {report.crlf_lines:,} CRLF line ends"
    if report.blank_lines:
        yield f"ignored {report.blank_lines:,} blank lines"
    if report.doc_markers:
        yield f"started a new doc at {report.doc_markers:,} -DOCSTART- lines"
