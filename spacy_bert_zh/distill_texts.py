"""The texts a student is distilled on: the unlabelled Parquet, cut or extended, streamed.

- ``write_first_rows``: the first N rows (``--max-texts``);
- ``write_with_gold_texts``: the rows with the gold corpus's texts mixed in
  (``--gold-targets teacher``), so the teacher annotates those texts too and the student learns
  its soft targets on them rather than the gold labels. The first ``keep_first`` rows (the ones
  held out to score the student) stay first and unchanged; every other row and every gold text
  follow in a seeded random mix, so no stretch of the file is all gold or all unlabelled (the
  student's reader shuffles only inside buffers). The unlabelled rows are streamed; the gold
  texts are held in memory (the corpus the teacher was trained on, a DocBin read whole anyway).
"""
from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import spacy

from .parquet_io import atomic_parquet_writer

CHUNK_ROWS = 10_000


def write_first_rows(source: Path, dest: Path, rows: int, text_column: str) -> Path:
    """The text column of the first ``rows`` rows of ``source``, streamed into ``dest``."""
    if not dest.exists():
        write_texts(dest, text_column, itertools.islice(rows_of(source, text_column), rows))
    return dest


def gold_texts(gold: Path) -> list[str]:
    """The texts of every doc in the ``.spacy`` files of ``gold`` (a file or a folder)."""
    from .evaluation import read_docbins

    return [doc.text for doc in read_docbins(spacy.blank("zh"), [gold])]


def write_with_gold_texts(source: Path, gold: Path, dest: Path, keep_first: int, text_column: str,
                          seed: int) -> Path:
    """``source``'s text column with the texts of ``gold`` mixed in after its first ``keep_first``
    rows (see the module docstring); kept if ``dest`` exists (the work folder's identity covers it)."""
    if dest.exists():
        return dest
    rng = random.Random(seed)
    extra = gold_texts(gold)
    rng.shuffle(extra)
    rows = pq.ParquetFile(source).metadata.num_rows
    head, rest = rows_of(source, text_column), iter(extra)
    kept = [next(head) for _ in range(min(keep_first, rows))]
    mixed = (next(rest) if pick else next(head)
             for pick in mix_order(max(rows - keep_first, 0), len(extra), rng))
    write_texts(dest, text_column, itertools.chain(kept, mixed))
    return dest


def mix_order(n_source: int, n_gold: int, rng: random.Random) -> bytearray:
    """A seeded random order of ``n_source`` rows (0) and ``n_gold`` gold texts (1), one byte each."""
    order = bytearray(n_source) + bytearray(b"\x01" * n_gold)
    rng.shuffle(order)
    return order


def rows_of(source: Path, text_column: str) -> Iterator:
    for batch in pq.ParquetFile(source).iter_batches(batch_size=CHUNK_ROWS, columns=[text_column]):
        yield from batch.column(0).to_pylist()


def write_texts(dest: Path, column: str, texts: Iterable) -> None:
    """``texts`` as the one string column of a Parquet file that appears at ``dest`` once complete."""
    texts = iter(texts)
    with atomic_parquet_writer(dest, pa.schema([(column, pa.string())])) as writer:
        while chunk := list(itertools.islice(texts, CHUNK_ROWS)):
            writer.write_table(pa.table({column: pa.array(chunk, pa.string())}))
