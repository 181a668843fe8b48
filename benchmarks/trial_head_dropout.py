"""Trial: ours' head as the HF baseline's classifier in full, on seed 0's batches: the softmax
drawn as benchmarks/trial_head_init.py draws it, and a dropout between the pooled vector and it.

``BertForSequenceClassification`` applies dropout (``hidden_dropout_prob``, 0.1 in m3e-small)
to the pooled vector before its classifier; spaCy's ``TextCatReduce.v1`` has no dropout layer
between its reduction and its softmax, so ours' head sees the mean vector whole. This wraps the
textcat's ``reduce_mean`` in thinc's ``Dropout``, whose rate spaCy sets to ``[training]
dropout`` (0.1 in configs/cpu.cfg) for each update and to 0 for prediction.

    python benchmarks/trial_head_dropout.py --task chnsenticorp --system ours --max-steps 3600 \
        --eval-every 200 --patience 0 --seed S --results DIR
"""
import sys
from pathlib import Path

import spacy.ml.models.textcat as spacy_textcat
from thinc.api import Dropout, Model, chain, reduce_mean

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import convergence  # noqa: E402
from benchmarks.trial_batch_seed import use_batches_of_seed_0  # noqa: E402
from benchmarks.trial_head_init import use_drawn_head  # noqa: E402


def mean_then_dropout() -> Model:
    """The textcat's mean over characters, then the dropout HF applies before its classifier."""
    return chain(reduce_mean(), Dropout())


def use_hf_head() -> None:
    """build_reduce_text_classifier's reduction and output layer, as HF's head."""
    spacy_textcat.reduce_mean = mean_then_dropout
    use_drawn_head()


if __name__ == "__main__":
    use_hf_head()
    use_batches_of_seed_0()
    convergence.main()
