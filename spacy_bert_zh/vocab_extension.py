"""Give the characters an encoder reads as ``[UNK]`` the free ``[unusedX]`` slots of its vocabulary.

``spacy-bert-zh extend-vocab ENCODER TEXTS OUTPUT``: BERT vocabularies keep placeholder entries
(bert-base-chinese and m3e-small: ``[unused1]`` ... ``[unused99]``) whose embeddings were never
trained. The characters of the user's texts that the tokenizer maps to ``[UNK]`` (rare hanzi,
emoji, symbols) are counted, and the most frequent ones take those slots: the new vocabulary has
the same size and ids, so the weights are copied unchanged, and the slots' embeddings learn the
characters during fine-tuning (or ``pretrain``). OUTPUT is a Hugging Face encoder folder for
``--paths.encoder``. The report gives the ``[UNK]`` rate before and after and the characters added.

A character is a candidate when it lies inside an ``[UNK]`` token and is not in the vocabulary
itself: as ``X`` where it starts the unknown word, as the WordPiece continuation ``##X`` where it
follows another character (``ok😀``, the second half of a flag ``🇨🇳``), each form counted apart.
"""
from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

UNUSED_SLOT = re.compile(r"^\[unused\d+\]$")
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class VocabExtensionError(ValueError):
    """The encoder or the texts cannot be used (the message says which and why)."""


@dataclass
class VocabReport:
    """What ``extend_vocab`` counted and changed."""

    texts: int = 0
    characters: int = 0            # non-whitespace characters of the texts
    unk_before: int = 0            # of them, inside an [UNK] token with the old vocabulary
    unk_after: int = 0             # ... with the new one
    added: list = field(default_factory=list)      # [character, occurrences, slot it took]
    left_out: list = field(default_factory=list)   # [character, occurrences]: no slot left or too rare
    free_slots: int = 0

    def rate(self, count: int) -> float:
        return count / self.characters if self.characters else 0.0

    def summary(self) -> str:
        shown = " ".join(f"{char}({count})" for char, count, _ in self.added[:30])
        lines = [f"{self.texts:,} texts, {self.characters:,} characters; [UNK] rate "
                 f"{100 * self.rate(self.unk_before):.3f}% -> {100 * self.rate(self.unk_after):.3f}%",
                 f"{len(self.added)} characters took {len(self.added)} of {self.free_slots} free "
                 f"[unusedX] slots: {shown}{' ...' if len(self.added) > 30 else ''}"]
        if self.left_out:
            lines.append(f"{len(self.left_out)} [UNK] characters left out (no slot left, or below "
                         f"--min-count): " + " ".join(f"{c}({n})" for c, n in self.left_out[:20]))
        return "\n".join(lines)

    def write_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2), encoding="utf-8")


def extend_vocab(encoder: str | Path, texts: str | Path, output: str | Path, text_column: str = "text",
                 min_count: int = 1, max_new: Optional[int] = None, overwrite: bool = False,
                 show_progress: bool = True) -> VocabReport:
    """Write ``encoder`` to ``output`` with its ``[UNK]`` characters in ``[unusedX]`` slots."""
    encoder, output = Path(encoder), Path(output)
    if output.exists() and not overwrite:
        raise VocabExtensionError(f"OUTPUT {output} exists; pass --overwrite to replace it")
    tokenizer = load_tokenizer(encoder)
    vocab = read_vocab(tokenizer)
    slots = [i for i, token in enumerate(vocab) if UNUSED_SLOT.match(token)]
    report = VocabReport(free_slots=len(slots))
    counts = count_unknown(tokenizer, read_texts(Path(texts), text_column, show_progress), report)
    report.unk_before = sum(counts.values())
    known = set(vocab)
    candidates = [(char, n) for char, n in counts.most_common() if char not in known]
    room = min(len(slots), max_new if max_new is not None else len(slots))
    chosen = [(char, n) for char, n in candidates if n >= min_count][:room]
    report.left_out = [[char, n] for char, n in candidates if (char, n) not in chosen]
    for (char, n), slot in zip(chosen, slots):
        report.added.append([char, n, vocab[slot]])
        vocab[slot] = char
    write_encoder(encoder, output, tokenizer, vocab)
    after = Counter()
    count_unknown(load_tokenizer(output), read_texts(Path(texts), text_column, False), VocabReport(), after)
    report.unk_after = sum(after.values())
    return report


