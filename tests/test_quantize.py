"""int8 quantization (spacy_bert_zh.quantize): same Doc schema as fp32, close predictions, clear errors."""
from __future__ import annotations

import pickle
import sys

import numpy
import pytest
import spacy
from spacy.tokens import Span

from spacy_bert_zh.quantize import Int8Encoder, QuantizationUnavailable, is_quantized, quantize_pipeline

# Invented sentences (names, places, shopping reviews), not taken from any corpus.
TEXTS = [
    "周小明上周从杭州坐高铁去了南京，参观了中山陵。",
    "这台洗衣机噪音很小，洗得也干净，就是送货慢了两天。",
    "陈静在深圳一家科技公司工作，每天骑车上班。",
    "书的纸张太薄了，印刷也模糊，不推荐购买。",
    "王老师带着学生们去西湖边写生，天气非常好。",
    "酒店离火车站很近，房间干净，早餐种类少了点。",
    "刘强东在北京宣布公司将在成都建立新的物流中心。",
    "耳机音质一般，戴久了耳朵疼，退货也很麻烦。",
    "李华的妈妈在广州开了一家小饭馆，生意很红火。",
    "水果收到的时候已经坏了好几个，客服态度还不错。",
    "张伟和赵敏在上海外滩拍了很多照片。",
    "这款面霜用了一个月，皮肤明显变好了，会回购。",
]


def randomize_textcat_output(nlp) -> None:
    """The untrained textcat outputs uniform cats (its softmax over the mean vector starts at zero);
    seeded random output weights make them differ."""
    layer = [node for node in nlp.get_pipe("textcat").model.walk() if node.name == "softmax"][-1]
    layer.set_param("W", numpy.random.RandomState(1).normal(0.0, 0.03, layer.get_param("W").shape).astype("f"))


@pytest.fixture(scope="module")
def pipelines(untrained_pipeline):
    """(fp32, int8) copies of the untrained pipeline, with the same random textcat output."""
    fp32, int8 = spacy.load(untrained_pipeline), spacy.load(untrained_pipeline)
    for nlp in (fp32, int8):
        randomize_textcat_output(nlp)
    return fp32, quantize_pipeline(int8)


