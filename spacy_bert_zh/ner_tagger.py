"""``ner_tagger``: named entities as per-character BIO tags, the way ``BertForTokenClassification`` does it.

spaCy's ``ner`` is a transition-based parser, which learns slowly at first (README.md). This
component is spaCy's ``tagger`` (a softmax over each token's transformer vector) trained on BIO
tags derived from ``doc.ents``, decoded with the constraint that ``I-X`` only follows ``B-X`` or
``I-X``, and writing ``doc.ents``. Docs whose entities were never set are missing, not "all O",
exactly as for spaCy's ``ner``.

Tokens the encoder sees nothing of (whitespace, U+200B, U+0000, ... see ``dropped_characters``)
are decoded as O, so no entity starts, ends or continues on them; in training their gold tag is
missing, since their vector carries no evidence to learn from.

With ``crf = true`` the component also learns which tag may follow which (a linear-chain CRF,
``crf.py``): transition scores (tags x tags, plus start and end scores) are trained with the CRF
loss and decoded with Viterbi over them. The emission scores are the log of the tagger's softmax
(a per-token constant away from its logits, which the CRF cancels), so the same ``spacy.Tagger.v2``
model serves both, and the gradient it gets is the CRF's: marginals minus gold marginals. The
BIO constraints still hold, as ``FORBIDDEN`` scores added to the learned ones, in training too.
"""

from itertools import islice
from typing import Callable, Iterable, List, NamedTuple, Optional, Sequence

import numpy
from spacy.language import Language
from spacy.pipeline.tagger import Tagger
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from thinc.api import Model, SequenceCategoricalCrossentropy

from .crf import CRF_LAYER, FORBIDDEN, crf_marginals, crf_viterbi, with_crf_transitions
from .dropped_characters import unaligned_tokens, unaligned_tokens_of

NER_TAGGER_FACTORY = "ner_tagger"
OUTSIDE = "O"
# doc.user_data key of per-token tag probabilities (tokens x tags, in ``labels`` order): written by
# ``set_annotations`` when ``keep_probabilities`` is on; read by ``get_loss`` as soft targets
TAG_PROBS_KEY = "spacy_bert_zh.tag_probs"

DEFAULT_NER_TAGGER_MODEL = {
    "@architectures": "spacy.Tagger.v2",
    "normalize": True,
    "tok2vec": {"@architectures": "spacy-transformers.TransformerListener.v1", "grad_factor": 1.0,
                "upstream": "*", "pooling": {"@layers": "reduce_mean.v1"}},
}


class TagGuesses(NamedTuple):
    """What ``NERTagger.predict`` returns: the decoded tag ids and the tag probabilities, per doc."""

    paths: List[numpy.ndarray]
    probabilities: List[numpy.ndarray]


