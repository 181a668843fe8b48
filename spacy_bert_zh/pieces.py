"""Windows of rows, pieces of texts, and batches of pieces: what the pipeline is fed.

A *window* is one input table (``--window-rows`` rows, one output row group). Each non-blank text
of a window becomes one or more *pieces* (texts longer than ``max_chars`` are cut at sentence
ends), tagged with ``(window, row, start)``. Pieces go to the pipeline in *batches* bounded in
pieces and characters, never mixing two windows (so a window's output does not depend on its
neighbours, and a resumed run reproduces it exactly). ``RowResult`` merges a row's pieces back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

import numpy
import pyarrow as pa
from spacy.tokens import Doc

from .ner_tagger import TAG_PROBS_KEY

SENTENCE_ENDS = "。！？!?\n；;…"
BATCH_CHARS_PER_TEXT = 256    # a batch holds at most batch_size * this many characters

PieceKey = tuple[int, int, int]          # (window number, row in the window, start character)
Piece = tuple[str, PieceKey]


@dataclass
class RowResult:
    """The predictions for one row, merged over its pieces (entity offsets into the whole text)."""

    pieces_left: int
    length: int = 0                       # characters in the row's text
    entities: list[tuple[str, str, int, int]] = field(default_factory=list)
    cat_sums: dict[str, float] = field(default_factory=dict)
    chars: int = 0
    error: Optional[str] = None
    tag_probs: list[tuple[numpy.ndarray, numpy.ndarray]] = field(default_factory=list)

    def add(self, doc: Doc, start: int) -> bool:
        """Merge the doc of the piece at ``start``; True when it was the row's last piece."""
        self.entities.extend((ent.text, ent.label_, ent.start_char + start, ent.end_char + start)
                             for ent in doc.ents)
        if TAG_PROBS_KEY in doc.user_data:  # (character offsets of the tokens, their probabilities)
            starts = doc.to_array("IDX").astype(numpy.int64) + start
            self.tag_probs.append((starts, doc.user_data[TAG_PROBS_KEY]))
        weight = text_length(doc)
        for label, score in doc.cats.items():
            self.cat_sums[label] = self.cat_sums.get(label, 0.0) + score * weight
        self.chars += weight
        return self.piece_done()

    def fail(self, message: str) -> bool:
        """Record that a piece of this row made the pipeline fail: the row keeps no predictions."""
        self.error = self.error or message
        return self.piece_done()

    def piece_done(self) -> bool:
        """Count one piece as done; True when it was the row's last one."""
        self.pieces_left -= 1
        if self.pieces_left == 0 and self.error is not None:
            self.entities, self.cat_sums, self.tag_probs = [], {}, []
        return self.pieces_left == 0

    def sorted_entities(self) -> list[tuple[str, str, int, int]]:
        """The entities in text order (pieces may come back in any order)."""
        return sorted(self.entities, key=lambda entity: entity[2])

    def character_tag_probs(self, n_tags: int) -> tuple[numpy.ndarray, numpy.ndarray]:
        """(probabilities, has_token): one row per character of the text; characters on which no
        token starts (spaces kept as a token's trailing whitespace) have ``has_token`` False."""
        probs = numpy.zeros((self.length, n_tags), dtype=numpy.float32)
        has_token = numpy.zeros(self.length, dtype=bool)
        for starts, piece_probs in self.tag_probs:
            probs[starts] = piece_probs
            has_token[starts] = True
        return probs, has_token

    def cats(self) -> Optional[dict[str, float]]:
        """Each label's score, averaged over the pieces weighted by their length (None if none)."""
        return {label: total / self.chars for label, total in self.cat_sums.items()} or None


@dataclass
class Window:
    """The rows of one input table while their pieces are in the pipeline."""

    kept: pa.Table | pa.RecordBatch
    rows: list[Optional[RowResult]]
    pending: int

    def add(self, row: int, start: int, doc: Optional[Doc], error: Optional[str]) -> bool:
        """Merge the doc (or the error) of one piece of ``row``; True when the row is complete."""
        self.pending -= 1
        result = self.rows[row]
        return result.fail(error) if error is not None else result.add(doc, start)

    @property
    def blank_rows(self) -> int:
        """Rows that were not sent to the pipeline (null, empty or whitespace-only texts)."""
        return sum(result is None for result in self.rows)

    @property
    def failed_rows(self) -> int:
        """Rows on which the pipeline failed."""
        return sum(result is not None and result.error is not None for result in self.rows)


def window_pieces(tables: Iterable[pa.Table | pa.RecordBatch], text_column: str, kept: list[str],
                  windows: dict[int, Window], sort_by_length: bool, max_chars: int,
                  first_window: int = 0) -> Iterator[Piece]:
    """Register each table in ``windows`` (numbered from ``first_window``) and yield its pieces."""
    for number, table in enumerate(tables, start=first_window):
        texts = table.column(text_column).to_pylist()
        rows: list[Optional[RowResult]] = [None] * len(texts)
        pieces = []
        for row, text in enumerate(texts):
            if is_blank(text):
                continue
            row_pieces = [(text[start:end], (number, row, start))
                          for start, end in piece_bounds(text, max_chars)]
            row_pieces = [piece for piece in row_pieces if not piece[0].isspace()]
            rows[row] = RowResult(pieces_left=len(row_pieces), length=len(text))
            pieces.extend(row_pieces)
        if sort_by_length:
            pieces.sort(key=lambda piece: len(piece[0]), reverse=True)
        windows[number] = Window(table.select(kept), rows, pending=len(pieces))
        yield from pieces


def budget_batches(pieces: Iterable[Piece], max_pieces: int, max_chars: int) -> Iterator[list[Piece]]:
    """Group pieces into lists of at most ``max_pieces`` pieces and ``max_chars`` characters, all
    of one window (a single longer piece makes a batch of its own)."""
    batch, chars = [], 0
    for piece in pieces:
        if batch and (len(batch) == max_pieces or chars + len(piece[0]) > max_chars
                      or piece[1][0] != batch[0][1][0]):
            yield batch
            batch, chars = [], 0
        batch.append(piece)
        chars += len(piece[0])
    if batch:
        yield batch


def piece_bounds(text: str, max_chars: int) -> list[tuple[int, int]]:
    """(start, end) of consecutive pieces of ``text`` of at most ``max_chars`` characters each,
    cut after a sentence end (or else a space) in the second half of a piece when there is one."""
    bounds, start = [], 0
    while len(text) - start > max_chars:
        end = cut_point(text, start + max_chars // 2, start + max_chars)
        bounds.append((start, end))
        start = end
    bounds.append((start, len(text)))
    return bounds


def cut_point(text: str, low: int, high: int) -> int:
    """The position after the last sentence end (else whitespace) in ``text[low:high]``, else ``high``."""
    for stops in (SENTENCE_ENDS, " \t\u3000"):
        found = max(text.rfind(stop, low, high) for stop in stops)
        if found >= 0:
            return found + 1
    return high


def text_length(doc: Doc) -> int:
    """``len(doc.text)`` without joining the text of every token."""
    return doc[-1].idx + len(doc[-1].text_with_ws) if len(doc) else 0


def is_blank(text: Optional[str]) -> bool:
    """True for null, empty and whitespace-only texts (they are not sent to the pipeline)."""
    return text is None or not text or text.isspace()
