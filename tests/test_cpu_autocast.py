"""bfloat16 autocast for CPU training (spacy_bert_zh.cpu_autocast): products in bfloat16, outputs,
weights and state dict in float32, gradients flowing, the pipeline still pickles, "auto" follows the CPU."""
from __future__ import annotations

import pickle

import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam

from spacy_bert_zh import cpu_autocast
from spacy_bert_zh.cpu_autocast import autocast_encoders, make_cpu_bf16_autocast

TEXTS = ["王小明昨天从北京坐高铁去了上海。", "这家店的包子很好吃，就是排队太久。"]   # invented


def encoder(nlp) -> torch.nn.Module:
    return nlp.get_pipe("transformer").model.layers[0].shims[0]._model


@pytest.fixture
def pipelines(untrained_pipeline):
    plain, switched = spacy.load(untrained_pipeline), spacy.load(untrained_pipeline)
    assert autocast_encoders(switched) == 1
    return plain, switched


def test_products_run_in_bfloat16_and_outputs_come_back_in_float32(pipelines):
    plain, switched = pipelines
    dtypes = []
    linear = next(module for module in encoder(switched).modules() if isinstance(module, torch.nn.Linear))
    linear.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    docs = list(switched.pipe(TEXTS))
    assert dtypes and set(dtypes) == {torch.bfloat16}
    for a, b in zip(plain.pipe(TEXTS), docs):
        x, y = a._.trf_data.model_output.last_hidden_state, b._.trf_data.model_output.last_hidden_state
        assert y.dtype == numpy.float32 and x.shape == y.shape
        x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        cosine = (x * y).sum(-1) / numpy.linalg.norm(x, axis=-1) / numpy.linalg.norm(y, axis=-1)
        assert cosine.min() > 0.99


def test_weights_and_state_dict_stay_float32_and_switching_twice_wraps_once(pipelines):
    plain, switched = pipelines
    assert autocast_encoders(switched) == 1
    forward = encoder(switched).__dict__["forward"]
    assert forward.module is encoder(switched)
    assert list(encoder(switched).state_dict()) == list(encoder(plain).state_dict())
    assert {p.dtype for p in encoder(switched).parameters()} == {torch.float32}


def test_a_training_step_updates_the_encoder(pipelines):
    _, switched = pipelines
    weight = encoder(switched).encoder.layer[0].attention.self.query.weight
    before = weight.detach().clone()
    example = Example.from_dict(switched.make_doc(TEXTS[0]), {"entities": [(0, 3, "PER"), (6, 8, "LOC")]})
    optimizer = Adam(1e-3)
    losses = switched.update([example], sgd=optimizer)   # steps at once: configs' step_after_listeners
    assert all(numpy.isfinite(value) for value in losses.values()) and losses["ner"] > 0
    assert not torch.equal(before, weight.detach()) and weight.dtype == torch.float32


def test_a_switched_pipeline_pickles(pipelines):
    _, switched = pipelines
    copy = pickle.loads(pickle.dumps(switched))
    forward = encoder(copy).__dict__["forward"]
    assert forward.module is encoder(copy)
    assert copy(TEXTS[1]).text == TEXTS[1]


@pytest.mark.parametrize("enabled, instructions, expected", [("auto", True, True), ("auto", False, False),
                                                             ("on", False, True), ("off", True, False)])
def test_the_callback_switches_as_asked(untrained_pipeline, monkeypatch, enabled, instructions, expected):
    monkeypatch.setattr(cpu_autocast, "has_bfloat16_instructions", lambda: instructions)
    nlp = make_cpu_bf16_autocast(enabled)(spacy.load(untrained_pipeline))
    assert ("forward" in encoder(nlp).__dict__) is expected


def test_never_on_gpu(untrained_pipeline, monkeypatch):
    class GpuOps:
        device_type = "gpu"

    monkeypatch.setattr(cpu_autocast, "get_current_ops", lambda: GpuOps())
    nlp = make_cpu_bf16_autocast("on")(spacy.load(untrained_pipeline))
    assert "forward" not in encoder(nlp).__dict__


def test_a_bad_value_is_an_error_and_the_cpu_config_names_the_callback():
    with pytest.raises(ValueError, match="must be one of auto, on, off, not 'yes'"):
        make_cpu_bf16_autocast("yes")
    from pathlib import Path

    config = spacy.util.load_config(Path(__file__).parents[1] / "configs" / "cpu.cfg")
    section = config["initialize"]["after_init"]
    assert section["@callbacks"] == "spacy_bert_zh.cpu_bf16_autocast.v1" and section["enabled"] == "auto"
    assert callable(spacy.registry.resolve({"cb": section})["cb"])
