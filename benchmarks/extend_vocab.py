"""Does ``extend-vocab`` help? The same fine-tuning from m3e-small and from m3e-small with its
``[UNK]`` characters in ``[unusedX]`` slots, same samples, steps and seeds.

The labelled and test samples are those of benchmarks/pretrain.py (``--task shopping``: 1,000
online_shopping_10_cats training reviews and 1,000 test reviews; ``--task resume``: Resume NER).
The vocabulary is extended on all the task's training texts (the user's corpus), labelled or not.
Prints the scores, their mean ± standard deviation over the seeds and the paired difference;
writes benchmarks/results/extend_vocab_TASK.json with the extension's report.

    python benchmarks/extend_vocab.py --task shopping --max-steps 300 --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.pretrain import TASKS, compare_encoders, open_task, write_result  # noqa: E402
from spacy_bert_zh.vocab_extension import extend_vocab  # noqa: E402

EXTENDED = "m3e-small + extend-vocab"


def main() -> None:
    args = parse_args()
    task, encoder = open_task(args)
    output = Path(args.output or ROOT / "benchmarks" / "results" / f"extend_vocab_{args.task}.json")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        labelled, unlabelled, test = task.sample(args)
        texts = work / "train_texts.parquet"
        pq.write_table(pa.table({"text": [task.text(item) for item in labelled] + unlabelled}), texts)
        report = extend_vocab(encoder, texts, work / "extended", show_progress=False)
        print(f"[UNK] characters in the training texts: {report.unk_before:,} -> {report.unk_after:,}; "
              f"{len(report.added)} slots filled", flush=True)
        runs, summary = compare_encoders(task, labelled, test,
                                         {"m3e-small": encoder, EXTENDED: str(work / "extended")}, work, args)
    write_result({"args": vars(args), "metric": task.metric, "vocab": asdict(report), "runs": runs,
                  "summary": summary}, output)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=list(TASKS), default="shopping")
    parser.add_argument("--n-labelled", type=int, default=1000, help="labelled training reviews or sentences")
    parser.add_argument("--n-test", type=int, default=1000, help="test texts (a seeded sample; all when fewer)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the samples")
    parser.add_argument("--seeds", type=lambda text: [int(x) for x in text.split(",")], default=[0, 1, 2],
                        help="fine-tuning seeds, comma-separated (each system trains once per seed)")
    parser.add_argument("--max-steps", type=int, default=300, help="fine-tuning steps")
    parser.add_argument("--batch-size", type=int, default=8, help="fine-tuning batch size")
    parser.add_argument("--learn-rate", type=float, default=1e-4, help="fine-tuning learning rate")
    parser.add_argument("--encoder", default=None, help="HF folder (default: m3e-small)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/extend_vocab_TASK.json")
    return parser.parse_args()


if __name__ == "__main__":
    main()
