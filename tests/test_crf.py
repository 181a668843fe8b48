"""The linear-chain CRF (``crf.py``) against enumeration of every tag path on tiny inputs, and
``ner_tagger`` with ``crf = true``: its loss and gradients, missing annotation, BIO constraints in
decoding, saving and loading the learned transitions, and a short training of configs/cpu.cfg."""
from itertools import product

import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import fix_random_seed

from spacy_bert_zh.crf import crf_log_partition, crf_marginals, crf_viterbi, logsumexp
from spacy_bert_zh.ner_tagger import TAG_PROBS_KEY, emission_scores

from conftest import CPU_CONFIG
from test_ner_tagger import TOK2VEC, annotated

LENGTHS = (3, 1, 4, 2)


def random_crf(seed: int, n_tags: int, lengths=LENGTHS):
    """Random emissions (padding filled with large junk, which must not count) and CRF scores."""
    rng = numpy.random.RandomState(seed)
    emissions = rng.normal(0.0, 2.0, (len(lengths), max(lengths), n_tags))
    for row, n in enumerate(lengths):
        emissions[row, n:] = rng.normal(0.0, 50.0, emissions[row, n:].shape)
    transitions, start, end = (rng.normal(0.0, 2.0, shape) for shape in ((n_tags, n_tags), (n_tags,), (n_tags,)))
    return emissions, numpy.asarray(lengths), transitions, start, end


def path_score(emissions, transitions, start, end, path) -> float:
    score = start[path[0]] + end[path[-1]] + sum(emissions[t, tag] for t, tag in enumerate(path))
    return score + sum(transitions[a, b] for a, b in zip(path, path[1:]))


def enumerate_paths(emissions, n: int, transitions, start, end):
    """Every tag path of a sequence of length n, with its score."""
    paths = list(product(range(emissions.shape[1]), repeat=n))
    return paths, numpy.asarray([path_score(emissions[:n], transitions, start, end, p) for p in paths])


