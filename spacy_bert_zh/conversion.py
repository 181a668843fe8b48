"""Convert Chinese corpora to spaCy DocBin files: character-per-line NER files, labelled texts and
character-span JSON (CLUENER, doccano, Label Studio).

Docs keep the original text exactly: NER and span docs hold one token per character and no spaces,
classification docs are tokenized by ``spacy.blank("zh")`` (the character segmenter). Bad input
raises ``ConversionError`` naming ``file:line``; repairs and skipped rows are counted in the
``ConversionReport``. Nothing is written unless the whole file converted.

This module gathers the public names of ``ner_conversion``, ``cls_conversion``, ``span_conversion``
and their shared ``conversion_io``.
"""
from __future__ import annotations

from .cls_conversion import CLS_ATTRS, CLS_FORMATS, convert_cls, read_cls_docs
from .conversion_io import ConversionError, ConversionReport
from .ner_conversion import NER_ATTRS, convert_ner, docs_to_ner_lines, read_ner_docs, write_ner_file
from .span_conversion import OVERLAP_POLICIES, SPAN_FORMATS, convert_spans, read_span_docs

__all__ = [
    "CLS_ATTRS", "CLS_FORMATS", "NER_ATTRS", "OVERLAP_POLICIES", "SPAN_FORMATS", "ConversionError",
    "ConversionReport", "convert_cls", "convert_ner", "convert_spans", "docs_to_ner_lines", "read_cls_docs",
    "read_ner_docs", "read_span_docs", "write_ner_file",
]
