"""Domain-adaptive pretraining: continue an encoder's masked-language-model training on raw texts.

``spacy-bert-zh pretrain ENCODER TEXTS OUTPUT``: ``BertForMaskedLM`` is loaded from ENCODER (a
Hugging Face folder) and trained on TEXTS (a Parquet column or .txt lines, streamed, see
``mlm_data.py``) with AdamW, linear warm-up and decay and gradient clipping. OUTPUT is an encoder
folder for ``--paths.encoder``: the encoder's weights without the MLM head (``model.safetensors``,
what ``AutoModel.from_pretrained`` and spacy-transformers load; a pooler the input had is copied
unchanged, MLM training does not use it), its config, and ENCODER's tokenizer files and
``vocab.txt`` as they were. The trained head is kept beside them in ``mlm_head.safetensors``, which
a second ``pretrain`` on OUTPUT starts from, and ``pretrain.json`` reports the run.

The MLM head: m3e-small (a sentence-embedding ``BertModel`` checkpoint) has none, so its transform
layer and output bias start random and only the decoder is pretrained (tied to the word
embeddings); the first steps' loss is high for that reason. A checkpoint that has one
(bert-base-chinese) starts from it. ``pretrain.json`` says which.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from .mlm_data import (ENCODE_BATCH, MaskTokens, PretrainError, batches, encode_texts, iter_texts,
                       load_segmenter, mask_batch, shuffled, training_texts)

HEAD_FILE = "mlm_head.safetensors"
REPORT_FILE = "pretrain.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx", ".pt", ".ckpt", ".index.json")
LOSS_WINDOW = 10   # steps averaged for the loss at start and at end


@dataclass
class PretrainOptions:
    """Everything ``pretrain`` can be told besides its three paths."""

    text_column: str = "text"
    max_steps: int = 1000
    batch_size: int = 32           # sequences per step
    max_length: int = 128          # pieces per sequence, [CLS] and [SEP] included
    learn_rate: float = 5e-5
    warmup: float = 0.1            # share of max_steps with a rising learning rate
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    mask_prob: float = 0.15
    whole_word: bool = False
    segmenter: str = "jieba"
    holdout: int = 200             # first texts of TEXTS: scored before and after, never trained on
    shuffle_buffer: int = 10_000   # sequences
    seed: int = 0
    gpu_id: int = -1
    overwrite: bool = False
    progress: bool = True

    def check(self) -> None:
        """Raise ``PretrainError`` on an impossible value."""
        problems = []
        for name in ("max_steps", "batch_size", "shuffle_buffer"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.max_length < 8:
            problems.append(f"--max-length must be at least 8, not {self.max_length}")
        if not 0.0 < self.mask_prob < 1.0:
            problems.append(f"--mask-prob must lie between 0 and 1, not {self.mask_prob}")
        if not self.learn_rate > 0.0:
            problems.append(f"--learn-rate must be positive, not {self.learn_rate}")
        if not 0.0 <= self.warmup <= 1.0:
            problems.append(f"--warmup is a share of the steps, 0 to 1, not {self.warmup}")
        if self.holdout < 0:
            problems.append(f"--holdout must not be negative, not {self.holdout}")
        if problems:
            raise PretrainError("; ".join(problems))


@dataclass
class PretrainReport:
    """What ``pretrain`` did; written as OUTPUT/pretrain.json."""

    encoder: str = ""
    texts: str = ""
    mlm_head: str = ""             # pretrained | random | mlm_head.safetensors: where the head started
    steps: int = 0
    sequences_seen: int = 0
    texts_seen: int = 0            # texts whose first sequence was trained on (repeats counted)
    passes: int = 0                # passes over TEXTS begun
    loss_start: Optional[float] = None   # mean training loss of the first LOSS_WINDOW steps
    loss_end: Optional[float] = None     # ... of the last LOSS_WINDOW steps
    heldout: dict = field(default_factory=dict)
    seconds: float = 0.0
    options: dict = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{self.steps} steps, {self.sequences_seen:,} sequences ({self.texts_seen:,} texts, "
                 f"{self.passes} pass(es) over TEXTS) in {self.seconds:.0f} s; MLM head: {self.mlm_head}",
                 f"training loss {self.loss_start:.3f} -> {self.loss_end:.3f}"]
        held = self.heldout
        if held.get("masked"):
            lines.append(f"held-out ({held['texts']} texts, {held['masked']} masked pieces): loss "
                         f"{held['loss_before']:.3f} -> {held['loss_after']:.3f}, accuracy "
                         f"{100 * held['accuracy_before']:.1f}% -> {100 * held['accuracy_after']:.1f}%")
        return "\n".join(lines)

    def write_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2), encoding="utf-8")


def pretrain(encoder: str | Path, texts: str | Path, output: str | Path,
             options: Optional[PretrainOptions] = None) -> PretrainReport:
    """Continue ``encoder``'s MLM training on ``texts``; write the encoder folder ``output``."""
    import torch

    options = options or PretrainOptions()
    encoder, texts, output = Path(encoder), Path(texts), Path(output)
    tokenizer, segmenter = check_inputs(encoder, texts, output, options)
    device = torch.device(f"cuda:{options.gpu_id}" if options.gpu_id >= 0 else "cpu")
    start = time.perf_counter()
    report = PretrainReport(encoder=str(encoder), texts=str(texts), options=asdict(options))
    model, report.mlm_head = load_masked_lm(encoder, options.seed)
    model.to(device)
    tokens = MaskTokens.of(tokenizer)
    heldout, n_heldout = heldout_batches(tokenizer, segmenter, tokens, texts, options)
    before = score_masked_lm(model, heldout, device)
    losses = train(model, tokenizer, segmenter, tokens, texts, options, device, report)
    after = score_masked_lm(model, heldout, device)
    report.steps = len(losses)
    window = min(LOSS_WINDOW, max(1, len(losses) // 2))
    report.loss_start = sum(losses[:window]) / window
    report.loss_end = sum(losses[-window:]) / window
    report.heldout = {"texts": n_heldout,
                      "sequences": sum(len(batch.input_ids) for batch in heldout),
                      "masked": before["masked"], "loss_before": before["loss"],
                      "accuracy_before": before["accuracy"], "loss_after": after["loss"],
                      "accuracy_after": after["accuracy"]}
    write_encoder_folder(model, tokenizer, encoder, output)
    report.seconds = time.perf_counter() - start
    report.write_json(output / REPORT_FILE)
    return report


def check_inputs(encoder: Path, texts: Path, output: Path, options: PretrainOptions):
    """Every check that can fail before any work; the fast tokenizer and the segmenter (or None)."""
    from transformers import AutoConfig, AutoTokenizer

    options.check()
    if not (encoder / "config.json").is_file():
        raise PretrainError(f"ENCODER {encoder} is not a Hugging Face model folder (no config.json)")
    if not texts.is_file():
        raise PretrainError(f"TEXTS {texts} is not a file")
    if output.exists() and output.resolve() == encoder.resolve():
        raise PretrainError(f"OUTPUT {output} is ENCODER: write the pretrained encoder elsewhere")
    if output.exists() and not options.overwrite:
        raise PretrainError(f"OUTPUT {output} exists; pass --overwrite to replace it")
    positions = getattr(AutoConfig.from_pretrained(str(encoder)), "max_position_embeddings", None)
    if positions and options.max_length > positions:
        raise PretrainError(f"--max-length {options.max_length} exceeds the encoder's "
                            f"{positions} positions")
    tokenizer = AutoTokenizer.from_pretrained(str(encoder), use_fast=True)
    if not getattr(tokenizer, "is_fast", False) or tokenizer.mask_token_id is None:
        raise PretrainError(f"ENCODER {encoder}: needs a fast tokenizer with a [MASK] token")
    if next(iter_texts(texts, options.text_column), None) is None:
        raise PretrainError(f"TEXTS {texts} has no texts")
    segmenter = load_segmenter(options.segmenter) if options.whole_word else None
    return tokenizer, segmenter


def load_masked_lm(encoder: Path, seed: int):
    """``AutoModelForMaskedLM`` of ``encoder`` (its head seeded where it is new) and where the head
    came from: ``pretrained``, ``random`` or ``mlm_head.safetensors`` (an earlier ``pretrain``)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the expected "newly initialized" warning is in the report
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(str(encoder), output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    prefix = model.base_model_prefix + "."
    if (encoder / HEAD_FILE).is_file():
        unexpected = model.load_state_dict(load_file(str(encoder / HEAD_FILE)), strict=False).unexpected_keys
        if unexpected:
            raise PretrainError(f"{encoder / HEAD_FILE} does not fit the model: {unexpected[:3]}")
        return model, HEAD_FILE
    new = [key for key in info["missing_keys"] if not key.startswith(prefix)]
    return model, "random" if new else "pretrained"


def heldout_batches(tokenizer, segmenter, tokens: MaskTokens, texts: Path, options: PretrainOptions):
    """The first ``holdout`` texts, masked once with a fixed seed (the same masks before and after),
    in batches; and how many texts they are."""
    held = []
    for text in iter_texts(texts, options.text_column):
        if len(held) == options.holdout:
            break
        held.append(text)
    sequences = list(encode_texts(tokenizer, held, options.max_length, segmenter)) if held else []
    rng = random.Random(options.seed + 1)
    masked = [mask_batch(batch, tokens, options.mask_prob, rng) for batch in batches(sequences, options.batch_size)]
    return masked, len(held)


def score_masked_lm(model, masked: list, device) -> dict:
    """Mean cross-entropy and accuracy of the predictions at the chosen pieces of ``masked``."""
    import torch

    was_training = model.training
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for batch in masked:
            logits, labels = chosen_logits(model, batch, device)
            loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(-1) == labels).sum().item()
            total += len(labels)
    model.train(was_training)
    if not total:
        return {"loss": None, "accuracy": None, "masked": 0}
    return {"loss": loss_sum / total, "accuracy": correct / total, "masked": total}


def chosen_logits(model, batch, device):
    """The MLM logits at the chosen pieces only, and their labels. For BERT the head runs on
    those pieces alone (about 15%: the 21k-word output layer is most of a small model's cost)."""
    labels = batch.labels.to(device)
    chosen = labels != -100
    inputs = {"input_ids": batch.input_ids.to(device), "attention_mask": batch.attention_mask.to(device)}
    head = getattr(model, "cls", None)
    if head is None:
        return model(**inputs).logits[chosen], labels[chosen]
    hidden = model.base_model(**inputs).last_hidden_state
    return head(hidden[chosen]), labels[chosen]


def train(model, tokenizer, segmenter, tokens: MaskTokens, texts: Path, options: PretrainOptions,
          device, report: PretrainReport) -> list:
    """``max_steps`` AdamW steps on masked batches of the streamed texts; the loss of each step."""
    import torch
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    rng = random.Random(options.seed)
    passes = [0]
    stream = training_texts(texts, options.text_column, skip=options.holdout, passes=passes)
    sequences = (sequence for chunk in batches(stream, ENCODE_BATCH)
                 for sequence in encode_texts(tokenizer, chunk, options.max_length, segmenter))
    steps = batches(shuffled(sequences, options.shuffle_buffer, rng), options.batch_size)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    parameters = [{"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
                   "weight_decay": options.weight_decay},
                  {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
                   "weight_decay": 0.0}]
    try:
        optimizer = torch.optim.AdamW(parameters, lr=options.learn_rate, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or torch
        optimizer = torch.optim.AdamW(parameters, lr=options.learn_rate)
    schedule = get_linear_schedule_with_warmup(optimizer, round(options.warmup * options.max_steps),
                                               options.max_steps)
    model.train()
    losses = []
    with tqdm(total=options.max_steps, unit="steps", disable=not options.progress) as bar:
        for _ in range(options.max_steps):
            sequences_ = next(steps)
            batch = mask_batch(sequences_, tokens, options.mask_prob, rng)
            logits, labels = chosen_logits(model, batch, device)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            report.sequences_seen += len(sequences_)
            report.texts_seen += sum(sequence.first for sequence in sequences_)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    report.passes = passes[0]
    return losses


def write_encoder_folder(model, tokenizer, encoder: Path, output: Path) -> None:
    """OUTPUT: the encoder without its MLM head (weights, config), ENCODER's tokenizer files, the
    head in ``mlm_head.safetensors``; written as a hidden ``.OUTPUT.partial`` and renamed."""
    from safetensors.torch import save_file
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    partial = output.with_name("." + output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        base = AutoModel.from_pretrained(str(encoder))   # the input's pooler, if it has one
    finally:
        hf_logging.set_verbosity(verbosity)
    trained = model.base_model.state_dict()
    unexpected = base.load_state_dict(trained, strict=False).unexpected_keys
    if unexpected:
        raise PretrainError(f"the trained encoder does not fit {type(base).__name__}: {unexpected[:3]}")
    base.save_pretrained(str(partial), safe_serialization=True)
    for path in encoder.iterdir():
        if (path.is_file() and path.name not in ("config.json", REPORT_FILE)
                and not path.name.endswith(WEIGHT_SUFFIXES)):
            shutil.copy2(path, partial / path.name)
    if not (partial / "vocab.txt").is_file():
        tokenizer.save_pretrained(str(partial))
    save_file(head_state(model), str(partial / HEAD_FILE), metadata={"format": "pt"})
    if output.exists():
        shutil.rmtree(output)
    os.replace(partial, output)


def head_state(model) -> dict:
    """The MLM head's own tensors (not those tied to the encoder's word embeddings, nor a tied
    tensor twice), cloned to CPU."""
    base = {tensor.data_ptr() for tensor in model.base_model.state_dict().values()}
    prefix = model.base_model_prefix + "."
    state, seen = {}, set(base)
    for name, tensor in model.state_dict().items():
        if name.startswith(prefix) or tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        state[name] = tensor.detach().cpu().clone().contiguous()
    return state
