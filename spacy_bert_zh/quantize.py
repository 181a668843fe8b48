"""int8 or bfloat16 inference on CPU: swap a loaded pipeline's BERT encoder for a faster one.

    nlp = spacy.load("my_pipeline")
    quantize_pipeline(nlp)          # in place; nlp(text), nlp.pipe(texts) give the same Doc attributes
    quantize_pipeline(nlp, "bf16")  # or bfloat16 weights and matrix products (CPUs with AMX)

bf16 (``Bfloat16Encoder``) keeps the pipeline's own ``BertModel`` with its weights cast to
bfloat16 and hands float32 outputs to spacy-transformers. On CPUs with AMX (Intel Sapphire Rapids
and later) or AVX512-BF16, oneDNN runs its matrix products in hardware: the bare m3e-small forward
over 600 reviews and MSRA sentences, batches of 64, 2 threads, ran 2.9x the fp32 one on our
2-core Xeon (torch autocast: 2.3x). In ``annotate`` (benchmarks/quantize_speed.py, a 300-step
pipeline): 1.99x / 1.75x fp32 on reviews / MSRA sentences (int8: 1.90x / 2.00x), 99.8% identical
labels and entity F1 99.5 against fp32 (int8: 98.3%, 97.8). Without those instructions bfloat16
is emulated and slower than float32, so ``quantize_pipeline`` warns.

Only the transformer pipe's Hugging Face model changes: its weights are converted in memory to a
CTranslate2 encoder with int8 weights (per-row scales) and int8 matrix products, and wrapped in a
``torch.nn.Module`` whose ``forward(input_ids, attention_mask, token_type_ids)`` returns what
spacy-transformers reads from a ``BertModel`` (``last_hidden_state`` and ``pooler_output`` in a
``ModelOutput``). Tokenizer, span windows, alignment and the ner/textcat heads are untouched.

Why CTranslate2. Bare m3e-small forward over 300 online_shopping reviews of 20-150 characters,
batches of 64, 2 threads, best of interleaved repeats in one process on our 2-core AMD EPYC
(AVX2, no VNNI), relative to fp32 torch; "cos" is the mean cosine of the token vectors to fp32:

    fp32 torch (eager)                        1.00x   (416 chars/s)
    CTranslate2 4.8 Encoder, int8             2.81x   cos 0.9966
    ONNX Runtime 1.32 quantize_dynamic QInt8  1.79x   cos 0.981  (per-channel: 1.83x, cos 0.755)
    torchao 0.18 int8 weight-only             ~0.9x   cos 0.9999 (32 texts)
    torchao 0.18 int8 dyn. activation+weight  0.06x   cos 0.998  (32 texts; eager fallback kernels)
      the same under torch.compile            300 s to compile the first batch shape

- CTranslate2 runs BERT encoders natively (fused QKV, int8 GEMMs) and skips the padding inside a
  batch; it is the fastest and the closest to fp32. Its converter reads the loaded ``BertModel``
  directly (``BertLoader``): no model folder, no export tracing, a second or two to convert (its
  folder-based ``TransformersConverter`` passes ``dtype=`` to ``from_pretrained``, which our
  transformers 4.53 refuses).
- ONNX Runtime ``quantize_dynamic`` (QInt8) is slower and further from fp32, and needs a
  ``torch.onnx.export`` of the model (deprecated TorchScript path or the dynamo exporter).
- torchao's int8 dynamic-activation weights run eagerly on CPU through slow fallback kernels;
  its fast path needs ``torch.compile`` (minutes of compile per shape set, a C++ toolchain).

Before conversion, token type 0's embedding is folded into the position embeddings
(``fold_token_type_into_positions`` says why). In ``annotate`` (benchmarks/quantize_speed.py; the
pipeline of ``accuracy.py --max-steps 5000 --n-train 20000``, 300 reviews + 300 MSRA sentences, 2
threads, 2-core Xeon with VNNI): 1.86x / 1.98x the fp32 chars/s; 98.5% identical labels, entity
F1 98.0 against fp32; gold entity F1 86.01 vs 85.93, accuracy 88.7 for both.

Quantizing twice is a no-op. A quantized pipeline cannot be saved (``nlp.to_disk`` raises): save
the fp32 pipeline and quantize after loading. It can be pickled (spawned ``nlp.pipe`` workers):
the int8 model files travel in memory.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy
import torch
from spacy.language import Language

from .cpu_autocast import as_float32, has_bfloat16_instructions

MODES = ("int8", "bf16")
INSTALL_HINT = "pip install 'spacy-bert-zh[fast]'"


class QuantizationUnavailable(ImportError):
    """The optional dependency of ``--quantize`` (CTranslate2) is not installed."""


def quantize_pipeline(nlp: Language, mode: str = "int8") -> Language:
    """Make the transformer pipe of ``nlp`` run its encoder in ``mode`` on CPU; return ``nlp``.

    Quantizing an already quantized pipeline (in either mode) is a no-op.

    The int8 encoder runs on ``torch.get_num_threads()`` threads as at this call. Raises
    ``ValueError`` for an unknown mode, a pipeline without a transformer pipe, or one on
    GPU, and ``QuantizationUnavailable`` (an ``ImportError``) if CTranslate2 is missing (int8).
    """
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; choose one of {', '.join(MODES)}")
    shims = [shim for shim in transformer_shims(nlp) if not isinstance(shim._model, REDUCED_ENCODERS)]
    for shim in shims:  # check all before changing any; those already reduced are left as they are
        check_on_cpu(shim._hfmodel.transformer)
    if shims and mode == "bf16":
        warn_without_bfloat16_instructions()
    encoder_class = Int8Encoder if mode == "int8" else Bfloat16Encoder
    for shim in shims:
        encoder = encoder_class.from_hf(shim._hfmodel.transformer, shim._hfmodel.tokenizer)
        shim._hfmodel.transformer = encoder  # what spacy-transformers reads the device and config of
        shim._model = encoder  # what thinc's PyTorchShim calls
        shim.to_bytes = refuse_to_save  # HFShim would write a state dict that a BertModel cannot load
    return nlp


def is_quantized(nlp: Language) -> bool:
    """Whether ``quantize_pipeline`` has swapped the encoder(s) of ``nlp`` (int8 or bf16)."""
    return all(isinstance(shim._model, REDUCED_ENCODERS) for shim in transformer_shims(nlp))


class Int8Encoder(torch.nn.Module):
    """A CTranslate2 int8 BERT encoder behind the call signature of a Hugging Face ``BertModel``."""

    def __init__(self, files: dict[str, bytes], config, threads: int):
        super().__init__()
        self.files = files
        self.config = config  # spacy-transformers reads the HF config (e.g. model_max_length checks)
        self.threads = threads
        self.encoder = load_encoder(files, threads)

    @classmethod
    def from_hf(cls, model, tokenizer) -> Int8Encoder:
        """Convert a loaded ``BertModel`` (with its tokenizer's vocabulary) to int8 in memory."""
        converters = import_ctranslate2().converters.transformers
        config = model.config
        if config.model_type != "bert" or config.position_embedding_type != "absolute":
            raise ValueError(f"int8 supports BERT encoders with absolute positions; this pipeline's is "
                             f"{config.model_type!r} ({config.position_embedding_type!r} positions)")
        if config.output_hidden_states or config.output_attentions:
            raise ValueError("int8 gives the last hidden state only; this pipeline's transformer_config "
                             "asks for hidden states or attentions as well")
        # on a copy: CTranslate2's quantizer scales float32 weights in place (the pipeline keeps
        # working fp32 weights if anything below fails)
        model = fold_token_type_into_positions(copy.deepcopy(model).requires_grad_(False))
        spec = converters.BertLoader()(model, tokenizer)
        spec.validate()
        spec.optimize(quantization="int8")
        with tempfile.TemporaryDirectory(prefix="spacy-bert-zh-int8-") as tmp:
            spec.save(tmp)
            files = {path.name: path.read_bytes() for path in Path(tmp).iterdir()}
        return cls(files, model.config, torch.get_num_threads())

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_):
        from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

        refuse_training(self)
        ctranslate2 = import_ctranslate2()
        lengths = attention_mask.sum(dim=1).to(torch.int32)
        inputs = ctranslate2.StorageView.from_array(input_ids.to(torch.int32).contiguous().numpy())
        types = None if token_type_ids is None or not token_type_ids.any() else token_type_ids.tolist()
        output = self.encoder.forward_batch(inputs, ctranslate2.StorageView.from_array(lengths.numpy()),
                                            token_type_ids=types)
        hidden = torch.from_numpy(numpy.asarray(output.last_hidden_state))
        # rows are padded to the longest length of the batch; spacy-transformers expects input's
        pad = input_ids.shape[1] - hidden.shape[1]
        if pad > 0:
            hidden = torch.nn.functional.pad(hidden, (0, 0, 0, pad))
        pooled = output.pooler_output
        pooled = None if pooled is None else torch.from_numpy(numpy.asarray(pooled))
        return BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=hidden, pooler_output=pooled)

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The int8 model files as uint8 tensors: what a hash of the weights reads (a BertModel
        cannot load them; saving the pipeline is refused, see ``refuse_to_save``)."""
        return {f"ctranslate2.{name}": torch.frombuffer(bytearray(data), dtype=torch.uint8)
                for name, data in self.files.items()}

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("encoder")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.encoder = load_encoder(self.files, self.threads)


class Bfloat16Encoder(torch.nn.Module):
    """A Hugging Face encoder with bfloat16 weights whose outputs come back as float32 (the
    dtype spacy-transformers converts to numpy, which has no bfloat16)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    @classmethod
    def from_hf(cls, model, tokenizer=None) -> Bfloat16Encoder:
        """Cast a loaded encoder to bfloat16 (a copy: the pipeline keeps its float32 model until
        the swap, as for int8)."""
        return cls(copy.deepcopy(model).requires_grad_(False).to(torch.bfloat16))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, *args, **kwargs):
        refuse_training(self)
        return as_float32(self.model(*args, **kwargs))