@pytest.mark.parametrize("n_tags", [3, 4])
def test_log_partition_and_marginals_match_enumeration(n_tags):
    emissions, lengths, transitions, start, end = random_crf(n_tags, n_tags)
    marginals = crf_marginals(emissions, lengths, transitions, start, end)
    numpy.testing.assert_allclose(crf_log_partition(emissions, lengths, transitions, start, end),
                                  marginals.log_z, rtol=1e-12)
    for row, n in enumerate(lengths):
        paths, scores = enumerate_paths(emissions[row], n, transitions, start, end)
        log_z = numpy.log(numpy.exp(scores).sum())
        probs = numpy.exp(scores - log_z)
        unary = numpy.zeros((max(lengths), n_tags))
        pairwise = numpy.zeros((n_tags, n_tags))
        for path, p in zip(paths, probs):
            for t, tag in enumerate(path):
                unary[t, tag] += p
            for a, b in zip(path, path[1:]):
                pairwise[a, b] += p
        assert marginals.log_z[row] == pytest.approx(log_z, rel=1e-10)
        numpy.testing.assert_allclose(marginals.unary[row], unary, atol=1e-10)  # 0 past the length
        numpy.testing.assert_allclose(marginals.pairwise[row], pairwise, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_viterbi_is_the_best_path_of_the_enumeration(seed):
    emissions, lengths, transitions, start, end = random_crf(seed, 3 + seed % 2)
    paths, best_scores = crf_viterbi(emissions, lengths, transitions, start, end)
    for row, n in enumerate(lengths):
        candidates, scores = enumerate_paths(emissions[row], n, transitions, start, end)
        assert tuple(paths[row]) == candidates[int(scores.argmax())]
        assert best_scores[row] == pytest.approx(scores.max(), rel=1e-12)


def test_logsumexp_of_forbidden_only_scores_stays_finite():
    assert numpy.isfinite(logsumexp(numpy.full((2, 3), -1e4), axis=1)).all()
    assert logsumexp(numpy.asarray([[0.0, 0.0]]), axis=1)[0] == pytest.approx(numpy.log(2))


def test_gradient_of_the_partially_observed_nll_is_free_minus_clamped_marginals():
    """NLL = log Z - log Z(paths agreeing with the observed tags); its gradient by torch autograd
    over the enumeration equals the difference of the two marginals the component uses."""
    n_tags = 4
    emissions, lengths, transitions, start, end = random_crf(7, n_tags)
    observed = numpy.ones(emissions.shape, dtype=bool)  # (batch, positions, tags): allowed in the gold
    observed[0, 0] = numpy.eye(n_tags, dtype=bool)[2]
    observed[0, 2] = numpy.eye(n_tags, dtype=bool)[1]  # position 1 of row 0 is missing: marginalised
    observed[2, :4] = numpy.eye(n_tags, dtype=bool)[[0, 3, 3, 1]]
    observed[3, 1] = numpy.eye(n_tags, dtype=bool)[0]
    clamp = numpy.where(observed, 0.0, -1e4)
    free = crf_marginals(emissions, lengths, transitions, start, end)
    clamped = crf_marginals(emissions + clamp, lengths, transitions, start, end)

    e, tr, st, en = (torch.tensor(a, requires_grad=True) for a in (emissions, transitions, start, end))
    nll = 0.0
    for row, n in enumerate(lengths):
        paths = list(product(range(n_tags), repeat=int(n)))
        scores = torch.stack([st[p[0]] + en[p[-1]] + sum(e[row, t, k] for t, k in enumerate(p))
                              + sum((tr[a, b] for a, b in zip(p, p[1:])), torch.tensor(0.0, dtype=torch.float64))
                              for p in paths])
        agrees = torch.tensor([all(observed[row, t, k] for t, k in enumerate(p)) for p in paths])
        nll = nll + torch.logsumexp(scores, 0) - torch.logsumexp(scores[agrees], 0)
    nll.backward()
    assert nll.item() == pytest.approx(float((free.log_z - clamped.log_z).sum()), rel=1e-9)
    d_unary = free.unary - clamped.unary
    numpy.testing.assert_allclose(e.grad.numpy(), d_unary, atol=1e-9)
    numpy.testing.assert_allclose(tr.grad.numpy(), (free.pairwise - clamped.pairwise).sum(axis=0), atol=1e-9)
    numpy.testing.assert_allclose(st.grad.numpy(), d_unary[:, 0].sum(axis=0), atol=1e-9)
    numpy.testing.assert_allclose(en.grad.numpy(), d_unary[numpy.arange(4), lengths - 1].sum(axis=0), atol=1e-9)
    assert abs(d_unary[0, 1]).sum() > 1e-3  # the missing token still gets a gradient


def is_bio(tags) -> bool:
    """I-X only right after B-X or I-X."""
    return all(not tag.startswith("I-") or previous in ("B-" + tag[2:], tag)
               for previous, tag in zip(["O"] + list(tags), tags))


def make_crf_pipeline() -> spacy.Language:
    nlp = spacy.blank("zh")
    nlp.add_pipe("ner_tagger", name="ner", config={"crf": True, "model": {
        "@architectures": "spacy.Tagger.v2", "normalize": True, "tok2vec": TOK2VEC}})
    return nlp


def initialized_crf_pipeline(seed: int = 0):
    """A CRF ner with random (not zero) transition, start and end scores and softmax weights,
    small enough that no tag is certain."""
    fix_random_seed(seed)
    nlp = make_crf_pipeline()
    nlp.initialize(lambda: [annotated(nlp, "李明在北京", [(0, 2, "PER"), (3, 5, "LOC")])])
    ner = nlp.get_pipe("ner")
    rng = numpy.random.RandomState(seed)
    for name in ("transitions", "start", "end"):
        ner.model.set_param(name, rng.normal(0.0, 1.0, ner.model.get_param(name).shape).astype("f"))
    softmax = ner.model.get_ref("softmax")
    softmax.set_param("W", rng.normal(0.0, 0.1, softmax.get_param("W").shape).astype("f"))
    return nlp, ner


def test_crf_loss_and_gradients_of_the_component_match_autograd():
    """``crf_loss`` on a doc with a missing gold tag and a token the encoder sees nothing of
    (U+200B): loss and gradients (emission scores via ``d_scores``, CRF scores via ``inc_grad``)
    are those of the brute-force NLL under the BIO constraints, the missing token free, the U+200B
    one O."""
    nlp, ner = initialized_crf_pipeline()
    labels = list(ner.labels)
    eg = annotated(nlp, "李\u200b明北", [(0, 3, "PER"), (3, 4, "LOC")])
    scores = ner.model.predict([eg.predicted])
    truths = ["B-PER", None, "B-PER", None]  # trainable_tags' output, with the last tag missing too
    d_scores, loss = ner.crf_loss(scores, [truths], [eg.predicted])

    raw = {name: torch.tensor(ner.model.get_param(name).astype("float64"), requires_grad=True)
           for name in ("transitions", "start", "end")}
    e = torch.tensor(emission_scores(scores[0]), requires_grad=True)
    valid = [p for p in product(range(len(labels)), repeat=4)
             if is_bio([labels[k] for k in p]) and labels[p[1]] == "O"]  # U+200B: O on both sides
    score = torch.stack([raw["start"][p[0]] + raw["end"][p[-1]] + sum(e[t, k] for t, k in enumerate(p))
                         + sum(raw["transitions"][a, b] for a, b in zip(p, p[1:])) for p in valid])
    agrees = [labels[p[0]] == "B-PER" and labels[p[2]] == "B-PER" for p in valid]
    nll = torch.logsumexp(score, 0) - torch.logsumexp(score[agrees], 0)
    nll.backward()
    assert loss == pytest.approx(nll.item(), rel=1e-5) and loss > 0.0
    numpy.testing.assert_allclose(d_scores[0], e.grad.numpy(), atol=1e-5)
    assert not d_scores[0][1].any()  # U+200B: no gradient
    assert abs(d_scores[0][3]).sum() > 1e-3  # the missing tag: free minus clamped marginals, not 0
    numpy.testing.assert_allclose(d_scores[0].sum(axis=1), 0.0, atol=1e-5)  # as the softmax's logits want
    for name, param in raw.items():
        numpy.testing.assert_allclose(ner.model.get_grad(name), param.grad.numpy(), atol=1e-5)

    impossible = ["B-PER", None, "I-PER", None]  # I-PER after the forced O
    _, loss = ner.crf_loss(scores, [impossible], [eg.predicted])
    assert numpy.isfinite(loss) and loss > 1e3


def test_missing_annotation_adds_no_crf_loss_and_leaves_transitions_alone():
    nlp = make_crf_pipeline()
    optimizer = nlp.initialize(lambda: [annotated(nlp, "李明在北京工作", [(0, 2, "PER"), (3, 5, "LOC")])])
    ner = nlp.get_pipe("ner")
    before = ner.model.get_param("transitions").copy()
    losses = {}
    nlp.update([annotated(nlp, "王芳去上海", None), annotated(nlp, "", None)], sgd=optimizer, losses=losses, drop=0.0)
    assert losses["ner"] == 0.0
    numpy.testing.assert_array_equal(ner.model.get_param("transitions"), before)
    nlp.update([annotated(nlp, "王芳去上海", [])], sgd=optimizer, losses=losses, drop=0.0)
    assert losses["ner"] > 0.0
    assert not numpy.array_equal(ner.model.get_param("transitions"), before)


def test_crf_decoding_keeps_bio_valid_whatever_the_learned_transitions_say():
    nlp, ner = initialized_crf_pipeline()
    labels = list(ner.labels)
    transitions = ner.model.get_param("transitions")
    transitions[labels.index("O"), labels.index("I-PER")] = 50.0  # learned scores favour O -> I-PER
    transitions[labels.index("B-LOC"), labels.index("I-PER")] = 50.0
    ner.model.set_param("transitions", transitions)
    start = ner.model.get_param("start")
    start[labels.index("I-PER")] = 50.0
    ner.model.set_param("start", start)
    for text in ("李明在北京", "王芳去上海工作", "今天下雨"):
        doc = nlp(text)
        tags = [ner.labels[i] for i in ner.predict([nlp.make_doc(text)]).paths[0]]
        assert len(tags) == len(doc)
        assert is_bio(tags)


def test_crf_transitions_change_decoding_and_probabilities_are_its_marginals():
    """The same emissions decode differently once the transitions say B-LOC is followed by
    I-LOC; ``keep_probabilities`` stores the CRF's marginals, with U+200B tokens surely O."""
    nlp, ner = initialized_crf_pipeline(seed=3)
    labels = list(ner.labels)
    for name in ("transitions", "start", "end"):
        ner.model.set_param(name, numpy.zeros_like(ner.model.get_param(name)))
    doc = nlp.make_doc("李明在北京")
    plain = ner.predict([doc]).paths[0]
    transitions = ner.model.get_param("transitions")
    transitions[:, labels.index("I-LOC")] = -20.0
    transitions[labels.index("B-LOC"), labels.index("I-LOC")] = 20.0
    transitions[labels.index("B-LOC"), [i for i, tag in enumerate(labels) if tag != "I-LOC"]] = -20.0
    ner.model.set_param("transitions", transitions)
    start = ner.model.get_param("start")
    start[labels.index("B-LOC")] = 40.0
    ner.model.set_param("start", start)
    steered = ner.predict([doc]).paths[0]
    assert [labels[i] for i in steered[:2]] == ["B-LOC", "I-LOC"] and list(plain) != list(steered)
    ner.keep_probabilities = True
    docs = list(nlp.pipe(["李明在北京", "李\u200b明", ""]))
    probs = docs[0].user_data[TAG_PROBS_KEY]
    numpy.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert probs[0, labels.index("B-LOC")] > 0.99 and probs[1, labels.index("I-LOC")] > 0.99
    assert docs[1].user_data[TAG_PROBS_KEY][1, labels.index("O")] == pytest.approx(1.0)
    assert docs[2].user_data[TAG_PROBS_KEY].shape == (0, len(labels)) and docs[2].ents == ()


def test_soft_targets_with_a_crf_train_the_softmax_token_by_token():
    nlp, ner = initialized_crf_pipeline()
    soft = annotated(nlp, "李明在北京", None)
    targets = numpy.full((5, len(ner.labels)), 1.0 / len(ner.labels), dtype="f")
    soft.reference.user_data[TAG_PROBS_KEY] = targets
    scores = ner.model.predict([soft.predicted])
    loss, d_scores = ner.get_loss([soft], scores)
    numpy.testing.assert_allclose(d_scores[0], scores[0] - targets, atol=1e-6)
    assert not ner.model.has_grad("transitions")


def test_crf_pipeline_learns_and_its_transitions_survive_saving(tmp_path):
    nlp = make_crf_pipeline()
    texts = [("李明在北京工作", [(0, 2, "PER"), (3, 5, "LOC")]),
             ("王芳去上海", [(0, 2, "PER"), (3, 5, "LOC")]),
             ("今天下雨", [])]
    examples = [annotated(nlp, text, ents) for text, ents in texts]
    optimizer = nlp.initialize(lambda: examples)
    assert not nlp.get_pipe("ner").model.get_param("transitions").any()
    for _ in range(60):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    transitions = nlp.get_pipe("ner").model.get_param("transitions")
    assert abs(transitions).max() > 0.01
    nlp.to_disk(tmp_path / "model")
    reloaded = spacy.load(tmp_path / "model")
    from_bytes = make_crf_pipeline()
    from_bytes.get_pipe("ner").from_bytes(nlp.get_pipe("ner").to_bytes())
    for nlp_ in (nlp, reloaded, from_bytes):
        ner = nlp_.get_pipe("ner")
        assert ner.uses_crf
        for name in ("transitions", "start", "end"):
            numpy.testing.assert_array_equal(ner.model.get_param(name), nlp.get_pipe("ner").model.get_param(name))
        doc = nlp_("李明在北京工作")
        assert [(e.text, e.label_) for e in doc.ents] == [("李明", "PER"), ("北京", "LOC")]
    assert reloaded.config["components"]["ner"]["crf"] is True


@pytest.mark.slow
def test_cpu_config_with_crf_trains_saves_and_loads(tmp_path, encoder_path, sample_corpus):
    """configs/cpu.cfg, NER only, ``components.ner.crf = true``: 40 steps on the embedded corpus
    train the transitions away from zero, and the saved pipeline loads and finds entities."""
    from spacy.cli.train import train

    train(CPU_CONFIG, tmp_path, use_gpu=-1, overrides={
        "paths.train": str(sample_corpus / "train"), "paths.dev": str(sample_corpus / "dev"),
        "paths.encoder": str(encoder_path), "nlp.pipeline": ["transformer", "ner"],
        "components.ner.crf": True, "training.max_steps": 40, "training.eval_frequency": 40,
        "training.score_weights.cats_score": None, "training.score_weights.ents_f": 1.0})
    nlp = spacy.load(tmp_path / "model-last")
    ner = nlp.get_pipe("ner")
    assert nlp.pipe_names == ["transformer", "ner"] and ner.uses_crf
    assert abs(ner.model.get_param("transitions")).max() > 1e-3
    docs = list(nlp.pipe(eg.reference.text for eg in read_examples(nlp, sample_corpus / "dev")))
    assert sum(len(doc.ents) for doc in docs) > 0


def read_examples(nlp, folder):
    from spacy.tokens import DocBin

    return [Example(nlp.make_doc(doc.text), doc) for path in sorted(folder.glob("*.spacy"))
            for doc in DocBin().from_disk(path).get_docs(nlp.vocab) if doc.has_annotation("ENT_IOB")]