def load_tokenizer(encoder: Path):
    from transformers import AutoTokenizer

    if not (encoder / "config.json").is_file():
        raise VocabExtensionError(f"ENCODER {encoder} is not a Hugging Face model folder (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(encoder), use_fast=True)
    if not getattr(tokenizer, "is_fast", False) or tokenizer.unk_token is None:
        raise VocabExtensionError(f"ENCODER {encoder}: needs a fast WordPiece tokenizer with an [UNK] token")
    return tokenizer


def read_vocab(tokenizer) -> list[str]:
    """The vocabulary in id order."""
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise VocabExtensionError("the tokenizer's vocabulary ids are not 0..N-1")
    return [token for token, _ in by_id]


def read_texts(path: Path, text_column: str, show_progress: bool) -> Iterator[str]:
    """Texts of a Parquet column (streamed by row group) or of a .txt file (one per line)."""
    from tqdm import tqdm

    if not path.is_file():
        raise VocabExtensionError(f"TEXTS {path} is not a file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        source = pq.ParquetFile(path)
        if text_column not in source.schema_arrow.names:
            raise VocabExtensionError(f"{path}: no column {text_column!r} (columns: "
                                      f"{', '.join(source.schema_arrow.names)})")
        bar = tqdm(total=source.metadata.num_rows, unit="texts", disable=not show_progress)
        for batch in source.iter_batches(batch_size=4096, columns=[text_column]):
            bar.update(batch.num_rows)
            yield from (text for text in batch.column(0).to_pylist() if text)
        bar.close()
        return
    with path.open(encoding="utf-8") as lines:
        yield from (line.rstrip("\r\n") for line in tqdm(lines, unit="lines", disable=not show_progress))


def count_unknown(tokenizer, texts: Iterable[str], report: VocabReport,
                  counts: Optional[Counter] = None) -> Counter:
    """Occurrences of each character inside ``[UNK]`` tokens (normalized as the tokenizer does; as
    ``##X`` after the first character of the token);
    ``report`` gets the numbers of texts and non-whitespace characters."""
    counts = Counter() if counts is None else counts
    unk_id = tokenizer.unk_token_id
    normalize = tokenizer.backend_tokenizer.normalizer.normalize_str
    batch = []
    for text in texts:
        batch.append(text)
        if len(batch) == 256:
            count_batch(tokenizer, batch, unk_id, normalize, counts, report)
            batch = []
    if batch:
        count_batch(tokenizer, batch, unk_id, normalize, counts, report)
    return counts


def count_batch(tokenizer, texts: list[str], unk_id: int, normalize, counts: Counter, report: VocabReport) -> None:
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"]):
        report.texts += 1
        report.characters += sum(not char.isspace() for char in text)
        for token_id, (start, end) in zip(ids, offsets):
            if token_id == unk_id:
                chars = [normalize(char).strip() for char in text[start:end] if not char.isspace()]
                counts.update(char if i == 0 else f"##{char}" for i, char in enumerate(chars))


def write_encoder(encoder: Path, output: Path, tokenizer, vocab: list[str]) -> None:
    """Copy the encoder's files to ``output`` with the new vocabulary (same size, same ids)."""
    from transformers import BertTokenizerFast

    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    for path in encoder.iterdir():
        if path.is_file() and path.name not in TOKENIZER_FILES:
            shutil.copy2(path, output / path.name)
    (output / "vocab.txt").write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")
    normalizer = json.loads(tokenizer.backend_tokenizer.normalizer.__getstate__())
    BertTokenizerFast(vocab_file=str(output / "vocab.txt"), do_lower_case=normalizer.get("lowercase", True),
                      tokenize_chinese_chars=normalizer.get("handle_chinese_chars", True),
                      strip_accents=normalizer.get("strip_accents"),
                      model_max_length=tokenizer.model_max_length).save_pretrained(str(output))
