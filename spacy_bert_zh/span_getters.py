"""Span getters: how a doc is cut into the windows the transformer reads.

``spacy_bert_zh.whole_text_spans.v1`` gives a doc that fits in ``max_window`` tokens one window (the
whole text, as a plain Hugging Face script would), and cuts a longer doc into windows of
``max_window`` tokens every ``stride`` tokens. Chinese text is one wordpiece per character, so a
window of 500 characters stays under BERT's 512 positions. Compared with spacy-transformers'
``strided_spans.v1`` at window 128 / stride 96, a 340-character paragraph costs one forward
pass over 340 positions instead of four windows over 512 (a third computed twice).
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Iterable, List

from spacy.tokens import Doc, Span
from spacy_transformers.util import registry


@registry.span_getters("spacy_bert_zh.whole_text_spans.v1")
def configure_whole_text_spans(max_window: int = 500, stride: int = 448) -> Callable:
    """Whole docs up to ``max_window`` tokens; longer ones in windows overlapping by ``max_window - stride``."""
    if not 0 < stride <= max_window:
        raise ValueError(f"stride must be in 1..max_window ({max_window}), not {stride}")
    return partial(whole_text_spans, max_window=max_window, stride=stride)


def whole_text_spans(docs: Iterable[Doc], max_window: int, stride: int) -> List[List[Span]]:
    """For each doc: ``[doc[:]]`` if it fits, else windows starting every ``stride`` tokens
    until one reaches the end of the doc."""
    spans = []
    for doc in docs:
        windows = []
        for start in range(0, max(len(doc), 1), stride):
            windows.append(doc[start:start + max_window])
            if start + max_window >= len(doc):
                break
        spans.append(windows)
    return spans
