"""Readers for the real corpora in ../shared/data, used by the benchmarks (plain files), and the
one-task pipeline config that several benchmarks train."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Tuple

SHARED_DATA = Path(os.environ.get("SPACY_BERT_ZH_SHARED_DATA")
                   or Path(__file__).resolve().parents[2] / "shared" / "data")


def read_bio_sentences(path: Path) -> List[Tuple[List[str], List[str]]]:
    """(characters, tags) per sentence of a ``char<TAB>tag`` (or ``char<SPACE>tag``) file with blank
    lines between sentences."""
    sentences, chars, tags = [], [], []
    for line in Path(path).read_text(encoding="utf-8").split("\n"):
        if line.strip():
            char, tag = line.rsplit("\t" if "\t" in line else " ", 1)
            chars.append(char)
            tags.append(tag)
        elif chars:
            sentences.append((chars, tags))
            chars, tags = [], []
    if chars:
        sentences.append((chars, tags))
    return sentences


def read_sentence_blocks(path: Path) -> List[str]:
    """The sentences of a ``char<sep>tag`` file as they are written: blocks of lines between blank lines."""
    text = Path(path).read_text(encoding="utf-8").replace("\r\n", "\n")
    return [block.strip("\n") for block in text.split("\n\n") if block.strip()]


def block_text(block: str) -> str:
    """The sentence text of one ``char<sep>tag`` block (its first column)."""
    return "".join(line.rsplit("\t" if "\t" in line else " ", 1)[0] for line in block.split("\n"))


def read_tsv_rows(path: Path) -> List[Tuple[str, str]]:
    """(label, text) per line of a ``label<TAB>text`` file, leaving out empty texts."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    rows = [tuple(line.split("\t", 1)) for line in lines if line]
    return [(label, text) for label, text in rows if text.strip()]  # online_shopping has an empty review


def one_task_config(component: str, score_weights: dict, path: Path = None):
    """configs/cpu.cfg (or ``path``) with only transformer + ``component`` ("ner" or "textcat")
    and ``score_weights`` for choosing the best checkpoint."""
    from spacy.util import load_config

    config = load_config(path or Path(__file__).resolve().parents[1] / "configs" / "cpu.cfg")
    config["nlp"]["pipeline"] = ["transformer", component]
    del config["components"]["textcat" if component == "ner" else "ner"]
    config["training"]["score_weights"] = score_weights
    return config
