"""Tests of the classification converter (cls_conversion.py) and ``convert cls`` on small TSV, CSV
and JSONL files written by the tests themselves."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import blank_zh, load_docs, write_file
from spacy_bert_zh.cli import app
from spacy_bert_zh.conversion import ConversionError, convert_cls, read_cls_docs

TSV_ROWS = [
    ("体育", "主队三比一获胜\t客队不服"),
    ("财经", "股市今天上涨\u3000两个百分点"),
    ("体育", " 前后有空格的标题 "),
    ("科技", "New手机 发布2024"),
]


def tsv_text() -> str:
    return "".join(f"{label}\t{text}\n" for label, text in TSV_ROWS)


def test_cls_tsv_keeps_texts_and_one_hot_cats(tmp_path):
    report = convert_cls(write_file(tmp_path / "train.tsv", tsv_text()), tmp_path / "train.spacy")
    docs = load_docs(tmp_path / "train.spacy")
    assert [doc.text for doc in docs] == [text for _, text in TSV_ROWS]
    for doc, (label, text) in zip(docs, TSV_ROWS):
        assert [token.text for token in doc] == [token.text for token in blank_zh().make_doc(text)]
        assert doc.cats == {name: float(name == label) for name in ("体育", "科技", "财经")}
    assert report.docs_per_class == {"体育": 2, "科技": 1, "财经": 1}
    assert report.docs == 4 and report.characters == sum(len(text) for _, text in TSV_ROWS)


def test_cls_fixed_label_set(tmp_path):
    source = write_file(tmp_path / "dev.tsv", tsv_text())
    docs = list(read_cls_docs(source, labels=["财经", "体育", "科技", "娱乐"]))
    assert list(docs[0].cats) == ["财经", "体育", "科技", "娱乐"]
    assert [sum(doc.cats.values()) for doc in docs] == [1.0] * 4
    with pytest.raises(ConversionError, match=r"dev.tsv:4: label '科技' is not one of --labels"):
        list(read_cls_docs(source, labels=["财经", "体育"]))


def test_cls_multilabel(tmp_path):
    source = write_file(tmp_path / "x.tsv", "体育|财经\t球队上市\n科技\t新芯片\n")
    docs = list(read_cls_docs(source, multilabel=True))
    assert [doc.cats for doc in docs] == [{"体育": 1.0, "科技": 0.0, "财经": 1.0},
                                          {"体育": 0.0, "科技": 1.0, "财经": 0.0}]
    source = write_file(tmp_path / "x.jsonl", '{"label": ["体育", "财经"], "text": "球队上市"}\n')
    assert list(read_cls_docs(source, multilabel=True))[0].cats == {"体育": 1.0, "财经": 1.0}
    with pytest.raises(ConversionError, match=r"x.jsonl:1: a list of labels .* needs --multilabel"):
        list(read_cls_docs(source))


def test_cls_csv_with_fields_and_quoted_newline(tmp_path):
    text = 'id,类别,内容\n1,正面,"很好,很满意"\n2,负面,"第一行\n第二行"\n'
    source = write_file(tmp_path / "x.csv", text.replace("\n", "\r\n"))
    docs = list(read_cls_docs(source, label_field="类别", text_field="内容"))
    assert [doc.text for doc in docs] == ["很好,很满意", "第一行\r\n第二行"]  # line break as written
    assert [doc.cats["正面"] for doc in docs] == [1.0, 0.0]
    with pytest.raises(ConversionError, match=r"x.csv:1: no column 'label' \(columns: id, 类别, 内容\)"):
        list(read_cls_docs(source, text_field="内容"))


@pytest.mark.parametrize("row_end", ["\n", "\r\n"])
@pytest.mark.parametrize("text", ["0\r\n", "a\r\nb", "a\nb\r", "a\rb"])
def test_cls_csv_quoted_line_ends_are_kept(tmp_path, row_end, text):
    source = write_file(tmp_path / "x.csv", f'label,text{row_end}0,"{text}"{row_end}1,b{row_end}')
    assert [doc.text for doc in read_cls_docs(source)] == [text, "b"]


def test_cls_csv_row_with_wrong_field_count(tmp_path):
    source = write_file(tmp_path / "x.csv", "label,text\n正面,好\n负面\n")
    with pytest.raises(ConversionError, match="x.csv:3: 1 fields, but the header has 2"):
        list(read_cls_docs(source))


def test_cls_jsonl_clue_style(tmp_path):
    rows = [{"label": "102", "label_desc": "news_story", "sentence": "一个编的新闻故事"},
            {"label": 103, "label_desc": "news_culture", "sentence": "文化节\u3000开幕"}]
    source = write_file(tmp_path / "train.json", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    docs = list(read_cls_docs(source))
    assert [doc.text for doc in docs] == [row["sentence"] for row in rows]
    assert [doc.cats for doc in docs] == [{"102": 1.0, "103": 0.0}, {"102": 0.0, "103": 1.0}]
    desc_docs = list(read_cls_docs(source, label_field="label_desc"))
    assert desc_docs[1].cats["news_culture"] == 1.0


def test_cls_jsonl_errors(tmp_path):
    source = write_file(tmp_path / "x.jsonl", '{"label": "a", "text": "好"}\n{"label": "b", "text": 1\n')
    with pytest.raises(ConversionError, match=r"x.jsonl:2: invalid JSON"):
        list(read_cls_docs(source))
    source = write_file(tmp_path / "x.jsonl", '{"label": "a", "text": "好"}\n{"lab": "b", "text": "坏"}\n')
    with pytest.raises(ConversionError, match=r"x.jsonl:2: no field 'label' \(fields: lab, text\)"):
        list(read_cls_docs(source))
    with pytest.raises(ConversionError, match=r"x.jsonl:1: no field 'content' \(fields: label, text\)"):
        list(read_cls_docs(source, text_field="content"))


def test_cls_jsonl_lone_surrogate_escape_is_a_row_error(tmp_path):
    source = write_file(tmp_path / "x.jsonl", '{"label": "a", "text": "好"}\n{"label": 0, "text": "\\ud800"}\n'
                                         '{"label": "\\udfff", "text": "好"}\n')
    with pytest.raises(ConversionError, match=r"x.jsonl:2: the text holds a lone surrogate '\\ud800' at character 1"):
        convert_cls(source, tmp_path / "out.spacy")
    assert not (tmp_path / "out.spacy").exists()
    report = convert_cls(source, tmp_path / "out.spacy", skip_invalid=True)
    assert [row["line"] for row in report.skipped] == [2, 3]
    assert "label '\\udfff' holds a lone surrogate" in report.skipped[1]["reason"]
    assert [doc.text for doc in load_docs(tmp_path / "out.spacy")] == ["好"]


@pytest.mark.parametrize("line, message", [
    ("体育 没有制表符", "no TAB between label and text"),
    ("体育\t", "empty text"),
    ("体育\t\u3000 ", "empty text"),
    ("\t没有标签", "empty label"),
])
def test_cls_bad_rows_fail_with_line_or_are_skipped(tmp_path, line, message):
    source = write_file(tmp_path / "train.tsv", tsv_text() + line + "\n" + "财经\t最后一行\n")
    bad_line = len(TSV_ROWS) + 1
    with pytest.raises(ConversionError, match=f"train.tsv:{bad_line}: {message}"):
        convert_cls(source, tmp_path / "out.spacy")
    assert not (tmp_path / "out.spacy").exists()
    report = convert_cls(source, tmp_path / "out.spacy", skip_invalid=True)
    assert [row["line"] for row in report.skipped] == [bad_line]
    assert report.skipped[0]["reason"].startswith(message)
    assert len(load_docs(tmp_path / "out.spacy")) == len(TSV_ROWS) + 1
    assert "skipped 1 invalid rows" in report.summary()


def test_cls_encodings_bom_crlf(tmp_path):
    gbk = write_file(tmp_path / "gbk.tsv", tsv_text(), encoding="gbk")
    with pytest.raises(ConversionError, match=r"gbk.tsv:1: not valid utf-8.*--encoding gbk"):
        convert_cls(gbk, tmp_path / "out.spacy")
    assert [doc.text for doc in read_cls_docs(gbk, encoding="gbk")] == [text for _, text in TSV_ROWS]
    bom = tmp_path / "bom.tsv"
    bom.write_bytes(b"\xef\xbb\xbf" + tsv_text().replace("\n", "\r\n").encode("utf-8"))
    report = convert_cls(bom, tmp_path / "out.spacy")
    docs = load_docs(tmp_path / "out.spacy")
    assert [doc.text for doc in docs] == [text for _, text in TSV_ROWS]
    assert "体育" in docs[0].cats and "\ufeff体育" not in docs[0].cats
    assert report.bom_stripped and report.crlf_lines == len(TSV_ROWS)


def test_cls_format_from_extension_or_forced(tmp_path):
    source = write_file(tmp_path / "train.data", tsv_text())
    with pytest.raises(ConversionError, match=r"cannot tell the format.*--format"):
        list(read_cls_docs(source))
    assert len(list(read_cls_docs(source, file_format="tsv"))) == len(TSV_ROWS)
    with pytest.raises(ConversionError, match="empty.tsv: the file is empty"):
        list(read_cls_docs(write_file(tmp_path / "empty.tsv", "")))


def test_cli_convert_cls_with_labels_and_skip_invalid(tmp_path):
    source = write_file(tmp_path / "dev.tsv", tsv_text() + "坏行\n")
    output = tmp_path / "dev.spacy"
    result = CliRunner().invoke(app, ["convert", "cls", str(source), str(output), "--labels", "体育,财经,科技,娱乐",
                                      "--skip-invalid", "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "娱乐 0" in result.output and "skipped 1 invalid rows (lines 5)" in result.output
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["skipped"][0]["line"] == 5
    assert list(load_docs(output)[0].cats) == ["体育", "财经", "科技", "娱乐"]
