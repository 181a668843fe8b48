"""Trial: ours as a replica of the HF baseline, on seed 0's batches (as benchmarks/trial_batch_seed.py).

benchmarks/trial_as_baseline.py trains ours' own head (a softmax over the mean of the characters'
vectors) the baseline's way. This goes the rest of the way to ``BertForSequenceClassification``
fine-tuned by benchmarks/hf_baseline.py: the textcat is ``spacy_bert_zh.TextCatPooler.v1`` (the
[CLS] vector, the encoder's pretrained pooler, dropout 0.1, a softmax drawn as HF draws its
classifier), every text of train, dev and test is cut where the baseline's tokenizer truncates it
(benchmarks/trial_truncate.py), all parameters learn at one rate (``head_learn_rate_scale = 1``)
and one global gradient norm is clipped at the baseline's threshold (benchmarks/trial_global_clip.py,
``grad_clip = 0``). The config is ``--config`` (configs/cpu.cfg) with those changes made here.
What is left is the machinery: spaCy's training loop, spacy-transformers and thinc's Adam against
a PyTorch loop and ``torch.optim.AdamW``. If the two still part, the machinery does it.

    python benchmarks/trial_replica.py --task chnsenticorp --system ours --max-steps 3600 \\
        --eval-every 200 --patience 0 --seed S --results DIR
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import spacy_bert_zh.pooled_textcat as pooled_textcat  # noqa: E402
from benchmarks import convergence, trial_truncate  # noqa: E402
from benchmarks.trial_as_baseline import BASELINE_OPTIMIZER  # noqa: E402
from benchmarks.trial_batch_seed import use_batches_of_seed_0  # noqa: E402
from benchmarks.trial_global_clip import use_global_clip  # noqa: E402
from benchmarks.trial_head_init import softmax_started_as_hf  # noqa: E402

REPLICA_TEXTCAT = {"@architectures": pooled_textcat.ARCHITECTURE, "dropout": 0.1, "grad_factor": 1.0, "nO": None}
original_one_task_config = convergence.one_task_config


def replica_config(component: str, score_weights: dict, path: Path = None):
    """The one-task config, its textcat the baseline's head and its optimizer the baseline's."""
    if component != "textcat":
        sys.exit("trial_replica.py: classification tasks only")
    config = original_one_task_config(component, score_weights, path)
    config["components"]["textcat"]["model"] = dict(REPLICA_TEXTCAT)
    config["training"]["optimizer"].update(BASELINE_OPTIMIZER)
    return config


def use_replica() -> None:
    pooled_textcat.Softmax = softmax_started_as_hf
    convergence.one_task_config = replica_config
    convergence.convert_cls = trial_truncate.convert_and_cut
    convergence.split_texts = trial_truncate.split_texts_cut
    use_global_clip()


if __name__ == "__main__":
    use_replica()
    use_batches_of_seed_0()
    convergence.main()
