"""Hidden-state distillation: the student's encoder learns to give the teacher encoder's vectors.

TinyBERT trains a student in two stages: first its layers reproduce the teacher's hidden states
(the intermediate-layer loss), then its predictions reproduce the teacher's (the prediction-layer
loss, ``distill.py``'s soft targets). Here the first stage matches the *last* hidden state: the
student's heads are copies of the teacher's, which read the teacher's last layer, so a student
whose last layer gives the teacher's vectors predicts as the teacher does before any head moves.

The loss is the mean squared error between the two last hidden states over the real (unpadded)
pieces, on the unlabelled texts (streamed, cut into sequences of at most ``max_length`` pieces,
shuffled in a seeded buffer), with AdamW, linear warm-up and decay and gradient clipping. Only
the student's encoder trains; the teacher runs without gradients. Rows held out for scoring the
student (``skip_rows``) are never trained on: their error before and after is the report's.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from .mlm_data import ENCODE_BATCH, batches, encode_texts, shuffled

REPORT_FILE = "hidden.json"
SCORED_ROWS = 200       # held-out rows the error is measured on, before and after


@dataclass(frozen=True)
class HiddenOptions:
    """The hidden-state stage's budget; ``steps = 0`` turns it off."""

    steps: int = 0
    batch_size: int = 32        # sequences per step
    max_length: int = 128       # pieces per sequence, [CLS] and [SEP] included
    learn_rate: float = 1e-4
    warmup: float = 0.1         # share of the steps with a rising learning rate
    grad_clip: float = 1.0
    seed: int = 0
    progress: bool = True


@dataclass
class HiddenReport:
    """What the stage did; written as ``hidden.json`` beside the student."""

    steps: int = 0
    sequences_seen: int = 0
    passes: int = 0             # passes over the texts begun (the shuffle buffer reads ahead)
    heldout_rows: int = 0
    heldout_mse_before: float | None = None
    heldout_mse_after: float | None = None
    heldout_cosine_before: float | None = None
    heldout_cosine_after: float | None = None
    train_mse_start: float | None = None   # mean of the first 10 steps
    train_mse_end: float | None = None     # mean of the last 10 steps
    seconds: float = 0.0
    options: dict = field(default_factory=dict)

    def summary(self) -> str:
        line = (f"hidden-state stage: {self.steps} steps, {self.sequences_seen:,} sequences in "
                f"{self.seconds:.0f} s; training error {self.train_mse_start:.4f} -> {self.train_mse_end:.4f}")
        if self.heldout_mse_before is None:
            return line
        return (f"{line}; on {self.heldout_rows} held-out rows {self.heldout_mse_before:.4f} -> "
                f"{self.heldout_mse_after:.4f} (cosine {self.heldout_cosine_before:.3f} -> "
                f"{self.heldout_cosine_after:.3f})")


