"""spacy_bert_zh.TextCatPooler.v1: the textcat head of HF's BertForSequenceClassification."""
from __future__ import annotations

from pathlib import Path

import numpy
import pytest
import spacy
from spacy.training import Example
from thinc.api import Adam, NumpyOps, Ragged
from transformers.file_utils import ModelOutput

from spacy_bert_zh.pooled_textcat import ARCHITECTURE, encoder_pooler, first_piece_vectors, pooler_layer

ROOT = Path(__file__).resolve().parents[1]
TEXTS = {"这家酒店很好，服务周到": "正面", "房间太脏了，再也不来": "负面", "价格一般，位置还行": "正面"}


def pooler_pipeline(encoder: Path) -> spacy.Language:
    """configs/cpu.cfg with transformer + textcat, the textcat on TextCatPooler.v1, initialised,
    in float32 (the HF model it is compared with is; "auto" would pick bfloat16 on some CPUs)."""
    config = spacy.util.load_config(ROOT / "configs" / "cpu.cfg", interpolate=True,
                                    overrides={"paths.encoder": str(encoder),
                                               "initialize.after_init.enabled": "off"})
    config["nlp"]["pipeline"] = ["transformer", "textcat"]
    del config["components"]["ner"]
    config["components"]["textcat"]["model"] = {"@architectures": ARCHITECTURE, "upstream": "transformer",
                                                "dropout": 0.1, "grad_factor": 1.0, "nO": None}
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    nlp.initialize(lambda: examples(nlp))
    return nlp


def examples(nlp) -> list:
    labels = sorted(set(TEXTS.values()))
    out = []
    for text, label in TEXTS.items():
        reference = nlp.make_doc(text)
        reference.cats = {name: float(name == label) for name in labels}
        out.append(Example(nlp.make_doc(text), reference))
    return out


@pytest.fixture(scope="module")
def nlp(encoder_path):
    return pooler_pipeline(encoder_path)


def hf_encoder(nlp):
    shims = [shim for node in nlp.get_pipe("transformer").model.walk() for shim in node.shims]
    return shims[0]._model


def test_the_head_starts_from_the_encoders_pooler_and_gives_its_output(nlp, encoder_path):
    """Seeded from pooler.dense, the head's pooled vector is the HF model's own pooler_output."""
    import torch
    from transformers import AutoTokenizer

    hf = hf_encoder(nlp)
    pooler = pooler_layer(nlp.get_pipe("textcat").model)
    numpy.testing.assert_array_equal(pooler.get_param("pooler_W"), hf.pooler.dense.weight.detach().numpy())

    texts = list(TEXTS)
    docs = list(nlp.pipe(texts))
    textcat_model = nlp.get_pipe("textcat").model
    head_input = textcat_model.layers[0].predict(docs)
    ours = pooler.predict(textcat_model.layers[1].predict(head_input))
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path))
    hf.eval()   # no dropout, as in the pipe's prediction
    with torch.inference_mode():
        theirs = hf(**tokenizer(texts, padding=True, return_tensors="pt")).pooler_output.numpy()
    hf.train()
    numpy.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_training_moves_encoder_and_pooler_and_lowers_the_loss(nlp):
    optimizer = Adam(0.001)
    egs = examples(nlp)
    pooler = pooler_layer(nlp.get_pipe("textcat").model)
    pooler_before = pooler.get_param("pooler_W").copy()
    query_before = hf_encoder(nlp).encoder.layer[0].attention.self.query.weight.detach().clone()
    losses = [nlp.update(egs, sgd=optimizer, drop=0.0, losses={})["textcat"] for _ in range(8)]
    assert losses[-1] < losses[0] / 2, losses
    assert not numpy.array_equal(pooler.get_param("pooler_W"), pooler_before)
    query_after = hf_encoder(nlp).encoder.layer[0].attention.self.query.weight.detach()
    assert not bool((query_after == query_before).all())