class NERTagger(Tagger):
    """Entity recognizer that tags each token O, B-label or I-label; ``labels`` are those tags.

    With ``keep_probabilities`` set, each annotated doc also gets its tag probabilities in
    ``doc.user_data[TAG_PROBS_KEY]`` (what ``annotate --tag-probs`` writes, and what a distilled
    student learns from). A reference doc that carries them is trained on them as soft targets.
    With a CRF, the tag probabilities are the CRF's marginals (each token's tag distribution over
    all valid paths), not the softmax's.
    """

    keep_probabilities = False

    @property
    def entity_labels(self) -> tuple:
        """The entity types (PER, LOC, ...)."""
        return tuple(tag[2:] for tag in self.labels if tag.startswith("B-"))

    @property
    def uses_crf(self) -> bool:
        """Whether the model carries CRF transition scores (the factory's ``crf = true``)."""
        return self.model.name == CRF_LAYER

    def add_label(self, label: str) -> int:
        """Add an entity type (``PER``) or one of its tags (``B-PER``): adds O, B-PER and I-PER."""
        entity = label[2:] if label[:2] in ("B-", "I-") else label
        tags = [OUTSIDE] if entity == OUTSIDE else [OUTSIDE, f"B-{entity}", f"I-{entity}"]
        self.vocab.strings.add(entity)
        return max(super(NERTagger, self).add_label(tag) for tag in tags)

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp=None,
                   labels: Optional[Sequence[str]] = None) -> None:
        """Take the entity types from ``labels`` or from the examples' ``doc.ents``."""
        validate_get_examples(get_examples, "NERTagger.initialize")
        if labels is None:
            labels = sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents})
        for label in labels:
            self.add_label(label)
        self._require_labels()
        docs = [eg.predicted for eg in islice(get_examples(), 10)]
        sample = [self.model.ops.alloc2f(len(doc), len(self.labels)) for doc in docs]
        self.model.initialize(X=docs, Y=sample)

    def get_loss(self, examples: Iterable[Example], scores: List) -> tuple:
        """Cross-entropy against the gold BIO tags; tokens without entity annotation add nothing,
        nor do tokens the encoder sees nothing of: the gold stays in the doc, but with no evidence
        there the model has nothing to learn, and ``predict`` makes them O anyway.

        With a CRF, the loss of the hard-labelled docs is the CRF's (``crf_loss``); docs with soft
        targets keep the token-level soft loss on the softmax, and give the transitions nothing.
        """
        validate_examples(examples, "NERTagger.get_loss")
        examples = list(examples)
        loss_func = SequenceCategoricalCrossentropy(names=self.labels, normalize=False)
        hard = [i for i, eg in enumerate(examples) if soft_targets(eg) is None]
        soft = [i for i, eg in enumerate(examples) if soft_targets(eg) is not None]
        d_scores, loss = list(scores), 0.0
        if hard:
            hard_docs = [examples[i].predicted for i in hard]
            truths = [trainable_tags(biluo_to_bio(examples[i].get_aligned_ner()), unaligned)
                      for i, unaligned in zip(hard, unaligned_tokens_of(hard_docs))]
            if self.uses_crf:
                d_hard, loss = self.crf_loss([scores[i] for i in hard], truths, hard_docs)
            else:
                d_hard, loss = loss_func([scores[i] for i in hard], truths)
            for i, d in zip(hard, d_hard):
                d_scores[i] = d
        for i in soft:
            d_scores[i], doc_loss = self.soft_loss(scores[i], soft_targets(examples[i]), examples[i].predicted)
            loss += doc_loss
        return float(loss), d_scores

    def crf_loss(self, scores: List, truths: List[List[Optional[str]]], docs: List[Doc]) -> tuple:
        """Negative log-likelihood of the gold tags under the CRF, summed over the docs, and its
        gradient on the emission scores (CRF marginals minus gold marginals, per token); the
        gradient on the transition, start and end scores goes to the model (``inc_grad``).

        A token whose gold tag is missing (None) inside an annotated doc is marginalised over: the
        gold term sums over all its tags, so the doc teaches what its annotated tokens say and
        nothing about that token. A doc with no gold tag at all (no entity annotation) adds no loss
        and no gradient. Tokens the encoder sees nothing of are O on both sides of the loss, as in
        decoding, so they add nothing either.
        """
        ops = self.model.ops
        d_scores = [ops.alloc2f(*doc_scores.shape) for doc_scores in scores]
        annotated = [i for i, tags in enumerate(truths) if any(tag is not None for tag in tags)]
        if not annotated:
            return d_scores, 0.0
        tag_ids = {tag: i for i, tag in enumerate(self.labels)}
        n_tags = len(self.labels)
        gold_masks = []
        for i in annotated:
            mask = numpy.ones((len(truths[i]), n_tags), dtype=bool)
            for t, tag in enumerate(truths[i]):
                if tag is not None:
                    if tag not in tag_ids:
                        raise ValueError(f"gold tag {tag!r} is not one of the ner's tags {self.labels}")
                    mask[t] = False
                    mask[t, tag_ids[tag]] = True
            gold_masks.append(mask)
        emissions, lengths = pad_scores([emission_scores(ops.to_numpy(scores[i])) for i in annotated])
        allowed = pad_scores(self.allowed_tags([docs[i] for i in annotated]))[0]
        gold = pad_scores(gold_masks)[0] & allowed
        transitions, start, end = self.crf_scores()
        free = crf_marginals(emissions + mask_scores(allowed), lengths, transitions, start, end)
        clamped = crf_marginals(emissions + mask_scores(gold), lengths, transitions, start, end)
        d_unary = (free.unary - clamped.unary) * (allowed.sum(axis=2) > 1)[:, :, None]  # exact 0 on forced O
        for row, i in enumerate(annotated):
            d_scores[i] = ops.asarray2f(d_unary[row, :lengths[row]].astype("f"))
        last = lengths - 1
        rows = numpy.arange(len(annotated))
        self.model.inc_grad("transitions", ops.asarray2f((free.pairwise - clamped.pairwise).sum(axis=0).astype("f")))
        self.model.inc_grad("start", ops.asarray1f(d_unary[:, 0].sum(axis=0).astype("f")))
        self.model.inc_grad("end", ops.asarray1f(d_unary[rows, last].sum(axis=0).astype("f")))
        return d_scores, float((free.log_z - clamped.log_z).sum())

    def allowed_tags(self, docs: List[Doc]) -> List[numpy.ndarray]:
        """Per doc, the tags each token may take (``outside_only``): O alone where the encoder
        sees nothing, found for the whole batch at once (``unaligned_tokens_of``)."""
        return [outside_only(unaligned, self.labels) for unaligned in unaligned_tokens_of(docs)]

    def crf_scores(self) -> tuple:
        """The learned transition, start and end scores (float64 numpy) with the BIO constraints
        added: I-X only after B-X or I-X, never first."""
        ops = self.model.ops
        penalty = mask_scores(allowed_transitions(self.labels))
        transitions = ops.to_numpy(self.model.get_param("transitions")).astype("float64") + penalty[:-1]
        start = ops.to_numpy(self.model.get_param("start")).astype("float64") + penalty[-1]
        return transitions, start, ops.to_numpy(self.model.get_param("end")).astype("float64")

    def crf_decode(self, docs: List[Doc], probabilities: List[numpy.ndarray]) -> TagGuesses:
        """Viterbi over emissions and learned transitions, with the tokens the encoder sees
        nothing of as O; the probabilities returned are the CRF's marginals."""
        paths = [numpy.zeros((0,), dtype="i") for _ in docs]
        marginals = [numpy.zeros((0, len(self.labels)), dtype="f") for _ in docs]
        nonempty, emissions, lengths = constrained_emissions(
            probabilities, self.allowed_tags(docs))
        transitions, start, end = self.crf_scores()
        best, _ = crf_viterbi(emissions, lengths, transitions, start, end)
        unary = crf_marginals(emissions, lengths, transitions, start, end).unary
        for row, i in enumerate(nonempty):
            paths[i] = best[row].astype("i")
            marginals[i] = unary[row, :lengths[row]].astype("f")
        return TagGuesses(paths, marginals)

    def soft_loss(self, probs, targets: numpy.ndarray, doc: Doc) -> tuple:
        """Cross-entropy against a teacher's tag probabilities (gradient ``probs - targets``), with
        the tokens the encoder sees nothing of left out, as in the hard loss."""
        ops = self.model.ops
        if targets.shape != tuple(probs.shape):
            raise ValueError(f"soft tag targets of shape {targets.shape} for a doc of {len(doc)} "
                             f"tokens and {len(self.labels)} tags: were they made with other labels?")
        keep = ops.asarray2f((~unaligned_tokens(doc))[:, None].astype("f"))
        targets = ops.asarray2f(targets)
        d_probs = (probs - targets) * keep
        loss = -float((targets * ops.xp.log(ops.xp.clip(probs, 1e-12, None)) * keep).sum())
        return d_probs, loss

    def predict(self, docs: Iterable[Doc]) -> TagGuesses:
        """The best valid tag path of each doc, with the tokens the encoder sees nothing of as O.

        Their vector is pooled from no wordpiece (zeros), so any tag there would be a guess. They
        are constrained inside the Viterbi rather than cleared afterwards, so that the entities
        around them are re-decoded as valid BIO (no I-X after a forced O).
        """
        docs = list(docs)
        if not any(len(doc) for doc in docs):
            empty = [numpy.zeros((0,), dtype="i") for _ in docs]
            return TagGuesses(empty, [numpy.zeros((0, len(self.labels)), dtype="f") for _ in docs])
        probabilities = [self.model.ops.to_numpy(doc_scores) for doc_scores in self.model.predict(docs)]
        if self.uses_crf:
            return self.crf_decode(docs, probabilities)
        paths = best_tag_paths(probabilities, allowed_transitions(self.labels), self.allowed_tags(docs))
        return TagGuesses(paths, probabilities)

    def set_annotations(self, docs: Iterable[Doc], guesses: TagGuesses) -> None:
        """Write the decoded tags as ``doc.ents`` (replacing what was there), and the tag
        probabilities to ``doc.user_data`` when ``keep_probabilities`` is on."""
        for doc, tag_ids, probs in zip(docs, guesses.paths, guesses.probabilities):
            doc.ents = entity_spans(doc, tag_ids, self.labels)
            if self.keep_probabilities:
                doc.user_data[TAG_PROBS_KEY] = probs.astype("float32", copy=False)