def match_hidden_states(teacher, student, tokenizer, texts: Path, text_column: str, skip_rows: int,
                        options: HiddenOptions, report_path: Path | None = None) -> HiddenReport:
    """Train ``student`` (a Hugging Face encoder, in place) towards ``teacher``'s last hidden
    state on the texts of ``texts`` after its first ``skip_rows`` rows; return the report."""
    start = time.perf_counter()
    report = HiddenReport(options=asdict(options))
    held_texts = list(read_rows(texts, text_column, 0, min(skip_rows, SCORED_ROWS)))
    heldout = list(encode_texts(tokenizer, held_texts, options.max_length))
    report.heldout_rows = min(skip_rows, SCORED_ROWS)
    report.heldout_mse_before, report.heldout_cosine_before = score(teacher, student, heldout, tokenizer)
    losses = train(teacher, student, tokenizer, texts, text_column, skip_rows, options, report)
    report.heldout_mse_after, report.heldout_cosine_after = score(teacher, student, heldout, tokenizer)
    window = min(10, max(1, len(losses) // 2))
    report.steps = len(losses)
    report.train_mse_start = sum(losses[:window]) / window
    report.train_mse_end = sum(losses[-window:]) / window
    report.seconds = time.perf_counter() - start
    student.eval()
    if report_path is not None:
        Path(report_path).write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    return report


def train(teacher, student, tokenizer, texts: Path, text_column: str, skip_rows: int,
          options: HiddenOptions, report: HiddenReport) -> list[float]:
    """``options.steps`` AdamW steps on the mean squared error; the loss of each step."""
    import torch
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(options.seed)
    rng = random.Random(options.seed)
    passes = [0]
    stream = endless_rows(texts, text_column, skip_rows, passes)
    sequences = (sequence for chunk in batches(stream, ENCODE_BATCH)
                 for sequence in encode_texts(tokenizer, chunk, options.max_length))
    steps = batches(shuffled(sequences, 10_000, rng), options.batch_size)
    optimizer = torch.optim.AdamW(student.parameters(), lr=options.learn_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, round(options.warmup * options.steps), options.steps)
    teacher.eval()
    student.train()
    losses = []
    with tqdm(total=options.steps, unit="steps", desc="hidden states", disable=not options.progress) as bar:
        for _ in range(options.steps):
            batch = next(steps)
            loss = hidden_error(teacher, student, pad(batch, tokenizer))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), options.grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            report.sequences_seen += len(batch)
            bar.update(1)
            bar.set_postfix(mse=f"{losses[-1]:.4f}", refresh=False)
    report.passes = passes[0]
    return losses


def last_hidden_states(teacher, student, inputs: dict):
    """The student's and the teacher's last hidden states at the real (unpadded) pieces."""
    import torch

    device = next(student.parameters()).device
    inputs = {key: value.to(device) for key, value in inputs.items()}
    with torch.no_grad():
        target = teacher(**inputs).last_hidden_state
    hidden = student(**inputs).last_hidden_state
    real = inputs["attention_mask"].bool()
    return hidden[real], target[real]


def hidden_error(teacher, student, inputs: dict):
    """Mean squared error between the two last hidden states at the real pieces."""
    import torch

    return torch.nn.functional.mse_loss(*last_hidden_states(teacher, student, inputs))


def score(teacher, student, sequences: list, tokenizer) -> tuple[float | None, float | None]:
    """Mean squared error and mean cosine over ``sequences`` (eval mode, no gradients)."""
    import torch

    if not sequences:
        return None, None
    was_training = student.training
    student.eval()
    error_sum = cosine_sum = 0.0
    pieces = 0
    with torch.no_grad():
        for batch in batches(sequences, 32):
            hidden, target = last_hidden_states(teacher, student, pad(batch, tokenizer))
            error_sum += torch.nn.functional.mse_loss(hidden, target, reduction="sum").item() / hidden.shape[1]
            cosine_sum += torch.nn.functional.cosine_similarity(hidden, target, dim=-1).sum().item()
            pieces += hidden.shape[0]
    student.train(was_training)
    return error_sum / pieces, cosine_sum / pieces


def pad(sequences: list, tokenizer) -> dict:
    """[CLS] + pieces + [SEP] of each sequence, padded to the longest, as model inputs."""
    import torch

    length = max(len(sequence.ids) for sequence in sequences) + 2
    input_ids = torch.full((len(sequences), length), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids = [tokenizer.cls_token_id, *sequence.ids, tokenizer.sep_token_id]
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention[row, :len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention}


def read_rows(path: Path, text_column: str, first: int, stop: int | None) -> Iterator[str]:
    """The non-blank texts of rows ``first`` to ``stop`` (row indices of the Parquet file)."""
    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=[text_column]):
        for text in batch.column(0).to_pylist():
            if stop is not None and index >= stop:
                return
            if index >= first and text and text.strip():
                yield text
            index += 1


def endless_rows(path: Path, text_column: str, skip_rows: int, passes: list) -> Iterator[str]:
    """``read_rows`` from ``skip_rows`` to the end, again and again; ``passes[0]`` counts passes."""
    while True:
        passes[0] += 1
        seen = 0
        for text in read_rows(path, text_column, skip_rows, None):
            seen += 1
            yield text
        if not seen:
            raise ValueError(f"{path} has no texts after its first {skip_rows} rows (held out)")
