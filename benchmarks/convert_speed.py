"""Time ``spacy-bert-zh convert ner`` against ``python -m spacy convert -c ner`` on the same file.

Both run as subprocesses of the same Python (start-up and imports included for both), with the
same sentences per doc, each writing a .spacy file; runs alternate and the best of ``--repeats`` runs
of each is reported.

    .venv/bin/python benchmarks/convert_speed.py [--input ../shared/data/msra_ner/train.bio]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data import SHARED_DATA  # noqa: E402
from benchmarks.timing import interleaved_best  # noqa: E402


def main() -> None:
    """Run both converters, check they wrote the same number of docs, print times and the ratio."""
    args = parse_args()
    with tempfile.TemporaryDirectory() as folder:
        ours_output = Path(folder) / "ours.spacy"
        spacy_folder = Path(folder) / "spacy"
        spacy_folder.mkdir()
        ours_command = [sys.executable, "-m", "spacy_bert_zh.cli", "convert", "ner", str(args.input),
                        str(ours_output), "--n-sents", str(args.n_sents), "--quiet"]
        spacy_command = [sys.executable, "-m", "spacy", "convert", "-c", "ner", "-n", str(args.n_sents),
                         str(args.input), str(spacy_folder)]
        _, best = interleaved_best({"ours": partial(run_checked, ours_command),
                                    "spacy": partial(run_checked, spacy_command)}, args.repeats)
        ours_seconds, spacy_seconds = best["ours"], best["spacy"]
        spacy_output = spacy_folder / args.input.with_suffix(".spacy").name
        ours_docs, spacy_docs = count_docs(ours_output), count_docs(spacy_output)
    print(f"input: {args.input} ({args.input.stat().st_size / 2**20:.1f} MiB), --n-sents {args.n_sents}, "
          f"best of {args.repeats}")
    print(f"spacy-bert-zh convert ner: {ours_seconds:6.2f} s  ({ours_docs:,} docs)")
    print(f"spacy convert -c ner:      {spacy_seconds:6.2f} s  ({spacy_docs:,} docs)")
    print(f"ratio ours/spaCy: {ours_seconds / spacy_seconds:.2f}")
    if ours_docs != spacy_docs:
        sys.exit("the two converters wrote different numbers of docs")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=SHARED_DATA / "msra_ner" / "train.bio")
    parser.add_argument("--n-sents", type=int, default=1, help="Sentences per doc, for both converters.")
    parser.add_argument("--repeats", type=int, default=1, help="Runs of each converter; the best counts.")
    args = parser.parse_args()
    if not args.input.is_file():
        parser.error(f"{args.input} not found (set SPACY_BERT_ZH_SHARED_DATA or pass --input)")
    return args


def run_checked(command: list[str]) -> None:
    """Run ``command``; exit with its stderr if it fails."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")


def count_docs(path: Path) -> int:
    """Docs in a .spacy file."""
    from spacy.tokens import DocBin

    return len(DocBin().from_disk(path))


if __name__ == "__main__":
    main()
