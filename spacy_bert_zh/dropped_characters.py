"""Which tokens of a doc the BERT encoder sees nothing of (no wordpiece, or only dropped characters).

BERT's tokenizer removes whitespace, control and format characters (U+200B, U+200D, U+FEFF,
U+0000, "\\r\\n", U+3000, ...) before it makes wordpieces, so a spaCy token made only of them has
no wordpiece and spacy-transformers pools a zero vector for it: a tagger has no evidence there.
``unaligned_tokens`` finds those tokens, from the real alignment ``doc._.trf_data.align`` when the
transformer has run, and from a character predicate mirroring BERT's normalizer in any case.
"""
from functools import lru_cache
from typing import List, Optional, Sequence
import unicodedata

import numpy
from spacy.tokens import Doc
from thinc.util import to_numpy

# Cc control, Cf format (U+200B/U+200D/U+FEFF), Co private use, Cs surrogates: removed by the
# ``clean_text`` step of Hugging Face's BertNormalizer. Unassigned code points (Cn) are not: the
# fast tokenizer keeps them as [UNK], so they are not listed. Combining marks (Mn) are removed only
# when the tokenizer strips accents (bert-base-chinese lowercases, so it does; m3e-small keeps
# them as [UNK]); the predicate keeps them and the real alignment catches encoders that drop them.
DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs"})
DROPPED_CHARACTERS = frozenset({"\x00", "\ufffd"})


def unaligned_tokens(doc: Doc) -> numpy.ndarray:
    """Boolean per token: True where the encoder sees nothing (no wordpiece, or dropped characters).

    Both tests are used: the alignment knows what this encoder's tokenizer removed, but an emoji
    sequence "👨\\u200d👩" is one [UNK] whose offsets cover the U+200D, which still carries nothing.
    In training the docs have no ``trf_data`` (spacy-transformers only hands its output to the
    listeners), so there the character predicate decides alone.
    """
    return unaligned_tokens_of([doc])[0]


def unaligned_tokens_of(docs: Sequence[Doc]) -> List[numpy.ndarray]:
    """``unaligned_tokens`` of each doc of a batch, the character test run once over the batch's
    distinct tokens (per doc, it was a fifth of the ner's decoding time under the profiler)."""
    unaligned = dropped_character_tokens_of(docs)
    for doc, doc_unaligned in zip(docs, unaligned):
        counts = wordpiece_counts(doc)
        if counts is not None:
            doc_unaligned |= counts == 0
    return unaligned


def wordpiece_counts(doc: Doc) -> Optional[numpy.ndarray]:
    """Wordpieces aligned to each token, from ``doc._.trf_data``; None when the doc has none."""
    align = getattr(getattr(doc._, "trf_data", None), "align", None)
    if align is None or len(align.lengths) != len(doc):
        return None
    return to_numpy(align.lengths)


def dropped_character_tokens(doc: Doc) -> numpy.ndarray:
    """Boolean per token: True where every character of the token is one BERT drops."""
    return dropped_character_tokens_of([doc])[0]


def dropped_character_tokens_of(docs: Sequence[Doc]) -> List[numpy.ndarray]:
    """``dropped_character_tokens`` of each doc (docs of one vocab), looked up once per distinct
    token text (``ORTH``) of the batch, without building a Token per token or the doc's text (in
    annotate that was 15% of an int8 run)."""
    if not docs:
        return []
    orths = [doc.to_array("ORTH").reshape(-1) for doc in docs]
    unique, inverse = numpy.unique(numpy.concatenate(orths), return_inverse=True)
    strings = docs[0].vocab.strings
    dropped = numpy.fromiter((is_dropped_text(strings[int(orth)]) for orth in unique), bool, len(unique))
    return numpy.split(dropped[inverse.reshape(-1)], numpy.cumsum([len(doc_orths) for doc_orths in orths])[:-1])


@lru_cache(maxsize=65536)
def is_dropped_text(text: str) -> bool:
    """True when BERT's tokenizer removes every character of ``text``."""
    return all(is_dropped_character(char) for char in text)


def dropped_characters(text: str) -> numpy.ndarray:
    """Boolean per character of ``text``: True where BERT's tokenizer removes it."""
    codes = numpy.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    unique, inverse = numpy.unique(codes, return_inverse=True)
    dropped = numpy.fromiter((is_dropped_character(chr(code)) for code in unique), bool, len(unique))
    return dropped[inverse.reshape(-1)]


@lru_cache(maxsize=4096)
def is_dropped_character(char: str) -> bool:
    """True for a character BERT's normalizer removes: whitespace, Cc, Cf, Co, Cs, U+0000, U+FFFD."""
    return (char.isspace() or char in DROPPED_CHARACTERS
            or unicodedata.category(char) in DROPPED_CATEGORIES)