REDUCED_ENCODERS = (Int8Encoder, Bfloat16Encoder)


def refuse_training(encoder: torch.nn.Module) -> None:
    """A reduced-precision encoder predicts only: raise if it is asked for a training pass."""
    if torch.is_grad_enabled() and encoder.training:
        raise RuntimeError("a quantized pipeline is for inference only; train the fp32 pipeline")


def warn_without_bfloat16_instructions() -> None:
    """bfloat16 matrix products are fast with AMX or AVX512-BF16 only; elsewhere they are emulated."""
    import warnings

    if not has_bfloat16_instructions():
        warnings.warn("this CPU has neither AMX nor AVX512-BF16: bf16 runs emulated, likely slower "
                      "than float32 (try --quantize int8)", RuntimeWarning, stacklevel=3)


def fold_token_type_into_positions(model):
    """Move token type 0's embedding into every position embedding, in place; return ``model``.

    BERT adds ``token_type_embeddings[t]`` to every piece, t = 0 for a single text. CTranslate2
    quantizes every embedding table to int8 with one scale per row, and m3e-small's type-0 row
    holds values up to 1.7 (word rows: 0.36 on average), so its int8 rounding was an error added
    to every piece: 95.4 entity F1 of int8 against fp32 in ``benchmarks/quantize_speed.py``, 98.0
    once folded. Position embeddings stay float32 in CTranslate2, so ``pos[p] + type[0]`` and
    ``type[t] - type[0]`` (row 0 becomes zero, exact in int8) give fp32 the same sums.
    """
    import torch

    embeddings = model.embeddings
    with torch.no_grad():
        type0 = embeddings.token_type_embeddings.weight[0].clone()
        embeddings.token_type_embeddings.weight -= type0
        embeddings.position_embeddings.weight += type0
    return model


