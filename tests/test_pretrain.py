"""``spacy-bert-zh pretrain``: masking rules, streaming, a short MLM run whose output loads, errors."""
from __future__ import annotations

import json
import random
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import TEXTCAT_LABELS, build_untrained_pipeline
from spacy_bert_zh.cli import app
from spacy_bert_zh.mlm_data import (IGNORE, MaskTokens, PretrainError, chunk_bounds, encode_texts,
                                    iter_texts, load_segmenter, mask_batch, piece_words, shuffled,
                                    training_texts)
from spacy_bert_zh.pretrain import PretrainOptions, load_masked_lm, pretrain, score_masked_lm

TEXTS = ["这家店的快递很快，包装也不错，下次还会再来买。",
         "手机屏幕很清楚，电池续航一般，价格实惠。",
         "酒店的位置很好，离地铁站很近，早餐种类很多。",
         "这本书写得很好，作者的观点很有意思。",
         "衣服的质量一般，颜色和图片上的不一样。",
         "水果很新鲜，个头也大，家里人都喜欢吃。"]


@pytest.fixture(scope="module")
def tokenizer(encoder_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(encoder_path), use_fast=True)


def many_sequences(tokenizer, n=400, segmenter=None):
    rng = random.Random(3)
    texts = ["".join(rng.sample(TEXTS, 2))[:rng.randrange(10, 50)] + " ok😀 [MASK]" for _ in range(n)]
    return list(encode_texts(tokenizer, texts, 128, segmenter))


# --- masking ---------------------------------------------------------------------------------


def test_special_tokens_never_masked_and_the_masked_share(tokenizer):
    tokens = MaskTokens.of(tokenizer)
    sequences = many_sequences(tokenizer)
    batch = mask_batch(sequences, tokens, 0.15, random.Random(0))
    special = set(tokenizer.all_special_ids)
    original = [[tokens.cls, *s.ids, tokens.sep] for s in sequences]
    for row, ids in enumerate(original):
        for position in range(batch.input_ids.shape[1]):
            token = ids[position] if position < len(ids) else tokens.pad
            if token in special:   # [CLS], [SEP], [PAD], and the [UNK] / [MASK] inside the texts
                assert batch.labels[row, position] == IGNORE
                assert batch.input_ids[row, position] == token
    assert batch.candidates > 5000
    assert abs(batch.chosen / batch.candidates - 0.15) < 0.01
    assert abs((batch.labels != IGNORE).sum().item() - batch.chosen) == 0


def test_80_10_10(tokenizer):
    tokens = MaskTokens.of(tokenizer)
    batch = mask_batch(many_sequences(tokenizer, 800), tokens, 0.15, random.Random(1))
    chosen = batch.labels != IGNORE
    inputs, labels = batch.input_ids[chosen], batch.labels[chosen]
    masked = (inputs == tokens.mask).float().mean().item()
    kept = (inputs == labels).float().mean().item()
    replaced = 1 - masked - kept
    assert abs(masked - 0.8) < 0.03 and abs(kept - 0.1) < 0.025 and abs(replaced - 0.1) < 0.025
    assert set(inputs[(inputs != tokens.mask) & (inputs != labels)].tolist()) <= set(tokens.replacements)


def test_whole_word_masks_all_pieces_of_a_word_or_none(tokenizer):
    def in_threes(text):   # a hand-made segmentation: words of three characters
        return [(start, min(start + 3, len(text))) for start in range(0, len(text), 3)]

    sequences = many_sequences(tokenizer, 300, segmenter=in_threes)
    batch = mask_batch(sequences, MaskTokens.of(tokenizer), 0.15, random.Random(2))
    whole = partial = 0
    for row, sequence in enumerate(sequences):
        chosen = (batch.labels[row, 1:len(sequence.ids) + 1] != IGNORE).tolist()
        by_word = {}
        for word, flag in zip(sequence.words, chosen):
            if word >= 0:
                by_word.setdefault(word, []).append(flag)
        for flags in by_word.values():
            if any(flags):
                whole += all(flags) and len(flags) > 1
                partial += not all(flags)
    assert partial == 0 and whole > 100
    assert abs(batch.chosen / batch.candidates - 0.15) < 0.02


