"""Training on the embedded corpus with the real m3e-small encoder: missing annotation, accuracy,
reloading, packaging.

Thresholds (stated in README.md): after 100 CPU steps on the embedded corpus, dev NER F >= 0.90
and dev textcat accuracy >= 0.90. The dev split uses people, places, organisations and class
words that never occur in train, so the model must carry meaning over from the pretrained encoder.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.training import Example
from spacy.util import registry

from spacy_bert_zh.evaluation import evaluate_pipeline, read_docbins

ROOT = Path(__file__).resolve().parents[1]
CPU_CONFIG = ROOT / "configs" / "cpu.cfg"
MIN_NER_F = 0.90
MIN_TEXTCAT_ACCURACY = 0.90


def load_cpu_pipeline(encoder: Path, **overrides) -> spacy.Language:
    """The pipeline of configs/cpu.cfg on ``encoder``, not yet initialized."""
    config = spacy.util.load_config(CPU_CONFIG, overrides={"paths.encoder": str(encoder), **overrides},
                                    interpolate=True)
    return spacy.util.load_model_from_config(config, auto_fill=True)


def test_missing_annotation_is_missing(encoder_path, sample_corpus):
    """NER sentences give the textcat no loss, classified texts give the ner no loss; with the
    stock exclusive textcat, or with ``doc.ents = []``, the same docs would teach "nothing"."""
    nlp = load_cpu_pipeline(encoder_path)
    stock = load_cpu_pipeline(encoder_path, **{"components.textcat.factory": "textcat"})
    gold = read_docbins(nlp, [sample_corpus / "train"])
    ner_docs = [doc for doc in gold if doc.has_annotation("ENT_IOB")][:8]
    cls_docs = [doc for doc in gold if doc.cats][:8]
    assert ner_docs and all(not doc.cats for doc in ner_docs)
    assert cls_docs and all(not doc.has_annotation("ENT_IOB") for doc in cls_docs)

    def losses_on(pipeline, docs):
        examples = [Example(pipeline.make_doc(doc.text), doc) for doc in docs]
        losses = {}
        pipeline.update(examples, sgd=None, losses=losses, drop=0.0)
        return losses

    for pipeline in (nlp, stock):
        pipeline.initialize(lambda: [Example(pipeline.make_doc(d.text), d) for d in gold])
    assert losses_on(nlp, ner_docs)["textcat"] == 0.0
    assert losses_on(stock, ner_docs)["textcat"] > 0.0
    assert losses_on(nlp, cls_docs)["ner"] == 0.0
    for doc in cls_docs:
        doc.ents = []  # now every character is annotated as O
    assert losses_on(nlp, cls_docs)["ner"] > 0.0


def test_head_scaled_adam_moves_heads_faster_than_the_encoder():
    """The optimizer named in configs/cpu.cfg, resolved through spaCy's registry: on a first Adam
    step every weight moves by the learning rate, times the scale outside the PyTorch encoder."""
    make_optimizer = registry.optimizers.get("spacy_bert_zh.Adam.v1")
    optimizer = make_optimizer(0.01, head_learn_rate_scale=10.0, L2=0.0, grad_clip=0.0)
    keys = {"head": (1, "W"), "encoder": (2, "encoder.layer.0.attention.self.query.weight")}
    moved = {}
    for part, key in keys.items():
        weights, _ = optimizer(key, numpy.zeros(4, dtype="f"), numpy.ones(4, dtype="f"))
        moved[part] = -float(weights[0])
    assert moved["encoder"] == pytest.approx(0.01, rel=1e-3)
    assert moved["head"] == pytest.approx(0.1, rel=1e-3)
    assert "spacy_bert_zh.Adam.v1" in CPU_CONFIG.read_text()


def test_crf_scores_learn_faster_than_the_other_heads():
    make_optimizer = registry.optimizers.get("spacy_bert_zh.Adam.v1")
    optimizer = make_optimizer(0.01, head_learn_rate_scale=10.0, crf_learn_rate_scale=5.0, L2=0.0, grad_clip=0.0)
    weights, _ = optimizer((3, "transitions"), numpy.zeros(4, dtype="f"), numpy.ones(4, dtype="f"))
    assert -float(weights[0]) == pytest.approx(0.5, rel=1e-3)


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_configs_resolve_with_the_head_scaled_optimizer(name, encoder_path):
    """Both shipped configs build their pipeline and resolve their [training] block."""
    from spacy.schemas import ConfigSchemaTraining

    config = spacy.util.load_config(ROOT / "configs" / f"{name}.cfg", interpolate=True,
                                    overrides={"paths.encoder": str(encoder_path)})
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    assert nlp.pipe_names == ["transformer", "ner", "textcat"]
    training = registry.resolve(nlp.config["training"], schema=ConfigSchemaTraining)
    assert training["optimizer"].head_scale == 10.0


@pytest.mark.slow
def test_trained_pipeline_learns_from_the_pretrained_encoder(trained_pipeline, sample_corpus, tmp_path):
    scores = evaluate_pipeline(trained_pipeline, [sample_corpus / "dev"], tmp_path / "scores.json")
    assert (tmp_path / "scores.json").is_file()
    assert scores["ner"]["docs"] == 100 and scores["textcat"]["docs"] == 100
    assert set(scores["ner"]["per_label"]) == {"PER", "LOC", "ORG"}
    assert scores["ner"]["f"] >= MIN_NER_F, scores["ner"]
    assert scores["textcat"]["accuracy"] >= MIN_TEXTCAT_ACCURACY, scores["textcat"]


@pytest.mark.slow
def test_reloaded_pipeline_tokenizes_like_the_converters(trained_pipeline):
    nlp = spacy.load(trained_pipeline)
    text = "据新华社报道，李明昨天在上海会见了来自北京大学的代表。"
    doc = nlp(text)
    assert [token.text for token in doc] == list(text)
    assert all(token.whitespace_ == "" for token in doc)
    assert set(doc.cats) == {"体育", "财经", "科技", "旅游"}
    assert abs(sum(doc.cats.values()) - 1.0) < 1e-4
    assert all(ent.label_ in {"PER", "LOC", "ORG"} for ent in doc.ents)


@pytest.mark.slow
def test_packaged_wheel_loads_offline_in_a_new_process(trained_pipeline, tmp_path):
    """`spacy package` builds a wheel; installed, it loads by name with HF_HUB_OFFLINE=1."""
    subprocess.run([sys.executable, "-m", "spacy", "package", str(trained_pipeline), str(tmp_path),
                    "--name", "bert_test", "--version", "0.0.1", "--build", "wheel", "--force"],
                   check=True, capture_output=True)
    wheel = tmp_path / "zh_bert_test-0.0.1" / "dist" / "zh_bert_test-0.0.1-py3-none-any.whl"
    assert wheel.is_file()
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    script = ("import spacy; nlp = spacy.load('zh_bert_test'); doc = nlp('王小明在广州工作。');"
              "print('|'.join(t.text for t in doc)); print(sorted(doc.cats))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tokens, cats = done.stdout.strip().splitlines()[-2:]
    assert tokens == "|".join("王小明在广州工作。")
    assert cats == str(sorted(["体育", "财经", "科技", "旅游"]))


def test_textcat_partial_takes_class_probabilities_as_targets(encoder_path):
    """A distilled student learns the teacher's class probabilities; spaCy's exclusive textcat
    takes only 0/1. Probabilities that do not sum to 1 are refused."""
    nlp = load_cpu_pipeline(encoder_path)
    textcat = nlp.get_pipe("textcat")

    def example(cats):
        reference = nlp.make_doc("这本书很好看")
        reference.cats = cats
        return Example(nlp.make_doc(reference.text), reference)

    textcat._validate_categories([example({"a": 0.7, "b": 0.3}), example({"a": 1.0, "b": 0.0})])
    with pytest.raises(ValueError, match="probabilities that sum to 1"):
        textcat._validate_categories([example({"a": 0.5, "b": 0.6})])


def test_textcat_partial_takes_labels_from_the_initialize_block():
    """``[initialize.components.textcat] labels`` (what ``spacy init labels`` gives) passes
    spaCy's check of the settings against ``initialize`` and sets the labels."""
    nlp = spacy.blank("zh")
    nlp.add_pipe("textcat_partial", name="textcat")
    nlp.config["initialize"]["components"]["textcat"] = {"labels": ["负面", "正面", "中性"]}
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("很好"), {"cats": {"正面": 1.0, "负面": 0.0, "中性": 0.0}})])
    assert nlp.get_pipe("textcat").labels == ("负面", "正面", "中性")
