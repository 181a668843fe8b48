"""Property tests of ``annotate_table`` on random web-like texts (hypothesis).

Whatever the texts (empty, whitespace-only, control and format characters, astral characters,
texts far longer than a piece with no sentence end), the output has one row per input, in order,
exact character offsets, no entity on a character the encoder's tokenizer drops, and no error.
"""
from __future__ import annotations

import unicodedata

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacy_bert_zh.annotation import annotate_table, load_pipeline

WEB_CHARACTERS = st.one_of(
    st.sampled_from(list("北京上海阿里巴巴王小明的了是在和。，！？")),  # common CJK and punctuation
    st.sampled_from(["\u200b", "\u200d", "\ufeff", "\x00", "\r", "\n", "\t", " ", "\u3000",
                     "\u00a0", "\u0301", "\ufffd", "😀", "🇨", "𠀋", "Ａ", "１", "a", "Z", "9"]),
    st.characters(codec="utf-8", exclude_categories=("Cs",)),  # anything encodable
)
TEXTS = st.one_of(
    st.none(),
    st.text(WEB_CHARACTERS, max_size=60),
    st.text(st.sampled_from([" ", "\t", "\n", "\u3000", "\u200b"]), max_size=12),
    st.text(st.sampled_from(list("北京大学王小明上海")), min_size=150, max_size=300),  # no sentence end
)


@pytest.fixture(scope="module")
def nlp(untrained_pipeline):
    return load_pipeline(str(untrained_pipeline))


def is_dropped(character: str) -> bool:
    """Characters BERT's tokenizer removes: whitespace, control and format characters."""
    return (character.isspace() or unicodedata.category(character) in ("Cc", "Cf")
            or character in "\x00\ufffd")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(TEXTS, min_size=1, max_size=6), max_chars=st.integers(16, 80),
       batch_size=st.integers(1, 4))
def test_one_row_per_text_exact_offsets_no_entity_on_dropped_characters(nlp, texts, max_chars,
                                                                        batch_size):
    table = pa.table({"id": list(range(len(texts))), "text": pa.array(texts, pa.string())})
    out = annotate_table(nlp, table, max_chars=max_chars, batch_size=batch_size)
    assert out.column("id").to_pylist() == list(range(len(texts)))
    assert out.column("text").to_pylist() == texts
    assert out.column("error").null_count == len(texts)
    for text, entities, label in zip(texts, out.column("entities").to_pylist(),
                                     out.column("label").to_pylist()):
        blank = text is None or not text.strip()
        assert (label is None) == blank
        ends = [(entity["start_char"], entity["end_char"]) for entity in entities]
        assert ends == sorted(ends)
        for entity in entities:
            assert 0 <= entity["start_char"] < entity["end_char"] <= len(text)
            assert text[entity["start_char"]:entity["end_char"]] == entity["text"]
            assert not any(is_dropped(char) for char in entity["text"]), entity