def test_pieces_map_to_words_and_chunks_keep_words_whole(tokenizer):
    # a piece that spans two words (here "ab" over "a|b") joins them; characters outside every span
    # are words of their own
    assert piece_words([(0, 2), (2, 3), (3, 4)], [(0, 1), (1, 3)], 5) == [0, 0, 2]
    assert chunk_bounds([0, 0, 1, 1, 1, 2], 4) == [(0, 2), (2, 6)]
    assert chunk_bounds([0, 0, 0, 0, 0, 1], 4) == [(0, 4), (4, 6)]   # a word longer than a chunk is cut
    segmenter = load_segmenter("jieba")
    words = segmenter("我们今天在北京大学看电影。")
    assert ("北京大学" in ["我们今天在北京大学看电影。"[s:e] for s, e in words])
    long_text = "".join(TEXTS) * 4
    for segment in (None, segmenter):
        chunks = list(encode_texts(tokenizer, [long_text], 64, segment))
        full = tokenizer(long_text, add_special_tokens=False)["input_ids"]
        assert len(chunks) > 4 and all(len(c.ids) <= 62 for c in chunks)
        assert [i for c in chunks for i in c.ids] == full
        assert [c.first for c in chunks] == [True] + [False] * (len(chunks) - 1)
        if segment:
            assert all(a.words[-1] != b.words[0] for a, b in zip(chunks, chunks[1:]))


# --- streaming -------------------------------------------------------------------------------


def test_parquet_and_txt_give_the_same_texts_and_cycle(tmp_path):
    pq.write_table(pa.table({"body": [TEXTS[0], None, "", *TEXTS[1:]]}), tmp_path / "t.parquet",
                   row_group_size=2)
    (tmp_path / "t.txt").write_text("\n".join([TEXTS[0], "", "  ", *TEXTS[1:]]) + "\n", encoding="utf-8")
    assert list(iter_texts(tmp_path / "t.parquet", "body")) == TEXTS == list(iter_texts(tmp_path / "t.txt"))
    passes = [0]
    stream = training_texts(tmp_path / "t.txt", "text", skip=2, passes=passes)
    taken = [next(stream) for _ in range(10)]
    assert taken == (TEXTS[2:] * 3)[:10] and passes == [3]
    with pytest.raises(PretrainError, match="lower --holdout"):
        next(training_texts(tmp_path / "t.txt", "text", skip=6))
    items = list(range(100))
    once = list(shuffled(items, 10, random.Random(0)))
    assert sorted(once) == items and once != items and once == list(shuffled(items, 10, random.Random(0)))


# --- a short run ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained(encoder_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    pq.write_table(pa.table({"text": TEXTS * 4}), root / "texts.parquet")
    result = CliRunner().invoke(app, ["pretrain", str(encoder_path), str(root / "texts.parquet"),
                                      str(root / "dapt"), "--max-steps", "12", "--batch-size", "6",
                                      "--learn-rate", "2e-4", "--warmup", "0.1", "--holdout", "2",
                                      "--shuffle-buffer", "30", "--whole-word", "-q"])
    assert result.exit_code == 0, result.output
    return root


