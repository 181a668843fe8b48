"""The script a user would otherwise write: a plain Hugging Face fine-tune of the same encoder.

``TokenTagger`` (BertForTokenClassification on characters, first sub-token labelled) and
``SequenceClassifier`` (BertForSequenceClassification over whole texts, truncated at 256 wordpieces)
are trained by ``fine_tune``: AdamW, linear warm-up and decay (the warm-up of configs/cpu.cfg),
shuffled batches, gradient clipping at 1. Used by accuracy.py and convergence.py.
"""
from __future__ import annotations

import random
from typing import Callable, Collection, Iterable, Optional

import torch

from spacy_bert_zh.tag_schemes import decode_entities

MAX_WORDPIECES = 256


class TokenTagger:
    """Per-character tags of ``(characters, tags)`` sentences; scored by entity F1."""

    def __init__(self, encoder: str, tags: Iterable[str], scheme: str, seed: int, device: str):
        from transformers import AutoTokenizer, BertForTokenClassification

        self.tags, self.scheme, self.device = sorted(tags), scheme, device
        self.tag_id = {tag: i for i, tag in enumerate(self.tags)}
        self.tokenizer = AutoTokenizer.from_pretrained(encoder)
        torch.manual_seed(seed)  # the classifier head's initialisation and dropout
        self.model = BertForTokenClassification.from_pretrained(encoder, num_labels=len(self.tags)).to(device)

    def encode(self, batch):
        enc = self.tokenizer([list(chars) for chars, _ in batch], is_split_into_words=True, truncation=True,
                             max_length=MAX_WORDPIECES, padding=True, return_tensors="pt")
        labels = torch.full(enc["input_ids"].shape, -100)
        for row, (_, sentence_tags) in enumerate(batch):
            words = enc.word_ids(row)
            for position, word in enumerate(words):
                if word is not None and (position == 0 or words[position - 1] != word):
                    labels[row, position] = self.tag_id[sentence_tags[word]]
        return enc, labels

    def training_inputs(self, batch) -> dict:
        enc, labels = self.encode(batch)
        return {**enc, "labels": labels}

    def score(self, sentences: list) -> float:
        """Entity F1 over ``sentences`` (exact spans and labels)."""
        gold_total = predicted_total = correct = 0
        self.model.eval()
        for batch in batches(sentences, 32):
            enc, labels = self.encode(batch)
            with torch.inference_mode():
                best = self.model(**{k: v.to(self.device) for k, v in enc.items()}).logits.argmax(-1).cpu()
            for row, (chars, gold_tags) in enumerate(batch):
                predicted = ["O"] * len(chars)
                for position, word in enumerate(enc.word_ids(row)):
                    if labels[row, position] != -100:
                        predicted[word] = self.tags[best[row, position]]
                gold = set(decode_entities(gold_tags, self.scheme)[0])
                guess = set(decode_entities(predicted, self.scheme)[0])
                gold_total += len(gold)
                predicted_total += len(guess)
                correct += len(gold & guess)
        self.model.train()
        return 2 * correct / (gold_total + predicted_total) if gold_total + predicted_total else 0.0


class SequenceClassifier:
    """One exclusive label per ``(label, text)`` row; scored by accuracy."""

    def __init__(self, encoder: str, labels: Iterable[str], seed: int, device: str):
        from transformers import AutoTokenizer, BertForSequenceClassification

        self.label_id = {label: i for i, label in enumerate(sorted(labels))}
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(encoder)
        torch.manual_seed(seed)
        self.model = BertForSequenceClassification.from_pretrained(encoder, num_labels=len(self.label_id)).to(device)

    def encode(self, batch):
        return self.tokenizer([text for _, text in batch], truncation=True, max_length=MAX_WORDPIECES,
                              padding=True, return_tensors="pt")

    def training_inputs(self, batch) -> dict:
        return {**self.encode(batch), "labels": torch.tensor([self.label_id[label] for label, _ in batch])}

    def score(self, rows: list) -> float:
        """Accuracy over ``rows`` (scored shortest first: batches padded less, the same predictions)."""
        self.model.eval()
        hits = 0
        for batch in batches(sorted(rows, key=lambda row: len(row[1])), 32):
            with torch.inference_mode():
                logits = self.model(**{k: v.to(self.device) for k, v in self.encode(batch).items()}).logits
            hits += sum(int(p) == self.label_id[label] for p, (label, _) in zip(logits.argmax(-1).cpu(), batch))
        self.model.train()
        return hits / len(rows)


def fine_tune(system, examples: list, steps: int, *, seed: int, batch_size: int, learn_rate: float,
              total_steps: Optional[int] = None, evaluate_at: Collection[int] = (),
              on_evaluate: Optional[Callable[[int], None]] = None) -> None:
    """Train ``system.model`` for ``steps`` batches; the schedule decays to 0 at ``total_steps``.

    ``on_evaluate(step)`` is called after each step in ``evaluate_at`` (steps count from 1).
    """
    from transformers import get_linear_schedule_with_warmup

    total_steps = total_steps or steps
    model = system.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=learn_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, min(20, total_steps // 10), total_steps)
    order = training_order(len(examples), steps * batch_size, seed)
    model.train()
    for step in range(1, steps + 1):
        batch = [examples[i] for i in order[(step - 1) * batch_size:step * batch_size]]
        inputs = {k: v.to(system.device) for k, v in system.training_inputs(batch).items()}
        model(**inputs).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if on_evaluate and step in evaluate_at:
            on_evaluate(step)


def training_order(n_examples: int, n_needed: int, seed: int) -> list:
    """The indices ``fine_tune`` trains on, in order: shuffled epochs back to back, at least
    ``n_needed`` of them (convergence.py feeds ours the same sequence)."""
    rng = random.Random(seed)
    order: list = []
    while len(order) < n_needed:
        order += rng.sample(range(n_examples), n_examples)
    return order


def batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]
