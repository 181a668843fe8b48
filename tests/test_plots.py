"""Tests for ``evaluate --plots`` (plots.py) and the counts it draws (evaluation.py).

The confusion matrix and gold counts are checked on hand-made examples; the font on its glyphs
(read with fontTools, not with the code under test); the PNGs as images; the command end to end
on the untrained pipeline and a slice of the embedded corpus (plumbing, not accuracy).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin, Span
from spacy.training import Example
from typer.testing import CliRunner

from spacy_bert_zh import plots
from spacy_bert_zh.cli import app
from spacy_bert_zh.evaluation import confusion_matrix, evaluate_pipeline, gold_entity_counts
from spacy_bert_zh.training import categorical_accuracy

CLASSES = ["书籍", "平板", "手机", "正面", "负面"]


def cats_example(nlp, gold: str | None, predicted: dict[str, float], labels=CLASSES) -> Example:
    reference = nlp.make_doc("这本书很好看")
    if gold is not None:
        reference.cats = {label: float(label == gold) for label in labels}
    doc = nlp.make_doc("这本书很好看")
    doc.cats = predicted
    return Example(doc, reference)


def scores_fixture() -> dict:
    return {"ner": {"docs": 12, "p": 0.5, "r": 0.6, "f": 0.55, "gold_per_label": {"LOC": 10, "PER": 4},
                    "per_label": {"LOC": {"p": 0.9, "r": 0.8, "f": 0.85}, "PER": {"p": 0.4, "r": 0.5, "f": 0.45}}},
            "textcat": {"docs": 9, "accuracy": 5 / 9,
                        "confusion": {"labels": CLASSES[:3], "matrix": [[3, 1, 0], [1, 2, 0], [0, 2, 0]]}}}


def assert_png(path: Path, min_bytes: int = 10_000) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > min_bytes
    image = imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 400 and image.shape[2] in (3, 4)
    assert image[..., :3].std() > 0.05   # not a blank canvas


# --- the counts ---------------------------------------------------------------------------

def test_confusion_matrix_counts_gold_rows_against_top_predicted_class():
    nlp = spacy.blank("zh")
    top = lambda label: {name: (0.9 if name == label else 0.025) for name in CLASSES}  # noqa: E731
    examples = [cats_example(nlp, "书籍", top("书籍")), cats_example(nlp, "书籍", top("书籍")),
                cats_example(nlp, "书籍", top("手机")), cats_example(nlp, "平板", top("书籍")),
                cats_example(nlp, "负面", top("正面")), cats_example(nlp, "负面", top("负面")),
                cats_example(nlp, None, top("书籍")),                      # no gold cats: left out
                cats_example(nlp, "其他", top("平板"), labels=[*CLASSES, "其他"])]  # gold outside labels
    confusion = confusion_matrix(examples, CLASSES)
    assert confusion["labels"] == [*CLASSES, "其他"]
    assert confusion["matrix"] == [
        [2, 0, 1, 0, 0, 0],   # 书籍
        [1, 0, 0, 0, 0, 0],   # 平板
        [0, 0, 0, 0, 0, 0],   # 手机
        [0, 0, 0, 0, 0, 0],   # 正面
        [0, 0, 0, 1, 1, 0],   # 负面
        [0, 1, 0, 0, 0, 0],   # 其他
    ]
    annotated = [eg for eg in examples if eg.reference.cats]
    diagonal = sum(confusion["matrix"][i][i] for i in range(len(confusion["labels"])))
    assert diagonal / len(annotated) == categorical_accuracy(annotated)


def test_gold_entity_counts_per_label():
    nlp = spacy.blank("zh")
    doc = nlp.make_doc("王小明在北京和上海工作")
    doc.ents = [Span(doc, 0, 3, "PER"), Span(doc, 4, 6, "LOC"), Span(doc, 7, 9, "LOC")]
    other = nlp.make_doc("李雷")
    other.ents = [Span(other, 0, 2, "PER")]
    examples = [Example(nlp.make_doc(d.text), d) for d in (doc, other)]
    assert gold_entity_counts(examples) == {"LOC": 2, "PER": 2}


# --- the font -------------------------------------------------------------------------------

def test_chosen_font_has_glyphs_for_the_chinese_labels():
    from fontTools.ttLib import TTFont

    text = "".join(CLASSES) + "体育财经科技旅游中性"
    font = plots.cjk_font([text])
    assert font is not None, "no CJK font: install the [plots] extra (pylopdf-fonts-zh-cn)"
    cmap = TTFont(font, fontNumber=0, lazy=True).getBestCmap()
    assert [char for char in text if ord(char) not in cmap] == []
    assert set(plots.missing_glyphs(plots.default_font(), [text])) == set(text), \
        "matplotlib's default font has no Chinese glyphs, hence the CJK font"


def test_font_settings_make_matplotlib_find_the_cjk_font():
    from matplotlib import font_manager

    settings = plots.font_settings(CLASSES)
    family = settings["font.family"][0]
    found = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    assert Path(found).resolve() == plots.cjk_font(CLASSES).resolve()
    assert plots.font_settings(["PER", "LOC"]) == {}   # ASCII labels: default font


@pytest.mark.filterwarnings("error:Glyph")
def test_without_a_cjk_font_a_warning_is_printed_once(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(plots, "packaged_fonts", lambda: [])
    monkeypatch.setattr(plots, "system_fonts", lambda: [])
    plots.warn_no_font.cache_clear()
    try:
        written = plots.write_plots(scores_fixture(), tmp_path)
        plots.write_plots(scores_fixture(), tmp_path)
    finally:
        plots.warn_no_font.cache_clear()
    assert capsys.readouterr().err.count("may render as boxes") == 1
    assert plots.font_settings(CLASSES) is None
    assert [path.name for path in written] == [plots.NER_PLOT, plots.CONFUSION_PLOT]


def test_missing_matplotlib_names_the_extra_before_the_pipeline_runs(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plots.PlotsError, match=r"spacy-bert-zh\[plots\]"):
        evaluate_pipeline(tmp_path / "no-such-pipeline", [tmp_path], plots=tmp_path / "plots")


# --- the PNGs -------------------------------------------------------------------------------

def test_write_plots_writes_valid_pngs(tmp_path):
    written = plots.write_plots(scores_fixture(), tmp_path / "plots")
    assert written == [tmp_path / "plots" / plots.NER_PLOT, tmp_path / "plots" / plots.CONFUSION_PLOT]
    for path in written:
        assert_png(path)


def test_write_plots_skips_what_was_not_scored(tmp_path):
    assert plots.write_plots({"ner": None, "textcat": scores_fixture()["textcat"]}, tmp_path) == \
        [tmp_path / plots.CONFUSION_PLOT]
    assert plots.write_plots({"ner": None, "textcat": None}, tmp_path / "none") == []


def test_evaluate_cli_writes_plots_from_its_own_examples(untrained_pipeline, sample_corpus, tmp_path):
    """20 NER sentences and 20 classified texts of the embedded dev set (classes the untrained
    pipeline does not know: they get rows of their own)."""
    nlp = spacy.blank("zh")
    data = tmp_path / "dev"
    data.mkdir()
    for name in ("ner", "cls"):
        docs = list(DocBin().from_disk(sample_corpus / "dev" / f"{name}.spacy").get_docs(nlp.vocab))[:20]
        DocBin(docs=docs, store_user_data=True).to_disk(data / f"{name}.spacy")
    result = CliRunner().invoke(app, ["evaluate", str(untrained_pipeline), str(data), "--output",
                                      str(tmp_path / "scores.json"), "--plots", str(tmp_path / "plots")],
                                env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.output
    assert "plots written to" in result.output
    scores = json.loads((tmp_path / "scores.json").read_text(encoding="utf-8"))
    confusion = scores["textcat"]["confusion"]
    assert confusion["labels"][:3] == ["正面", "负面", "中性"]
    assert sum(map(sum, confusion["matrix"])) == scores["textcat"]["docs"] == 20
    assert sum(scores["ner"]["gold_per_label"].values()) > 0
    for name in (plots.NER_PLOT, plots.CONFUSION_PLOT):
        assert_png(tmp_path / "plots" / name)
