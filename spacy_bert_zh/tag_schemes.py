"""NER tag schemes (BIO, IOB1, BIOES, BILOU, BMES): parse tags, detect a file's scheme, decode
tags to entity spans (repairing broken sequences) and encode spans back to tags."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

SCHEMES = ("bio", "iob1", "bioes", "bilou", "bmes")

BEGIN, INSIDE, END, SINGLE = "begin", "inside", "end", "single"

# What each tag prefix means in each scheme; "O" (outside) is common to all of them.
SCHEME_ROLES = {
    "bio": {"B": BEGIN, "I": INSIDE},
    "iob1": {"B": BEGIN, "I": INSIDE},
    "bioes": {"B": BEGIN, "I": INSIDE, "E": END, "S": SINGLE},
    "bilou": {"B": BEGIN, "I": INSIDE, "L": END, "U": SINGLE},
    "bmes": {"B": BEGIN, "M": INSIDE, "E": END, "S": SINGLE},
}
KNOWN_PREFIXES = "BIMESLU"

# IOB1 is picked only when at least this share of entity starts are I- tags (see detect_scheme).
IOB1_MIN_SHARE_OF_I_STARTS = 0.8

# Kinds of repairs made while decoding a broken tag sequence.
REPAIR_NO_BEGIN = "entity continued without a start (I-/M- after O or another label): read as a new entity"
REPAIR_END_WITHOUT_BEGIN = "entity ended without a start (E-/L- after O or another label): read as a one-character entity"
REPAIR_NOT_CLOSED = "entity not closed (no E-/L- before O, a new entity or the sentence end): closed where it stops"


class TagError(ValueError):
    """A tag that is malformed or not part of the scheme; ``index`` is its position in the sentence."""

    def __init__(self, message: str, index: int = 0):
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class Repair:
    """One repaired violation of a scheme: where (index in the sentence), what kind, and the tags."""

    index: int
    kind: str
    detail: str


def parse_tag(tag: str) -> tuple[str, str]:
    """Split a tag into (prefix, label): ``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", "")``."""
    return _parse_tag_cached(tag)


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """Guess the scheme of a file from all its tag sequences (one per sentence).

    Rule: any M- tag -> BMES; else any L-/U- tag -> BILOU; else any E-/S- tag -> BIOES; else the
    file uses only B-/I-/O and is BIO, unless entity-starting I- tags (an I-X after O, after
    another label or at a sentence start) make up at least 80 % of all entity starts (those I-
    tags plus all B- tags): then it is IOB1. A BIO file with a few broken I- starts stays BIO and
    the broken starts are repaired. Both readings give the same entities anyway.
    """
    sequences = list(tag_sequences)
    tag_counts = Counter(tag for tags in sequences for tag in tags)
    prefixes = {parse_tag(tag)[0] for tag in tag_counts}
    if "M" in prefixes:
        return "bmes"
    if prefixes & {"L", "U"}:
        return "bilou"
    if prefixes & {"E", "S"}:
        return "bioes"
    b_tags = sum(count for tag, count in tag_counts.items() if tag.startswith("B-"))
    i_starts = sum(_count_inside_starts(tags) for tags in sequences)
    if i_starts and i_starts >= IOB1_MIN_SHARE_OF_I_STARTS * (i_starts + b_tags):
        return "iob1"
    return "bio"


def decode_entities(tags: Sequence[str], scheme: str) -> tuple[list[tuple[int, int, str]], list[Repair]]:
    """Read the entities ``(start, end, label)`` of one sentence's tags, repairing violations.

    Returns the entities and the repairs made. Raises ``TagError`` for a tag that is malformed or
    not of the scheme (e.g. ``M-PER`` in BIO).
    """
    if tags.count("O") == len(tags):
        return [], []
    return _EntityDecoder(scheme).decode(tags)


