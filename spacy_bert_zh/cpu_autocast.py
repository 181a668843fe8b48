"""bfloat16 autocast for training on CPU: ``[initialize.after_init]`` of ``configs/cpu.cfg``.

spacy-transformers' ``mixed_precision`` is CUDA's autocast (with a grad scaler that refuses the
CPU). This callback runs the forward pass of every PyTorch encoder of the pipeline under
``torch.autocast("cpu", dtype=torch.bfloat16)``: matrix products in bfloat16, weights, optimizer
state and the outputs handed to spaCy in float32 (bfloat16 keeps float32's exponent, so no loss
scaling). On CPUs with AMX or AVX512-BF16, oneDNN runs those products in hardware:
``benchmarks/cpu_bf16_training.py`` (``nlp.update`` on MSRA sentences, 2 threads, our 2-core
Xeon) ran 1.25x float32 at batches of 8 sentences and 1.78x at 32. Elsewhere bfloat16 is
emulated and slower, so ``"auto"`` (the default) turns it on only where the CPU has those
instructions.

Only training is switched: ``spacy.load`` does not run ``[initialize]``, so a saved pipeline runs
in float32 (``annotate --quantize bf16`` is its bfloat16 inference).
"""
from __future__ import annotations

import torch
from spacy.language import Language
from spacy.util import registry
from thinc.api import get_current_ops
from thinc.shims import PyTorchShim
from wasabi import msg

CHOICES = ("auto", "on", "off")
CALLBACK = "spacy_bert_zh.cpu_bf16_autocast.v1"


@registry.callbacks(CALLBACK)
def make_cpu_bf16_autocast(enabled: str = "auto"):
    """A callback that switches the pipeline's encoders to bfloat16 autocast on CPU (see module)."""
    if enabled not in CHOICES:
        raise ValueError(f"cpu_bf16_autocast: enabled must be one of {', '.join(CHOICES)}, not {enabled!r}")

    def switch(nlp: Language) -> Language:
        if wanted(enabled):
            count = autocast_encoders(nlp)
            msg.info(f"bfloat16 autocast on CPU for {count} encoder(s) ([initialize.after_init])")
        return nlp

    return switch


def wanted(enabled: str) -> bool:
    """Whether to switch: never on GPU; with "auto", only on CPUs with bfloat16 instructions."""
    if enabled == "off" or get_current_ops().device_type != "cpu":
        return False
    return enabled == "on" or has_bfloat16_instructions()


def has_bfloat16_instructions() -> bool:
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def pytorch_shims(nlp: Language) -> list[PyTorchShim]:
    """The PyTorch shims (spacy-transformers' ``HFShim`` among them) of every pipe's model."""
    return [shim for _, pipe in nlp.pipeline if hasattr(pipe, "model")
            for node in pipe.model.walk() for shim in node.shims if isinstance(shim, PyTorchShim)]


def autocast_encoders(nlp: Language) -> int:
    """Run every PyTorch module under the pipeline's shims in bfloat16 autocast, in place (once
    each); return how many there are."""
    modules = {id(shim._model): shim._model for shim in pytorch_shims(nlp)
               if isinstance(shim._model, torch.nn.Module)}
    for module in modules.values():
        if not isinstance(module.__dict__.get("forward"), Bfloat16Autocast):
            module.forward = Bfloat16Autocast(module)   # an instance attribute: not in the state dict
    return len(modules)


class Bfloat16Autocast:
    """A module's own forward under CPU bfloat16 autocast, floating outputs cast back to float32
    (a class, not a closure: the pipeline still pickles, e.g. for ``nlp.pipe(n_process=...)``)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __call__(self, *args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return as_float32(type(self.module).forward(self.module, *args, **kwargs))


def as_float32(value):
    """A tensor in float32; the values of a dict (a transformers ``ModelOutput``, in place) and
    tuples (hidden states) likewise; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.float()
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = as_float32(item)
        return value
    if isinstance(value, tuple):
        return tuple(as_float32(item) for item in value)
    return value
