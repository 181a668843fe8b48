"""Trial: benchmarks/convergence.py's HF baseline on one seed's batches with another seed's
randomness elsewhere (its classifier's initialisation and dropout: ``--seed``).

Ours and the baseline see the same batches (``--order paired``) but draw different dropout masks
and start from different heads. How far the baseline's own dev curve moves when only that changes
is the noise against which a single paired run's ours - HF is read.

    python benchmarks/trial_hf_batch_seed.py --task chnsenticorp --system hf --max-steps 3600 \
        --eval-every 200 --seed 2 --results DIR        # the batches of seed 0
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import convergence, hf_baseline  # noqa: E402

BATCH_SEED = 0
original_order = hf_baseline.training_order

if __name__ == "__main__":
    hf_baseline.training_order = lambda n_examples, n_needed, seed: original_order(n_examples, n_needed, BATCH_SEED)
    convergence.main()
