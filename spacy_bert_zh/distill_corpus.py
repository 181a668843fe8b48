"""The training corpus of a distilled student: the teacher's annotations of unlabelled texts.

``spacy_bert_zh.DistillCorpus.v1`` is a spaCy reader (``[corpora.train]`` of a student config)
over the Parquet file that ``annotate`` wrote with the teacher. Each row becomes an ``Example``
whose reference carries the teacher's entities (every other character O) and categories:

- ``soft = false`` (silver labels): the teacher's top class as a one-hot ``cats``; entities only;
- ``soft = true`` (soft targets): the teacher's class probabilities as ``cats`` and its
  per-character tag probabilities (the ``tag_probs`` column) for ``ner_tagger``'s soft loss.

The first ``holdout`` rows are the ``dev`` part (a student scored on them is scored on agreement
with its teacher); the ``train`` part is every other row, plus the gold corpus if one is named
(the two streams interleaved at random, each pick 50/50 until one runs out), shuffled in seeded
buffers of ``buffer`` rows, so memory holds one buffer, not the file. Rows with a blank or null
text are left out of both parts (they still count as rows for ``holdout``).
"""
from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy
import pyarrow.parquet as pq
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Corpus, Example
from spacy.util import registry

from .arrow_output import TAG_PROBS_NAME, tag_names
from .ner_tagger import TAG_PROBS_KEY

READER = "spacy_bert_zh.DistillCorpus.v1"
PREDICTED_COLUMNS = ["entities", "cats"]


@registry.readers(READER)
def create_distill_corpus(path: str, soft: bool = False, part: str = "train", holdout: int = 0,
                          gold: Optional[str] = None, seed: int = 0, buffer: int = 10_000,
                          text_column: str = "text") -> Callable[[Language], Iterator[Example]]:
    """Registered reader: see the module docstring. ``part`` is ``train`` or ``dev``."""
    if part not in ("train", "dev"):
        raise ValueError(f"{READER}: part must be 'train' or 'dev', not {part!r}")
    return DistillCorpus(Path(path), soft, part, holdout, Path(gold) if gold else None, seed, buffer,
                         text_column)


class DistillCorpus:
    """Callable that yields the examples of one part, a new seeded order on every call (epoch)."""

    def __init__(self, path: Path, soft: bool, part: str, holdout: int, gold: Optional[Path],
                 seed: int, buffer: int, text_column: str):
        self.path, self.soft, self.part, self.holdout = path, soft, part, holdout
        self.gold, self.buffer, self.text_column = gold, buffer, text_column
        self.rng = random.Random(seed)

    def __call__(self, nlp: Language) -> Iterator[Example]:
        check_tags(nlp, self.path, self.soft)
        rows = silver_rows(self.path, self.soft, self.buffer, self.text_column)
        if self.part == "dev":
            yield from (silver_example(nlp, row, self.soft) for row in itertools.islice(rows, self.holdout)
                        if has_text(row))
            return
        rows = itertools.islice(rows, self.holdout, None)
        examples = (silver_example(nlp, row, self.soft) for row in rows if has_text(row))
        if self.gold is not None:
            examples = interleave(examples, Corpus(self.gold, shuffle=False)(nlp), self.rng)
        yield from shuffled(examples, self.buffer, self.rng)


def silver_rows(path: Path, soft: bool, buffer: int, text_column: str) -> Iterator[dict]:
    """The rows of the teacher's annotations (text as ``text``), one buffer at a time."""
    columns = [text_column, *PREDICTED_COLUMNS] + ([TAG_PROBS_NAME] if soft else [])
    for batch in pq.ParquetFile(path).iter_batches(batch_size=buffer, columns=columns):
        for row in batch.to_pylist():
            row["text"] = row.pop(text_column)
            yield row


def has_text(row: dict) -> bool:
    """Blank and null texts teach nothing (and an empty doc has no window to encode)."""
    return bool(row["text"] and row["text"].strip())


def silver_example(nlp: Language, row: dict, soft: bool) -> Example:
    """An example whose reference holds the teacher's predictions for ``row``."""
    text = row["text"] or ""
    reference = nlp.make_doc(text)
    spans = [reference.char_span(entity["start_char"], entity["end_char"], label=entity["label"],
                                 alignment_mode="contract") for entity in row["entities"] or []]
    reference.ents = [span for span in spans if span is not None]
    cats = dict(row["cats"] or [])
    if cats:
        reference.cats = cats if soft else one_hot(cats)
    if soft and row.get(TAG_PROBS_NAME):
        reference.user_data[TAG_PROBS_KEY] = token_tag_probs(reference, row[TAG_PROBS_NAME])
    return Example(nlp.make_doc(text), reference)


def one_hot(cats: dict[str, float]) -> dict[str, float]:
    """The top class as 1.0, every other as 0.0."""
    top = max(cats, key=cats.__getitem__)
    return {label: float(label == top) for label in cats}


def token_tag_probs(doc: Doc, per_character: list) -> numpy.ndarray:
    """The per-character probabilities of the ``tag_probs`` column, at each token's first character."""
    return numpy.asarray([per_character[token.idx] for token in doc], dtype="float32").reshape(len(doc), -1)


def check_tags(nlp: Language, path: Path, soft: bool) -> None:
    """Soft targets must name the student ner's tags in its order."""
    if not soft:
        return
    schema = pq.read_schema(path)
    if TAG_PROBS_NAME not in schema.names:
        raise ValueError(f"{path}: no {TAG_PROBS_NAME} column for soft targets; annotate with "
                         f"--tag-probs, or train on silver labels (soft = false)")
    tags, labels = tag_names(schema.field(TAG_PROBS_NAME)), list(nlp.get_pipe("ner").labels)
    if tags != labels:
        raise ValueError(f"{path}: the teacher's tags {tags} are not the student ner's {labels}")


def interleave(first: Iterable[Example], second: Iterable[Example], rng: random.Random) -> Iterator[Example]:
    """Both streams merged in a random order, each kept in its own order."""
    streams = [iter(first), iter(second)]
    while streams:
        stream = rng.choice(streams)
        try:
            yield next(stream)
        except StopIteration:
            streams.remove(stream)


def shuffled(items: Iterable, buffer: int, rng: random.Random) -> Iterator:
    """``items`` shuffled inside consecutive buffers of ``buffer`` items."""
    items = iter(items)
    while chunk := list(itertools.islice(items, buffer)):
        rng.shuffle(chunk)
        yield from chunk