def soft_targets(example: Example) -> Optional[numpy.ndarray]:
    """The reference doc's tag probabilities (soft targets), if it carries them."""
    return example.reference.user_data.get(TAG_PROBS_KEY)


def emission_scores(probs: numpy.ndarray) -> numpy.ndarray:
    """CRF emission scores of a doc: the log of the softmax's tag probabilities (float64)."""
    return numpy.log(numpy.clip(probs.astype("float64"), 1e-12, None))


def constrained_emissions(probabilities: Sequence[numpy.ndarray],
                          allowed_tags: Optional[Sequence[numpy.ndarray]] = None) -> tuple:
    """(indices of the non-empty docs, their emission scores as one padded batch with
    ``FORBIDDEN`` added where ``allowed_tags`` forbids a tag, their lengths): what both decoders
    give ``crf_viterbi``."""
    nonempty = [i for i, probs in enumerate(probabilities) if len(probs)]
    emissions, lengths = pad_scores([emission_scores(probabilities[i]) for i in nonempty])
    if allowed_tags is not None:
        emissions += mask_scores(pad_scores([allowed_tags[i] for i in nonempty])[0])
    return nonempty, emissions, lengths


def pad_scores(arrays: Sequence[numpy.ndarray]) -> tuple:
    """Per-doc (tokens x tags) arrays as one zero-padded batch (docs x tokens x tags), and the lengths."""
    lengths = numpy.asarray([len(array) for array in arrays], dtype="i")
    batch = numpy.zeros((len(arrays), int(lengths.max()), arrays[0].shape[1]), dtype=arrays[0].dtype)
    for row, array in enumerate(arrays):
        batch[row, :len(array)] = array
    return batch, lengths


