"""Token-to-wordpiece alignment from the tokenizer's character offsets, as array operations.

spacy-transformers aligns a batch with ``get_alignment_via_offset_mapping``, which builds a spaCy
``Token`` and a Python set for every token of every window. ``offset_alignment`` computes the same
``Ragged`` over the whole batch at once (on annotate's batches of 600 texts: 1.3 against 4.7 us a
character, on a loaded 2-core CPU); ``tests/test_alignment.py`` checks the two equal on spaces,
Latin words cut into several wordpieces, emoji, [UNK] and overlapping windows. Unlike the
original, it also takes an empty span (no tokens to align) instead of raising E1002.
``forward_with_offset_alignment`` is spacy-transformers' ``TransformerModel`` forward pass with
it; its output, an ``OffsetAlignedBatch``, is split per doc without a ``Token`` per token either,
and its ``WordpieceBatch`` is built from arrays (``wordpiece_batch``), the same strings and lengths.
The rules it reproduces:

* a token covers the characters from its start to one past its end (so the character after a
  token, its trailing space, counts as the token's); where two tokens touch, the later one wins;
* a wordpiece aligns to every token one of its characters falls to; special and padding pieces
  have no characters;
* tokens are numbered doc by doc, in the order the docs first appear among the spans, every token
  of those docs included; a token seen by several overlapping windows gets the wordpieces of all.
"""
from __future__ import annotations

import functools
from typing import Callable, List, Tuple

import numpy
import torch
from spacy.tokens import Doc, Span
from spacy_transformers.align import get_alignment
from spacy_transformers.data_classes import FullTransformerBatch, TransformerData, WordpieceBatch
from spacy_transformers.truncate import truncate_oversize_splits
from thinc.api import Model, NumpyOps, torch2xp
from thinc.types import Ragged
from transformers import BatchEncoding, PreTrainedTokenizerFast
from transformers.utils import ModelOutput


def offset_alignment(spans: List[Span], offset_mapping: numpy.ndarray) -> Ragged:
    """For each token of the spans' docs, the indices of its wordpieces in the flattened batch
    (``offset_mapping``: spans x wordpieces x (start, end), characters relative to the span)."""
    if len(spans) != len(offset_mapping):
        raise ValueError("Cannot align batches of different sizes.")
    first_token = doc_token_offsets(spans)
    n_tokens = sum(len(doc) for doc in first_token)
    n_wordpieces = offset_mapping.shape[1] if len(spans) else 0
    tokens, wordpieces = [], []
    for i, span in enumerate(spans):
        if len(span):
            token, wordpiece = span_alignment(span, numpy.asarray(offset_mapping[i]))
            tokens.append(token + first_token[span.doc] + span.start)
            wordpieces.append(wordpiece + i * n_wordpieces)
    if not tokens:
        return Ragged(numpy.zeros((0,), dtype="i"), numpy.zeros((n_tokens,), dtype="i"))
    # one key per (token, wordpiece) pair: unique() drops repeats and sorts by token, then wordpiece
    keys = numpy.unique(numpy.concatenate(tokens).astype(numpy.int64) * (len(spans) * n_wordpieces)
                        + numpy.concatenate(wordpieces))
    token_of_pair, wordpiece_of_pair = numpy.divmod(keys, len(spans) * n_wordpieces)
    lengths = numpy.bincount(token_of_pair, minlength=n_tokens)
    return Ragged(wordpiece_of_pair.astype("i"), lengths.astype("i"))


def doc_token_offsets(spans: List[Span]) -> dict[Doc, int]:
    """The batch-wide number of each doc's first token, docs in order of first appearance."""
    offsets: dict[Doc, int] = {}
    total = 0
    for span in spans:
        if span.doc not in offsets:
            offsets[span.doc] = total
            total += len(span.doc)
    return offsets


