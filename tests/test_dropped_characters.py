"""Characters BERT's tokenizer drops (whitespace, U+200B, U+0000, ...) are never entities: the
predicate, the token mask, and the untrained-but-randomised test pipeline through ``nlp(text)``,
``nlp.pipe`` and ``spacy.load``."""
from types import SimpleNamespace

import numpy
import pytest
import spacy
from spacy_transformers.pipeline_component import install_extensions
from thinc.api import Ragged

from spacy_bert_zh.dropped_characters import (dropped_character_tokens, dropped_characters,
                                              is_dropped_character, unaligned_tokens,
                                              unaligned_tokens_of)

# What m3e-small's tokenizer removes, written out by hand so that the pipeline test does not
# check the module against itself.
DROPPED = frozenset("\u200b\u200d\x00\ufeff\r\n\t \u3000\xa0\ufffd\ue000")
KEPT = ("北", "a", "，", "👨", "\u0301", "\u0378")  # a lone combining mark and a Cn become [UNK]

TEXTS = ["李明\u200b在北京工作", "👨\u200d👩去上海看望王芳", "王芳\x00在北京", "\ufeff北京大学的李明",
         "北京\r\n上海", "北京" + " " * 10 + "上海", "北京\t\t上海", "北京\u3000上海", "\u200b",
         "\r\n", " " * 10, "中国\ufeff\u200b人民银行\u200d行长"]


def test_the_predicate_drops_whitespace_control_and_format_characters():
    assert all(is_dropped_character(char) for char in DROPPED)
    assert not any(is_dropped_character(char) for char in KEPT)
    assert dropped_characters("北\u200bx\r\n").tolist() == [False, True, False, True, True]
    assert dropped_characters("").shape == (0,)


def test_the_predicate_mirrors_the_encoder_tokenizer(encoder_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path), use_fast=True)
    for char in sorted(DROPPED) + list(KEPT):
        assert is_dropped_character(char) == (tokenizer.tokenize(char) == []), repr(char)


def test_tokens_made_only_of_dropped_characters_are_masked():
    doc = spacy.blank("zh").make_doc("北京\r\n上海\u200b  ")
    assert [t.text for t in doc] == ["北", "京", "\r\n", "上", "海", "\u200b", " "]
    assert dropped_character_tokens(doc).tolist() == [False, False, True, False, False, True, True]
    mixed = spacy.blank("en").make_doc("ab\u200b cd")
    assert dropped_character_tokens(mixed).tolist() == [False, False]
    assert unaligned_tokens(spacy.blank("zh").make_doc("")).shape == (0,)


def test_the_transformer_alignment_adds_tokens_without_wordpiece():
    install_extensions()  # doc._.trf_data
    doc = spacy.blank("zh").make_doc("a\u0301b\u200b")
    doc._.trf_data = SimpleNamespace(align=Ragged(numpy.zeros(3, "i"), numpy.asarray([1, 0, 1, 1], "i")))
    assert unaligned_tokens(doc).tolist() == [False, True, False, True]
    doc._.trf_data = SimpleNamespace(align=Ragged(numpy.zeros(2, "i"), numpy.asarray([1, 1], "i")))
    assert unaligned_tokens(doc).tolist() == [False, False, False, True]  # not this doc's: ignored


def test_a_batch_of_docs_is_masked_doc_by_doc():
    # One lookup over the batch's distinct tokens must still give each doc its own mask, and
    # each doc's alignment (an empty doc and one without trf_data among them).
    install_extensions()
    zh = spacy.blank("zh")
    docs = [zh.make_doc(text) for text in ("北京\r\n上海\u200b  ", "", "\u200b京", "上海")]
    docs[3]._.trf_data = SimpleNamespace(align=Ragged(numpy.zeros(1, "i"), numpy.asarray([1, 0], "i")))
    assert [mask.tolist() for mask in unaligned_tokens_of(docs)] == [
        [False, False, True, False, False, True, True], [], [True, False], [False, True]]
    assert unaligned_tokens_of([]) == []


@pytest.fixture(scope="module")
def nlp(untrained_pipeline):
    return spacy.load(untrained_pipeline)


def assert_no_entity_on_dropped_characters(docs) -> None:
    for doc in docs:
        for ent in doc.ents:
            assert not [t.text for t in ent if set(t.text) & DROPPED], (doc.text, ent.text)
    # the random ner output labels nearly every character, so a leak would show
    assert all(doc.ents for doc in docs if not set(doc.text) <= DROPPED)


def test_no_entity_on_dropped_characters_through_nlp(nlp):
    assert_no_entity_on_dropped_characters([nlp(text) for text in TEXTS])


def test_no_entity_on_dropped_characters_through_pipe(nlp):
    assert_no_entity_on_dropped_characters(list(nlp.pipe(TEXTS, batch_size=4)))
    assert_no_entity_on_dropped_characters(list(nlp.pipe(["".join(TEXTS)])))