def mask_scores(allowed: numpy.ndarray) -> numpy.ndarray:
    """0 where ``allowed``, ``FORBIDDEN`` elsewhere: what is added to forbidden scores."""
    return numpy.where(allowed, 0.0, FORBIDDEN)


def biluo_to_bio(tags: Sequence[Optional[str]]) -> List[Optional[str]]:
    """spaCy's aligned BILUO tags as BIO; missing tokens (None, "-", "") stay None."""
    bio = []
    for tag in tags:
        if tag in (None, "", "-"):
            bio.append(None)
        elif tag == OUTSIDE:
            bio.append(OUTSIDE)
        else:
            bio.append(("B-" if tag[0] in "BU" else "I-") + tag[2:])
    return bio


def trainable_tags(tags: Sequence[Optional[str]], unaligned: numpy.ndarray) -> List[Optional[str]]:
    """Gold BIO tags as the decoder can produce them: unaligned tokens missing (None), and an I-X
    right after one becomes B-X, since decoding makes that token O and I-X cannot follow O."""
    trainable = list(tags)
    for i in numpy.flatnonzero(unaligned):
        trainable[i] = None
        after = i + 1
        if after < len(trainable) and (trainable[after] or "").startswith("I-"):
            trainable[after] = "B-" + trainable[after][2:]
    return trainable


def outside_only(unaligned: numpy.ndarray, tags: Sequence[str]) -> numpy.ndarray:
    """``allowed[t, j]``: token t may take tag j; unaligned tokens may only be O."""
    allowed = numpy.ones((len(unaligned), len(tags)), dtype=bool)
    allowed[unaligned] = numpy.asarray(tags) == OUTSIDE
    return allowed


def allowed_transitions(tags: Sequence[str]) -> numpy.ndarray:
    """``allowed[i, j]``: tag j may follow tag i (I-X only after B-X or I-X); row -1 is the start."""
    allowed = numpy.ones((len(tags) + 1, len(tags)), dtype=bool)
    for j, tag in enumerate(tags):
        if tag.startswith("I-"):
            allowed[:, j] = [prev in (f"B-{tag[2:]}", tag) for prev in tags] + [False]
    return allowed


