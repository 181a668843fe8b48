"""How much encoder work each system of benchmarks/convergence.py does on the same batches.

Ours reads whole texts (configs/cpu.cfg's ``whole_text_spans``: one window of up to 500 positions,
a longer text in overlapping windows); the HF baseline truncates each text at 256 wordpieces
(benchmarks/hf_baseline.py). Over the paired training order of a convergence run this counts, batch
by batch, the padded positions the encoder computes (windows x the longest window: the work of its
linear layers) and those positions times the window length (the attention's), and prints ours / HF.
No model runs: the windows come from the config's span getter, their lengths from the tokenizer.

    python benchmarks/padding_cost.py --task chnsenticorp --steps 2401 --seed 1
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.convergence import TASKS, split_texts  # noqa: E402
from benchmarks.hf_baseline import MAX_WORDPIECES, training_order  # noqa: E402


def padded_cost(window_lengths: list) -> tuple:
    """(positions, attention) of one padded batch: every window padded to the longest."""
    longest = max(window_lengths)
    return len(window_lengths) * longest, len(window_lengths) * longest * longest


def our_window_lengths(texts: list, config_path: Path, tokenizer) -> list:
    """Per text, the wordpieces (with [CLS] and [SEP]) of each window the config's span getter cuts."""
    import spacy
    from spacy.util import load_config
    from spacy_transformers.util import registry

    config = load_config(config_path, interpolate=False)
    nlp = spacy.blank("zh", config={"nlp": {"tokenizer": dict(config["nlp"]["tokenizer"])}})
    get_spans = registry.resolve({"spans": config["components"]["transformer"]["model"]["get_spans"]})["spans"]
    spans = get_spans([nlp.make_doc(text) for text in texts])
    return [[len(tokenizer(span.text)["input_ids"]) for span in windows] for windows in spans]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="chnsenticorp")
    parser.add_argument("--steps", type=int, default=2401)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--encoder", default=str(ROOT / "encoders" / "m3e-small"))
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cpu.cfg")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    texts = split_texts(TASKS[args.task], "train")
    tokenizer = AutoTokenizer.from_pretrained(args.encoder)
    ours = our_window_lengths(texts, args.config, tokenizer)
    full = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    hf = [min(n, MAX_WORDPIECES) for n in full]        # the baseline's truncation
    order = training_order(len(texts), args.steps * args.batch_size, args.seed)
    totals = {"ours": [0, 0], "hf": [0, 0]}
    for start in range(0, args.steps * args.batch_size, args.batch_size):
        batch = order[start:start + args.batch_size]
        for system, lengths in (("ours", [n for i in batch for n in ours[i]]), ("hf", [hf[i] for i in batch])):
            positions, attention = padded_cost(lengths)
            totals[system][0] += positions
            totals[system][1] += attention
    print(f"{args.task}, {args.steps} steps of {args.batch_size} (seed {args.seed}): "
          f"{sum(len(w) > 1 for w in ours)} of {len(texts)} texts in more than one window, "
          f"{sum(n > MAX_WORDPIECES for n in full)} truncated by the HF baseline")
    print(f"padded positions ours / HF {totals['ours'][0] / totals['hf'][0]:.2f} "
          f"({totals['ours'][0]:,} / {totals['hf'][0]:,}); "
          f"attention ours / HF {totals['ours'][1] / totals['hf'][1]:.2f}")


if __name__ == "__main__":
    main()
