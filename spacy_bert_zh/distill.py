"""Distil a trained pipeline into a student with fewer encoder layers (``spacy-bert-zh distill``).

The recipe of DistilBERT and TinyBERT, on what a batch user has: a trained teacher pipeline and
unlabelled texts in Parquet.

1. **Student.** The teacher pipeline with the bottom ``k`` of its encoder's layers kept
   (``kept_layers`` says why), everything else (embeddings, heads, tokenizer, labels) copied.
   With ``hidden_steps``, its encoder first learns to give the teacher's last hidden state on the
   texts (TinyBERT's intermediate-layer stage, ``distill_hidden.py``). Saved as an ordinary
   pipeline folder (``student-init``).
2. **Targets.** The teacher annotates the unlabelled texts with our own ``annotate_files``
   (streaming, resumable), with ``--tag-probs`` for soft targets. With ``gold_targets =
   "teacher"`` the gold corpus's texts are mixed into those texts first (``distill_texts.py``):
   the student learns the teacher's targets on them instead of their gold labels.
3. **Training.** ``spacy train`` on a config written next to the work (``distill.cfg``): every
   component sourced from the student, ``[corpora.train]`` the ``spacy_bert_zh.DistillCorpus.v1``
   reader over the teacher's annotations (plus the gold corpus, if given), and ``[corpora.dev]``
   the gold dev corpus or else the first ``holdout`` annotated rows (agreement with the teacher).
   The best student is copied to OUTPUT: ``spacy.load``, ``spacy package`` and ``annotate``
   (``--quantize int8`` too) take it as any pipeline.

Every argument is checked before any work (``DistillError``).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import pyarrow.parquet as pq
import spacy
import torch
from spacy.language import Language

from .annotate_options import AnnotateOptions
from .arrow_output import check_text_column
from .distill_corpus import READER
from .distill_texts import write_first_rows, write_with_gold_texts
from .listener_steps import CALLBACK as STEP_AFTER_LISTENERS

DISTILL_CONFIG = "distill.cfg"
# what the student learns on the texts of --gold: their gold labels, or the teacher's targets
GOLD_TARGETS = ("labels", "teacher")


class DistillError(ValueError):
    """The teacher, the texts, the options or OUTPUT do not allow a distillation (the message says why)."""


@dataclass(frozen=True)
class DistillOptions:
    """How to distil: the student's size, its targets and its training budget."""

    layers: int = 2
    soft: bool = True             # teacher probabilities (True) or its labels (False) as targets
    gold: Optional[Path] = None   # a gold training corpus (.spacy files or a folder) mixed in
    gold_targets: str = "labels"  # learn the gold corpus's labels, or the teacher's targets on its texts
    dev: Optional[Path] = None    # gold dev corpus; default: the first ``holdout`` annotated rows
    holdout: int = 500
    text_column: str = "text"
    max_texts: Optional[int] = None   # annotate and learn from at most this many texts
    max_steps: int = 2000
    eval_frequency: int = 500
    batch_size: int = 8           # texts per step (configs batching by sequence, as cpu.cfg)
    learn_rate: Optional[float] = None  # default: the teacher config's
    dropout: Optional[float] = None     # the student encoder's dropout (and thinc's); default: the teacher's
    hidden_steps: int = 0         # steps of the hidden-state stage before training (0: none)
    hidden_learn_rate: float = 1e-4
    seed: int = 0
    gpu_id: int = -1
    work_dir: Optional[Path] = None   # default: OUTPUT + ".work"
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.layers < 1:
            raise DistillError(f"--layers must be at least 1, not {self.layers}")
        for name in ("max_steps", "eval_frequency", "batch_size"):
            if getattr(self, name) < 1:
                raise DistillError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise DistillError(f"--dropout must be in [0, 1), not {self.dropout}")
        if self.hidden_steps < 0 or not self.hidden_learn_rate > 0:
            raise DistillError(f"--hidden-steps must be at least 0 and --hidden-learn-rate positive, not "
                               f"{self.hidden_steps} and {self.hidden_learn_rate}")
        if self.dev is None and self.holdout < 1:
            raise DistillError("without --dev, --holdout must be at least 1 (the rows the student is "
                               "scored on during training)")
        if self.gold_targets not in GOLD_TARGETS:
            raise DistillError(f"--gold-targets must be one of {', '.join(GOLD_TARGETS)}, not {self.gold_targets!r}")
        if self.gold_targets == "teacher" and self.gold is None:
            raise DistillError("--gold-targets teacher needs --gold (the corpus whose texts the teacher annotates)")
        for name in ("gold", "dev"):
            path = getattr(self, name)
            if path is not None and not Path(path).exists():
                raise DistillError(f"--{name} {path} does not exist")


