"""How to annotate: one options object for the CLI, both engines and the library functions.

``AnnotateOptions`` is built once (by ``spacy-bert-zh annotate`` or by library code), checked once
in ``__post_init__``, and handed down unchanged: files → windows → pipeline batches → Arrow.
``RayOptions`` adds what only the Ray engine needs. A bad value raises ``AnnotationError``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

DEFAULT_BATCH_SIZE = 64
DEFAULT_WINDOW_ROWS = 1024
DEFAULT_MAX_CHARS = 2_000     # longer texts are annotated in pieces cut at sentence ends
QUANTIZE_MODES = ("int8", "bf16")


class AnnotationError(ValueError):
    """The input, the output or the pipeline cannot be annotated as asked (the message says why)."""


@dataclass(frozen=True)
class AnnotateOptions:
    """Every choice of an annotation run except the pipeline, the input and the output.

    ``keep_columns`` None keeps every input column, ``[]`` none; ``id_column`` is always kept,
    first. ``components``, ``gpu_id`` and ``quantize`` apply when the pipeline is given by name
    (a loaded ``Language`` runs as it is, except that ``quantize`` and ``half`` are applied to it).
    """

    text_column: str = "text"
    id_column: Optional[str] = None
    keep_columns: Optional[list[str]] = None
    batch_size: int = DEFAULT_BATCH_SIZE
    window_rows: int = DEFAULT_WINDOW_ROWS
    sort_by_length: bool = True
    max_chars: int = DEFAULT_MAX_CHARS
    n_process: int = 1
    components: Optional[list[str]] = None
    gpu_id: int = -1
    half: bool = False
    quantize: Optional[str] = None
    tag_probs: bool = False       # add the ner's per-character tag probabilities (``tag_probs``)
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("batch_size", "window_rows", "n_process"):
            if getattr(self, name) < 1:
                raise AnnotationError(f"--{name.replace('_', '-')} must be at least 1, "
                                      f"not {getattr(self, name)}")
        if self.max_chars < 16:
            raise AnnotationError(f"--max-chars must be at least 16, not {self.max_chars}")
        if self.resume and self.overwrite:
            raise AnnotationError("--resume and --overwrite exclude each other: choose one")
        if self.half and self.gpu_id < 0:
            raise AnnotationError("--half needs a GPU (--gpu-id 0 or higher); on CPU the pipeline "
                                  "runs in float32 (or int8 / bfloat16 with --quantize)")
        if self.quantize is not None and self.quantize not in QUANTIZE_MODES:
            raise AnnotationError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, "
                                  f"not {self.quantize!r}")
        if self.quantize is not None and self.gpu_id >= 0:
            raise AnnotationError(f"--quantize {self.quantize} runs on CPU only; on a GPU use "
                                  "--half (float16) instead")

    @classmethod
    def of(cls, options: Optional["AnnotateOptions"] = None, **changes) -> "AnnotateOptions":
        """``options`` (or the defaults) with ``changes`` applied, checked again."""
        return dataclasses.replace(options or cls(), **changes)

    @property
    def kept_columns(self) -> Optional[list[str]]:
        """``keep_columns`` with the id column first (None still means every column)."""
        if self.keep_columns is None or self.id_column is None:
            return self.keep_columns
        return [self.id_column] + [name for name in self.keep_columns if name != self.id_column]

    def output_settings(self) -> dict:
        """The options that change what an output holds (a resumed run must use the same)."""
        return {"text_column": self.text_column, "keep_columns": self.kept_columns,
                "window_rows": self.window_rows, "max_chars": self.max_chars,
                "components": self.components, "quantize": self.quantize, "half": self.half,
                "tag_probs": self.tag_probs,
                "batch_size": self.batch_size, "sort_by_length": self.sort_by_length}


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs (see ``distributed.plan_workers`` for defaults)."""

    address: Optional[str] = None
    workers: Optional[int] = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: Optional[float] = None