def best_tag_paths(probabilities: Sequence[numpy.ndarray], allowed: numpy.ndarray,
                   allowed_tags: Optional[Sequence[numpy.ndarray]] = None) -> List[numpy.ndarray]:
    """The most probable valid BIO sequence of each doc: its argmax path where that is valid
    (``argmax_paths``), else the Viterbi over its tags x tokens probabilities, the docs that need
    it decoded as one padded batch (the Python loop runs over positions once per batch, not once
    per doc; per doc it was 60% of the ner's prediction time in annotate).

    ``allowed`` is ``allowed_transitions``; ``allowed_tags`` (per doc, tokens x tags, boolean)
    restricts the tags each token may take, which also stops an I-X from continuing across a
    token forced to O. Forbidden choices score ``FORBIDDEN`` (-1e4): more than any valid path can
    lose by avoiding them (at most -log(1e-12) = 27.6 per token), so they are never taken.
    """
    paths = [numpy.zeros((0,), dtype="i") for _ in probabilities]
    if not any(len(probs) for probs in probabilities):
        return paths
    nonempty, emissions, lengths = constrained_emissions(probabilities, allowed_tags)
    best, valid = argmax_paths(emissions, lengths, allowed)
    for row in numpy.flatnonzero(valid):
        paths[nonempty[row]] = best[row, :lengths[row]].astype("i")
    redo = numpy.flatnonzero(~valid)
    if len(redo):
        penalty = mask_scores(allowed)
        longest = int(lengths[redo].max())
        decoded, _ = crf_viterbi(emissions[redo, :longest], lengths[redo], penalty[:-1], penalty[-1],
                                 numpy.zeros(allowed.shape[1]))
        for row, path in zip(redo, decoded):
            paths[nonempty[row]] = path.astype("i")
    return paths


def argmax_paths(emissions: numpy.ndarray, lengths: numpy.ndarray, allowed: numpy.ndarray) -> tuple:
    """The most probable tag of each token (docs x tokens) and, per doc, whether that path is
    valid BIO. Where it is, it is also the best valid path (no path scores more), so only the
    other docs need the Viterbi: a trained tagger's argmax path is valid in most docs.
    ``allowed`` is ``allowed_transitions`` (its last row: the start)."""
    best = emissions.argmax(axis=2)
    previous = numpy.concatenate([numpy.full((len(best), 1), len(allowed) - 1), best[:, :-1]], axis=1)
    padding = numpy.arange(best.shape[1])[None] >= lengths[:, None]
    return best, (allowed[previous, best] | padding).all(axis=1)


def best_tag_path(probs: numpy.ndarray, allowed: numpy.ndarray,
                  allowed_tags: Optional[numpy.ndarray] = None) -> numpy.ndarray:
    """``best_tag_paths`` of one doc."""
    return best_tag_paths([probs], allowed, None if allowed_tags is None else [allowed_tags])[0]


def entity_spans(doc: Doc, tag_ids: numpy.ndarray, tags: Sequence[str]) -> List[Span]:
    """Entity spans from a valid BIO path of tag ids (indices into ``tags``), found with array
    operations: an entity runs from each B-X to the next tag that is not an I-."""
    kinds = numpy.asarray([tag[:2] for tag in tags] or [OUTSIDE])[numpy.asarray(tag_ids, dtype="i")]
    begins = numpy.flatnonzero(kinds == "B-")
    breaks = numpy.append(numpy.flatnonzero(kinds != "I-"), len(kinds))
    ends = breaks[numpy.searchsorted(breaks, begins, side="right")]
    return [Span(doc, int(start), int(end), label=tags[tag_ids[start]][2:]) for start, end in zip(begins, ends)]


def tags_to_spans(doc: Doc, tags: Sequence[str]) -> List[Span]:
    """Entity spans from a valid BIO tag sequence."""
    return entity_spans(doc, numpy.arange(len(tags)), tags)


@Language.factory(
    NER_TAGGER_FACTORY,
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={"model": DEFAULT_NER_TAGGER_MODEL, "scorer": {"@scorers": "spacy.ner_scorer.v1"},
                    "crf": False},
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_ner_tagger(nlp: Language, name: str, model: Model, scorer: Optional[Callable],
                    crf: bool = False) -> NERTagger:
    """Create the BIO-tagging entity recognizer; with ``crf``, one that also learns transition
    scores between tags (the model then holds them: see ``crf.with_crf_transitions``)."""
    return NERTagger(nlp.vocab, with_crf_transitions(model) if crf else model, name, scorer=scorer)