def test_saved_pipeline_predicts_the_same(nlp, tmp_path):
    nlp.to_disk(tmp_path / "pooled")
    reloaded = spacy.load(tmp_path / "pooled")
    for ours, theirs in zip(nlp.pipe(TEXTS), reloaded.pipe(TEXTS)):
        assert ours.cats == pytest.approx(theirs.cats, abs=1e-5)
    assert set(reloaded("").cats) == set(nlp.get_pipe("textcat").labels)   # an empty text


class FakeTrfData:
    """Just what first_piece_vectors reads of spacy-transformers' TransformerData."""

    def __init__(self, model_output, wordpieces=None, align=None):
        self.model_output, self.wordpieces, self.align = model_output, wordpieces, align


def test_first_piece_vectors_average_the_spans_and_send_gradient_to_their_first_pieces():
    ops = NumpyOps()
    rng = numpy.random.RandomState(0)
    two_spans = rng.normal(size=(2, 5, 3)).astype("f")
    one_span = rng.normal(size=(1, 4, 3)).astype("f")
    datas = [FakeTrfData(ModelOutput(last_hidden_state=two_spans), align=Ragged(ops.alloc1i(0), ops.alloc1i(0))),
             FakeTrfData(ModelOutput()),   # an empty doc
             FakeTrfData(ModelOutput(last_hidden_state=one_span))]
    layer = first_piece_vectors(grad_factor=1.0)
    vectors, backprop = layer(datas, is_train=True)
    numpy.testing.assert_allclose(vectors[0], two_spans[:, 0].mean(axis=0), rtol=1e-6)
    numpy.testing.assert_array_equal(vectors[1], 0.0)
    numpy.testing.assert_array_equal(vectors[2], one_span[0, 0])
    d_datas = backprop(numpy.ones((3, 3), dtype="f"))
    assert len(d_datas) == 2   # none for the empty doc, as spacy-transformers' trfs2arrays
    d_state = d_datas[0].model_output.last_hidden_state
    numpy.testing.assert_array_equal(d_state[:, 0], 0.5)
    numpy.testing.assert_array_equal(d_state[:, 1:], 0.0)


def test_pooler_backprop_matches_finite_differences():
    rng = numpy.random.RandomState(1)
    layer = encoder_pooler("transformer")
    X = rng.normal(size=(4, 3)).astype("f")
    layer.initialize(X=X)
    W = layer.get_param("pooler_W").copy()
    weights = rng.normal(size=(4, 3)).astype("f")
    _, backprop = layer(X, is_train=True)
    dX = backprop(weights)

    def loss(x=X, w=W):
        layer.set_param("pooler_W", w)
        return float((layer.predict(x).astype("float64") * weights).sum())

    def central_difference(array, which):
        numeric = numpy.zeros(array.shape)
        for index in numpy.ndindex(array.shape):
            up, down = array.copy(), array.copy()
            up[index] += 1e-2
            down[index] -= 1e-2
            numeric[index] = (loss(**{which: up}) - loss(**{which: down})) / 2e-2
        return numeric

    numpy.testing.assert_allclose(dX, central_difference(X, "x"), atol=1e-3)
    numpy.testing.assert_allclose(layer.get_grad("pooler_W"), central_difference(W, "w"), atol=1e-3)


def test_the_optimizer_gives_the_pooler_the_encoders_rate():
    from spacy.util import registry

    optimizer = registry.optimizers.get("spacy_bert_zh.Adam.v1")(0.01, head_learn_rate_scale=10.0,
                                                                 L2=0.0, grad_clip=0.0)
    moved = {}
    for name in ("pooler_W", "W"):
        weights, _ = optimizer((7, name), numpy.zeros(4, dtype="f"), numpy.ones(4, dtype="f"))
        moved[name] = -float(weights[0])
    assert moved["pooler_W"] == pytest.approx(0.01, rel=1e-3)
    assert moved["W"] == pytest.approx(0.1, rel=1e-3)
