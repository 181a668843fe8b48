"""Load a pipeline for annotation, set its precision, and run batches of pieces through it.

``run_pipeline`` is where a row that makes the pipeline raise is caught: the failed batch is run
again piece by piece, and the pieces that fail alone come back with their error instead of a doc,
so one bad row costs its own predictions, not the file.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
from contextlib import contextmanager
from typing import Iterable, Iterator, Optional

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from .alignment import use_offset_alignment
from .annotate_options import AnnotateOptions, AnnotationError
from .pieces import BATCH_CHARS_PER_TEXT, Piece, PieceKey, budget_batches

PieceOutcome = tuple[Optional[Doc], PieceKey, Optional[str]]  # (doc or None, key, error or None)


def load_pipeline(model: str, gpu_id: int = -1, components: Optional[list[str]] = None) -> Language:
    """Load an installed pipeline package or a pipeline folder, on GPU ``gpu_id`` (-1: CPU).

    ``components`` names the pipes to run (all by default); the others are disabled. A component
    that listens to a shared transformer/tok2vec keeps that upstream pipe running.
    """
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    try:
        nlp = spacy.load(model)
    except OSError as error:
        raise AnnotationError(f"cannot load the pipeline {model!r} (an installed package name or "
                              f"a pipeline folder): {error}") from error
    if components:
        nlp.select_pipes(enable=pipes_to_enable(nlp, components))
    return nlp


def prepare_pipeline(model: str | Language, options: AnnotateOptions) -> Language:
    """The pipeline to annotate with: loaded if named, then in float16 (``half``) or int8 (``quantize``)."""
    return set_precision(as_pipeline(model, options), options)


def as_pipeline(model: str | Language, options: AnnotateOptions) -> Language:
    """``model`` itself if it is a loaded pipeline, else loaded with the options' GPU and
    components; with ``tag_probs``, its ner keeps the tag probabilities of every doc. Its
    transformer aligns tokens to wordpieces with array operations (``alignment.py``: the same
    alignment, a fraction of the time)."""
    nlp = model if isinstance(model, Language) else load_pipeline(model, options.gpu_id, options.components)
    keep_tag_probabilities(nlp, options.tag_probs)
    use_offset_alignment(nlp)
    return nlp


def keep_tag_probabilities(nlp: Language, keep: bool) -> None:
    """Switch the ``ner_tagger`` pipes' ``keep_probabilities`` (what the ``tag_probs`` column reads)."""
    from .ner_tagger import NERTagger

    taggers = [pipe for _, pipe in nlp.pipeline if isinstance(pipe, NERTagger)]
    if keep and not taggers:
        raise AnnotationError(f"--tag-probs needs a running ner_tagger pipe; this pipeline runs "
                              f"{', '.join(nlp.pipe_names) or 'none'}")
    for tagger in taggers:
        tagger.keep_probabilities = keep


def set_precision(nlp: Language, options: AnnotateOptions) -> Language:
    """Switch ``nlp`` to float16 autocast (``half``) or int8 weights (``quantize``), in place."""
    if options.half:
        use_mixed_precision(nlp)
    if options.quantize:
        from .quantize import quantize_pipeline

        try:
            quantize_pipeline(nlp, options.quantize)
        except (ValueError, ImportError) as error:  # ImportError: the [fast] extra is missing
            raise AnnotationError(f"--quantize {options.quantize}: {error}") from error
    return nlp


def pipes_to_enable(nlp: Language, components: Iterable[str]) -> list[str]:
    """``components`` plus the transformer/tok2vec pipes they listen to, in pipeline order."""
    components = list(components)
    unknown = [name for name in components if name not in nlp.component_names]
    if unknown:
        raise AnnotationError(f"unknown component(s) {', '.join(unknown)}; the pipeline has: "
                              f"{', '.join(nlp.component_names)}")
    wanted = set(components)
    for name in nlp.component_names:
        listeners = getattr(nlp.get_pipe(name), "listener_map", {})
        if wanted & set(listeners):
            wanted.add(name)
    return [name for name in nlp.component_names if name in wanted]


def use_mixed_precision(nlp: Language) -> int:
    """Run the pipeline's PyTorch models under float16 autocast (GPU only); return how many.

    This is spacy-transformers' own ``mixed_precision`` switch, set after loading: matrix
    products run in half precision, layer norms and the outputs stay float32.
    """
    from .cpu_autocast import pytorch_shims

    shims = pytorch_shims(nlp)
    for shim in shims:
        shim._mixed_precision = True
    return len(shims)


# --- running pieces ---------------------------------------------------------------------------

def run_pipeline(nlp: Language, pieces: Iterable[Piece], batch_size: int,
                 n_process: int) -> Iterator[PieceOutcome]:
    """(doc, key, None) for each (text, key), in order, or (None, key, error) for a failing piece.

    In one process the batches are bounded in pieces and in characters (so memory is too), and
    a failing batch is retried piece by piece; with ``n_process`` > 1 spaCy's multiprocessing
    ``nlp.pipe`` batches by count only, in *spawned* workers (forked ones deadlock in PyTorch),
    and an error there stops the file.
    """
    if n_process > 1:
        with start_method("spawn"), worker_threads(n_process):
            for doc, key in nlp.pipe(pieces, as_tuples=True, batch_size=batch_size,
                                     n_process=n_process):
                yield doc, key, None
        return
    for batch in budget_batches(pieces, batch_size, batch_size * BATCH_CHARS_PER_TEXT):
        yield from run_batch(nlp, batch)
        release_free_heap()


def run_batch(nlp: Language, batch: list[Piece]) -> list[PieceOutcome]:
    """Run one batch; if it raises, run each piece alone and report the ones that still fail."""
    try:
        return [(doc, key, None) for doc, key in nlp.pipe(batch, as_tuples=True,
                                                          batch_size=len(batch))]
    except Exception:  # noqa: BLE001 - any pipeline error is retried piece by piece
        return [run_alone(nlp, piece) for piece in batch]


def run_alone(nlp: Language, piece: Piece) -> PieceOutcome:
    """(doc, key, None) for one piece, or (None, key, "ErrorType: message") if the pipeline fails."""
    text, key = piece
    try:
        return nlp(text), key, None
    except Exception as error:  # noqa: BLE001 - recorded in the row's error column
        return None, key, f"{type(error).__name__}: {error}"[:1000]


def release_free_heap() -> None:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    The tensors of each batch are freed into a heap that fragments; without this, peak memory
    creeps up over a long run (~1.8x after 10,000 rows) although nothing is kept.
    """
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def glibc() -> Optional[ctypes.CDLL]:
    """The C library if it is glibc (it has ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


@contextmanager
def worker_threads(n_process: int) -> Iterator[None]:
    """Spawned workers share this process's torch threads: each gets ``threads // n_process``.

    A spawned worker starts a fresh torch, which takes a thread per core; ``n_process`` of them
    would run ``n_process`` times more threads than cores. torch reads ``OMP_NUM_THREADS`` when
    it starts, so it is set for the workers started inside the block, and restored after.
    """
    import os

    import torch

    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(max(1, torch.get_num_threads() // n_process))
    try:
        yield
    finally:
        if previous is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = previous


@contextmanager
def start_method(method: str) -> Iterator[None]:
    """Use the ``multiprocessing`` start ``method`` inside the block (spaCy uses the default one)."""
    import multiprocessing

    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(method, force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(previous, force=True)
