"""Trial: ours with its softmax head started as the HF baseline starts its classifier, on seed 0's
batches (as benchmarks/trial_batch_seed.py).

spaCy's ``TextCatReduce.v1`` builds thinc's ``Softmax`` with its default zero initialisation, so
ours' first step sends no gradient into the encoder and every ``--seed`` starts from the same
head; ``BertForSequenceClassification`` draws its classifier from a normal distribution of
standard deviation ``initializer_range`` (0.02 in m3e-small's config), bias zero. This patches
that one difference: the head's weights are drawn from the seeded numpy generator that spaCy's
``fix_random_seed`` sets, so each ``--seed`` starts from another head.

    python benchmarks/trial_head_init.py --task chnsenticorp --system ours --max-steps 3600 \
        --eval-every 200 --patience 0 --seed S --results DIR
"""
import sys
from pathlib import Path

import numpy
import spacy.ml.models.textcat as spacy_textcat
from thinc.api import Softmax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import convergence  # noqa: E402
from benchmarks.trial_batch_seed import use_batches_of_seed_0  # noqa: E402

INITIALIZER_RANGE = 0.02  # m3e-small's (and bert-base-chinese's) config.json


def normal_init(ops, shape):
    """HF's ``_init_weights`` for a Linear: normal(0, initializer_range)."""
    return ops.asarray2f(numpy.random.normal(0.0, INITIALIZER_RANGE, shape))


def softmax_started_as_hf(nO=None, nI=None):
    return Softmax(nO=nO, nI=nI, init_W=normal_init)


def use_drawn_head() -> None:
    """build_reduce_text_classifier's output layer, drawn as HF draws its classifier."""
    spacy_textcat.Softmax = softmax_started_as_hf


if __name__ == "__main__":
    use_drawn_head()
    use_batches_of_seed_0()
    convergence.main()
