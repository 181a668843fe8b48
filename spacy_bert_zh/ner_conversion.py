"""Character-per-line NER files (MSRA, Resume, People's Daily: a character, TAB or spaces, its tag)
to DocBin docs of one token per character, and back (``write_ner_file``).

Tag schemes (BIO, IOB1, BIOES/BILOU, BMES) are detected unless given; broken tag sequences are
repaired and counted in the report unless ``strict``.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from spacy.tokens import Doc, Span

from .conversion_io import (
    ConversionError,
    ConversionReport,
    PathLike,
    blank_zh,
    check_encoding,
    iter_lines,
    write_atomically,
    write_docbin,
)
from .tag_schemes import TagError, check_scheme, decode_entities, detect_scheme, encode_tags, parse_tag

NER_ATTRS = ["ORTH", "SPACY", "ENT_IOB", "ENT_TYPE", "SENT_START"]
DOC_MARKER = "-DOCSTART-"
# A NER line: the character, a run of TABs/ASCII spaces, the tag. Only TAB and ASCII space separate,
# so a full-width space (U+3000) can be the character (str.split() would eat it).
NER_LINE = re.compile(r"([^\t ]+)[\t ]+([^\t ]+)")


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
    write_docbin(docs, Path(output_path), NER_ATTRS)
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
    report.encoding = check_encoding(encoding)
    sentences = _read_ner_sentences(path, report, show_progress)
    report.scheme = check_scheme(scheme) if scheme else detect_scheme(s.tags for s in sentences)
    report.scheme_detected = not scheme
    entity_counts: Counter = Counter()
    vocab = blank_zh().vocab
    for group in _group_sentences(sentences, n_sents):
        entities = [_sentence_entities(path, sentence, report, strict) for sentence in group]
        doc = _ner_doc(vocab, group, entities)
        entity_counts.update(label for sentence_entities in entities for _, _, label in sentence_entities)
        report.docs += 1
        report.sentences += len(group)
        report.characters += sum(len(token) for sentence in group for token in sentence.tokens)
        yield doc
    report.entities_per_label = dict(sorted(entity_counts.items()))


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
    write_atomically(Path(output_path), text.encode(encoding))


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
    for line_number, line in iter_lines(path, report, show_progress):
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
        report.add_repair(repair.kind, f"line {line_number}: {repair.detail}")
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
