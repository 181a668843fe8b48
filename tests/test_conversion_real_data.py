"""Round trips of the converters on the real corpora in ../shared/data (skipped when absent)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conftest import SHARED_DATA, corpus, load_docs
from spacy_bert_zh.conversion import convert_cls, convert_ner, write_ner_file

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared corpora not found at {SHARED_DATA} "
                                                                  f"(set SPACY_BERT_ZH_SHARED_DATA to their folder)")


def without_trailing_blank_lines(lines: list[str]) -> list[str]:
    """The lines without trailing blank lines."""
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def count_entities(path: Path, start_prefixes: tuple[str, ...]) -> Counter:
    """Entities per label counted straight from the file: tags starting with ``start_prefixes``."""
    counts: Counter = Counter()
    for line in path.read_text(encoding="utf-8").split("\n"):
        tag = line.split()[-1] if line.strip() else "O"
        if tag.startswith(start_prefixes):
            counts[tag[2:]] += 1
    return counts


@pytest.mark.parametrize("relative, scheme, separator, start_prefixes", [
    ("msra_ner/dev.bio", "bio", "\t", ("B-",)),
    ("resume_ner/dev.bmes", "bmes", " ", ("B-", "S-")),
])
def test_ner_corpus_round_trip(tmp_path, relative, scheme, separator, start_prefixes):
    source = corpus(relative)
    report = convert_ner(source, tmp_path / "dev.spacy", n_sents=10)
    docs = load_docs(tmp_path / "dev.spacy")
    write_ner_file(docs, tmp_path / "back.txt", scheme=scheme, separator=separator)
    original = without_trailing_blank_lines(source.read_text(encoding="utf-8").split("\n"))
    written = without_trailing_blank_lines((tmp_path / "back.txt").read_text(encoding="utf-8").split("\n"))
    assert written == original
    expected = count_entities(source, start_prefixes)
    assert report.entities_per_label == dict(expected)
    assert Counter(ent.label_ for doc in docs for ent in doc.ents) == expected
    assert report.scheme == scheme and report.repairs == {}
    assert all(token.ent_iob_ in ("B", "I", "O") for doc in docs for token in doc)
    assert all(not token.whitespace_ for doc in docs for token in doc)


@pytest.mark.parametrize("relative", [
    "thucnews_title/dev.tsv",
    "chnsenticorp/dev.tsv",
    "online_shopping_10_cats/dev.tsv",
])
def test_cls_corpus_every_row_is_one_doc(tmp_path, relative):
    source = corpus(relative)
    lines = without_trailing_blank_lines(source.read_text(encoding="utf-8").split("\n"))
    rows = [line.split("\t", 1) for line in lines]
    report = convert_cls(source, tmp_path / "dev.spacy")
    docs = load_docs(tmp_path / "dev.spacy")
    assert [doc.text for doc in docs] == [text for _, text in rows]
    positives = [[label for label, value in doc.cats.items() if value == 1.0] for doc in docs]
    assert positives == [[label] for label, _ in rows]
    assert all(sum(doc.cats.values()) == 1.0 for doc in docs)
    assert report.docs_per_class == dict(sorted(Counter(label for label, _ in rows).items()))
    assert report.skipped == []
