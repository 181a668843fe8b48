"""Trial: ours trained as the HF baseline trains, in everything the trials so far changed one at
a time, on seed 0's batches (as benchmarks/trial_batch_seed.py).

Together: the softmax head drawn as HF draws its classifier (benchmarks/trial_head_init.py), the
dropout before it (benchmarks/trial_head_dropout.py), one global gradient norm clipped at the
baseline's threshold (benchmarks/trial_global_clip.py), and, through the config, the head at the
encoder's learning rate. What still differs is the pooled vector (the mean of the characters'
vectors, not the [CLS] pooler), whole reviews against 256 wordpieces, and thinc's Adam against
torch's AdamW. Pass C = configs/cpu.cfg with ``grad_clip = 0.0`` and ``head_learn_rate_scale =
1.0`` (the script refuses another):

    python benchmarks/trial_as_baseline.py --task chnsenticorp --system ours --max-steps 3600 \\
        --eval-every 200 --patience 0 --seed S --config C --results DIR
"""
import sys
from pathlib import Path

from thinc.api import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import convergence  # noqa: E402
from benchmarks.trial_batch_seed import use_batches_of_seed_0  # noqa: E402
from benchmarks.trial_global_clip import use_global_clip  # noqa: E402
from benchmarks.trial_head_dropout import use_hf_head  # noqa: E402

BASELINE_OPTIMIZER = {"grad_clip": 0.0, "head_learn_rate_scale": 1.0}


def check_config(path: str) -> None:
    """Exit unless the config's optimizer leaves clipping to the patch and the head at 1x."""
    optimizer = Config().from_disk(path, interpolate=False)["training"]["optimizer"]
    wrong = {key: optimizer.get(key) for key, value in BASELINE_OPTIMIZER.items() if optimizer.get(key) != value}
    if wrong:
        sys.exit(f"{path}: [training.optimizer] needs {BASELINE_OPTIMIZER}, has {wrong}")


if __name__ == "__main__":
    check_config(convergence.parse_args().config)
    use_hf_head()
    use_global_clip()
    use_batches_of_seed_0()
    convergence.main()
