"""Turn a downloaded public corpus into train/dev/test files that our converters read.

``prepare_corpus("msra", "assets/msra", "corpus/real/ner")`` finds the download's files (in a
folder, in a zip, or in zips inside a folder), splits with a seed where the corpus has no
dev/test split of its own, normalises (UTF-8 without BOM, LF line ends, class ids to names) and
writes ``train/dev/test.<ext>`` plus ``prepared.json``: the converter for these files, the label
set, the sources with their sha256, the counts and every row left out with its reason.
``convert_prepared`` then converts all splits to DocBins.

Recipes (the layouts of the downloads the project's ``assets`` fetch):

- ``msra``: ``msra_train_bio.txt``, ``msra_test_bio.txt`` (char<TAB>BIO); dev carved from train.
- ``resume``: ``train/dev/test.char.bmes`` (char<SPACE>BMES), split by its authors.
- ``cluener``: ``cluener_public.zip`` (JSON lines with spans). Its test split has no labels, so
  the public dev split is our test and dev is carved from train.
- ``chnsenticorp``: ``train/dev/test.tsv`` with a header (``label``, ``text_a``; ``qid`` ignored),
  labels 1/0 written as 正面/负面.
- ``online-shopping``: ``online_shopping_10_cats.csv`` (``cat,label,review``); the product class
  ``cat`` is the label; split with a seed (the file is sorted by class).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from .conversion_io import write_atomically

PathLike = Union[str, Path]
MANIFEST = "prepared.json"
SPLITS = ("train", "dev", "test")
CHNSENTICORP_LABELS = {"1": "正面", "0": "负面"}
TEXT_COLUMNS = ("text_a", "text", "review", "sentence")
MAX_LISTED = 20


class PrepareError(Exception):
    """A download that is not in the layout its recipe expects (the message names the file)."""


@dataclass(frozen=True)
class SplitOptions:
    """How corpora without their own dev/test split are split."""

    seed: int = 0
    dev_fraction: float = 0.1
    test_fraction: float = 0.1


@dataclass(frozen=True)
class Recipe:
    task: str                 # "ner" or "cls"
    converter: str            # the `convert` subcommand for the written files
    suffix: str
    prepare: Callable         # (Download, SplitOptions, left_out) -> {split: [record, ...]}
    options: tuple = ()       # the converter's options, as (name, value) pairs


def prepare_corpus(corpus: str, source: PathLike, output: PathLike,
                   split: SplitOptions = SplitOptions()) -> dict:
    """Prepare the download ``source`` of ``corpus`` into ``output``; return the manifest written."""
    recipe = RECIPES.get(corpus)
    if recipe is None:
        raise PrepareError(f"unknown corpus {corpus!r}; known: {', '.join(sorted(RECIPES))}")
    for name, fraction in (("dev", split.dev_fraction), ("test", split.test_fraction)):
        if not 0.0 < fraction < 0.5:
            raise PrepareError(f"the {name} fraction must be between 0 and 0.5, got {fraction}")
    download = Download(Path(source))
    left_out: list = []
    records = recipe.prepare(download, split, left_out)
    output = Path(output)
    for name, split_records in records.items():
        text = "".join(record_text(recipe, record) for record in split_records)
        write_atomically(output / f"{name}.{recipe.suffix}", text.encode("utf-8"))
    manifest = {"corpus": corpus, "task": recipe.task, "converter": recipe.converter,
                "options": dict(recipe.options), "seed": split.seed,
                "splits": {name: {"file": f"{name}.{recipe.suffix}", "count": len(split_records)}
                           for name, split_records in records.items()},
                "labels": labels_of(recipe, records["train"]), "sources": download.used,
                "left_out_count": len(left_out), "left_out": left_out[:MAX_LISTED]}
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    write_atomically(output / MANIFEST, text.encode("utf-8"))
    return manifest


def record_text(recipe: Recipe, record) -> str:
    """A sentence block (NER files) ends with a blank line; a cls/span record is one JSON line."""
    if recipe.converter == "ner":
        return record + "\n\n"
    return (record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)) + "\n"


def labels_of(recipe: Recipe, train_records: list) -> Optional[list]:
    """The class labels of the training split (cls corpora), so that dev and test use the same set."""
    if recipe.task != "cls":
        return None
    return sorted({record["label"] for record in train_records})


# --- finding the download's files ------------------------------------------------------------


class Download:
    """The files of a download: ``source`` is a file, a zip, or a folder (searched with its zips)."""

    def __init__(self, source: Path):
        if not source.exists():
            raise PrepareError(f"{source}: no such file or folder (run `spacy project assets` first?)")
        self.source, self.used = source, {}

    def read_text(self, name: str) -> str:
        """The text of the one file called ``name``: UTF-8, BOM stripped, LF line ends."""
        where, data = self._find(name)
        self.used[name] = {"path": where, "sha256": hashlib.sha256(data).hexdigest()}
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise PrepareError(f"{where}: not UTF-8 (byte {error.start}: {data[error.start:error.start + 4]!r})") from None
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def _find(self, name: str) -> tuple[str, bytes]:
        found = list(self._candidates(name))
        if not found:
            raise PrepareError(f"{self.source}: no file called {name} (looked in folders and zips); "
                               f"is this the right download?")
        if len(found) > 1:
            raise PrepareError(f"{self.source}: several files called {name}: {', '.join(w for w, _ in found)}")
        return found[0]

    def _candidates(self, name: str) -> Iterator[tuple[str, bytes]]:
        paths = [self.source] if self.source.is_file() else sorted(p for p in self.source.rglob("*") if p.is_file())
        for path in paths:
            if path.name == name:
                yield str(path), path.read_bytes()
            elif zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    for member in archive.namelist():
                        if Path(member).name == name and "__MACOSX" not in member:
                            yield f"{path}!{member}", archive.read(member)


# --- recipes -------------------------------------------------------------------------------


def sentence_blocks(text: str) -> list[str]:
    """The sentences of a character-per-line file: runs of non-blank lines, kept as written."""
    blocks, lines = [], []
    for line in text.split("\n"):
        if line.strip():
            lines.append(line)
        elif lines:
            blocks.append("\n".join(lines))
            lines = []
    if lines:
        blocks.append("\n".join(lines))
    return blocks


def seeded_split(records: list, fractions: tuple[float, ...], seed: int) -> list[list]:
    """Shuffle with ``seed``; return the rest, then one part per fraction (at least one record each)."""
    if len(records) <= len(fractions):
        raise PrepareError(f"{len(records)} records are too few to split")
    order = list(records)
    random.Random(seed).shuffle(order)
    parts, end = [], len(order)
    for fraction in fractions:
        size = max(1, round(len(records) * fraction))
        parts.append(order[end - size:end])
        end -= size
    return [order[:end]] + parts


def prepare_msra(download: Download, split: SplitOptions, left_out: list) -> dict:
    train = sentence_blocks(download.read_text("msra_train_bio.txt"))
    test = sentence_blocks(download.read_text("msra_test_bio.txt"))
    train, dev = seeded_split(train, (split.dev_fraction,), split.seed)
    return {"train": train, "dev": dev, "test": test}


def prepare_resume(download: Download, split: SplitOptions, left_out: list) -> dict:
    return {name: sentence_blocks(download.read_text(f"{name}.char.bmes")) for name in SPLITS}


def prepare_cluener(download: Download, split: SplitOptions, left_out: list) -> dict:
    train = json_lines(download, "train.json")
    test = json_lines(download, "dev.json")
    train, dev = seeded_split(train, (split.dev_fraction,), split.seed)
    return {"train": train, "dev": dev, "test": test}


def json_lines(download: Download, name: str) -> list[str]:
    """The non-blank lines of a JSON-lines file, each checked to be a JSON object with a text."""
    lines = []
    for number, line in enumerate(download.read_text(name).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise PrepareError(f"{download.used[name]['path']}:{number}: not JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise PrepareError(f"{download.used[name]['path']}:{number}: expected an object with a \"text\"")
        lines.append(line)
    return lines


def prepare_chnsenticorp(download: Download, split: SplitOptions, left_out: list) -> dict:
    return {name: labelled_rows(download, f"{name}.tsv", left_out) for name in SPLITS}


def labelled_rows(download: Download, name: str, left_out: list) -> list[dict]:
    """``{"text", "label"}`` of a ChnSentiCorp TSV with a header; empty texts are left out."""
    lines = download.read_text(name).split("\n")
    where = download.used[name]["path"]
    header = lines[0].split("\t")
    label_column = column(header, ("label",), where)
    text_column = column(header, TEXT_COLUMNS, where)
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise PrepareError(f"{where}:{number}: {len(fields)} fields, the header has {len(header)}")
        label, text = fields[label_column], fields[text_column]
        if label not in CHNSENTICORP_LABELS:
            raise PrepareError(f"{where}:{number}: label {label!r}, expected 1 or 0")
        if not text.strip():
            left_out.append({"file": where, "line": number, "reason": "empty text"})
            continue
        rows.append({"text": text, "label": CHNSENTICORP_LABELS[label]})
    return rows


def column(header: list[str], names: tuple[str, ...], where: str) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise PrepareError(f"{where}:1: no column {' or '.join(names)} in the header {header}")


def prepare_online_shopping(download: Download, split: SplitOptions, left_out: list) -> dict:
    name = "online_shopping_10_cats.csv"
    text = download.read_text(name)
    where = download.used[name]["path"]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = {"cat", "review"} - set(reader.fieldnames or [])
    if missing:
        raise PrepareError(f"{where}:1: no column {', '.join(sorted(missing))} in the header {reader.fieldnames}")
    rows = []
    for row in reader:
        review = row["review"]
        if review is None or not review.strip():
            left_out.append({"file": where, "line": reader.line_num, "reason": "empty review"})
            continue
        rows.append({"text": review, "label": row["cat"]})
    train, dev, test = seeded_split(rows, (split.dev_fraction, split.test_fraction), split.seed)
    return {"train": train, "dev": dev, "test": test}


RECIPES = {
    "msra": Recipe("ner", "ner", "bio", prepare_msra),
    "resume": Recipe("ner", "ner", "bmes", prepare_resume),
    "cluener": Recipe("ner", "spans", "jsonl", prepare_cluener, (("file_format", "cluener"),)),
    "chnsenticorp": Recipe("cls", "cls", "jsonl", prepare_chnsenticorp),
    "online-shopping": Recipe("cls", "cls", "jsonl", prepare_online_shopping),
}


# --- converting what was prepared ----------------------------------------------------------


def convert_prepared(prepared: PathLike, output: PathLike, show_progress: Optional[bool] = None) -> list:
    """Convert every split listed in ``prepared/prepared.json`` to ``output/<split>/<task>.spacy``."""
    prepared, output = Path(prepared), Path(output)
    manifest_path = prepared / MANIFEST
    if not manifest_path.is_file():
        raise PrepareError(f"{manifest_path}: missing; run `spacy-bert-zh prepare` into {prepared} first")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    convert = converter(manifest["converter"])
    options = dict(manifest["options"])
    if manifest["labels"]:
        options["labels"] = manifest["labels"]
    return [convert(prepared / entry["file"], output / name / f"{manifest['task']}.spacy",
                    show_progress=show_progress, **options)
            for name, entry in manifest["splits"].items()]


def converter(name: str) -> Callable:
    from . import conversion

    functions = {"ner": conversion.convert_ner, "cls": conversion.convert_cls}
    if name == "spans":
        from .span_conversion import convert_spans

        return convert_spans
    return functions[name]
