"""Training helpers registered in spaCy's registries.

NER sentences and classified texts come from different corpora and are trained together in one
pipeline. A classified text has no entity annotation: it is never given ``doc.ents``, so spaCy's
``ner`` sees its tokens as missing (not as ``O``). An NER sentence has no ``doc.cats``, but
spaCy's exclusive ``textcat`` would read that as "every class is 0"; the ``textcat_partial``
factory below is that same component, except that a doc with no ``cats`` at all is missing for it:
it adds no loss and no gradient, and the scorer leaves it out.

The heads (``ner``, ``textcat``) start from random weights while the encoder is pretrained, so
``spacy_bert_zh.Adam.v1`` is thinc's Adam with one learning rate for the encoder and a larger one
for everything else: at the transformer's fine-tuning rate the heads barely move in a CPU budget.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional

from spacy.language import Language
from spacy.pipeline.textcat import DEFAULT_SINGLE_TEXTCAT_MODEL, TextCategorizer
from spacy.scorer import Scorer
from spacy.training import Example
from spacy.util import registry
from thinc.api import Model, Optimizer

from .crf import CRF_PARAMS
from .pooled_textcat import POOLER_PARAMS, seed_pooler

TEXTCAT_FACTORY = "textcat_partial"
TEXTCAT_SCORER = "spacy_bert_zh.textcat_scorer.v1"
OPTIMIZER = "spacy_bert_zh.Adam.v1"


class PartialTextCategorizer(TextCategorizer):
    """Exclusive text classifier for which a doc without any ``cats`` is unannotated.

    Besides one-hot ``cats`` it accepts class probabilities that sum to 1 (a teacher's soft
    targets, see ``distill``); spaCy's exclusive textcat takes only 0 and 1.
    """

    def _validate_categories(self, examples: Iterable[Example]):
        for example in examples:
            scores = list(example.reference.cats.values())
            if scores and (any(not 0.0 <= score <= 1.0 for score in scores)
                           or abs(sum(scores) - 1.0) > 1e-3):
                raise ValueError(f"exclusive categories must be one-hot or probabilities that sum "
                                 f"to 1; got {example.reference.cats} for {example.reference.text[:40]!r}")

    def initialize(self, get_examples, *, nlp: Optional[Language] = None, labels: Optional[Iterable[str]] = None,
                   positive_label: Optional[str] = None) -> None:
        """spaCy's initialisation (the same settings: spaCy checks ``[initialize.components]``
        against this signature); then a ``TextCatPooler`` head gets its encoder's pooler."""
        super().initialize(get_examples, nlp=nlp, labels=labels, positive_label=positive_label)
        seed_pooler(self.model, nlp)

    def _examples_to_truth(self, examples: Iterable[Example]):
        examples = list(examples)
        truths, not_missing = super()._examples_to_truth(examples)
        for row, example in enumerate(examples):
            if not example.reference.cats:
                not_missing[row, :] = 0.0
        return truths, not_missing


@Language.factory(
    TEXTCAT_FACTORY,
    assigns=["doc.cats"],
    default_config={"threshold": 0.0, "model": DEFAULT_SINGLE_TEXTCAT_MODEL,
                    "scorer": {"@scorers": TEXTCAT_SCORER}},
    default_score_weights={"cats_score": 1.0, "cats_macro_f": None, "cats_micro_f": None},
)
def make_partial_textcat(nlp: Language, name: str, model: Model, threshold: float,
                         scorer: Optional[Callable]) -> PartialTextCategorizer:
    """Create the exclusive textcat that skips docs without categories."""
    return PartialTextCategorizer(nlp.vocab, model, name, threshold=threshold, scorer=scorer)


def score_annotated_cats(examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
    """Score exclusive categories on the examples whose gold doc has ``cats``, plus accuracy."""
    annotated = [eg for eg in examples if eg.reference.cats]
    scores = Scorer.score_cats(annotated, "cats", multi_label=False, **kwargs)
    scores["cats_accuracy"] = categorical_accuracy(annotated)
    return scores


def categorical_accuracy(examples: Iterable[Example]) -> Optional[float]:
    """Share of examples whose top predicted class is the gold class (None without examples)."""
    examples = list(examples)
    if not examples:
        return None
    hits = sum(top_label(eg.predicted.cats) == top_label(eg.reference.cats) for eg in examples)
    return hits / len(examples)


def top_label(cats: Dict[str, float]) -> Optional[str]:
    """The highest-scoring label of a ``cats`` dict (None when empty)."""
    return max(cats, key=cats.get) if cats else None


@registry.scorers(TEXTCAT_SCORER)
def make_annotated_cats_scorer() -> Callable:
    """Registered scorer: see :func:`score_annotated_cats`."""
    return score_annotated_cats


class HeadScaledOptimizer(Optimizer):
    """Adam whose learning rate is multiplied by ``head_scale`` outside the pretrained encoder, and
    by ``head_scale * crf_scale`` for the CRF scores of ``ner_tagger`` (``crf = true``).

    PyTorch parameters reach the optimizer under their dotted module path
    (``encoder.layer.0.attention.self.query.weight``); thinc layers name theirs plainly (``W``, ``b``).
    """

    def __init__(self, *args, head_scale: float = 1.0, crf_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_scale = head_scale
        self.crf_scale = crf_scale

    def __call__(self, key, weights, gradient, *, lr_scale: float = 1.0):
        if not is_pretrained_parameter(key):
            lr_scale *= self.head_scale
        if key[1] in CRF_PARAMS:
            lr_scale *= self.crf_scale
        return super().__call__(key, weights, gradient, lr_scale=lr_scale)


def is_pretrained_parameter(key) -> bool:
    """Whether an optimizer key ``(node id, name)`` names a parameter of a PyTorch module, or of
    the encoder's pooler that ``spacy_bert_zh.TextCatPooler.v1`` copies into its head."""
    return "." in str(key[1]) or key[1] in POOLER_PARAMS


@registry.optimizers(OPTIMIZER)
def make_head_scaled_adam(learn_rate, *, head_learn_rate_scale: float = 10.0,
                          crf_learn_rate_scale: float = 1.0, L2=0.01, beta1=0.9,
                          beta2=0.999, eps=1e-8, grad_clip=1.0, L2_is_weight_decay: bool = True,
                          use_averages: bool = False) -> HeadScaledOptimizer:
    """Thinc's Adam; the heads learn ``head_learn_rate_scale`` times faster than the encoder, and
    CRF transition scores ``crf_learn_rate_scale`` times faster than the other heads."""
    return HeadScaledOptimizer(learn_rate, L2=L2, beta1=beta1, beta2=beta2, eps=eps,
                               grad_clip=grad_clip, L2_is_weight_decay=L2_is_weight_decay,
                               use_averages=use_averages, head_scale=head_learn_rate_scale,
                               crf_scale=crf_learn_rate_scale)
