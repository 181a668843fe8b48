"""Training step time on CPU: float32 against bfloat16 autocast (``cpu_autocast.py``), as a ratio.

One pipeline, loaded twice (as saved, and switched by ``autocast_encoders``), each trained with
``nlp.update`` (Adam, the same batches of MSRA train sentences with their gold entities, seeded
sample from ../shared/data) for ``--steps`` steps per timing; the two are timed ``--repeats``
times, interleaved, and the fastest kept (the machine may be shared). Also reported: the mean
loss of both over the timed steps (they start from the same weights and see the same batches).

    python benchmarks/cpu_bf16_training.py --model PIPELINE --batch-sizes 8,32
"""
from __future__ import annotations

import argparse
import random
import sys
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.data import SHARED_DATA, read_bio_sentences  # noqa: E402
from benchmarks.timing import interleaved_best  # noqa: E402

MSRA_TRAIN = SHARED_DATA / "msra_ner" / "train.bio"


def main() -> None:
    args = parse_args()
    import spacy
    import torch

    from spacy_bert_zh.cpu_autocast import autocast_encoders, has_bfloat16_instructions

    if not MSRA_TRAIN.is_file():
        sys.exit(f"{MSRA_TRAIN} is absent: this benchmark needs the real corpora")
    torch.set_num_threads(args.threads)
    print(f"bfloat16 instructions (AMX or AVX512-BF16): {has_bfloat16_instructions()}; "
          f"torch threads {args.threads}")
    pipelines = {"fp32": spacy.load(args.model), "bf16": spacy.load(args.model)}
    autocast_encoders(pipelines["bf16"])
    for batch_size in args.batch_sizes:
        batches = {name: example_batches(nlp, batch_size, args) for name, nlp in pipelines.items()}
        best, losses = time_updates(pipelines, batches, args.repeats)
        chars = sum(len(eg.reference.text) for batch in batches["fp32"] for eg in batch)
        print(f"batch size {batch_size}: {args.steps} steps, {chars:,} characters a timing")
        for name in pipelines:
            print(f"  {name}: {best[name]:.1f}s ({chars / best[name]:,.0f} chars/s), mean ner loss "
                  f"{sum(losses[name]) / len(losses[name]):.2f}")
        print(f"  bf16 autocast / fp32 speed: {best['fp32'] / best['bf16']:.2f}x")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained pipeline (transformer + ner_tagger)")
    parser.add_argument("--batch-sizes", type=lambda text: [int(x) for x in text.split(",")], default=[8, 32])
    parser.add_argument("--steps", type=int, default=8, help="updates per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def example_batches(nlp, batch_size: int, args) -> list:
    """``args.steps`` batches of seeded MSRA train sentences as Examples with gold entities."""
    from spacy.training import Example

    from spacy_bert_zh.tag_schemes import decode_entities

    sentences = random.Random(args.seed).sample(read_bio_sentences(MSRA_TRAIN), batch_size * args.steps)
    examples = []
    for chars, tags in sentences:
        entities, _ = decode_entities(tags, "bio")
        examples.append(Example.from_dict(nlp.make_doc("".join(chars)), {"entities": list(entities)}))
    return [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]


def time_updates(pipelines: dict, batches: dict, repeats: int) -> tuple[dict, dict]:
    """Each pipeline's fastest pass over its batches, and the NER losses of every pass."""
    from thinc.api import Adam

    optimizers = {name: Adam(1e-5) for name in pipelines}
    losses = {name: [] for name in pipelines}

    def update_all(name: str, nlp) -> None:
        for batch in batches[name]:
            losses[name].append(nlp.update(batch, sgd=optimizers[name])["ner"])

    _, best = interleaved_best({name: partial(update_all, name, nlp) for name, nlp in pipelines.items()}, repeats)
    return best, losses


if __name__ == "__main__":
    main()
