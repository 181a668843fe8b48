"""Trial: benchmarks/convergence.py on one seed's batches with another seed's randomness
elsewhere (``--seed``: the classifier's initialisation and the dropout masks), for either system.

Ours and the baseline see the same batches (``--order paired``) but draw different dropout masks,
and the baseline starts from another classifier (ours' softmax head starts at zero whatever the
seed). How far each system's own dev curve moves when only that changes
is the noise against which a single paired run's ours - HF is read; several runs of each on the
same batches put a band around both curves.

    python benchmarks/trial_batch_seed.py --task chnsenticorp --system hf --max-steps 3600 \
        --eval-every 200 --seed 2 --results DIR        # the batches of seed 0
    python benchmarks/trial_batch_seed.py --task chnsenticorp --system ours --max-steps 3600 \
        --eval-every 200 --patience 0 --seed 2 --results DIR
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import convergence, hf_baseline  # noqa: E402

BATCH_SEED = 0
original_order = hf_baseline.training_order


def batches_of_seed_0(n_examples: int, n_needed: int, seed: int) -> list:
    return original_order(n_examples, n_needed, BATCH_SEED)


def use_batches_of_seed_0() -> None:
    """Both systems train on seed 0's batches, whatever ``--seed``."""
    hf_baseline.training_order = batches_of_seed_0   # the baseline's fine_tune
    convergence.training_order = batches_of_seed_0   # ours: the DocBin rewritten in that order


if __name__ == "__main__":
    use_batches_of_seed_0()
    convergence.main()
