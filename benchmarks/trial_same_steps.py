"""Check: do ours' machinery and the HF baseline's take the same steps from the same start?

benchmarks/trial_replica.py makes ours the baseline's classifier in everything but the machinery
(spaCy's update loop, spacy-transformers' listener and shim, thinc's Adam against
benchmarks/hf_baseline.py's PyTorch loop and ``torch.optim.AdamW``). This takes the randomness
out so that the machinery alone is compared: dropout off in both encoders and heads, ours'
softmax copied from the baseline's drawn classifier, both from m3e-small's pretrained pooler,
the same short ChnSentiCorp reviews in the same batches (``training_order``), the same warm-up
and decay. The baseline trains through ``hf_baseline.fine_tune`` itself; ours through
``nlp.update`` and ``optimizer.step_schedules()`` as ``spacy train`` calls them, with the replica's
config and global clipping. After each step it prints, for a few parameters, how far the two
systems' weights are apart against how far the baseline's have moved from the start (a ratio
near 0: the same steps), and at the end both systems' class probabilities on held-out reviews.

    python benchmarks/trial_same_steps.py --steps 20
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy
import spacy
import torch
from spacy.training import Example
from thinc.api import warmup_linear

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import convergence  # noqa: E402
from benchmarks.data import SHARED_DATA, read_tsv_rows  # noqa: E402
from benchmarks.hf_baseline import SequenceClassifier, fine_tune, training_order  # noqa: E402
from benchmarks.trial_global_clip import use_global_clip  # noqa: E402
from benchmarks.trial_replica import replica_config  # noqa: E402
from spacy_bert_zh.cpu_autocast import pytorch_shims  # noqa: E402
from spacy_bert_zh.encoder import fetch_encoder  # noqa: E402
from spacy_bert_zh.training import make_head_scaled_adam  # noqa: E402

LEARN_RATE = 1e-4
BATCH_SIZE = 8
MAX_CHARACTERS = 120   # short reviews: no truncation on either side
HELD_OUT = 16          # reviews both systems classify at the end
# the baseline's parameter name -> ours' (an encoder parameter, or a thinc layer's (node name, param))
COMPARED = {
    "classifier.weight": ("softmax", "W"),
    "bert.pooler.dense.weight": ("encoder_pooler", "pooler_W"),
    "bert.encoder.layer.3.output.dense.weight": "encoder.layer.3.output.dense.weight",
    "bert.encoder.layer.0.attention.self.query.weight": "encoder.layer.0.attention.self.query.weight",
    "bert.embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    rows = short_reviews(args.seed, args.train + HELD_OUT)
    train, held_out = rows[:args.train], rows[args.train:]
    labels = sorted({label for label, _ in rows})
    encoder = str(fetch_encoder(ROOT / "encoders" / "m3e-small"))
    baseline = SequenceClassifier(encoder, labels, args.seed, "cpu")
    switch_off_dropout(baseline.model)
    start = {name: weight(baseline.model, name) for name in COMPARED}
    use_global_clip()   # before the pipeline exists: its reordered step wraps the patched finish_update
    nlp, optimizer = ours_pipeline(encoder, labels, baseline, train, args)
    ours_steps = ours_training(nlp, optimizer, train, labels, args)
    print(f"{'step':>4}  " + "  ".join(f"{name[-34:]:>34}" for name in COMPARED))

    def compare(step: int) -> None:
        ratios = [apart(weight(baseline.model, name), ours_weight(nlp, COMPARED[name]), start[name])
                  for name in COMPARED]
        print(f"{step:>4}  " + "  ".join(f"{ratio:>34.2e}" for ratio in ratios), flush=True)
        next(ours_steps, None)   # ours' next step (none after the last), to compare after the baseline's

    next(ours_steps)       # ours' first step
    fine_tune(baseline, train, args.steps, seed=args.seed, batch_size=BATCH_SIZE, learn_rate=LEARN_RATE,
              evaluate_at=set(range(1, args.steps + 1)), on_evaluate=compare)
    print_probabilities(baseline, nlp, held_out, labels)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--train", type=int, default=80, help="training reviews (the batches cycle over them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--late-encoder-step", action="store_true",
                        help="leave out configs/cpu.cfg's [nlp.after_pipeline_creation]: spaCy 3.8's "
                             "nlp.update then steps the encoder on the previous batch's gradient")
    return parser.parse_args()


def short_reviews(seed: int, count: int) -> list:
    path = SHARED_DATA / "chnsenticorp" / "train.tsv"
    if not path.is_file():
        sys.exit(f"{path} is absent: this check needs the real corpora")
    rows = [row for row in read_tsv_rows(path) if len(row[1]) <= MAX_CHARACTERS]
    return random.Random(seed).sample(rows, count)


def switch_off_dropout(module: torch.nn.Module) -> None:
    """Dropout layers at 0, and the attention's own rate (SDPA attention reads ``dropout_prob``)."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
        if hasattr(layer, "dropout_prob"):
            layer.dropout_prob = 0.0