def distill(teacher: str | Path, unlabelled: str | Path, output: str | Path,
            options: Optional[DistillOptions] = None) -> Path:
    """Distil ``teacher`` into a student of ``options.layers`` layers at ``output``; return it."""
    options = options or DistillOptions()
    output = Path(output)
    work = Path(options.work_dir or f"{output}.work")
    check_output(output, work, options.overwrite)
    if options.gpu_id >= 0:
        spacy.require_gpu(options.gpu_id)
    teacher_nlp = load_teacher(teacher)
    check_layers(teacher_nlp, options.layers)
    texts = check_unlabelled(Path(unlabelled), options.text_column, options.max_texts)
    check_rows_left(texts, options)
    identity = work_identity(teacher_nlp, texts, options)
    if options.overwrite:
        shutil.rmtree(output, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    check_work(work, identity)
    if options.max_texts and options.max_texts < pq.ParquetFile(texts).metadata.num_rows:
        texts = write_first_rows(texts, work / f"unlabelled-first-{options.max_texts}.parquet",
                                 options.max_texts, options.text_column)
    if teacher_targets_on_gold(options):
        texts = write_with_gold_texts(texts, Path(options.gold), work / "unlabelled-and-gold.parquet",
                                      heldout_rows(options), options.text_column, options.seed)
    student = make_student(teacher, options.layers, options.dropout)
    if options.hidden_steps:
        match_student_to_teacher(teacher_nlp, student, texts, work, options)
    save_student(student, work / "student-init")
    del student
    silver = annotate_unlabelled(teacher_nlp, texts, work / "teacher-annotations.parquet", options)
    del teacher_nlp
    config = write_student_config(work / "student-init", silver, work / DISTILL_CONFIG, options)
    train_student(config, work / "training", options)
    shutil.copytree(work / "training" / "model-best", output)
    copy_meta(work / "student-init" / "meta.json", output / "meta.json")
    return output


def copy_meta(source: Path, dest: Path) -> None:
    """The student's name and description (``spacy train`` writes a fresh meta), with its scores."""
    meta = json.loads(dest.read_text(encoding="utf-8"))
    meta.update({key: value for key, value in json.loads(source.read_text(encoding="utf-8")).items()
                 if key in ("name", "version", "description", "author", "license")})
    dest.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")


# --- checks before any work ---------------------------------------------------------------------

WORK_IDENTITY = "teacher.json"


def work_identity(teacher: Language, texts: Path, options: DistillOptions) -> dict:
    """What the teacher's annotations in the work folder depend on."""
    from .checkpoint import pipeline_hash

    return {"teacher": pipeline_hash(teacher), "texts": str(texts.resolve()),
            "texts_bytes": texts.stat().st_size, "text_column": options.text_column,
            "max_texts": options.max_texts, "tag_probs": options.soft,
            "gold_texts": str(Path(options.gold).resolve()) if teacher_targets_on_gold(options) else None}


def teacher_targets_on_gold(options: DistillOptions) -> bool:
    """Whether the gold corpus's texts join the unlabelled ones (``--gold-targets teacher``)."""
    return options.gold is not None and options.gold_targets == "teacher"


def check_work(work: Path, identity: dict) -> None:
    """Create the work folder, or reuse one whose annotations fit (another run's, e.g. other
    ``--layers``: the teacher annotates once); refuse one made with another teacher or texts."""
    record = work / WORK_IDENTITY
    if record.is_file():
        old = json.loads(record.read_text(encoding="utf-8"))
        changed = [key for key in identity if old.get(key) != identity[key]
                   and not (key == "tag_probs" and old[key])]  # soft annotations serve silver too
        if changed:
            raise DistillError(f"the work folder {work} holds the annotations of another run (changed: "
                               f"{', '.join(changed)}); pass --overwrite or another --work-dir")
        return
    work.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(identity, indent=2), encoding="utf-8")