def span_alignment(span: Span, offsets: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(token, wordpiece) pairs of one span, tokens relative to the span's first token."""
    doc = span.doc
    starts_and_lengths = doc.to_array(["IDX", "LENGTH"])[span.start:span.end].astype(numpy.int64)
    token_starts, token_lengths = starts_and_lengths[:, 0] - starts_and_lengths[0, 0], starts_and_lengths[:, 1]
    token_ends = token_starts + token_lengths                 # inclusive: one past the token
    n_chars = int(token_ends[-1]) + 1
    piece_starts, piece_ends = offsets[:, 0].astype(numpy.int64), offsets[:, 1].astype(numpy.int64)
    counts = numpy.clip(piece_ends - piece_starts, 0, None)
    wordpiece = numpy.repeat(numpy.arange(len(offsets)), counts)
    first = numpy.repeat(numpy.cumsum(counts) - counts, counts)
    char = numpy.repeat(piece_starts, counts) + numpy.arange(len(wordpiece)) - first
    token = numpy.searchsorted(token_starts, char, side="right") - 1   # the last token starting at or before
    inside = (char >= 0) & (char < n_chars) & (token >= 0)
    inside[inside] &= char[inside] <= token_ends[token[inside]]
    return token[inside], wordpiece[inside]


def forward_with_offset_alignment(model: Model, docs: List[Doc], is_train: bool) -> Tuple[FullTransformerBatch, Callable]:
    """spacy-transformers' ``TransformerModel`` forward pass, aligned by ``offset_alignment``
    (tokenizers without offsets keep spacy-transformers' ``get_alignment``)."""
    tokenizer = model.tokenizer
    nested_spans = model.attrs["get_spans"](docs)
    flat_spans = [span for doc_spans in nested_spans for span in doc_spans]
    batch_encoding = huggingface_tokenize(tokenizer, [span.text for span in flat_spans])
    wordpieces = wordpiece_batch(tokenizer, batch_encoding)
    if "offset_mapping" in batch_encoding:
        align = offset_alignment(flat_spans, batch_encoding["offset_mapping"])
    else:
        align = get_alignment(flat_spans, wordpieces.strings, tokenizer.all_special_tokens)
    wordpieces, align = truncate_oversize_splits(wordpieces, align, tokenizer.model_max_length)
    model_output, backprop_tensors = model.layers[0](wordpieces, is_train)
    output = OffsetAlignedBatch(spans=nested_spans, wordpieces=wordpieces, model_output=model_output,
                                align=align)

    def backprop(d_output: FullTransformerBatch) -> List[Doc]:
        backprop_tensors(d_output.model_output)
        return docs

    return output, backprop


def huggingface_tokenize(tokenizer, texts: List[str]) -> BatchEncoding:
    """spacy-transformers' ``huggingface_tokenize`` without its wordpiece strings (``wordpiece_batch``
    makes them): the same tokenizer call."""
    return tokenizer(texts, add_special_tokens=True, return_attention_mask=True,
                     return_offsets_mapping=isinstance(tokenizer, PreTrainedTokenizerFast),
                     return_tensors="np", return_token_type_ids=None, padding="longest")


def wordpiece_batch(tokenizer, batch_encoding: BatchEncoding) -> WordpieceBatch:
    """spacy-transformers' ``WordpieceBatch.from_batch_encoding`` of its ``huggingface_tokenize``
    output: the same strings (``convert_ids_to_tokens`` of each row, looked up in one array of
    the vocabulary's) and lengths (pieces that are not padding), without a Python call per
    sequence and a comparison per piece."""
    input_ids = batch_encoding["input_ids"]
    token_type_ids = batch_encoding.get("token_type_ids")
    ops = NumpyOps()
    return WordpieceBatch(
        strings=vocabulary_strings(tokenizer)[input_ids].tolist(),
        input_ids=ops.asarray(input_ids, dtype=input_ids.dtype),
        attention_mask=ops.asarray2f(batch_encoding["attention_mask"]),
        lengths=(input_ids != tokenizer.pad_token_id).sum(axis=1).tolist(),
        token_type_ids=None if token_type_ids is None else ops.asarray(token_type_ids, dtype=token_type_ids.dtype))


@functools.lru_cache(maxsize=16)
def vocabulary_strings(tokenizer) -> numpy.ndarray:
    """The string of every wordpiece id of ``tokenizer`` (added tokens included), as one array."""
    return numpy.asarray(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))), dtype=object)


class OffsetAlignedBatch(FullTransformerBatch):
    """A ``FullTransformerBatch`` whose ``split_by_doc`` finds each doc's tokens from
    ``doc_token_offsets`` (spacy-transformers' builds a dict keyed by every ``Token`` of the
    batch, about 5% of a 2-layer student's annotate time); the same ``TransformerData`` per doc."""

    def split_by_doc(self) -> List[TransformerData]:
        first_token = doc_token_offsets([span for doc_spans in self.spans for span in doc_spans])
        model_output = outputs_as_arrays(self.model_output)
        outputs, start, prev_tokens = [], 0, 0
        for doc_spans in self.spans:
            if len(doc_spans) == 0 or len(doc_spans[0]) == 0:
                outputs.append(TransformerData.empty())
                continue
            doc_offset = first_token[doc_spans[0].doc]
            end = start + len(doc_spans)
            align = self.align[doc_offset + doc_spans[0].start:doc_offset + doc_spans[-1].end]
            align.data = align.data - prev_tokens
            wordpieces = self.wordpieces[start:end]
            doc_output = ModelOutput()
            for key, value in model_output.items():
                doc_output[key] = [t[start:end] for t in value] if isinstance(value, list) else value[start:end]
            outputs.append(TransformerData(wordpieces=wordpieces, model_output=doc_output, align=align))
            prev_tokens += wordpieces.input_ids.size
            start = end
        return outputs


def outputs_as_arrays(model_output) -> dict:
    """The tensors of a model output as arrays, and the tuples of per-sequence tensors (hidden
    states) as lists of arrays; whatever else it holds is left out, as spacy-transformers does."""
    last_hidden_state = model_output.last_hidden_state
    arrays = {}
    for key, output in model_output.items():
        if isinstance(output, torch.Tensor):
            arrays[key] = torch2xp(output)
        elif (isinstance(output, tuple) and all(isinstance(t, torch.Tensor) for t in output)
              and all(t.shape[0] == last_hidden_state.shape[0] for t in output)):
            arrays[key] = [torch2xp(t) for t in output]
    return arrays


def use_offset_alignment(nlp) -> int:
    """Switch the pipeline's spacy-transformers ``TransformerModel`` layers to
    ``forward_with_offset_alignment``, in place (same output); return how many were switched."""
    from spacy_transformers.layers import transformer_model

    switched = 0
    for _, pipe in nlp.pipeline:
        for node in pipe.model.walk() if hasattr(pipe, "model") else ():
            if getattr(node, "_func", None) is transformer_model.forward:
                node._func = forward_with_offset_alignment   # thinc runs a layer's forward as _func
                switched += 1
    return switched