def test_output_loads_as_encoder_and_in_a_pipeline(pretrained, encoder_path, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel

    output = pretrained / "dapt"
    model, info = AutoModel.from_pretrained(str(output), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    before = load_file(str(encoder_path / "model.safetensors"))
    after = load_file(str(output / "model.safetensors"))
    assert set(after) == set(before) - {"embeddings.position_ids"}
    assert not torch.equal(after["encoder.layer.0.attention.self.query.weight"],
                           before["encoder.layer.0.attention.self.query.weight"])
    assert torch.equal(after["pooler.dense.weight"], before["pooler.dense.weight"])   # MLM leaves it
    assert (output / "vocab.txt").read_bytes() == (encoder_path / "vocab.txt").read_bytes()
    report = json.loads((output / "pretrain.json").read_text(encoding="utf-8"))
    assert report["steps"] == 12 and report["sequences_seen"] == 72 and report["mlm_head"] == "random"
    assert report["passes"] >= 2 and report["options"]["whole_word"] is True
    assert report["heldout"]["texts"] == 2 and report["heldout"]["masked"] > 0
    assert report["loss_end"] < report["loss_start"]
    nlp_dir = build_untrained_pipeline(output, tmp_path / "nlp")
    import spacy

    nlp = spacy.load(nlp_dir)
    assert set(nlp("这家店的快递很快").cats) == set(TEXTCAT_LABELS)
    shim = next(shim for node in nlp.get_pipe("transformer").model.walk() for shim in node.shims)
    assert torch.equal(shim._model.state_dict()["encoder.layer.0.attention.self.query.weight"],
                       after["encoder.layer.0.attention.self.query.weight"])


def test_masked_lm_loss_on_the_training_texts_dropped(pretrained, encoder_path, tokenizer):
    tokens = MaskTokens.of(tokenizer)
    sequences = list(encode_texts(tokenizer, TEXTS[2:], 128, load_segmenter()))
    masked = [mask_batch(sequences, tokens, 0.15, random.Random(seed)) for seed in range(5)]
    start, head = load_masked_lm(encoder_path, seed=0)
    end, head_after = load_masked_lm(pretrained / "dapt", seed=0)
    assert (head, head_after) == ("random", "mlm_head.safetensors")
    assert score_masked_lm(end, masked, "cpu")["loss"] < score_masked_lm(start, masked, "cpu")["loss"] - 1.0


# --- errors ------------------------------------------------------------------------------------


def test_errors_before_any_work(encoder_path, tmp_path, monkeypatch):
    texts = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": TEXTS}), texts)

    def run(*args):
        return CliRunner().invoke(app, ["pretrain", *map(str, args), "-q"])

    out = tmp_path / "out"
    cases = [((tmp_path / "nope", texts, out), "not a Hugging Face model folder"),
             ((encoder_path, tmp_path / "none.txt", out), "is not a file"),
             ((encoder_path, texts, out), "no column 'text'"),
             ((encoder_path, texts, out, "--text-column", "body", "--mask-prob", "1.5"), "--mask-prob"),
             ((encoder_path, texts, out, "--text-column", "body", "--max-length", "1000"), "512 positions"),
             ((encoder_path, texts, out, "--text-column", "body", "--max-steps", "0"), "--max-steps"),
             ((encoder_path, texts, encoder_path, "--overwrite"), "is ENCODER")]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    out.mkdir()
    result = run(encoder_path, texts, out, "--text-column", "body")
    assert result.exit_code == 2 and "exists; pass --overwrite" in result.output
    monkeypatch.setitem(sys.modules, "jieba", None)   # as if jieba were not installed
    with pytest.raises(PretrainError, match="pip install jieba"):
        pretrain(encoder_path, texts, tmp_path / "ww", PretrainOptions(text_column="body", whole_word=True))
    assert not (tmp_path / "ww").exists()


def test_project_pretrain_command(encoder_path, tmp_path):
    """`spacy project run pretrain` on the embedded corpus's texts.parquet (2 steps)."""
    import shutil
    import subprocess
    from pathlib import Path

    from spacy_bert_zh.sample_corpus import write_sample_corpus

    root = Path(__file__).resolve().parents[1]
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(root / "project.yml", project)
    write_sample_corpus(project / "corpus" / "sample")
    env = {**__import__("os").environ, "PATH": f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "spacy", "project", "run", "pretrain", str(project),
                             "--vars.encoder", str(encoder_path), "--vars.pretrain_steps", "2"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    report = json.loads((project / "encoders" / "m3e-small-dapt" / "pretrain.json").read_text(encoding="utf-8"))
    assert report["steps"] == 2 and report["heldout"]["texts"] == 20 and report["options"]["whole_word"]