def check_output(output: Path, work: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise DistillError(f"OUTPUT {output} exists; pass --overwrite to replace it (and {work})")


def load_teacher(teacher: str | Path) -> Language:
    """The teacher pipeline, which must have a transformer, an ``ner_tagger`` ner and a textcat."""
    from .ner_tagger import NERTagger

    try:
        nlp = spacy.load(teacher)
    except OSError as error:
        raise DistillError(f"cannot load the teacher {teacher!r}: {error}") from error
    missing = [name for name in ("transformer", "ner", "textcat") if name not in nlp.pipe_names]
    if missing:
        raise DistillError(f"the teacher {teacher} has no {', '.join(missing)} pipe (pipes: "
                           f"{', '.join(nlp.pipe_names) or 'none'}); distill needs transformer, ner, textcat")
    if not isinstance(nlp.get_pipe("ner"), NERTagger):
        raise DistillError(f"the teacher's ner is {nlp.get_pipe_meta('ner').factory!r}, not "
                           f"ner_tagger: its soft targets and the student's loss are ner_tagger's")
    return nlp


def encoder_of(nlp: Language):
    """The Hugging Face model inside the pipeline's transformer pipe."""
    return nlp.get_pipe("transformer").model.transformer


def check_layers(nlp: Language, layers: int) -> None:
    total = encoder_of(nlp).config.num_hidden_layers
    if layers >= total:
        raise DistillError(f"--layers {layers}: the student must have fewer layers than its "
                           f"teacher's {total}")


def check_unlabelled(path: Path, text_column: str, max_texts: Optional[int]) -> Path:
    """``path``, if it is a Parquet file with a string column ``text_column``."""
    if not path.is_file():
        raise DistillError(f"UNLABELLED {path} is not a Parquet file")
    try:
        source = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for a file that is not Parquet
        raise DistillError(f"UNLABELLED {path}: not a readable Parquet file ({error})") from error
    try:
        check_text_column(source.schema_arrow, text_column, str(path))
    except ValueError as error:
        raise DistillError(str(error)) from error
    if max_texts is not None and max_texts < 1:
        raise DistillError(f"--max-texts must be at least 1, not {max_texts}")
    return path


def check_rows_left(texts: Path, options: DistillOptions) -> None:
    """Some rows must be left to train on once the held-out ones are set aside."""
    rows = pq.ParquetFile(texts).metadata.num_rows
    if options.max_texts:
        rows = min(rows, options.max_texts)
    if rows <= heldout_rows(options):
        raise DistillError(f"UNLABELLED {texts} has {rows} rows, all held out to score the student "
                           f"(--holdout {options.holdout}): lower --holdout or pass --dev")


# --- the student ------------------------------------------------------------------------------

def kept_layers(total: int, keep: int) -> list[int]:
    """Which of ``total`` layers a ``keep``-layer student keeps: the bottom ``keep`` ones.

    Measured (tests' embedded-corpus teacher, 4 layers → 2, 120 steps of soft targets, entity F1
    of the student against the teacher on dev): layers [0, 1] 84.5 (48.3 before any training),
    [1, 3] 72.9 (10.3 before training), [0, 3] 73.4, [2, 3] 68.7: the bottom layers, which feed
    each other as in the teacher, start closest to it and stay ahead. Sajjad et al. (2020, "On
    the effect of dropping layers of pre-trained transformer models") found dropping the top
    layers best for BERT too; DistilBERT's every other layer ([1, 3]) was second-worst here.
    """
    return list(range(min(keep, total)))


def make_student(teacher: str | Path, layers: int, dropout: Optional[float] = None) -> Language:
    """The teacher with only ``kept_layers`` of its encoder layers (and ``dropout`` in its encoder)."""
    student = spacy.load(teacher)
    model = encoder_of(student)
    keep = kept_layers(model.config.num_hidden_layers, layers)
    model.encoder.layer = torch.nn.ModuleList(model.encoder.layer[i] for i in keep)
    model.config.num_hidden_layers = len(keep)
    if dropout is not None:
        set_encoder_dropout(model, dropout)
    name = student.meta.get("name", "pipeline")
    student.meta.update({"name": f"{name}_student{layers}",
                         "description": f"distilled from {name}: encoder layers {keep} of the teacher's"})
    return student


# the Hugging Face config keys of dropout in BERT-like encoders (DistilBERT's: dropout, attention_dropout)
ENCODER_DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


def set_encoder_dropout(model: torch.nn.Module, rate: float) -> None:
    """Dropout ``rate`` in the encoder, now and when it is rebuilt from its saved config.

    The encoder's dropout is its own (``model.train()`` while spaCy trains), not ``[training]
    dropout``, which reaches only thinc's dropout layers.
    """
    for key in ENCODER_DROPOUT_KEYS:
        if hasattr(model.config, key):
            setattr(model.config, key, rate)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate
        if hasattr(module, "dropout_prob"):  # the SDPA attention reads a float, not a Dropout
            module.dropout_prob = rate


def save_student(student: Language, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    student.to_disk(dest)
    return dest


def match_student_to_teacher(teacher: Language, student: Language, texts: Path, work: Path,
                             options: DistillOptions) -> None:
    """The hidden-state stage on the texts the student trains on (the held-out rows left out)."""
    from .distill_hidden import HiddenOptions, match_hidden_states

    hidden = HiddenOptions(steps=options.hidden_steps, learn_rate=options.hidden_learn_rate,
                           seed=options.seed, progress=options.progress)
    report = match_hidden_states(encoder_of(teacher), encoder_of(student),
                                 teacher.get_pipe("transformer").model.tokenizer, texts,
                                 options.text_column, heldout_rows(options), hidden,
                                 work / "hidden.json")
    if options.progress:
        print(report.summary())


def heldout_rows(options: DistillOptions) -> int:
    """The first rows of the annotations that score the student (none with a gold ``dev``)."""
    return 0 if options.dev else options.holdout


# --- targets and training ---------------------------------------------------------------------

def annotate_unlabelled(teacher: Language, texts: Path, dest: Path, options: DistillOptions) -> Path:
    """The teacher's annotations of the texts (an interrupted run is resumed, a complete one kept)."""
    from .annotation import annotate_files

    annotate_options = AnnotateOptions(text_column=options.text_column, keep_columns=[options.text_column],
                                       tag_probs=options.soft, gpu_id=options.gpu_id,
                                       max_chars=100_000, resume=True, progress=options.progress)
    annotate_files(teacher, texts, dest, annotate_options)
    return dest


def write_student_config(student: Path, silver: Path, dest: Path, options: DistillOptions) -> Path:
    """The student's training config: the teacher's, with every component sourced from ``student``."""
    config = spacy.util.load_config(student / "config.cfg")
    for name in config["nlp"]["pipeline"]:
        config["components"][name] = {"source": str(student.resolve())}
    reader = {"@readers": READER, "path": str(silver.resolve()), "soft": options.soft,
              "text_column": options.text_column,
              "holdout": heldout_rows(options), "seed": options.seed}
    gold_labels = options.gold is not None and not teacher_targets_on_gold(options)
    config["corpora"]["train"] = {**reader, "part": "train",
                                  "gold": str(Path(options.gold).resolve()) if gold_labels else None}
    config["corpora"]["dev"] = ({"@readers": "spacy.Corpus.v1", "path": str(Path(options.dev).resolve())}
                                if options.dev else {**reader, "part": "dev"})
    training = config["training"]
    training.update({"max_epochs": -1, "max_steps": options.max_steps, "patience": 0,
                     "eval_frequency": options.eval_frequency, "seed": options.seed})
    if options.dropout is not None:
        training["dropout"] = options.dropout
    if "size" in training["batcher"] and training["batcher"].get("@batchers") == "spacy.batch_by_sequence.v1":
        training["batcher"]["size"] = options.batch_size
    schedule = training["optimizer"].get("learn_rate")
    if isinstance(schedule, dict):
        schedule["total_steps"] = options.max_steps
        if options.learn_rate is not None:
            schedule["initial_rate"] = options.learn_rate
    config["paths"] = {**config.get("paths", {}), "train": None, "dev": None}
    if not config["nlp"].get("after_pipeline_creation"):   # a teacher trained before the callback
        config["nlp"]["after_pipeline_creation"] = {"@callbacks": STEP_AFTER_LISTENERS}
    config.to_disk(dest)
    (dest.parent / "distill.json").write_text(json.dumps({k: str(v) if isinstance(v, Path) else v
                                                          for k, v in asdict(options).items()}, indent=2))
    return dest


def train_student(config: Path, output: Path, options: DistillOptions) -> None:
    """``spacy train`` on the student config."""
    from spacy.cli.train import train

    train(config, output, use_gpu=options.gpu_id)
