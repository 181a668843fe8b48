"""Tests of the span-JSON converter (span_conversion.py: CLUENER, doccano, Label Studio) and the
``convert spans`` CLI on small files written by the tests themselves."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import entities_of, load_docs, write_file
from spacy_bert_zh.cli import app
from spacy_bert_zh.conversion import ConversionError, docs_to_ner_lines
from spacy_bert_zh.span_conversion import convert_spans, read_span_docs


# CLUENER's exact layout (json.dumps with ensure_ascii=False), invented sentences, all 10 types;
# 黄山风景区 occurs twice on line 3.
CLUENER_SAMPLE = """\
{"text": "杭州市西湖区的星河科技公司今天发布了新游戏《云海奇缘》，总经理陈晓峰出席。", "label": {"address": {"杭州市西湖区": [[0, 5]]}, "company": {"星河科技公司": [[7, 12]]}, "game": {"《云海奇缘》": [[21, 26]]}, "position": {"总经理": [[28, 30]]}, "name": {"陈晓峰": [[31, 33]]}}}
{"text": "国家税务总局与清源大学联合发布报告，王立平教授参与了编写。", "label": {"government": {"国家税务总局": [[0, 5]]}, "organization": {"清源大学": [[7, 10]]}, "name": {"王立平": [[18, 20]]}, "position": {"教授": [[21, 22]]}}}
{"text": "电影《长河落日》在黄山风景区取景，导演说黄山风景区的云海最美。", "label": {"movie": {"《长河落日》": [[2, 7]]}, "scene": {"黄山风景区": [[9, 13], [20, 24]]}, "position": {"导演": [[17, 18]]}}}
{"text": "《山海食记》是一本讲美食的书，作者刘一鸣。", "label": {"book": {"《山海食记》": [[0, 5]]}, "name": {"刘一鸣": [[17, 19]]}}}
"""
# CLUENER's test split: id and text, no label.
CLUENER_TEST_LINE = '{"id": 0, "text": "明天去青石镇看看。"}\n'


def jsonl(*records) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def convert(tmp_path: Path, name: str, text: str, **options):
    """Write ``text`` to ``name``, convert it; the docs read back and the report."""
    report = convert_spans(write_file(tmp_path / name, text), tmp_path / "out.spacy", show_progress=False, **options)
    return load_docs(tmp_path / "out.spacy"), report


def labelstudio_task(text: str, results: list, task_id: int = 1, cancelled: bool = False, **fields) -> dict:
    return {"id": task_id, "data": {"text": text},
            "annotations": [{"id": task_id * 10, "was_cancelled": cancelled, "result": results}], **fields}


def ls_result(start: int, end: int, label, text=None) -> dict:
    value = {"start": start, "end": end, "labels": label if isinstance(label, list) else [label]}
    if text is not None:
        value["text"] = text
    return {"id": f"r{start}", "from_name": "label", "to_name": "text", "type": "labels", "value": value}


# --- the three formats ----------------------------------------------------------------------------


def test_cluener_real_layout_sample(tmp_path):
    docs, report = convert(tmp_path, "train.json", CLUENER_SAMPLE)
    records = [json.loads(line) for line in CLUENER_SAMPLE.splitlines()]
    assert [doc.text for doc in docs] == [record["text"] for record in records]
    assert all(len(doc) == len(doc.text) and not any(token.whitespace_ for token in doc) for doc in docs)
    for doc, record in zip(docs, records):
        expected = sorted((start, end + 1, label) for label, entities in record["label"].items()
                          for positions in entities.values() for start, end in positions)
        assert entities_of(doc) == expected
        assert all(ent.text in record["label"][ent.label_] for ent in doc.ents)
    assert [ent.text for ent in docs[2].ents if ent.label_ == "scene"] == ["黄山风景区", "黄山风景区"]
    assert report.format == "cluener" and report.format_detected
    assert set(report.entities_per_label) == {"address", "book", "company", "game", "government", "movie",
                                              "name", "organization", "position", "scene"}
    assert report.entities_per_label["name"] == 3 and report.entities_per_label["scene"] == 2
    assert report.repairs == {} and report.unknown_fields == {} and report.unlabelled_docs == 0


def test_cluener_ends_are_inclusive(tmp_path):
    docs, _ = convert(tmp_path, "x.json", jsonl({"text": "我在北京", "label": {"address": {"北京": [[2, 3]]}}}))
    assert entities_of(docs[0]) == [(2, 4, "address")]
    assert docs[0][2].ent_iob_ == "B" and docs[0][3].ent_iob_ == "I"


def test_cluener_without_label_is_unlabelled_and_empty_label_is_all_o(tmp_path):
    text = CLUENER_TEST_LINE + jsonl({"text": "今天很好", "label": {}})
    docs, report = convert(tmp_path, "test.json", text)
    assert not docs[0].has_annotation("ENT_IOB")  # missing: no gold either way
    assert docs[1].has_annotation("ENT_IOB") and all(token.ent_iob_ == "O" for token in docs[1])
    assert report.unlabelled_docs == 1 and report.unknown_fields == {}  # id is a CLUENER field
    assert "1 docs unlabelled" in report.summary()


def test_doccano_label_lists_and_entities_objects(tmp_path):
    text = jsonl({"id": 7, "text": "华为公司在深圳", "label": [[5, 7, "LOC"], [0, 4, "ORG"]], "Comments": []},
                 {"id": 8, "text": "张三来了", "entities": [{"id": 1, "label": "PER", "start_offset": 0,
                                                             "end_offset": 2}], "relations": []},
                 {"text": "没有实体", "labels": []})
    docs, report = convert(tmp_path, "admin.jsonl", text)
    assert [entities_of(doc) for doc in docs] == [[(0, 4, "ORG"), (5, 7, "LOC")], [(0, 2, "PER")], []]
    assert all(doc.has_annotation("ENT_IOB") for doc in docs)
    assert report.format == "doccano" and report.unknown_fields == {}


def test_labelstudio_uses_the_first_annotation_not_cancelled(tmp_path):
    task = labelstudio_task("李四去上海", [ls_result(0, 2, "PER", "李四")])
    task["annotations"].insert(0, {"id": 1, "was_cancelled": True, "result": [ls_result(2, 5, "LOC")]})
    task["annotations"].append({"id": 3, "result": [ls_result(3, 5, "LOC", "上海")]})
    task["annotations"][1]["result"].append({"type": "choices", "value": {"choices": ["新闻"]}})
    tasks = [task, {"id": 2, "data": {"text": "无人标注"}, "annotations": [], "predictions": []}]
    docs, report = convert(tmp_path, "export.json", json.dumps(tasks, ensure_ascii=False, indent=2))
    assert [entities_of(doc) for doc in docs] == [[(0, 2, "PER")], []]
    assert not docs[1].has_annotation("ENT_IOB")
    assert report.format == "labelstudio" and report.unlabelled_docs == 1
    assert report.ignored == {"cancelled Label Studio annotations": 1,
                              "Label Studio annotations after a task's first (not converted)": 1,
                              "Label Studio results of type 'choices' (not labels)": 1}


def test_labelstudio_text_field(tmp_path):
    task = {"id": 1, "data": {"sentence": "王五在广州"}, "annotations": [{"result": [ls_result(3, 5, "LOC")]}]}
    docs, _ = convert(tmp_path, "export.json", json.dumps([task]), text_field="sentence")
    assert docs[0].text == "王五在广州" and entities_of(docs[0]) == [(3, 5, "LOC")]
    with pytest.raises(ConversionError, match=r"export.json:1: task index 0 \(id 1\): no data field 'text' "
                                              r"\(there: 'sentence'\); choose with --text-field"):
        convert_spans(tmp_path / "export.json", tmp_path / "o.spacy")


def test_format_given_overrides_detection(tmp_path):
    source = write_file(tmp_path / "x.jsonl", CLUENER_TEST_LINE)
    report = convert_spans(source, tmp_path / "o.spacy", file_format="doccano")
    assert report.format == "doccano" and not report.format_detected
    with pytest.raises(ConversionError, match="is it a Label Studio export"):
        convert_spans(write_file(tmp_path / "ls.json", "[]"), tmp_path / "o.spacy", file_format="cluener")
    with pytest.raises(ValueError, match="unknown format 'brat'"):
        convert_spans(source, tmp_path / "o.spacy", file_format="brat")


def test_text_kept_exactly_with_spaces_and_line_ends(tmp_path):
    text = " 北京\u3000欢迎你 \n New York\t好\r\n"
    docs, _ = convert(tmp_path, "x.jsonl", jsonl({"text": text, "label": [[1, 3, "LOC"], [10, 18, "LOC"]]}))
    assert docs[0].text == text and [token.text for token in docs[0]] == list(text)
    assert [ent.text for ent in docs[0].ents] == ["北京", "New York"]


# --- checks ---------------------------------------------------------------------------------------


def test_mismatched_entity_text_names_file_line_and_both_strings(tmp_path):
    source = write_file(tmp_path / "dev.json", CLUENER_SAMPLE.replace("[[7, 10]]", "[[6, 9]]"))
    with pytest.raises(ConversionError) as caught:
        convert_spans(source, tmp_path / "o.spacy")
    assert (caught.value.path, caught.value.line) == (str(source), 2)
    assert "organization '清源大学' [6, 9] (end inclusive): the text has '与清源大' there, the file says '清源大学'" \
        in str(caught.value)
    assert not (tmp_path / "o.spacy").exists()


def test_labelstudio_errors_name_the_task_line_and_index(tmp_path):
    tasks = [labelstudio_task("张三", [ls_result(0, 2, "PER", "张三")]),
             labelstudio_task("李四去上海", [ls_result(3, 5, "LOC", "上 海")], task_id=9)]
    source = write_file(tmp_path / "export.json", json.dumps(tasks, ensure_ascii=False, indent=2))
    second_task_line = source.read_text(encoding="utf-8").splitlines().index("  {", 2) + 1
    with pytest.raises(ConversionError, match=rf"export.json:{second_task_line}: task index 1 \(id 9\): "
                                              r"span LOC \[3, 5\): the text has '上海' there, the file says '上 海'"):
        convert_spans(source, tmp_path / "o.spacy")


def test_utf16_offsets_get_a_hint(tmp_path):
    # JavaScript counts the astral 𠀀 as two units, so Label Studio's offsets after it are one too high.
    task = labelstudio_task("𠀀字在北京", [ls_result(4, 6, "LOC", "北京")])
    with pytest.raises(ConversionError, match="count UTF-16 code units"):
        convert_spans(write_file(tmp_path / "e.json", json.dumps([task])), tmp_path / "o.spacy")


def test_labelstudio_result_with_two_labels_is_an_error(tmp_path):
    task = labelstudio_task("张三", [ls_result(0, 2, ["PER", "ORG"])])
    with pytest.raises(ConversionError, match=r"expected exactly one label, got \[\"PER\", \"ORG\"\]"):
        convert_spans(write_file(tmp_path / "e.json", json.dumps([task])), tmp_path / "o.spacy")


@pytest.mark.parametrize("span, message", [
    ([2, 9, "LOC"], "out of range for a text of 4 characters"),
    ([-1, 2, "LOC"], "out of range"),
    ([3, 3, "LOC"], "the start must be before the end"),
    ([3, 1, "LOC"], "the start must be before the end"),
    (["0", 2, "LOC"], "the offsets must be integers"),
    ([0, True, "LOC"], "the offsets must be integers"),
    ([0, 2, ""], "the label must be a non-empty string"),
    ([0, 2], "expected [start, end, label] for each span"),
])
def test_bad_offsets_are_errors_naming_the_line(tmp_path, span, message):
    source = write_file(tmp_path / "d.jsonl", jsonl({"text": "很好", "label": []}, {"text": "我在北京", "label": [span]}))
    with pytest.raises(ConversionError) as caught:
        convert_spans(source, tmp_path / "o.spacy", file_format="doccano")
    assert caught.value.line == 2 and message in str(caught.value)
    assert "--skip-invalid" in str(caught.value)


def test_cluener_end_past_the_text_is_out_of_range(tmp_path):
    source = write_file(tmp_path / "c.json", jsonl({"text": "我在北京", "label": {"address": {"京": [[3, 4]]}}}))
    with pytest.raises(ConversionError, match=r"c.json:1: span address '京' \[3, 4\] \(end inclusive\): out of range"):
        convert_spans(source, tmp_path / "o.spacy")


# Three spans of 华为云计算: 华为 [0, 2), 为云计算 [1, 5) (the longest) and 计算 [3, 5).
OVERLAPPING = {"text": "华为云计算", "label": [[0, 2, "ORG"], [1, 5, "PRODUCT"], [3, 5, "TECH"]]}


def test_overlapping_spans_are_an_error_naming_both(tmp_path):
    source = write_file(tmp_path / "o.jsonl", jsonl({"text": "好", "label": []}, OVERLAPPING))
    with pytest.raises(ConversionError, match=r"o.jsonl:2: overlapping spans ORG '华为' \[0, 2\) and "
                                              r"PRODUCT '为云计算' \[1, 5\) \(use --overlap longest"):
        convert_spans(source, tmp_path / "o.spacy")


@pytest.mark.parametrize("policy, kept, dropped", [
    ("longest", [(1, 5, "PRODUCT")], 2),
    ("first", [(0, 2, "ORG"), (3, 5, "TECH")], 1),
])
def test_overlap_policies_keep_and_count(tmp_path, policy, kept, dropped):
    docs, report = convert(tmp_path, "o.jsonl", jsonl(OVERLAPPING), overlap=policy)
    assert entities_of(docs[0]) == kept
    (kind, entry), = report.repairs.items()
    assert kind == f"overlapping span dropped (--overlap {policy})" and entry["count"] == dropped
    assert entry["examples"][0].startswith("line 1: dropped ")
    assert f"repaired {dropped}x overlapping span dropped" in report.summary()


def test_nested_cluener_spans_and_identical_spans(tmp_path):
    nested = {"text": "北京大学很美", "label": {"organization": {"北京大学": [[0, 3]]}, "address": {"北京": [[0, 1]]}}}
    with pytest.raises(ConversionError, match="overlapping spans organization '北京大学'"):
        convert(tmp_path, "n.json", jsonl(nested))
    docs, report = convert(tmp_path, "d.jsonl", jsonl({"text": "张三", "label": [[0, 2, "PER"], [0, 2, "PER"]]}))
    assert entities_of(docs[0]) == [(0, 2, "PER")]
    assert report.repairs["identical spans merged"]["count"] == 1


def test_unknown_fields_are_reported_or_errors_under_strict(tmp_path):
    text = jsonl({"id": 1, "text": "张三", "label": [[0, 2, "PER"]], "source": "web", "Comments": []},
                 {"id": 2, "text": "李四", "label": [], "source": "app"})
    _, report = convert(tmp_path, "d.jsonl", text)
    assert report.unknown_fields == {"source": {"count": 2, "first_line": 1}}
    assert "unknown fields, not converted: 'source' (2x, first at line 1)" in report.summary()
    with pytest.raises(ConversionError, match=r"d.jsonl:1: unknown fields 'source' for doccano \(without --strict"):
        convert(tmp_path, "d.jsonl", text, strict=True)


def test_empty_texts_and_bad_json_are_invalid_records(tmp_path):
    text = jsonl({"text": "张三", "label": {}}, {"text": "", "label": {}}) + "{not json\n" \
        + jsonl({"text": " \n", "label": {}}, {"label": {}})
    source = write_file(tmp_path / "c.json", text)
    with pytest.raises(ConversionError, match="c.json:2: empty text .use --skip-invalid"):
        convert_spans(source, tmp_path / "o.spacy")
    docs, report = convert(tmp_path, "c.json", text, skip_invalid=True)
    assert [doc.text for doc in docs] == ["张三"]
    assert [row["line"] for row in report.skipped] == [2, 3, 4, 5]
    assert report.skipped[1]["reason"].startswith("invalid JSON")
    assert report.skipped[3]["reason"].startswith("no field 'text'")
    with pytest.raises(ConversionError, match="no valid records; first problem: line 1: empty text"):
        convert(tmp_path, "c.json", jsonl({"text": "", "label": {}}), skip_invalid=True)


def test_broken_labelstudio_json_names_the_line(tmp_path):
    source = write_file(tmp_path / "e.json", '[\n  {"id": 1, "data": {"text": "好"}},\n  {"id": 2,, }\n]\n')
    with pytest.raises(ConversionError, match="e.json:3: invalid JSON"):
        convert_spans(source, tmp_path / "o.spacy")
    with pytest.raises(ConversionError, match="e.json: the file is empty"):
        convert_spans(write_file(tmp_path / "e.json", ""), tmp_path / "o.spacy")


def test_bom_and_crlf_are_read(tmp_path):
    source = tmp_path / "c.json"
    source.write_bytes(b"\xef\xbb\xbf" + CLUENER_SAMPLE.replace("\n", "\r\n").encode("utf-8"))
    report = convert_spans(source, tmp_path / "o.spacy")
    assert report.bom_stripped and report.crlf_lines == 4 and report.docs == 4


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    source = write_file(tmp_path / "export.json", json.dumps([labelstudio_task("好", [])]))
    convert_spans(source, tmp_path / "o.spacy", show_progress=True)
    assert "export.json" in capsys.readouterr().err


def test_docs_round_trip_through_ner_lines(tmp_path):
    docs, _ = convert(tmp_path, "c.json", CLUENER_SAMPLE)
    lines = list(docs_to_ner_lines(docs[2:3]))
    tags = [line.split("\t")[1] for line in lines]
    assert "".join(line.split("\t")[0] for line in lines) == docs[2].text
    assert tags[9:14] == ["B-scene"] + ["I-scene"] * 4 and tags[20:25] == ["B-scene"] + ["I-scene"] * 4


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_convert_spans_prints_summary_and_writes_report(tmp_path):
    source = write_file(tmp_path / "train.json", CLUENER_SAMPLE + CLUENER_TEST_LINE)
    result = CliRunner().invoke(app, ["convert", "spans", str(source), str(tmp_path / "out.spacy"),
                                      "--report", str(tmp_path / "r.json"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "5 docs" in result.output and "format cluener, detected" in result.output and "scene 2" in result.output
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["task"] == "spans" and report["unlabelled_docs"] == 1 and report["entities_per_label"]["name"] == 3
    assert len(load_docs(tmp_path / "out.spacy")) == 5


def test_cli_convert_spans_errors_exit_1_and_overlap_option(tmp_path):
    source = write_file(tmp_path / "o.jsonl", jsonl(OVERLAPPING))
    output = tmp_path / "out.spacy"
    result = CliRunner().invoke(app, ["convert", "spans", str(source), str(output), "--format", "doccano"])
    assert result.exit_code == 1 and f"{source}:1: overlapping spans" in result.output
    assert "Traceback" not in result.output and not output.exists()
    result = CliRunner().invoke(app, ["convert", "spans", str(source), str(output), "--overlap", "first"])
    assert result.exit_code == 0 and "repaired 1x overlapping span dropped (--overlap first)" in result.output
    result = CliRunner().invoke(app, ["convert", "spans", str(source), str(output), "--overlap", "all"])
    assert result.exit_code == 1 and "unknown overlap policy 'all'" in result.output


def test_read_span_docs_without_a_report():
    with tempfile.TemporaryDirectory() as folder:
        source = write_file(Path(folder) / "c.json", CLUENER_TEST_LINE)
        assert [doc.text for doc in read_span_docs(source)] == ["明天去青石镇看看。"]


# --- property: random texts and disjoint spans round-trip in every format -------------------------

CHARS = st.one_of(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
                  st.characters(blacklist_categories=("Cs",)),
                  st.sampled_from(" \t\n\r\u3000\u2028\ufeff《》"))


@st.composite
def texts_and_spans(draw):
    text = draw(st.text(CHARS, min_size=1, max_size=30).filter(lambda text: text.strip()))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=8)))
    pairs = [(start, end) for start, end in zip(cuts[::2], cuts[1::2]) if start < end]
    labels = st.sampled_from(["name", "address", "人名", "ORG"])
    return text, [(start, end, draw(labels)) for start, end in pairs]


def as_format(file_format: str, text: str, spans: list) -> str:
    """``text`` and ``spans`` written as ``file_format`` does."""
    if file_format == "cluener":
        label: dict = {}
        for start, end, kind in spans:
            label.setdefault(kind, {}).setdefault(text[start:end], []).append([start, end - 1])
        return jsonl({"text": text, "label": label})
    if file_format == "doccano":
        return jsonl({"id": 1, "text": text, "label": [[start, end, kind] for start, end, kind in spans]})
    results = [ls_result(start, end, kind, text[start:end]) for start, end, kind in spans]
    return json.dumps([labelstudio_task(text, results)], ensure_ascii=False, indent=1)


@settings(max_examples=int(os.environ.get("CONVERSION_EXAMPLES", "100")), deadline=None)
@given(texts_and_spans(), st.sampled_from(["cluener", "doccano", "labelstudio"]))
def test_random_disjoint_spans_round_trip(text_spans, file_format):
    text, spans = text_spans
    with tempfile.TemporaryDirectory() as folder:
        source = write_file(Path(folder) / "in.json", as_format(file_format, text, spans))
        report = convert_spans(source, Path(folder) / "out.spacy", show_progress=False)
        doc, = load_docs(Path(folder) / "out.spacy")
    assert doc.text == text and len(doc) == len(text)
    assert entities_of(doc) == sorted(spans)
    assert report.format == file_format or not spans  # without spans CLUENER and doccano read alike
