"""``spacy_bert_zh.whole_text_spans.v1``: whole docs when they fit, overlapping windows when not."""
from __future__ import annotations

import pytest
import spacy
from spacy_transformers.util import registry

from spacy_bert_zh.span_getters import configure_whole_text_spans


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("zh")


def test_registered_under_its_versioned_name():
    assert registry.span_getters.get("spacy_bert_zh.whole_text_spans.v1") is configure_whole_text_spans


def test_a_doc_that_fits_is_one_window(nlp):
    get_spans = configure_whole_text_spans(max_window=10, stride=8)
    docs = [nlp("北京大学"), nlp("一二三四五六七八九十"), nlp("")]
    assert [[(span.start, span.end) for span in spans] for spans in get_spans(docs)] == \
        [[(0, 4)], [(0, 10)], [(0, 0)]]


def test_a_longer_doc_is_covered_by_overlapping_windows(nlp):
    get_spans = configure_whole_text_spans(max_window=10, stride=8)
    doc = nlp("一" * 25)
    spans = get_spans([doc])[0]
    assert [(span.start, span.end) for span in spans] == [(0, 10), (8, 18), (16, 25)]
    covered = {i for span in spans for i in range(span.start, span.end)}
    assert covered == set(range(len(doc)))


def test_bad_stride_is_an_error():
    with pytest.raises(ValueError, match="stride"):
        configure_whole_text_spans(max_window=10, stride=11)
