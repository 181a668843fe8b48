"""Property tests (hypothesis) of the corpus converters: random Unicode, tag sequences in every
scheme, separators, blank lines and line ends either convert and round-trip exactly, or raise
``ConversionError`` naming ``file:line``; never another exception, never a partial output."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import DocBin

from spacy_bert_zh.conversion import (
    ConversionError,
    convert_cls,
    convert_ner,
    docs_to_ner_lines,
)
from spacy_bert_zh.tag_schemes import SCHEME_ROLES, SCHEMES, detect_scheme, encode_tags

NLP = spacy.blank("zh")
# CONVERSION_EXAMPLES=2000 searches harder than the default run.
SETTINGS = settings(max_examples=int(os.environ.get("CONVERSION_EXAMPLES", "100")), deadline=None)

# Characters worth a special mention: combining marks, zero-width and format characters, a BOM,
# Unicode spaces and line separators, control characters, a lone CR.
TRICKY_CHARS = "\u0301\u0300\u20dd\u200b\u200d\u2060\ufeff\u3000\u00a0\u2028\u2029\x85\x00\x0b\x0c\x1c\x1f\x7f\r"
CHARS = st.one_of(
    st.characters(blacklist_categories=("Cs",)),  # any Unicode scalar value
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK
    st.characters(min_codepoint=0x20000, max_codepoint=0x2A6DF),  # astral CJK (extension B)
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji
    st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E),  # full-width forms
    st.sampled_from(TRICKY_CHARS),
)
# A NER line cannot hold an ASCII space, a TAB or a line end as its character.
NER_UNWRITABLE = " \t\n"
NER_CHARS = CHARS.filter(lambda char: char not in NER_UNWRITABLE)
ENTITY_LABELS = st.sampled_from(["PER", "LOC", "ORG", "人名", "GPE-2", "x"])
ENCODINGS = st.sampled_from(["utf-8", "gb18030"])  # gb18030 encodes all of Unicode
LINE_ENDS = st.sampled_from(["\n", "\r\n"])
NER_SEPARATORS = st.sampled_from(["\t", " ", "  ", "\t\t", " \t", "\t "])
TRAILING = st.sampled_from(["", "", " ", "\t"])
BLANK_LINES = st.sampled_from(["", "", " ", "\t", " \t "])
DOC_MARKERS = st.sampled_from(["-DOCSTART-", "-DOCSTART- -X- O O", "-DOCSTART-\tO"])

# Each scheme's tag prefixes for (single-character entity, begin, inside, end); IOB1 also uses B-
# for an entity that follows one of the same label.
PREFIXES = {"bio": "BBII", "iob1": "IIII", "bioes": "SBIE", "bilou": "UBIL", "bmes": "SBME"}


def scheme_tags(length: int, entities: list[tuple[int, int, str]], scheme: str) -> list[str]:
    """The tags of a sentence of ``length`` characters holding ``entities`` (sorted, disjoint)."""
    single, begin, inside, end = PREFIXES[scheme]
    tags, previous = ["O"] * length, None
    for start, stop, label in entities:
        prefixes = [single] if stop - start == 1 else [begin] + [inside] * (stop - start - 2) + [end]
        if scheme == "iob1" and previous == (start, label):
            prefixes[0] = "B"
        tags[start:stop] = [f"{prefix}-{label}" for prefix in prefixes]
        previous = (stop, label)
    return tags


# --- running a converter ------------------------------------------------------------------------


def run_converter(convert, name: str, data: bytes, **options):
    """Write ``data`` to a fresh folder and convert it: return (source path, docs or the error).

    Checks that an error leaves no output (nor temporary file) and a success leaves exactly one.
    Any exception other than ``ConversionError`` propagates and fails the test."""
    with tempfile.TemporaryDirectory() as folder:
        source, output = Path(folder) / name, Path(folder) / "out.spacy"
        source.write_bytes(data)
        try:
            convert(source, output, show_progress=False, **options)
        except ConversionError as error:
            assert os.listdir(folder) == [name], "a failed conversion left a file behind"
            return source, error
        assert sorted(os.listdir(folder)) == sorted([name, "out.spacy"])
        return source, list(DocBin().from_disk(output).get_docs(NLP.vocab))


def assert_names_line(error: ConversionError, source: Path, line) -> None:
    """The error names ``source`` and ``line`` (None: a whole-file error) in its message."""
    assert (error.path, error.line) == (str(source), line), str(error)
    assert str(error).startswith(f"{source}:{line}: " if line else f"{source}: ")


# --- NER ----------------------------------------------------------------------------------------


@dataclass
class NerFile:
    """A generated character-per-line file and what converting it must give."""

    sentences: list = field(default_factory=list)  # (characters, entities) per sentence
    starts_doc: list = field(default_factory=list)  # whether a -DOCSTART- precedes each sentence
    lines: list = field(default_factory=list)
    error_line: int | None = None  # the first line the format cannot read, if any
    data: bytes = b""
    encoding: str = "utf-8"
    bom: bool = False


@st.composite
def ner_sentences(draw, chars=NER_CHARS):
    """(characters, entities): 1-12 characters cut into segments, some of them entities."""
    characters = draw(st.lists(chars, min_size=1, max_size=12))
    cuts = draw(st.sets(st.integers(0, len(characters))))
    bounds = sorted(cuts | {0, len(characters)})
    entities = []
    for start, end in pairwise(bounds):
        label = draw(st.one_of(st.none(), ENTITY_LABELS))
        if label:
            entities.append((start, end, label))
    return characters, entities


@st.composite
def ner_files(draw, scheme: str) -> NerFile:
    """A file of random sentences in ``scheme``, with random separators, blank lines, -DOCSTART-
    lines, trailing blanks, line ends and byte order mark; sometimes with one character the format
    cannot hold (space, TAB, line end)."""
    ner = NerFile(sentences=draw(st.lists(ner_sentences(), min_size=1, max_size=4)))
    ner.lines = draw(st.lists(BLANK_LINES, max_size=2))
    unwritable = draw(st.one_of(st.none(), st.none(), st.none(), st.sampled_from(NER_UNWRITABLE)))
    bad_sentence = draw(st.integers(0, len(ner.sentences) - 1))
    for index, (characters, entities) in enumerate(ner.sentences):
        ner.starts_doc.append(index == 0 or draw(st.integers(0, 4)) == 0)
        if index:
            ner.lines += draw(gap_lines(ner.starts_doc[-1]))
        if index == bad_sentence and unwritable:
            position = draw(st.integers(0, len(characters) - 1))
            characters[position] = unwritable
            # a line end as the character leaves the tag on the next line, without a character
            ner.error_line = len(ner.lines) + position + 1 + (unwritable == "\n")
        for char, tag in zip(characters, scheme_tags(len(characters), entities, scheme)):
            ner.lines.append(f"{char}{draw(NER_SEPARATORS)}{tag}{draw(TRAILING)}")
    ner.lines += draw(st.lists(BLANK_LINES, max_size=2))
    ner.encoding, ner.bom = draw(ENCODINGS), draw(st.booleans())
    ner.data = render(ner.lines, draw(LINE_ENDS), draw(st.booleans()), ner.bom, ner.encoding)
    return ner


def gap_lines(starts_doc: bool):
    """The lines between two sentences: blank ones, or a -DOCSTART- line and maybe a blank one."""
    if starts_doc:
        return st.tuples(DOC_MARKERS, st.lists(BLANK_LINES, max_size=1)).map(lambda gap: [gap[0], *gap[1]])
    return st.lists(BLANK_LINES, min_size=1, max_size=3)


def render(lines: list[str], line_end: str, final_line_end: bool, bom: bool, encoding: str) -> bytes:
    """The bytes of a file of ``lines``; a UTF-8 byte order mark only for UTF-8."""
    text = line_end.join(lines) + (line_end if final_line_end else "")
    prefix = "\ufeff" if bom and encoding == "utf-8" else ""
    return (prefix + text).encode(encoding)


def expected_error_line(ner: NerFile) -> int | None:
    """The line the converter must stop at: the unwritable character's, or line 1 when the file
    starts with U+FEFF as a character (unmarked, it reads as a byte order mark and is dropped)."""
    unmarked_feff = ner.encoding == "utf-8" and not ner.bom and ner.lines[0].startswith("\ufeff")
    return 1 if unmarked_feff else ner.error_line


def expected_docs(ner: NerFile, n_sents: int) -> list[list[int]]:
    """The sentence indices of each doc: a new doc at -DOCSTART- and after ``n_sents`` (0: no limit)."""
    groups: list[list[int]] = []
    for index, starts_doc in enumerate(ner.starts_doc):
        if not groups or starts_doc or len(groups[-1]) == n_sents:
            groups.append([])
        groups[-1].append(index)
    return groups


def sentences_of(doc) -> list[tuple[list[str], list[tuple[int, int, str]]]]:
    """(token texts, entities relative to the sentence) of each sentence of ``doc``."""
    sentences = []
    for sent in doc.sents:
        entities = [(ent.start - sent.start, ent.end - sent.start, ent.label_)
                    for ent in doc.ents if sent.start <= ent.start < sent.end]
        sentences.append(([token.text for token in sent], entities))
    return sentences


def check_ner_result(ner: NerFile, source: Path, result, n_sents: int) -> None:
    """Either the error at the expected line, or docs holding exactly the generated sentences."""
    line = expected_error_line(ner)
    if line is not None:
        assert isinstance(result, ConversionError), f"expected an error at line {line}"
        assert_names_line(result, source, line)
        return
    assert not isinstance(result, ConversionError), str(result)
    groups = expected_docs(ner, n_sents)
    assert [doc.text for doc in result] == ["".join("".join(ner.sentences[i][0]) for i in group) for group in groups]
    assert [sentence for doc in result for sentence in sentences_of(doc)] == ner.sentences
    assert all(not token.whitespace_ for doc in result for token in doc)


def check_written_back(docs, ner: NerFile, scheme: str) -> None:
    """``docs_to_ner_lines`` writes the sentences back in ``scheme``, one TAB and one blank line
    between sentences; it refuses a CR character (it writes no line-end characters)."""
    lines = []
    for characters, entities in ner.sentences:
        tags = scheme_tags(len(characters), entities, scheme)
        lines += [""] + [f"{char}\t{tag}" for char, tag in zip(characters, tags)]
    if "\r" in "".join(lines):
        with pytest.raises(ValueError, match="cannot be written"):
            list(docs_to_ner_lines(docs, scheme=scheme))
    else:
        assert list(docs_to_ner_lines(docs, scheme=scheme)) == lines[1:]


@SETTINGS
@given(data=st.data(), scheme=st.sampled_from(SCHEMES), given_scheme=st.booleans(), n_sents=st.integers(0, 3))
def test_ner_files_round_trip_or_name_the_line(data, scheme, given_scheme, n_sents):
    ner = data.draw(ner_files(scheme))
    options = {"scheme": scheme, "strict": True} if given_scheme else {}  # valid tags need no repair
    source, result = run_converter(convert_ner, "train.txt", ner.data, n_sents=n_sents,
                                   encoding=ner.encoding, **options)
    check_ner_result(ner, source, result, n_sents)
    if not isinstance(result, ConversionError):
        check_written_back(result, ner, scheme)


ANY_TAGS = st.one_of(st.just("O"), st.builds("{}-{}".format, st.sampled_from("BIMESLU"), ENTITY_LABELS))


def check_read_tags(doc, tags: list[str], scheme, strict: bool) -> None:
    """Entities start on a tag of their label and cover exactly the non-O tags; a sequence read
    under ``strict`` (no repair) in a given scheme is the one ``encode_tags`` writes (IOB1 aside:
    B- and I- both start an entity after O)."""
    assert doc.text == "字" * len(tags)
    spans = [(ent.start, ent.end, ent.label_) for ent in doc.ents]
    assert all(tags[start][2:] == label for start, _, label in spans)
    assert [tag != "O" for tag in tags] == [bool(token.ent_type_) for token in doc]
    if strict and scheme not in (None, "iob1"):
        assert encode_tags(len(tags), spans, scheme) == tags


@SETTINGS
@given(tags=st.lists(ANY_TAGS, min_size=1, max_size=8), scheme=st.one_of(st.none(), st.sampled_from(SCHEMES)),
       strict=st.booleans())
def test_ner_any_tag_sequence_is_read_repaired_or_names_the_line(tags, scheme, strict):
    data = "".join(f"字\t{tag}\n" for tag in tags).encode("utf-8")
    source, result = run_converter(convert_ner, "tags.txt", data, scheme=scheme, strict=strict)
    read_as = scheme or detect_scheme([tags])
    foreign = [line for line, tag in enumerate(tags, 1) if tag != "O" and tag[0] not in SCHEME_ROLES[read_as]]
    if foreign:  # a tag of another scheme
        assert isinstance(result, ConversionError)
        assert_names_line(result, source, foreign[0])
    elif isinstance(result, ConversionError):  # only --strict refuses to repair
        assert strict and "not repaired under --strict" in str(result)
        assert_names_line(result, source, result.line)
        assert 1 <= result.line <= len(tags)
    else:
        (doc,) = result
        check_read_tags(doc, tags, scheme, strict)


# --- classification -----------------------------------------------------------------------------


LABEL_TEXTS = st.text(st.sampled_from("体育财经AbZ09_-|,\"'.;:/ \u3000"), min_size=1, max_size=4)
# Labels as written: maybe padded with spaces (stripped, like full-width ones).
CLS_LABELS = st.builds("{}{}{}".format, st.sampled_from(["", " "]), LABEL_TEXTS, st.sampled_from(["", " "]))
# Texts also hold the characters that the file formats quote or escape, and CRLF line breaks.
TEXT_CHARS = CHARS | st.sampled_from([" ", "\t", "\n", "\r\n", '"', ",", "'", "\\", "{", "}"])
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


def texts(chars=TEXT_CHARS):
    """Non-blank strings of 1-16 ``chars`` (``st.text`` would narrow the alphabet)."""
    return st.lists(chars, min_size=1, max_size=16).map("".join).filter(str.strip)


TEXTS = texts()


@st.composite
def cls_rows(draw, labels=CLS_LABELS, row_texts=TEXTS) -> list[tuple]:
    """1-5 (label, text) rows; in a quarter of the files one row has an empty label or text."""
    rows = draw(st.lists(st.tuples(labels, row_texts), min_size=1, max_size=5))
    if draw(st.integers(0, 3)) == 0:
        index = draw(st.integers(0, len(rows) - 1))
        label, text = rows[index]
        rows[index] = draw(st.sampled_from([("", text), (" ", text), (label, ""), (label, " \u3000\t")]))
    return rows


@dataclass
class ClsFile:
    """A generated labelled-text file: its rows (label, text, first line) and bytes."""

    rows: list = field(default_factory=list)
    data: bytes = b""
    encoding: str = "utf-8"
    options: dict = field(default_factory=dict)


@st.composite
def tsv_files(draw) -> ClsFile:
    """``label<TAB>text`` lines; texts hold TABs, but no line end (TSV cannot hold one)."""
    tsv_texts = texts(TEXT_CHARS.filter(lambda char: "\n" not in char)).filter(lambda text: not text.endswith("\r"))
    cls, lines = ClsFile(), draw(st.lists(BLANK_LINES, max_size=1))
    for label, text in draw(cls_rows(row_texts=tsv_texts)):
        if f"{label}\t{text}".strip():  # else a blank line, skipped
            cls.rows.append((label, text, len(lines) + 1))
        lines.append(f"{label}\t{text}")
        lines += draw(st.lists(BLANK_LINES, max_size=1))
    cls.encoding = draw(ENCODINGS)
    cls.data = render(lines, draw(LINE_ENDS), draw(st.booleans()), draw(st.booleans()), cls.encoding)
    return cls


@st.composite
def csv_files(draw) -> ClsFile:
    """CSV with a header (label and text columns in any order, maybe an id); fields quoted as
    ``csv.writer`` quotes them, so they may hold commas, quotes, TABs and line ends."""
    cls = ClsFile()
    text_column = draw(st.sampled_from(["text", "sentence", "内容"]))
    header = draw(st.permutations(["label", text_column] + draw(st.sampled_from([[], ["id"]]))))
    if text_column == "内容":
        cls.options["text_field"] = text_column
    rows = draw(cls_rows())
    # csv.writer leaves a CR unquoted unless the line end holds one: such a file is not valid CSV.
    quote_all = draw(st.booleans()) or any("\r" in text for _, text in rows)
    buffer = io.StringIO()
    quoting = csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
    writer = csv.writer(buffer, lineterminator=draw(LINE_ENDS), quoting=quoting)
    writer.writerow(header)
    for index, (label, text) in enumerate(rows):
        cls.rows.append((label, text, buffer.getvalue().count("\n") + 1))
        writer.writerow([{"label": label, text_column: text, "id": index}[name] for name in header])
    cls.encoding = draw(ENCODINGS)
    cls.data = render([buffer.getvalue()], "", False, draw(st.booleans()), cls.encoding)
    return cls


@st.composite
def jsonl_files(draw) -> ClsFile:
    """JSON Lines: label (string or number), text or sentence field, maybe other fields, any key
    order, escaped or raw non-ASCII; escaped texts may hold lone surrogates."""
    cls, lines = ClsFile(), draw(st.lists(BLANK_LINES, max_size=1))
    ensure_ascii = draw(st.booleans())
    labels = CLS_LABELS | st.integers(-5, 10**6)
    row_texts = texts(TEXT_CHARS | SURROGATES) if ensure_ascii else TEXTS  # unescaped, they cannot be written
    for label, text in draw(cls_rows(labels, row_texts)):
        text_key = draw(st.sampled_from(["text", "sentence"]))
        record = {"label": label, text_key: text, **draw(st.sampled_from([{}, {"id": 3, "label_desc": "x"}]))}
        keys = draw(st.permutations(list(record)))
        line = json.dumps({key: record[key] for key in keys}, ensure_ascii=ensure_ascii)
        cls.rows.append((label, json.loads(line)[text_key], len(lines) + 1))  # escaped surrogate pairs join
        lines.append(line)
        lines += draw(st.lists(BLANK_LINES, max_size=1))
    cls.encoding = draw(ENCODINGS)
    cls.data = render(lines, draw(LINE_ENDS), draw(st.booleans()), draw(st.booleans()), cls.encoding)
    return cls


def row_problem(label, text: str) -> bool:
    """Whether a row must be refused: an empty label, a blank text or a lone surrogate."""
    return not str(label).strip() or not text.strip() or any(0xD800 <= ord(char) <= 0xDFFF for char in text)


def check_cls_result(cls: ClsFile, source: Path, result) -> None:
    """Either the error at the first bad row's line, or one doc per row with its text and label."""
    bad = [line for label, text, line in cls.rows if row_problem(label, text)]
    if bad or not cls.rows:
        assert isinstance(result, ConversionError), f"expected an error at line {bad[:1]}"
        assert_names_line(result, source, bad[0] if bad else None)
        return
    assert not isinstance(result, ConversionError), str(result)
    labels = [str(label).strip() for label, _, _ in cls.rows]
    assert [doc.text for doc in result] == [text for _, text, _ in cls.rows]
    assert [[name for name, value in doc.cats.items() if value == 1.0] for doc in result] == [[x] for x in labels]
    assert all(set(doc.cats) == set(labels) for doc in result)


@pytest.mark.parametrize("file_format, files", [("tsv", tsv_files()), ("csv", csv_files()), ("jsonl", jsonl_files())])
@SETTINGS
@given(data=st.data())
def test_cls_files_round_trip_or_name_the_line(file_format, files, data):
    cls = data.draw(files)
    source, result = run_converter(convert_cls, f"train.{file_format}", cls.data, encoding=cls.encoding,
                                   **cls.options)
    check_cls_result(cls, source, result)
