"""spacy_bert_zh.step_after_listeners.v1: the shared encoder steps on the gradient of the batch its
listeners have just sent, not on the previous one (spaCy 3.8's nlp.update order)."""
from __future__ import annotations

import pickle

import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam

from spacy_bert_zh.listener_steps import StepAfterListeners, make_step_after_listeners

TEXTS = ["王小明昨天从北京坐高铁去了上海。", "这家店的包子很好吃，就是排队太久。"]   # invented
NO_CALLBACK = {"nlp": {"after_pipeline_creation": None}}


def encoder(nlp) -> torch.nn.Module:
    return nlp.get_pipe("transformer").model.layers[0].shims[0]._model


def query_weight(nlp) -> torch.Tensor:
    return encoder(nlp).encoder.layer[0].attention.self.query.weight.detach().clone()


def without_dropout(nlp):
    """No random masks anywhere, so that two pipelines given the same steps end equal."""
    for module in encoder(nlp).modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "dropout_prob"):   # SDPA attention reads its rate from here
            module.dropout_prob = 0.0
    return nlp


def batches(nlp) -> list:
    """Two batches: an NER sentence, then a classified review (the ner sees it as missing)."""
    ner = Example.from_dict(nlp.make_doc(TEXTS[0]), {"entities": [(0, 3, "PER"), (6, 8, "LOC")]})
    cls = Example.from_dict(nlp.make_doc(TEXTS[1]), {"cats": {"正面": 1.0, "负面": 0.0, "中性": 0.0}})
    return [[ner], [cls]]


def test_the_configs_pipeline_steps_its_encoder_on_the_first_update(untrained_pipeline):
    reordered = spacy.load(untrained_pipeline)
    late = spacy.load(untrained_pipeline, config=NO_CALLBACK)
    for nlp in (reordered, late):
        before = query_weight(nlp)
        nlp.update(batches(nlp)[0], sgd=Adam(1e-3))
        nlp.moved = not torch.equal(before, query_weight(nlp))
    assert isinstance(reordered.get_pipe("transformer").update.__self__, StepAfterListeners)
    assert reordered.moved
    assert not late.moved   # spaCy 3.8: the encoder's first step comes before any gradient


def update_in_spacy_v4_order(nlp, batch, optimizer) -> None:
    """Every component's update, then every finish_update (explosion/spaCy#12136), by hand."""
    for _, pipe in nlp.pipeline:
        pipe.update(batch, sgd=None, losses={})
    for _, pipe in nlp.pipeline:
        pipe.finish_update(optimizer)


@pytest.mark.parametrize("accumulate", [False, True])
def test_steps_are_those_of_spacy_v4s_order(untrained_pipeline, accumulate):
    reordered = without_dropout(spacy.load(untrained_pipeline))
    reference = without_dropout(spacy.load(untrained_pipeline, config=NO_CALLBACK))
    optimizers = Adam(1e-3), Adam(1e-3)
    for batch in batches(reordered):
        if accumulate:   # nlp.update(sgd=False), then the caller's own finish_update
            reordered.update(batch, sgd=False)
            for _, pipe in reordered.pipeline:
                pipe.finish_update(optimizers[0])
        else:
            reordered.update(batch, sgd=optimizers[0])
        update_in_spacy_v4_order(reference, batch, optimizers[1])
    numpy.testing.assert_allclose(query_weight(reordered), query_weight(reference), atol=1e-6)
    heads = [nlp.get_pipe("textcat").model.get_ref("output_layer").get_param("W") for nlp in (reordered, reference)]
    numpy.testing.assert_allclose(*heads, atol=1e-6)
    assert not torch.equal(query_weight(reordered), query_weight(spacy.load(untrained_pipeline)))


def test_a_step_held_for_a_batch_no_listener_backpropagated_is_taken_at_the_next_update(untrained_pipeline):
    nlp = spacy.load(untrained_pipeline)
    before = query_weight(nlp)
    examples = batches(nlp)[0]
    nlp.update(examples, sgd=Adam(1e-3), exclude=["ner", "textcat"])   # nobody sends a gradient
    step = nlp.get_pipe("transformer").update.__self__
    assert step.held is not None and torch.equal(before, query_weight(nlp))
    nlp.update(examples, sgd=Adam(1e-3))
    assert step.held is None and not step.waiting


def test_the_callback_wraps_once_and_the_pipeline_pickles(untrained_pipeline):
    nlp = make_step_after_listeners()(spacy.load(untrained_pipeline))
    step = nlp.get_pipe("transformer").update.__self__
    assert step.update_first.__func__ is type(nlp.get_pipe("transformer")).update
    copy = pickle.loads(pickle.dumps(nlp))
    assert isinstance(copy.get_pipe("transformer").update.__self__, StepAfterListeners)
    before = query_weight(copy)
    copy.update(batches(copy)[0], sgd=Adam(1e-3))
    assert not torch.equal(before, query_weight(copy))
    assert copy(TEXTS[1]).text == TEXTS[1]


def tok2vec_after_two_updates(reordered: bool) -> bool:
    """Whether spaCy's tok2vec has moved after two updates of a tagger listening to it (the first
    sends it no gradient: the tagger's softmax starts at zero)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec")
    nlp.add_pipe("tagger", config={"model": {"@architectures": "spacy.Tagger.v2", "tok2vec": {
        "@architectures": "spacy.Tok2VecListener.v1", "width": 96, "upstream": "*"}}})
    examples = [Example.from_dict(nlp.make_doc("I like green eggs"), {"tags": ["N", "V", "J", "N"]})]
    nlp.initialize(lambda: examples)
    if reordered:
        nlp = make_step_after_listeners()(nlp)
    model = nlp.get_pipe("tok2vec").model
    before = [node.get_param(name).copy() for node in model.walk() for name in node.param_names]
    optimizer = Adam(1e-2)
    for _ in range(2):
        nlp.update(examples, sgd=optimizer)
    after = [node.get_param(name) for node in model.walk() for name in node.param_names]
    return any(not numpy.array_equal(a, b) for a, b in zip(before, after))


def test_spacys_own_tok2vec_steps_on_its_batchs_gradient_too():
    assert tok2vec_after_two_updates(reordered=True)
    assert not tok2vec_after_two_updates(reordered=False)