def encode_tags(length: int, entities: Iterable[tuple[int, int, str]], scheme: str) -> list[str]:
    """Write the tags of a sentence of ``length`` tokens holding ``entities`` (start, end, label)."""
    prefixes = {role: prefix for prefix, role in SCHEME_ROLES[scheme].items()}
    tags = ["O"] * length
    previous_end, previous_label = -1, ""
    for start, end, label in sorted(entities):
        if scheme == "iob1":
            first = "B" if (start == previous_end and label == previous_label) else "I"
            tags[start:end] = [f"{first}-{label}"] + [f"I-{label}"] * (end - start - 1)
        elif END not in prefixes or end - start > 1:
            tags[start:end] = [f"{prefixes[BEGIN]}-{label}"] + [f"{prefixes[INSIDE]}-{label}"] * (end - start - 1)
            if END in prefixes:
                tags[end - 1] = f"{prefixes[END]}-{label}"
        else:
            tags[start] = f"{prefixes[SINGLE]}-{label}"
        previous_end, previous_label = end, label
    return tags


def check_scheme(scheme: str) -> str:
    """Return ``scheme`` lower-cased, or raise ``ValueError`` if it is not one of ``SCHEMES``."""
    if scheme.lower() not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return scheme.lower()


class _EntityDecoder:
    """Walks one sentence's tags with the open entity as state."""

    def __init__(self, scheme: str):
        self.scheme = scheme
        self.roles = SCHEME_ROLES[scheme]
        self.needs_end = END in self.roles.values()

    def decode(self, tags: Sequence[str]) -> tuple[list[tuple[int, int, str]], list[Repair]]:
        """Return the entities and repairs of ``tags``."""
        self.tags, self.entities, self.repairs = tags, [], []
        self.open_label, self.open_start = "", 0
        for index, tag in enumerate(tags):
            self._step(index, tag)
        self._close(len(tags))
        return self.entities, self.repairs

    def _step(self, index: int, tag: str) -> None:
        if tag == "O":
            self._close(index)
            return
        try:
            prefix, label = parse_tag(tag)
        except TagError as error:
            raise TagError(str(error), index) from None
        role = self.roles.get(prefix)
        if role is None:
            allowed = ", ".join(f"{p}-" for p in self.roles) + ", O"
            raise TagError(f"tag {tag!r} is not a {self.scheme.upper()} tag (allowed: {allowed}); "
                           f"pick another scheme with --scheme", index)
        continues = label == self.open_label
        if continues and role == INSIDE:
            return
        if continues and role == END:
            self.entities.append((self.open_start, index + 1, label))
            self.open_label = ""
            return
        self._close(index)
        if role == INSIDE and self.scheme != "iob1":
            self._repair(index, REPAIR_NO_BEGIN)
        if role == END:
            self._repair(index, REPAIR_END_WITHOUT_BEGIN)
        if role in (END, SINGLE):
            self.entities.append((index, index + 1, label))
        else:
            self.open_label, self.open_start = label, index

    def _close(self, index: int) -> None:
        """End the open entity (if any) before token ``index``."""
        if not self.open_label:
            return
        if self.needs_end:
            self._repair(index - 1, REPAIR_NOT_CLOSED, closing=True)
        self.entities.append((self.open_start, index, self.open_label))
        self.open_label = ""

    def _repair(self, index: int, kind: str, closing: bool = False) -> None:
        if closing:
            following = self.tags[index + 1] if index + 1 < len(self.tags) else "the sentence end"
            detail = f"{self.tags[index]} followed by {following}"
        else:
            previous = self.tags[index - 1] if index > 0 else "the sentence start"
            detail = f"{self.tags[index]} after {previous}"
        self.repairs.append(Repair(index, kind, detail))


def _count_inside_starts(tags: Sequence[str]) -> int:
    """How many I- tags start an entity (follow O, another label or the sentence start)."""
    starts, previous_label = 0, ""
    for tag in tags:
        prefix, label = parse_tag(tag)
        if prefix == "I" and label != previous_label:
            starts += 1
        previous_label = label
    return starts


@lru_cache(maxsize=4096)
def _parse_tag_cached(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, dash, label = tag[:1], tag[1:2], tag[2:]
    if prefix not in KNOWN_PREFIXES or dash != "-":
        raise TagError(f"unknown tag format {tag!r}: expected O or a prefix ({', '.join(KNOWN_PREFIXES)}) "
                       f"followed by '-' and a label, e.g. B-PER")
    if not label:
        raise TagError(f"tag {tag!r} has no label after {prefix}-")
    return prefix, label
