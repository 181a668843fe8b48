"""Tests of the NER converter (ner_conversion.py, tag_schemes.py) and ``convert ner`` on small
character-per-line files written by the tests themselves (classification: test_cls_conversion.py)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import blank_zh, entities_of, load_docs, write_file
from spacy_bert_zh.cli import app
from spacy_bert_zh.conversion import (
    ConversionError,
    convert_ner,
    docs_to_ner_lines,
    read_ner_docs,
    write_ner_file,
)
from spacy_bert_zh.tag_schemes import decode_entities, detect_scheme, encode_tags

# Invented sentences and their entities (start, end, label) in characters.
SENTENCES = [
    ("张三在北京工作。", [(0, 2, "PER"), (3, 5, "LOC")]),
    ("华为公司在深圳", [(0, 4, "ORG"), (5, 7, "LOC")]),
    ("他在沪工作", [(2, 3, "LOC")]),
    ("中美合作", [(0, 1, "LOC"), (1, 2, "LOC")]),
    ("今天天气很好", []),
]

# The tags of SENTENCES in each scheme, written out by hand.
TAGS = {
    "bio": ["B-PER I-PER O B-LOC I-LOC O O O", "B-ORG I-ORG I-ORG I-ORG O B-LOC I-LOC", "O O B-LOC O O",
            "B-LOC B-LOC O O", "O O O O O O"],
    "iob1": ["I-PER I-PER O I-LOC I-LOC O O O", "I-ORG I-ORG I-ORG I-ORG O I-LOC I-LOC", "O O I-LOC O O",
             "I-LOC B-LOC O O", "O O O O O O"],
    "bioes": ["B-PER E-PER O B-LOC E-LOC O O O", "B-ORG I-ORG I-ORG E-ORG O B-LOC E-LOC", "O O S-LOC O O",
              "S-LOC S-LOC O O", "O O O O O O"],
    "bilou": ["B-PER L-PER O B-LOC L-LOC O O O", "B-ORG I-ORG I-ORG L-ORG O B-LOC L-LOC", "O O U-LOC O O",
              "U-LOC U-LOC O O", "O O O O O O"],
    "bmes": ["B-PER E-PER O B-LOC E-LOC O O O", "B-ORG M-ORG M-ORG E-ORG O B-LOC E-LOC", "O O S-LOC O O",
             "S-LOC S-LOC O O", "O O O O O O"],
}


def ner_text(scheme: str, separator: str = "\t") -> str:
    """The SENTENCES as a character-per-line file in ``scheme``."""
    blocks = []
    for (text, _), tags in zip(SENTENCES, TAGS[scheme]):
        blocks.append("".join(f"{char}{separator}{tag}\n" for char, tag in zip(text, tags.split())))
    return "\n".join(blocks)


# --- NER ----------------------------------------------------------------------------------------


def test_ner_bio_docs_keep_text_one_token_per_character(tmp_path):
    source = write_file(tmp_path / "train.bio", ner_text("bio"))
    report = convert_ner(source, tmp_path / "train.spacy")
    docs = load_docs(tmp_path / "train.spacy")
    assert [doc.text for doc in docs] == [text for text, _ in SENTENCES]
    assert [entities_of(doc) for doc in docs] == [ents for _, ents in SENTENCES]
    for doc in docs:
        assert [token.text for token in doc] == list(doc.text)
        assert not any(token.whitespace_ for token in doc)
        assert all(token.ent_iob_ in ("B", "I", "O") for token in doc)  # every token annotated
        assert [token.is_sent_start for token in doc] == [True] + [False] * (len(doc) - 1)
    assert report.scheme == "bio" and report.scheme_detected
    assert report.docs == 5 and report.sentences == 5
    assert report.characters == sum(len(text) for text, _ in SENTENCES)
    assert report.entities_per_label == {"LOC": 5, "ORG": 1, "PER": 1}
    assert report.repairs == {}


@pytest.mark.parametrize("scheme", ["bio", "iob1", "bioes", "bilou", "bmes"])
def test_ner_scheme_is_detected_and_read(tmp_path, scheme):
    docs = list(read_ner_docs(write_file(tmp_path / "x.txt", ner_text(scheme, separator=" ")), n_sents=1))
    assert [entities_of(doc) for doc in docs] == [ents for _, ents in SENTENCES]


@pytest.mark.parametrize("scheme", ["bio", "iob1", "bioes", "bilou", "bmes"])
def test_ner_round_trip_in_each_scheme(tmp_path, scheme):
    source = write_file(tmp_path / "x.txt", ner_text(scheme))
    convert_ner(source, tmp_path / "x.spacy", scheme=scheme, n_sents=2)
    write_ner_file(load_docs(tmp_path / "x.spacy"), tmp_path / "back.txt", scheme=scheme)
    assert (tmp_path / "back.txt").read_text(encoding="utf-8") == source.read_text(encoding="utf-8")


def test_ner_writer_converts_between_schemes(tmp_path):
    docs = list(read_ner_docs(write_file(tmp_path / "x.bmes", ner_text("bmes"))))
    assert "\n".join(docs_to_ner_lines(docs, scheme="bio")) + "\n" == ner_text("bio")


def test_ner_writer_tags_each_sentence_on_its_own(tmp_path):
    # IOB1: a sentence starting with a PER after one ending with a PER starts with I-, not B-
    text = "张\tI-PER\n三\tI-PER\n\n李\tI-PER\n好\tO\n"
    docs = list(read_ner_docs(write_file(tmp_path / "x.iob1", text), scheme="iob1", n_sents=0))
    assert "".join(line + "\n" for line in docs_to_ner_lines(docs, scheme="iob1")) == text
    doc = blank_zh().make_doc("张三李四")  # an entity across a sentence start is cut there
    doc[2].is_sent_start = True
    doc.ents = [doc.char_span(1, 3, "PER")]
    assert list(docs_to_ner_lines([doc], scheme="bioes")) == ["张\tO", "三\tS-PER", "", "李\tS-PER", "四\tO"]


def test_detect_scheme_iob1_only_when_inside_starts_dominate():
    broken_bio = [["B-PER", "I-PER", "O"]] * 20 + [["O", "I-LOC", "I-LOC"]]
    assert detect_scheme(broken_bio) == "bio"
    iob1 = [["I-PER", "I-PER", "O"]] * 20 + [["I-LOC", "B-LOC"]]
    assert detect_scheme(iob1) == "iob1"
    assert detect_scheme([["B-PER", "M-PER", "E-PER"]]) == "bmes"
    assert detect_scheme([["S-PER", "O"]]) == "bioes"
    assert detect_scheme([["U-PER", "O"]]) == "bilou"


def test_bio_with_a_broken_inside_start_is_repaired_and_counted(tmp_path):
    text = ner_text("bio") + "\n他\tO\n去\tO\n上\tI-LOC\n海\tI-LOC\n"
    source = write_file(tmp_path / "train.bio", text)
    report = convert_ner(source, tmp_path / "out.spacy")
    docs = load_docs(tmp_path / "out.spacy")
    assert report.scheme == "bio"
    assert entities_of(docs[-1]) == [(2, 4, "LOC")]
    (kind, entry), = report.repairs.items()
    broken_line = text.splitlines().index("上\tI-LOC") + 1
    assert entry["count"] == 1
    assert entry["examples"] == [f"line {broken_line}: I-LOC after O"]
    assert "repaired 1x" in report.summary()


@pytest.mark.parametrize("tags, expected, repairs", [
    (["B-PER", "I-LOC"], [(0, 1, "PER"), (1, 2, "LOC")], ["I-LOC after B-PER"]),
    (["I-PER", "I-PER", "O"], [(0, 2, "PER")], ["I-PER after the sentence start"]),
])
def test_decode_bio_repairs(tags, expected, repairs):
    entities, found = decode_entities(tags, "bio")
    assert entities == expected
    assert [repair.detail for repair in found] == repairs


@pytest.mark.parametrize("scheme, tags, expected, details", [
    ("bmes", ["O", "E-PER"], [(1, 2, "PER")], ["E-PER after O"]),
    ("bmes", ["B-PER", "M-PER", "O"], [(0, 2, "PER")], ["M-PER followed by O"]),
    ("bmes", ["B-PER", "M-PER"], [(0, 2, "PER")], ["M-PER followed by the sentence end"]),
    ("bioes", ["B-PER", "B-LOC", "E-LOC"], [(0, 1, "PER"), (1, 3, "LOC")], ["B-PER followed by B-LOC"]),
    ("bioes", ["S-PER", "I-PER"], [(0, 1, "PER"), (1, 2, "PER")],
     ["I-PER after S-PER", "I-PER followed by the sentence end"]),
])
def test_decode_closed_scheme_repairs(scheme, tags, expected, details):
    entities, repairs = decode_entities(tags, scheme)
    assert entities == expected
    assert [repair.detail for repair in repairs] == details


def test_encode_tags_marks_adjacent_entities_in_iob1():
    assert encode_tags(4, [(1, 2, "LOC"), (0, 1, "LOC")], "iob1") == ["I-LOC", "B-LOC", "O", "O"]
    assert encode_tags(3, [(0, 3, "ORG")], "bilou") == ["B-ORG", "I-ORG", "L-ORG"]


def test_ner_fullwidth_space_is_a_character_and_space_separators_work(tmp_path):
    text = "北 B-LOC\n京\tI-LOC\n\u3000\tO\n好  \t O \n"
    docs = list(read_ner_docs(write_file(tmp_path / "x.bio", text)))
    assert docs[0].text == "北京\u3000好"
    assert [token.text for token in docs[0]] == ["北", "京", "\u3000", "好"]
    assert entities_of(docs[0]) == [(0, 2, "LOC")]


def test_ner_n_sents_groups_sentences_and_docstart_starts_a_doc(tmp_path):
    text = "-DOCSTART-\tO\n\n" + ner_text("bio") + "\n-DOCSTART- -X- O O\n\n好\tO\n"
    report = convert_ner(write_file(tmp_path / "x.bio", text), tmp_path / "x.spacy", n_sents=2)
    docs = load_docs(tmp_path / "x.spacy")
    texts = [text for text, _ in SENTENCES]
    assert [doc.text for doc in docs] == [texts[0] + texts[1], texts[2] + texts[3], texts[4], "好"]
    assert [sent.text for sent in docs[0].sents] == texts[:2]
    assert entities_of(docs[0]) == [(0, 2, "PER"), (3, 5, "LOC"), (8, 12, "ORG"), (13, 15, "LOC")]
    assert report.docs == 4 and report.sentences == 6 and report.doc_markers == 2
    assert [doc.text for doc in read_ner_docs(tmp_path / "x.bio", n_sents=0)] == ["".join(texts), "好"]


@pytest.mark.parametrize("line, message", [
    ("上", "no tag on this line"),
    ("上\tPER", "unknown tag format 'PER'"),
    ("上\tB_PER", "unknown tag format 'B_PER'"),
    ("上\tB-", "tag 'B-' has no label"),
    ("\tO", "no character before the tag"),
    ("上\tNR\tO", "expected two fields"),
])
def test_ner_bad_lines_name_file_and_line(tmp_path, line, message):
    source = write_file(tmp_path / "train.bio", ner_text("bio") + "\n好\tO\n" + line + "\n")
    bad_line = len(ner_text("bio").splitlines()) + 3
    with pytest.raises(ConversionError, match=message) as error:
        convert_ner(source, tmp_path / "out.spacy")
    assert str(error.value).startswith(f"{source}:{bad_line}: ")
    assert not (tmp_path / "out.spacy").exists()


def test_ner_tag_not_of_the_forced_scheme(tmp_path):
    source = write_file(tmp_path / "train.bio", "张\tB-PER\n三\tM-PER\n")
    with pytest.raises(ConversionError, match=r"train.bio:2: tag 'M-PER' is not a BIO tag"):
        list(read_ner_docs(source, scheme="bio"))
    assert [entities_of(doc) for doc in read_ner_docs(source)] == [[(0, 2, "PER")]]  # BMES, closed at the end
    with pytest.raises(ConversionError, match="train.bio:2:.*not repaired under --strict"):
        list(read_ner_docs(source, strict=True))


@pytest.mark.parametrize("scheme, tags, bad_index, detail", [
    ("bio", ["O", "I-PER"], 1, "I-PER after O"),
    ("bio", ["B-LOC", "I-PER"], 1, "I-PER after B-LOC"),
    ("bmes", ["O", "E-PER"], 1, "E-PER after O"),
    ("bmes", ["B-PER", "O"], 0, "B-PER followed by O"),
    ("bioes", ["O", "B-PER"], 1, "B-PER followed by the sentence end"),
])
def test_ner_strict_turns_repairs_into_errors(tmp_path, scheme, tags, bad_index, detail):
    lines = "".join(f"{char}\t{tag}\n" for char, tag in zip("我们你们", tags))
    source = write_file(tmp_path / "train.txt", "好\tO\n\n" + lines)
    with pytest.raises(ConversionError, match=f"train.txt:{3 + bad_index}: {detail}"):
        convert_ner(source, tmp_path / "out.spacy", scheme=scheme, strict=True)
    assert not (tmp_path / "out.spacy").exists()
    report = convert_ner(source, tmp_path / "out.spacy", scheme=scheme)
    assert sum(entry["count"] for entry in report.repairs.values()) == 1


def test_ner_gbk_needs_the_encoding_flag(tmp_path):
    source = write_file(tmp_path / "gbk.bio", ner_text("bio"), encoding="gbk")
    with pytest.raises(ConversionError, match=r"gbk.bio:1: not valid utf-8.*--encoding gbk"):
        convert_ner(source, tmp_path / "out.spacy")
    report = convert_ner(source, tmp_path / "out.spacy", encoding="gbk")
    assert [doc.text for doc in load_docs(tmp_path / "out.spacy")] == [text for text, _ in SENTENCES]
    assert report.encoding == "gbk"


def test_ner_bom_and_crlf_are_handled_and_reported(tmp_path):
    text = ner_text("bio").replace("\n", "\r\n")
    source = tmp_path / "crlf.bio"
    source.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    report = convert_ner(source, tmp_path / "out.spacy")
    docs = load_docs(tmp_path / "out.spacy")
    assert [doc.text for doc in docs] == [text for text, _ in SENTENCES]
    assert report.bom_stripped and report.crlf_lines == text.count("\r\n")
    assert "byte order mark" in report.summary() and "CRLF" in report.summary()


def test_ner_empty_files_are_errors(tmp_path):
    with pytest.raises(ConversionError, match="empty.bio: the file is empty"):
        convert_ner(write_file(tmp_path / "empty.bio", ""), tmp_path / "out.spacy")
    with pytest.raises(ConversionError, match="blank.bio: no sentences found"):
        convert_ner(write_file(tmp_path / "blank.bio", "\n\n-DOCSTART-\n\n"), tmp_path / "out.spacy")
    with pytest.raises(ConversionError, match="missing.bio: no such file"):
        convert_ner(tmp_path / "missing.bio", tmp_path / "out.spacy")
    assert not (tmp_path / "out.spacy").exists()


def test_failed_conversion_keeps_the_old_output_and_leaves_no_temporary_file(tmp_path):
    output = write_file(tmp_path / "out.spacy", "previous")
    with pytest.raises(ConversionError):
        convert_ner(write_file(tmp_path / "bad.bio", "好\tO\n好\n"), output)
    assert output.read_text() == "previous"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.bio", "out.spacy"]


def test_writer_refuses_tokens_with_spaces():
    doc = blank_zh().make_doc("我 爱")
    with pytest.raises(ValueError, match="cannot be written"):
        list(docs_to_ner_lines([doc]))


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    source = write_file(tmp_path / "x.bio", ner_text("bio"))
    convert_ner(source, tmp_path / "x.spacy", show_progress=True)
    assert "x.bio" in capsys.readouterr().err
    convert_ner(source, tmp_path / "x.spacy", show_progress=False)
    assert capsys.readouterr().err == ""


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_convert_ner_prints_summary_and_writes_report(tmp_path):
    source = write_file(tmp_path / "train.bio", ner_text("bio"))
    result = CliRunner().invoke(app, ["convert", "ner", str(source), str(tmp_path / "out.spacy"),
                                      "--n-sents", "5", "--report", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    assert "1 docs" in result.output and "LOC 5" in result.output
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["entities_per_label"] == {"LOC": 5, "ORG": 1, "PER": 1} and report["docs"] == 1


def test_cli_convert_errors_exit_1_without_traceback(tmp_path):
    source = write_file(tmp_path / "train.bio", "好\tO\n人\tM-PER\n")
    result = CliRunner().invoke(app, ["convert", "ner", str(source), str(tmp_path / "out.spacy"),
                                      "--scheme", "bio", "--quiet"])
    assert result.exit_code == 1
    assert f"{source}:2: tag 'M-PER' is not a BIO tag" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.spacy").exists()


def test_cli_unknown_scheme_is_a_clear_error(tmp_path):
    source = write_file(tmp_path / "train.bio", ner_text("bio"))
    result = CliRunner().invoke(app, ["convert", "ner", str(source), str(tmp_path / "out.spacy"), "--scheme", "bo"])
    assert result.exit_code == 1 and "unknown tag scheme 'bo'" in result.output