def ours_pipeline(encoder: str, labels: list, baseline, train: list, args):
    """The replica's one-task pipeline, initialised, its softmax the baseline's classifier."""
    config = replica_config("textcat", {"cats_score": 1.0})
    config["paths"]["encoder"] = encoder
    if args.late_encoder_step:
        config["nlp"]["after_pipeline_creation"] = None
    config["components"]["textcat"]["model"]["dropout"] = 0.0
    convergence.set_cpu_bf16(config, "off")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    optimizer = make_head_scaled_adam(warmup_linear(LEARN_RATE, min(20, args.steps // 10), args.steps),
                                      head_learn_rate_scale=1.0, grad_clip=0.0)
    nlp.initialize(lambda: examples(nlp, train, labels), sgd=optimizer)
    for shim in pytorch_shims(nlp):
        switch_off_dropout(shim._model)
    softmax = thinc_node(nlp, "softmax")
    if list(nlp.get_pipe("textcat").labels) != labels:
        sys.exit(f"ours' labels {nlp.get_pipe('textcat').labels} are not in the baseline's order {labels}")
    classifier = baseline.model.classifier
    softmax.set_param("W", classifier.weight.detach().numpy().copy())
    softmax.set_param("b", classifier.bias.detach().numpy().copy())
    return nlp, optimizer


def ours_training(nlp, optimizer, train: list, labels: list, args):
    """Ours' steps on the baseline's batches, one per ``next()``, as ``spacy train`` takes them."""
    order = training_order(len(train), args.steps * BATCH_SIZE, args.seed)
    for step in range(args.steps):
        batch = [train[i] for i in order[step * BATCH_SIZE:(step + 1) * BATCH_SIZE]]
        nlp.update(examples(nlp, batch, labels), drop=0.0, sgd=optimizer)
        optimizer.step_schedules()
        yield step


def examples(nlp, rows: list, labels: list) -> list:
    """One-hot ``cats`` over ``labels`` (in that order) for ``(label, text)`` rows."""
    return [Example.from_dict(nlp.make_doc(text), {"cats": {name: float(name == label) for name in labels}})
            for label, text in rows]


def thinc_node(nlp, name: str):
    return next(node for node in nlp.get_pipe("textcat").model.walk() if node.name == name)


def weight(model: torch.nn.Module, name: str) -> numpy.ndarray:
    return dict(model.named_parameters())[name].detach().numpy().copy()


def ours_weight(nlp, where) -> numpy.ndarray:
    if isinstance(where, tuple):
        return numpy.asarray(thinc_node(nlp, where[0]).get_param(where[1])).copy()
    encoder = pytorch_shims(nlp)[0]._model
    return dict(encoder.named_parameters())[where].detach().numpy().copy()


def apart(baseline: numpy.ndarray, ours: numpy.ndarray, start: numpy.ndarray) -> float:
    """|baseline - ours| over |baseline - start| (Frobenius norms)."""
    moved = numpy.linalg.norm(baseline - start)
    return float(numpy.linalg.norm(baseline - ours) / moved) if moved else float("nan")


def print_probabilities(baseline, nlp, rows: list, labels: list) -> None:
    baseline.model.eval()
    with torch.inference_mode():
        logits = baseline.model(**baseline.encode(rows)).logits
    theirs = torch.softmax(logits, -1).numpy()
    ours = numpy.array([[doc.cats[label] for label in labels] for doc in nlp.pipe(text for _, text in rows)])
    print(f"held-out reviews: P({labels[1]}) baseline vs ours, max |difference| "
          f"{numpy.abs(theirs - ours).max():.2e}")
    for row in range(min(len(rows), 6)):
        print(f"  {theirs[row, 1]:.4f}  {ours[row, 1]:.4f}")


if __name__ == "__main__":
    main()
