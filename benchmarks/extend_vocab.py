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
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.pretrain import TASKS, fine_tune, print_table, spread  # noqa: E402
from spacy_bert_zh.encoder import fetch_encoder  # noqa: E402
from spacy_bert_zh.vocab_extension import extend_vocab  # noqa: E402

EXTENDED = "m3e-small + extend-vocab"


def main() -> None:
    args = parse_args()
    import torch

    task = TASKS[args.task]()
    if not task.corpus.is_dir():
        sys.exit(f"{task.corpus} is absent: this benchmark needs the real corpora")
    torch.set_num_threads(args.threads)
    encoder = args.encoder or str(fetch_encoder(ROOT / "encoders" / "m3e-small"))
    output = Path(args.output or ROOT / "benchmarks" / "results" / f"extend_vocab_{args.task}.json")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        labelled, unlabelled, test = task.sample(args)
        texts = work / "train_texts.parquet"
        pq.write_table(pa.table({"text": [task.text(item) for item in labelled] + unlabelled}), texts)
        report = extend_vocab(encoder, texts, work / "extended", show_progress=False)
        print(f"[UNK] characters in the training texts: {report.unk_before:,} -> {report.unk_after:,}; "
              f"{len(report.added)} slots filled", flush=True)
        task.write(labelled, work / "train")
        task.write(test, work / "test")
        config = work / "task.cfg"
        task.config().to_disk(config)
        runs = {"m3e-small": [], EXTENDED: []}
        for seed in args.seeds:
            for system, path in (("m3e-small", encoder), (EXTENDED, str(work / "extended"))):
                start = time.perf_counter()
                score = task.score(fine_tune(config, path, work, seed, args))
                runs[system].append({"seed": seed, "score": score, "seconds": time.perf_counter() - start})
                print(json.dumps({"system": system, **runs[system][-1]}), flush=True)
    summary = {system: spread([run["score"] for run in seeds]) for system, seeds in runs.items()}
    summary["difference"] = spread([b["score"] - a["score"] for a, b in zip(runs["m3e-small"], runs[EXTENDED])])
    print_table(summary, task.metric)
    result = {"args": vars(args), "metric": task.metric, "vocab": asdict(report), "runs": runs, "summary": summary}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"wrote {output}")


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
