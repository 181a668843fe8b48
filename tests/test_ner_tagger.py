"""The ``ner_tagger`` component: BIO tags from spaCy's aligned entities, constrained decoding,
entity spans, labels, and missing annotation. No encoder needed: a small CPU tok2vec stands in."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example

from itertools import product

from spacy_bert_zh.ner_tagger import (TAG_PROBS_KEY, NERTagger, allowed_transitions, argmax_paths, best_tag_path,
                                      best_tag_paths, constrained_emissions,
                                      biluo_to_bio, outside_only, tags_to_spans, trainable_tags)

TAGS = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
TOK2VEC = {"@architectures": "spacy.HashEmbedCNN.v2", "width": 32, "depth": 1, "embed_size": 500,
           "window_size": 1, "maxout_pieces": 2, "subword_features": False, "pretrained_vectors": None}


def test_biluo_tags_become_bio_and_missing_stays_missing():
    assert biluo_to_bio(["U-PER", "O", "B-LOC", "I-LOC", "L-LOC", None, "-", ""]) == \
        ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC", None, None, None]


def test_decoding_never_starts_an_entity_with_i():
    # Greedy argmax would give O, I-PER, I-PER: invalid. The best valid path is O, B-PER, I-PER.
    probs = numpy.asarray([[0.9, 0.02, 0.02, 0.03, 0.03],
                           [0.1, 0.0, 0.0, 0.4, 0.5],
                           [0.1, 0.0, 0.0, 0.1, 0.8]], dtype="f")
    path = [TAGS[i] for i in best_tag_path(probs, allowed_transitions(TAGS))]
    assert path == ["O", "B-PER", "I-PER"]
    assert [TAGS[i] for i in probs.argmax(axis=1)] == ["O", "I-PER", "I-PER"]


def test_decoding_does_not_continue_an_entity_with_another_type():
    probs = numpy.asarray([[0.0, 0.0, 0.0, 0.9, 0.1],
                           [0.0, 0.0, 0.6, 0.0, 0.4]], dtype="f")
    path = [TAGS[i] for i in best_tag_path(probs, allowed_transitions(TAGS))]
    assert path == ["B-PER", "I-PER"]
    assert best_tag_path(numpy.zeros((0, 5), dtype="f"), allowed_transitions(TAGS)).shape == (0,)


def test_decoding_makes_unaligned_tokens_outside_and_breaks_entities_there():
    # Unconstrained, the three tokens are one PER; the middle one has no wordpiece, so it is O and
    # the third token cannot continue the entity: it starts a new one.
    probs = numpy.asarray([[0.0, 0.0, 0.0, 0.9, 0.1],
                           [0.01, 0.0, 0.0, 0.0, 0.99],
                           [0.0, 0.0, 0.0, 0.1, 0.9]], dtype="f")
    allowed = allowed_transitions(TAGS)
    assert [TAGS[i] for i in best_tag_path(probs, allowed)] == ["B-PER", "I-PER", "I-PER"]
    mask = outside_only(numpy.asarray([False, True, False]), TAGS)
    assert mask.tolist()[1] == [True, False, False, False, False] and mask[[0, 2]].all()
    assert [TAGS[i] for i in best_tag_path(probs, allowed, mask)] == ["B-PER", "O", "B-PER"]
    zero = numpy.zeros((2, 5), dtype="f")  # even with probability 0 for O, O is chosen
    assert [TAGS[i] for i in best_tag_path(zero + [0, 1, 0, 0, 0], allowed,
                                           outside_only(numpy.asarray([True, True]), TAGS))] == ["O", "O"]


def best_valid_path_by_enumeration(probs, allowed_tags) -> list:
    """The most probable path among all valid BIO paths of ``probs`` (a brute-force reference)."""
    allowed = allowed_transitions(TAGS)
    log_probs = numpy.log(numpy.clip(probs.astype("float64"), 1e-12, None))
    best, best_score = None, -numpy.inf
    for path in product(range(len(TAGS)), repeat=len(probs)):
        previous = [-1] + list(path[:-1])
        if all(allowed[p, t] and allowed_tags[i, t] for i, (p, t) in enumerate(zip(previous, path))):
            score = sum(log_probs[i, t] for i, t in enumerate(path))
            if score > best_score:
                best, best_score = list(path), score
    return best


@pytest.mark.parametrize("seed", range(5))
def test_batched_decoding_gives_each_doc_its_best_valid_path(seed):
    # One padded batch of docs of different lengths (some empty, some with tokens forced to O,
    # some probabilities exactly 0) decodes each doc as enumeration over its own valid paths does.
    rng = numpy.random.RandomState(seed)
    probs = [rng.dirichlet(numpy.full(len(TAGS), 0.3), size=n).astype("f") for n in (4, 0, 1, 6, 3, 5)]
    probs[3][2] = [0, 0, 0, 0, 1]
    forced = [rng.rand(len(p)) < 0.2 for p in probs]
    allowed_tags = [outside_only(mask, TAGS) for mask in forced]
    paths = best_tag_paths(probs, allowed_transitions(TAGS), allowed_tags)
    assert [len(path) for path in paths] == [len(p) for p in probs]
    for p, mask, path in zip(probs, allowed_tags, paths):
        if len(p):
            assert path.tolist() == best_valid_path_by_enumeration(p, mask)


def test_docs_whose_argmax_path_is_valid_and_docs_that_need_the_viterbi_decode_alike():
    # Peaked probabilities make some docs' argmax path valid BIO (taken as it is) and others
    # start or continue an entity with a wrong I- (decoded by the Viterbi); both kinds in one
    # batch must give what enumeration over the valid paths gives.
    rng = numpy.random.RandomState(7)
    probs = [rng.dirichlet(numpy.full(len(TAGS), 0.1), size=n).astype("f") for n in (5, 6, 4, 7, 5, 6, 3, 6)]
    allowed = allowed_transitions(TAGS)
    _, emissions, lengths = constrained_emissions(probs)
    _, argmax_valid = argmax_paths(emissions, lengths, allowed)
    assert 0 < argmax_valid.sum() < len(probs)
    no_mask = [numpy.ones_like(p, dtype=bool) for p in probs]
    for p, mask, path in zip(probs, no_mask, best_tag_paths(probs, allowed)):
        assert path.tolist() == best_valid_path_by_enumeration(p, mask)


def test_gold_tags_of_unaligned_tokens_are_missing_and_entities_restart_after_them():
    assert trainable_tags(["B-LOC", "I-LOC", "I-LOC", "O"], numpy.asarray([False, False, True, False])) == \
        ["B-LOC", "I-LOC", None, "O"]
    assert trainable_tags(["B-PER", "I-PER", "I-PER"], numpy.asarray([False, True, False])) == \
        ["B-PER", None, "B-PER"]
    assert trainable_tags([None, "O"], numpy.asarray([True, False])) == [None, "O"]


def test_tags_become_spans():
    nlp = spacy.blank("zh")
    doc = nlp.make_doc("李明在北京上海")
    spans = tags_to_spans(doc, ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-LOC", "I-LOC"])
    assert [(s.text, s.label_) for s in spans] == [("李明", "PER"), ("北京", "LOC"), ("上海", "LOC")]
    spans = tags_to_spans(doc, ["B-PER", "B-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC"])
    assert [(s.start, s.end, s.label_) for s in spans] == [(0, 1, "PER"), (1, 2, "PER"), (4, 7, "LOC")]
    assert tags_to_spans(doc, ["O"] * 7) == [] and tags_to_spans(nlp.make_doc(""), []) == []


def make_pipeline() -> spacy.Language:
    nlp = spacy.blank("zh")
    nlp.add_pipe("ner_tagger", name="ner", config={"model": {
        "@architectures": "spacy.Tagger.v2", "normalize": True, "tok2vec": TOK2VEC}})
    return nlp


def annotated(nlp, text: str, ents) -> Example:
    reference = nlp.make_doc(text)
    if ents is not None:
        reference.ents = [reference.char_span(a, b, label=label) for a, b, label in ents]
    return Example(nlp.make_doc(text), reference)


def test_labels_come_from_the_examples_and_entity_types_can_be_added():
    nlp = make_pipeline()
    nlp.initialize(lambda: [annotated(nlp, "李明在北京", [(0, 2, "PER"), (3, 5, "LOC")])])
    ner = nlp.get_pipe("ner")
    assert isinstance(ner, NERTagger)
    assert ner.labels == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    assert ner.entity_labels == ("LOC", "PER")
    fresh = make_pipeline().get_pipe("ner")
    assert fresh.add_label("B-ORG") == 1 and fresh.add_label("ORG") == 0
    assert fresh.entity_labels == ("ORG",)


def test_missing_entities_add_no_loss_but_no_entities_do():
    nlp = make_pipeline()
    examples = [annotated(nlp, "李明在北京工作", [(0, 2, "PER"), (3, 5, "LOC")])]
    nlp.initialize(lambda: examples)
    missing = [annotated(nlp, "王芳去上海", None)]
    losses = {}
    nlp.update(missing, sgd=None, losses=losses, drop=0.0)
    assert losses["ner"] == 0.0
    all_outside = [annotated(nlp, "王芳去上海", [])]
    nlp.update(all_outside, sgd=None, losses=losses, drop=0.0)
    assert losses["ner"] > 0.0


def test_unaligned_tokens_add_no_loss_even_inside_a_gold_entity():
    nlp = make_pipeline()
    examples = [annotated(nlp, "北京  上海", []), annotated(nlp, "李\u200b明在北京\r\n", [(0, 3, "PER"), (4, 6, "LOC")])]
    gold = examples[0].reference  # 北 京 " " 上 海: the first LOC ends on the space token
    gold.ents = [Span(gold, 0, 3, label="LOC"), Span(gold, 3, 5, label="LOC")]
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("ner")
    scores = ner.model.predict([eg.predicted for eg in examples])
    loss, d_scores = ner.get_loss(examples, scores)
    assert numpy.isfinite(loss) and loss > 0.0
    assert [t.text for t in examples[0].predicted][2] == " "
    assert not d_scores[0][2].any() and d_scores[0][[0, 1, 3, 4]].any(axis=1).all()
    assert not d_scores[1][[1, 6]].any() and d_scores[1][[0, 2, 3, 4, 5]].any(axis=1).all()
    losses = {}
    nlp.update(examples, sgd=None, losses=losses, drop=0.0)
    assert numpy.isfinite(losses["ner"])


def test_learns_entities_and_writes_doc_ents(tmp_path):
    nlp = make_pipeline()
    texts = [("李明在北京工作", [(0, 2, "PER"), (3, 5, "LOC")]),
             ("王芳去上海", [(0, 2, "PER"), (3, 5, "LOC")]),
             ("今天下雨", [])]
    examples = [annotated(nlp, text, ents) for text, ents in texts]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(60):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    nlp.to_disk(tmp_path / "model")
    reloaded = spacy.load(tmp_path / "model")
    for nlp_ in (nlp, reloaded):
        doc = nlp_("李明在北京工作")
        assert [(e.text, e.label_) for e in doc.ents] == [("李明", "PER"), ("北京", "LOC")]
        assert nlp_("今天下雨").ents == ()
    scores = nlp.evaluate(examples)
    assert scores["ents_f"] == pytest.approx(1.0)


def test_empty_docs_get_no_entities():
    nlp = make_pipeline()
    nlp.initialize(lambda: [annotated(nlp, "李明在北京", [(0, 2, "PER")])])
    docs = list(nlp.pipe(["", "李明"]))
    assert docs[0].ents == () and isinstance(docs[1], Doc)


def test_soft_targets_of_one_hot_tags_train_like_the_gold_tags():
    """A reference doc carrying tag probabilities is trained on them: one-hot probabilities of
    the gold tags give the hard loss's gradient; a teacher's soft ones another, masked likewise."""
    nlp = make_pipeline()
    hard = annotated(nlp, "李明在北京\u200b工作", [(0, 2, "PER"), (3, 5, "LOC")])
    nlp.initialize(lambda: [hard])
    ner = nlp.get_pipe("ner")
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "O"]
    one_hot = numpy.eye(len(ner.labels), dtype="f")[[ner.labels.index(tag) for tag in tags]]
    soft = annotated(nlp, hard.reference.text, None)
    soft.reference.user_data[TAG_PROBS_KEY] = one_hot
    scores = ner.model.predict([hard.predicted, soft.predicted])
    loss, d_scores = ner.get_loss([hard, soft], scores)
    numpy.testing.assert_allclose(d_scores[1], d_scores[0], atol=1e-6)
    assert not d_scores[1][5].any()  # U+200B: no evidence, no gradient
    blurred = 0.5 * one_hot + 0.5 / len(ner.labels)
    soft.reference.user_data[TAG_PROBS_KEY] = blurred
    _, d_blurred = ner.get_loss([soft], ner.model.predict([soft.predicted]))
    assert not numpy.allclose(d_blurred[0], d_scores[0]) and not d_blurred[0][5].any()
    soft.reference.user_data[TAG_PROBS_KEY] = blurred[:3]
    with pytest.raises(ValueError, match="soft tag targets of shape"):
        ner.get_loss([soft], ner.model.predict([soft.predicted]))


def test_keep_probabilities_stores_the_tag_probabilities_of_each_doc():
    nlp = make_pipeline()
    nlp.initialize(lambda: [annotated(nlp, "李明在北京", [(0, 2, "PER"), (3, 5, "LOC")])])
    ner = nlp.get_pipe("ner")
    assert TAG_PROBS_KEY not in nlp("李明").user_data
    ner.keep_probabilities = True
    doc = nlp("李明在北京")
    probs = doc.user_data[TAG_PROBS_KEY]
    assert probs.shape == (5, len(ner.labels))
    numpy.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    numpy.testing.assert_allclose(probs, ner.model.predict([nlp.make_doc("李明在北京")])[0], rtol=1e-5)