def refuse_to_save(*_args, **_kwargs):
    raise NotImplementedError("a quantized pipeline cannot be saved: save the fp32 pipeline and "
                              "call quantize_pipeline after spacy.load")


def transformer_shims(nlp: Language) -> list:
    """The HF shims (``HFShim``) of the pipeline's transformer pipes (one in our pipelines)."""
    from spacy_transformers import Transformer

    pipes = [pipe for _, pipe in nlp.pipeline if isinstance(pipe, Transformer)]
    if not pipes:
        raise ValueError(f"pipeline {nlp.meta.get('name')!r} has no transformer pipe to quantize "
                         f"(pipes: {', '.join(nlp.pipe_names) or 'none'})")
    return [pipe.model.layers[0].shims[0] for pipe in pipes]


def check_on_cpu(model) -> None:
    from thinc.api import get_current_ops

    if get_current_ops().device_type != "cpu" or any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("int8 quantization runs on CPU only; this pipeline runs on GPU "
                         "(leave out --gpu-id, or leave out --quantize)")


def load_encoder(files: dict[str, bytes], threads: int):
    ctranslate2 = import_ctranslate2()
    return ctranslate2.Encoder("spacy-bert-zh-int8", device="cpu", compute_type="int8",
                               intra_threads=threads, files=files)


def import_ctranslate2():
    try:
        import ctranslate2
        import ctranslate2.converters.transformers
    except ImportError as error:
        raise QuantizationUnavailable(f"int8 quantization needs CTranslate2: {INSTALL_HINT}") from error
    return ctranslate2
