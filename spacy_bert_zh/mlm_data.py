"""Masked-language-model training data: texts streamed from a file, cut into sequences, masked.

The path of a batch: ``training_texts`` (a Parquet column read by record batch, or .txt lines;
the held-out head of the file skipped; the file read again when one pass is not enough) →
``encode_texts`` (fast-tokenizer pieces, grouped by word; texts longer than a sequence cut into
several, at word boundaries where a word fits) → ``shuffled`` (a seeded buffer) → ``batches`` →
``mask_batch`` (BERT's rule: about ``mask_prob`` of the pieces are chosen, 80% of them become
``[MASK]``, 10% a random token, 10% stay as they are; ``[CLS]``, ``[SEP]``, ``[PAD]`` and the
tokenizer's other special tokens, ``[UNK]`` included, are never chosen).

Whole-word masking: a segmenter (jieba) cuts each text into words, each piece belongs to the word
of its characters (words that share a piece are merged), and words are chosen whole, in random
order, until the share is reached: all pieces of a word are masked or none. Without it each piece
is its own word (character masking, since a Chinese character is one piece).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence as Seq

Segmenter = Callable[[str], list]   # text -> [(start, end)] character spans of its words
SEGMENTERS = ("jieba",)
IGNORE = -100                       # label of positions without a prediction (PyTorch's ignore_index)
ENCODE_BATCH = 256                  # texts tokenized at a time


class PretrainError(ValueError):
    """The encoder, the texts or the options cannot be used (the message says which and why)."""


@dataclass
class Sequence:
    """One training sequence: piece ids without [CLS]/[SEP], the word each piece belongs to (-1:
    never masked), and whether it is the first sequence of its text."""

    ids: list
    words: list
    first: bool = True


@dataclass
class MaskedBatch:
    """Tensors for ``BertForMaskedLM``: labels hold the original id where a piece was chosen."""

    input_ids: "object"
    attention_mask: "object"
    labels: "object"
    chosen: int          # pieces chosen (masked, replaced or kept)
    candidates: int      # pieces that could have been chosen


# --- texts ---------------------------------------------------------------------------------------


def iter_texts(path: Path, text_column: str = "text") -> Iterator[str]:
    """The non-blank texts of a Parquet column (streamed by record batch) or .txt file, in file order."""
    from .vocab_extension import VocabExtensionError, read_texts

    try:
        for text in read_texts(Path(path), text_column, show_progress=False):
            if text and text.strip():
                yield text
    except VocabExtensionError as error:
        raise PretrainError(str(error)) from None


def training_texts(path: Path, text_column: str, skip: int = 0,
                   passes: Optional[list] = None) -> Iterator[str]:
    """``iter_texts`` without its first ``skip`` texts (held out), again from the start after the
    end, for ever; ``passes`` (a one-item list) counts the passes begun."""
    passes = passes if passes is not None else [0]
    while True:
        passes[0] += 1
        seen = 0
        for index, text in enumerate(iter_texts(path, text_column)):
            if index >= skip:
                seen += 1
                yield text
        if not seen:
            raise PretrainError(f"TEXTS {path} has no texts to train on after the {skip} held out "
                                f"(lower --holdout)")


def shuffled(items: Iterable, buffer_size: int, rng: random.Random) -> Iterator:
    """``items`` in a random order drawn from a buffer of ``buffer_size`` (streaming shuffle)."""
    buffer = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        index = rng.randrange(buffer_size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer


def batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- sequences -----------------------------------------------------------------------------------


def load_segmenter(name: str = "jieba") -> Segmenter:
    """The word segmenter of ``--whole-word``: ``text -> [(start, end)]``."""
    if name not in SEGMENTERS:
        raise PretrainError(f"unknown segmenter {name!r} (known: {', '.join(SEGMENTERS)})")
    try:
        import jieba
    except ImportError:
        raise PretrainError("--whole-word needs the jieba word segmenter: pip install jieba "
                            "(or pip install 'spacy-bert-zh[pretrain]')") from None
    jieba.setLogLevel(logging.WARNING)
    return lambda text: [(start, end) for _, start, end in jieba.tokenize(text)]


def encode_texts(tokenizer, texts: Seq[str], max_length: int,
                 segmenter: Optional[Segmenter] = None) -> Iterator[Sequence]:
    """The sequences of ``texts``: at most ``max_length - 2`` pieces each (room for [CLS] and
    [SEP]); a longer text gives several, never dropped."""
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    never = set(tokenizer.all_special_ids)
    for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"]):
        if segmenter is None:
            words = list(range(len(ids)))
        else:
            words = piece_words(offsets, segmenter(text), len(text))
        words = [-1 if token in never else word for token, word in zip(ids, words)]
        for index, (start, end) in enumerate(chunk_bounds(words, max_length - 2)):
            yield Sequence(ids[start:end], words[start:end], first=index == 0)


def piece_words(offsets: Seq, spans: Seq, n_chars: int) -> list:
    """The word of each piece, given the pieces' character offsets and the words' spans; words
    that share a piece are one word; characters outside every span are words of their own."""
    char_word = [-1] * n_chars
    for index, (start, end) in enumerate(spans):
        char_word[start:end] = [index] * (end - start)
    extra = len(spans)
    for char, word in enumerate(char_word):
        if word < 0:
            char_word[char], extra = extra, extra + 1
    parent = list(range(extra))

    def find(word: int) -> int:
        while parent[word] != word:
            parent[word] = parent[parent[word]]
            word = parent[word]
        return word

    for start, end in offsets:
        if start >= n_chars:
            continue
        covered = {find(word) for word in char_word[start:max(end, start + 1)]}
        root = min(covered)
        for word in covered:
            parent[word] = root
    return [find(char_word[start]) if start < n_chars else -1 for start, _ in offsets]


def chunk_bounds(words: Seq[int], size: int) -> list:
    """Cut ``len(words)`` pieces into runs of at most ``size``, moving a cut back to the start of a
    word it would split (unless the word alone is longer than ``size``)."""
    bounds, start, n = [], 0, len(words)
    while start < n:
        end = min(start + size, n)
        if end < n and words[end] >= 0 and words[end] == words[end - 1]:
            cut = end
            while cut > start and words[cut] == words[cut - 1]:
                cut -= 1
            end = cut if cut > start else end
        bounds.append((start, end))
        start = end
    return bounds


# --- masking -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskTokens:
    """The ids masking needs: [CLS], [SEP], [PAD], [MASK] and the ids a random replacement draws from."""

    cls: int
    sep: int
    pad: int
    mask: int
    replacements: tuple

    @classmethod
    def of(cls, tokenizer) -> "MaskTokens":
        from .vocab_extension import UNUSED_SLOT

        special = set(tokenizer.all_special_ids)
        vocab = tokenizer.get_vocab()
        ordinary = tuple(sorted(i for token, i in vocab.items()
                                if i not in special and not UNUSED_SLOT.match(token)))
        return cls(tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                   tokenizer.mask_token_id, ordinary)


def choose_words(words: Seq[int], mask_prob: float, rng: random.Random) -> list:
    """Positions to predict: whole words in random order until ``round(mask_prob * pieces)`` (at
    least 1) are chosen; a word that would overshoot is passed over. ``-1`` is never chosen."""
    positions: dict = {}
    for position, word in enumerate(words):
        if word >= 0:
            positions.setdefault(word, []).append(position)
    n_candidates = sum(len(group) for group in positions.values())
    if not n_candidates:
        return []
    target = max(1, round(mask_prob * n_candidates))
    order = list(positions)
    rng.shuffle(order)
    chosen: list = []
    for word in order:
        if len(chosen) + len(positions[word]) <= target:
            chosen.extend(positions[word])
            if len(chosen) == target:
                break
    return sorted(chosen)


def mask_batch(sequences: Seq[Sequence], tokens: MaskTokens, mask_prob: float,
               rng: random.Random) -> MaskedBatch:
    """[CLS] + pieces + [SEP], padded to the longest; the chosen pieces get BERT's 80/10/10."""
    import torch

    length = max(len(sequence.ids) for sequence in sequences) + 2
    input_ids = torch.full((len(sequences), length), tokens.pad, dtype=torch.long)
    attention = torch.zeros((len(sequences), length), dtype=torch.long)
    labels = torch.full((len(sequences), length), IGNORE, dtype=torch.long)
    chosen_total = candidates = 0
    for row, sequence in enumerate(sequences):
        ids = [tokens.cls, *sequence.ids, tokens.sep]
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention[row, :len(ids)] = 1
        candidates += sum(word >= 0 for word in sequence.words)
        for position in choose_words(sequence.words, mask_prob, rng):
            position += 1  # after [CLS]
            labels[row, position] = ids[position]
            draw = rng.random()
            if draw < 0.8:
                input_ids[row, position] = tokens.mask
            elif draw < 0.9:
                input_ids[row, position] = rng.choice(tokens.replacements)
            chosen_total += 1
    return MaskedBatch(input_ids, attention, labels, chosen_total, candidates)