def entities(doc) -> set:
    return {(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents}


def top_label(doc) -> str:
    return max(doc.cats, key=doc.cats.get)


def test_int8_docs_have_the_fp32_attributes(pipelines):
    fp32, int8 = pipelines
    assert is_quantized(int8) and not is_quantized(fp32)
    for a, b in zip(fp32.pipe(TEXTS[:4]), int8.pipe(TEXTS[:4])):
        assert all(isinstance(ent, Span) for ent in b.ents)
        assert {ent.label_ for ent in b.ents} <= {"PER", "LOC", "ORG"}
        assert list(a.cats) == list(b.cats) and all(isinstance(v, float) for v in b.cats.values())
        out_a, out_b = a._.trf_data.model_output, b._.trf_data.model_output
        assert list(out_a) == list(out_b)
        for key in out_a:
            assert type(out_a[key]) is type(out_b[key])
            assert out_a[key].shape == out_b[key].shape and out_a[key].dtype == out_b[key].dtype
    doc = int8(TEXTS[0])  # nlp(text) as well as nlp.pipe
    assert entities(doc) == entities(next(int8.pipe(TEXTS[:1])))


def test_int8_agrees_with_fp32(pipelines):
    """Random heads make near-ties, so labels must agree wherever fp32's top class leads clearly."""
    fp32, int8 = pipelines
    docs = list(zip(fp32.pipe(TEXTS), int8.pipe(TEXTS)))
    clear = [(a, b) for a, b in docs if margin(a.cats) > 0.05]
    assert len(clear) >= len(docs) // 2 and all(top_label(a) == top_label(b) for a, b in clear)
    assert sum(top_label(a) == top_label(b) for a, b in docs) >= 0.75 * len(docs)
    assert max(abs(a.cats[k] - b.cats[k]) for a, b in docs for k in a.cats) < 0.05
    gold = sum(len(entities(a)) for a, _ in docs)
    guessed = sum(len(entities(b)) for _, b in docs)
    shared = sum(len(entities(a) & entities(b)) for a, b in docs)
    assert gold > 0, "the untrained ner should predict entities"
    assert 2 * shared / (gold + guessed) >= 0.85


def margin(cats: dict) -> float:
    first, second = sorted(cats.values(), reverse=True)[:2]
    return first - second


def test_quantizing_twice_is_a_no_op(pipelines):
    _, int8 = pipelines
    shim = int8.get_pipe("transformer").model.layers[0].shims[0]
    encoder = shim._model
    assert isinstance(encoder, Int8Encoder)
    assert quantize_pipeline(int8) is int8 and shim._model is encoder


def test_pickled_int8_pipeline_keeps_its_encoder(pipelines):
    """What spawned nlp.pipe(n_process=...) workers receive."""
    _, int8 = pipelines
    copy = pickle.loads(pickle.dumps(int8))
    assert is_quantized(copy)
    assert entities(copy(TEXTS[1])) == entities(int8(TEXTS[1]))


def test_int8_pipeline_cannot_be_saved(pipelines, tmp_path):
    _, int8 = pipelines
    with pytest.raises(NotImplementedError, match="save the fp32 pipeline"):
        int8.to_disk(tmp_path / "int8")


def test_int8_pipeline_has_a_weight_hash(pipelines):
    """annotate's checkpoints hash the weights of a pipeline given as a Language: int8 ones too."""
    from spacy_bert_zh.checkpoint import pipeline_hash

    fp32, int8 = pipelines
    assert pipeline_hash(int8) == pipeline_hash(int8) != pipeline_hash(fp32)


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown quantization mode 'int4'"):
        quantize_pipeline(spacy.blank("zh"), mode="int4")


def test_pipeline_without_transformer_is_an_error():
    nlp = spacy.blank("zh")
    nlp.add_pipe("sentencizer")
    with pytest.raises(ValueError, match="no transformer pipe"):
        quantize_pipeline(nlp)


def test_gpu_pipeline_is_an_error(pipelines, monkeypatch):
    import thinc.api

    class GpuOps:
        device_type = "gpu"

    nlp, _ = pipelines
    monkeypatch.setattr(thinc.api, "get_current_ops", lambda: GpuOps())
    with pytest.raises(ValueError, match="CPU only"):
        quantize_pipeline(nlp)
    assert not is_quantized(nlp)


def test_missing_ctranslate2_tells_what_to_install(pipelines, monkeypatch):
    nlp, _ = pipelines
    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    monkeypatch.setitem(sys.modules, "ctranslate2.converters.transformers", None)
    with pytest.raises(QuantizationUnavailable, match=r"pip install 'spacy-bert-zh\[fast\]'"):
        quantize_pipeline(nlp)
    assert isinstance(QuantizationUnavailable("x"), ImportError)


def test_annotate_quantize_int8_keeps_the_output_schema(untrained_pipeline, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from spacy_bert_zh.cli import app

    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": list(range(len(TEXTS))), "text": TEXTS}), source)

    def annotate(dest, *options):
        return CliRunner().invoke(app, ["annotate", str(untrained_pipeline), str(source), str(dest),
                                        "--quiet", *options])

    assert annotate(tmp_path / "fp32.parquet").exit_code == 0
    result = annotate(tmp_path / "int8.parquet", "--quantize", "int8")
    assert result.exit_code == 0, result.output
    fp32, int8 = pq.read_table(tmp_path / "fp32.parquet"), pq.read_table(tmp_path / "int8.parquet")
    assert int8.schema.equals(fp32.schema, check_metadata=False)
    assert int8.column("id").to_pylist() == list(range(len(TEXTS)))
    on_gpu = annotate(tmp_path / "gpu.parquet", "--quantize", "int8", "--gpu-id", "0")
    assert on_gpu.exit_code == 2 and "CPU only" in on_gpu.output and "--half" in on_gpu.output
    unknown = annotate(tmp_path / "int4.parquet", "--quantize", "int4")
    assert unknown.exit_code == 2 and "--quantize must be one of int8, bf16" in unknown.output


def test_folding_token_type_0_into_positions_keeps_fp32_outputs(untrained_pipeline):
    import copy

    import torch

    from spacy_bert_zh.quantize import fold_token_type_into_positions

    model = spacy.load(untrained_pipeline).get_pipe("transformer").model.transformer.eval()
    folded = fold_token_type_into_positions(copy.deepcopy(model))
    assert torch.count_nonzero(folded.embeddings.token_type_embeddings.weight[0]) == 0
    ids = torch.tensor([[101, 2769, 4263, 1266, 776, 102]])
    for types in (torch.zeros_like(ids), torch.tensor([[0, 0, 0, 1, 1, 1]])):
        with torch.no_grad():
            expected = model(input_ids=ids, token_type_ids=types).last_hidden_state
            got = folded(input_ids=ids, token_type_ids=types).last_hidden_state
        assert torch.allclose(expected, got, atol=1e-5)


def test_the_fold_brings_int8_vectors_closer_to_fp32(untrained_pipeline, monkeypatch):
    """m3e-small's type-0 embedding has values up to 1.7: its int8 rounding reached every piece."""
    import torch

    import spacy_bert_zh.quantize as quantize

    trf = spacy.load(untrained_pipeline).get_pipe("transformer").model
    model, tokenizer = trf.transformer.eval(), trf.tokenizer
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        reference = model(**inputs).last_hidden_state[real]

    def distance() -> float:
        with torch.no_grad():
            int8 = Int8Encoder.from_hf(model, tokenizer)(**inputs).last_hidden_state[real]
        return (int8 - reference).norm(dim=-1).mean().item()

    folded = distance()
    monkeypatch.setattr(quantize, "fold_token_type_into_positions", lambda model: model)
    assert folded < 0.9 * distance()   # measured: 1.08 against 1.34


@pytest.fixture(scope="module")
def bf16_pipeline(untrained_pipeline):
    """A bfloat16 copy of the untrained pipeline, with the textcat output of ``pipelines``."""
    nlp = spacy.load(untrained_pipeline)
    randomize_textcat_output(nlp)
    return quantize_pipeline(nlp, "bf16")


def test_bf16_docs_have_the_fp32_attributes_in_float32(pipelines, bf16_pipeline):
    import torch

    fp32, _ = pipelines
    assert is_quantized(bf16_pipeline)
    encoder = bf16_pipeline.get_pipe("transformer").model.layers[0].shims[0]._model
    assert {parameter.dtype for parameter in encoder.parameters()} == {torch.bfloat16}
    for a, b in zip(fp32.pipe(TEXTS[:4]), bf16_pipeline.pipe(TEXTS[:4])):
        assert list(a.cats) == list(b.cats)
        out_a, out_b = a._.trf_data.model_output, b._.trf_data.model_output
        assert list(out_a) == list(out_b)
        for key in out_a:
            assert out_a[key].shape == out_b[key].shape and out_b[key].dtype == numpy.float32


def test_bf16_agrees_with_fp32_closer_than_int8(pipelines, bf16_pipeline):
    """bfloat16 keeps 8 bits of mantissa in every product; the hidden states stay close to fp32's."""
    fp32, _ = pipelines
    docs = list(zip(fp32.pipe(TEXTS), bf16_pipeline.pipe(TEXTS)))
    for a, b in docs:
        x, y = (doc._.trf_data.model_output.last_hidden_state.reshape(-1, 512) for doc in (a, b))
        cosine = (x * y).sum(-1) / numpy.linalg.norm(x, axis=-1) / numpy.linalg.norm(y, axis=-1)
        assert cosine.min() > 0.99
    clear = [(a, b) for a, b in docs if margin(a.cats) > 0.02]
    assert len(clear) >= len(docs) // 2 and all(top_label(a) == top_label(b) for a, b in clear)
    assert max(abs(a.cats[k] - b.cats[k]) for a, b in docs for k in a.cats) < 0.02
    shared = sum(len(entities(a) & entities(b)) for a, b in docs)
    total = sum(len(entities(a)) + len(entities(b)) for a, b in docs)
    assert total > 0 and 2 * shared / total >= 0.9


def test_bf16_pipeline_pickles_and_refuses_to_save(bf16_pipeline, tmp_path):
    from spacy_bert_zh.checkpoint import pipeline_hash
    from spacy_bert_zh.quantize import Bfloat16Encoder

    copy = pickle.loads(pickle.dumps(bf16_pipeline))
    assert isinstance(copy.get_pipe("transformer").model.layers[0].shims[0]._model, Bfloat16Encoder)
    assert entities(copy(TEXTS[1])) == entities(bf16_pipeline(TEXTS[1]))
    assert pipeline_hash(copy) == pipeline_hash(bf16_pipeline)
    with pytest.raises(NotImplementedError, match="save the fp32 pipeline"):
        bf16_pipeline.to_disk(tmp_path / "bf16")


def test_a_quantized_pipeline_is_not_quantized_again_in_the_other_mode(pipelines, bf16_pipeline):
    _, int8 = pipelines
    for nlp, mode in ((int8, "bf16"), (bf16_pipeline, "int8")):
        shim = nlp.get_pipe("transformer").model.layers[0].shims[0]
        encoder = shim._model
        assert quantize_pipeline(nlp, mode) is nlp and shim._model is encoder


def test_bf16_warns_on_a_cpu_without_bfloat16_instructions(untrained_pipeline, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    with pytest.warns(RuntimeWarning, match="neither AMX nor AVX512-BF16"):
        quantize_pipeline(spacy.load(untrained_pipeline), "bf16")


def test_annotate_quantize_bf16_keeps_the_output_schema(untrained_pipeline, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from spacy_bert_zh.cli import app

    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": list(range(len(TEXTS))), "text": TEXTS}), source)
    outputs = {}
    for name, options in (("fp32", []), ("bf16", ["--quantize", "bf16"])):
        dest = tmp_path / f"{name}.parquet"
        result = CliRunner().invoke(app, ["annotate", str(untrained_pipeline), str(source), str(dest),
                                          "--quiet", *options])
        assert result.exit_code == 0, result.output
        outputs[name] = pq.read_table(dest)
    assert outputs["bf16"].schema.equals(outputs["fp32"].schema, check_metadata=False)
    assert outputs["bf16"].column("id").to_pylist() == list(range(len(TEXTS)))
