"""``offset_alignment`` gives exactly spacy-transformers' alignment, and a pipeline using it
annotates exactly as one using spacy-transformers' forward pass."""
from __future__ import annotations

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import spacy
from spacy_transformers.align import get_alignment_via_offset_mapping
from spacy_transformers.layers.transformer_model import huggingface_tokenize
from spacy_transformers.span_getters import configure_strided_spans

from spacy_bert_zh.alignment import offset_alignment, use_offset_alignment
from spacy_bert_zh.span_getters import configure_whole_text_spans

TEXTS = [
    "北京大学的王小明去了上海。",
    "Hello world, 这是 a test of wordpieces: unbelievable tokenization!",
    "表情👨\u200d👩\u200d👧 和 emoji 😀😀 ，全角　空格",
    "  两个空格  然后\n换行\t制表符\r\n",
    "𠀀𠀁 罕见字 and ＵＮＫ ™ ①②",
    "1234567890 3.1415926 2024年12月2日",
    "a",
]


@pytest.fixture(scope="module")
def tokenizer(encoder_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(encoder_path), use_fast=True)


@pytest.mark.parametrize("get_spans", [configure_whole_text_spans(500, 448), configure_whole_text_spans(7, 4),
                                       configure_strided_spans(5, 3)], ids=["whole", "windows", "strided"])
def test_the_alignment_equals_spacy_transformers(tokenizer, get_spans):
    nlp = spacy.blank("zh")   # one token per character, spaces kept as tokens or trailing whitespace
    docs = [nlp.make_doc(text) for text in TEXTS] + [spacy.blank("en").make_doc(TEXTS[1])]
    spans = [span for doc_spans in get_spans(docs) for span in doc_spans]
    offsets = huggingface_tokenize(tokenizer, [span.text for span in spans])["offset_mapping"]
    expected = get_alignment_via_offset_mapping(spans, offsets)
    aligned = offset_alignment(spans, offsets)
    assert aligned.lengths.tolist() == expected.lengths.tolist()
    assert aligned.dataXd.tolist() == expected.dataXd.tolist()
    assert aligned.dataXd.dtype == expected.dataXd.dtype and aligned.lengths.dtype == expected.lengths.dtype


def test_docs_repeated_in_a_batch_and_empty_batches(tokenizer):
    nlp = spacy.blank("zh")
    doc = nlp.make_doc("上海和北京 hello")
    spans = [doc[0:4], doc[2:7], doc[:]]
    offsets = huggingface_tokenize(tokenizer, [span.text for span in spans])["offset_mapping"]
    expected = get_alignment_via_offset_mapping(spans, offsets)
    aligned = offset_alignment(spans, offsets)
    assert aligned.lengths.tolist() == expected.lengths.tolist()
    assert aligned.dataXd.tolist() == expected.dataXd.tolist()
    assert offset_alignment([], numpy.zeros((0, 0, 2), dtype="i")).lengths.tolist() == []


def test_an_empty_doc_has_no_tokens_to_align(tokenizer):
    # spacy-transformers' own alignment raises E1002 on an empty span; here it aligns nothing
    empty, doc = spacy.blank("zh").make_doc(""), spacy.blank("zh").make_doc("北京")
    spans = [empty[:], doc[:]]
    aligned = offset_alignment(spans, huggingface_tokenize(tokenizer, ["", "北京"])["offset_mapping"])
    assert aligned.lengths.tolist() == [1, 1] and aligned.dataXd.tolist() == [5, 6]  # row 2 starts at piece 4: [CLS] 北 京 [SEP]


def test_a_switched_pipeline_predicts_exactly_as_before(untrained_pipeline):
    plain, switched = spacy.load(untrained_pipeline), spacy.load(untrained_pipeline)
    assert use_offset_alignment(switched) == 1 and use_offset_alignment(switched) == 0
    texts = TEXTS + ["北京" * 300]   # a text cut into two overlapping windows
    for before, after in zip(plain.pipe(texts, batch_size=4), switched.pipe(texts, batch_size=4)):
        assert [(e.start, e.end, e.label_) for e in before.ents] == [(e.start, e.end, e.label_) for e in after.ents]
        assert before.cats == after.cats
        assert before._.trf_data.align.lengths.tolist() == after._.trf_data.align.lengths.tolist()
        assert before._.trf_data.align.dataXd.tolist() == after._.trf_data.align.dataXd.tolist()


ALPHABET = "北京大学王明 \u3000\t\nabcXYZ019.,!😀👨\u200d\u0301𠀀™"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=30), min_size=1, max_size=4),
       window=st.integers(2, 12))
def test_the_alignment_equals_spacy_transformers_on_any_text(tokenizer, texts, window):
    nlp = spacy.blank("zh")
    docs = [nlp.make_doc(text) for text in texts]
    spans = [span for doc_spans in configure_strided_spans(window, max(1, window - 2))(docs)
             for span in doc_spans if len(span)]
    if not spans:
        return
    offsets = huggingface_tokenize(tokenizer, [span.text for span in spans])["offset_mapping"]
    expected, aligned = get_alignment_via_offset_mapping(spans, offsets), offset_alignment(spans, offsets)
    assert aligned.lengths.tolist() == expected.lengths.tolist()
    assert aligned.dataXd.tolist() == expected.dataXd.tolist()


def test_the_wordpiece_batch_equals_spacy_transformers(tokenizer):
    # Texts of different lengths (padding), [UNK], emoji, added-token-like text and [PAD] written out.
    from spacy_transformers.data_classes import WordpieceBatch

    from spacy_bert_zh import alignment

    texts = TEXTS + ["文本里写着 [PAD] 和 [CLS]"]
    expected = WordpieceBatch.from_batch_encoding(huggingface_tokenize(tokenizer, texts))
    ours = alignment.wordpiece_batch(tokenizer, alignment.huggingface_tokenize(tokenizer, texts))
    assert ours.strings == expected.strings
    assert ours.lengths == expected.lengths
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        mine, theirs = getattr(ours, name), getattr(expected, name)
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert mine.dtype == theirs.dtype and mine.tolist() == theirs.tolist()


def test_the_split_per_doc_equals_spacy_transformers(untrained_pipeline):
    from spacy_transformers.data_classes import FullTransformerBatch

    from spacy_bert_zh.alignment import OffsetAlignedBatch

    nlp = spacy.load(untrained_pipeline)
    use_offset_alignment(nlp)
    model = nlp.get_pipe("transformer").model
    docs = [nlp.make_doc(text) for text in TEXTS + ["", "北京" * 300]]   # an empty doc, two windows
    batch = model.predict(docs)
    assert isinstance(batch, OffsetAlignedBatch)
    ours, theirs = batch.split_by_doc(), FullTransformerBatch.split_by_doc(batch)
    assert len(ours) == len(theirs) == len(docs)
    for a, b in zip(ours, theirs):
        assert a.align.lengths.tolist() == b.align.lengths.tolist()
        assert a.align.dataXd.tolist() == b.align.dataXd.tolist()
        assert a.wordpieces.input_ids.tolist() == b.wordpieces.input_ids.tolist()
        assert a.wordpieces.strings == b.wordpieces.strings
        assert list(a.model_output) == list(b.model_output)
        for key in a.model_output:
            assert numpy.array_equal(a.model_output[key], b.model_output[key])
