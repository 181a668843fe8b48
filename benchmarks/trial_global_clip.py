"""Trial: benchmarks/convergence.py with ours clipped as the HF baseline is (one global norm).

thinc's Adam clips each parameter's gradient to norm ``grad_clip`` on its own; the baseline calls
``torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`` on the gradient of a batch-mean loss.
This patches spaCy's training loop: before the step's first ``finish_update`` every gradient of
the pipeline (the heads' and the encoder's) is scaled by ``min(1, MAX_NORM / norm)``. spaCy's
losses sum over the batch, so the baseline's 1.0 is the batch size here (Adam ignores a constant
scale). Pass a config with ``grad_clip = 0.0`` and the default ``--batch-size 8``; prints the
global norms every 50 steps. Every seed trains on seed 0's batches (as benchmarks/trial_batch_seed.py),
so several seeds put a band around ours' curve there.

    python benchmarks/trial_global_clip.py --task chnsenticorp --system ours --max-steps 3600 \
        --eval-every 200 --patience 0 --seed 0 --config C --results DIR
"""
import sys
from pathlib import Path

import numpy
from spacy.language import Language
from spacy_transformers.pipeline_component import Transformer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import convergence  # noqa: E402
from benchmarks.trial_batch_seed import use_batches_of_seed_0  # noqa: E402

MAX_NORM = 8.0  # the baseline's 1.0 on a batch-mean loss, for --batch-size 8
STATE = {"nlp": None, "norms": []}
original_update = Language.update
original_finish = Transformer.finish_update


def update(self, *args, **kwargs):
    STATE["nlp"] = self
    return original_update(self, *args, **kwargs)


def gradients(nlp):
    """Every gradient of the pipeline: thinc (kind, node, name) and PyTorch (kind, parameter, None)."""
    for _, proc in nlp.pipeline:
        model = getattr(proc, "model", None)
        if model in (None, True, False):
            continue
        for node in model.walk():
            for name in node.param_names:
                if node.has_grad(name):
                    yield ("thinc", node, name)
            for shim in node.shims:
                for param in shim._model.parameters():
                    if param.grad is not None:
                        yield ("torch", param, None)


def finish_update(self, sgd):
    """The transformer updates first (it leads the pipeline): clip everything, then update."""
    items = list(gradients(STATE["nlp"]))
    total = 0.0
    for kind, obj, name in items:
        grad = obj.get_grad(name) if kind == "thinc" else obj.grad.detach().numpy()
        total += float((grad.astype("float64") ** 2).sum())
    norm = total ** 0.5
    scale = min(1.0, MAX_NORM / (norm + 1e-6))
    STATE["norms"].append(norm)
    if scale < 1.0:
        for kind, obj, name in items:
            if kind == "thinc":
                obj.set_grad(name, obj.get_grad(name) * scale)
            else:
                obj.grad.mul_(scale)
    if len(STATE["norms"]) % 50 == 0:
        recent = numpy.array(STATE["norms"][-50:])
        print(f"global norm (last 50 steps): median {numpy.median(recent):.1f}, "
              f"clipped {(recent > MAX_NORM).mean():.2f}", flush=True)
    return original_finish(self, sgd)


def use_global_clip() -> None:
    """spaCy's training loop clips every gradient of the pipeline together, as the baseline does."""
    Language.update = update
    Transformer.finish_update = finish_update


if __name__ == "__main__":
    use_global_clip()
    use_batches_of_seed_0()
    convergence.main()
