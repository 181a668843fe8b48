"""Resume inside a file: finished windows are kept beside the output until the file is complete.

While ``NAME.parquet`` is annotated, each finished window (one row group) is written atomically
to the hidden folder ``.NAME.parquet.parts/`` as ``window-000000.parquet``, ... next to
``checkpoint.json``, which names what the windows belong to: the input file (path, size, row
count and a hash of its Parquet footer), the pipeline (a hash of its config and weights) and the
settings that change the output. When the last window is written the parts are copied, in order,
into the final file (``parquet_io.atomic_parquet_writer``) and the folder is removed.

A killed run leaves the folder; ``--resume`` continues after its last complete window, and
refuses a checkpoint made with another pipeline, input or settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq
from spacy.language import Language

from .annotate_options import AnnotationError
from .parquet_io import atomic_parquet_writer

PARTS_SUFFIX = ".parts"
CHECKPOINT_FILE = "checkpoint.json"
PART_PATTERN = "window-{:06d}.parquet"
FOOTER_TAIL = 8  # a Parquet file ends with the footer length (4 bytes) and "PAR1"


def parts_dir(dest: Path) -> Path:
    """The hidden folder that holds the finished windows of ``dest``: ``.NAME.parts``."""
    return dest.with_name("." + dest.name + PARTS_SUFFIX)


@dataclass
class Checkpoint:
    """The finished windows of one output file, and what they were made from."""

    folder: Path
    identity: dict

    @classmethod
    def start(cls, dest: Path, identity: dict) -> "Checkpoint":
        """A fresh checkpoint for ``dest`` (an old one is removed). The folder appears with its
        ``checkpoint.json`` already in it (made under a temporary name, then renamed), so a run
        killed at any moment leaves either no folder or one that ``--resume`` can read."""
        folder = parts_dir(dest)
        staging = folder.with_name(folder.name + ".tmp")
        for old in (folder, staging):
            shutil.rmtree(old, ignore_errors=True)
        staging.mkdir(parents=True)
        write_json_atomically(staging / CHECKPOINT_FILE, identity)
        os.replace(staging, folder)
        return cls(folder, identity)

    @classmethod
    def resume(cls, dest: Path, identity: dict) -> "Checkpoint":
        """The checkpoint of an interrupted run on ``dest``; ``AnnotationError`` if it belongs
        to another pipeline, input or settings (or cannot be read)."""
        folder = parts_dir(dest)
        check_identity(folder, identity)
        return cls(folder, identity)

    def finished(self) -> list[Path]:
        """The finished windows, numbered 0, 1, ... without a gap (anything after a gap is redone)."""
        parts = []
        while (self.folder / PART_PATTERN.format(len(parts))).exists():
            parts.append(self.folder / PART_PATTERN.format(len(parts)))
        return parts

    def write(self, number: int, table: pa.Table) -> None:
        """Store window ``number`` (written under a temporary name, then renamed)."""
        path = self.folder / PART_PATTERN.format(number)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)

    def merge_into(self, dest: Path, schema: pa.Schema) -> None:
        """Copy the windows, in order and one at a time, into ``dest``; then drop the folder."""
        with atomic_parquet_writer(dest, schema) as writer:
            for path in self.finished():
                writer.write_table(pq.read_table(path, schema=schema))
        shutil.rmtree(self.folder, ignore_errors=True)


def check_identity(folder: Path, identity: dict) -> None:
    """Raise ``AnnotationError`` unless ``folder``'s checkpoint was made with ``identity``."""
    try:
        stored = json.loads((folder / CHECKPOINT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise AnnotationError(f"{folder}: unreadable checkpoint ({error}); pass --overwrite to "
                              f"start this file over") from error
    changed = [key for key in identity if stored.get(key) != identity[key]]
    if changed:
        raise AnnotationError(
            f"{folder}: the interrupted run used another {' and '.join(changed)} "
            f"({describe_changes(stored, identity, changed)}); resuming would mix two annotations "
            f"in one file. Rerun with the same pipeline, input and options, or pass --overwrite "
            f"to start this file over")


def describe_changes(stored: dict, identity: dict, keys: list[str]) -> str:
    """The settings that differ, as ``name: old → new`` (other keys by name only)."""
    notes = []
    for key in keys:
        old, new = stored.get(key), identity[key]
        if isinstance(old, dict) and isinstance(new, dict):
            notes += [f"{name}: {old.get(name)!r} -> {new.get(name)!r}"
                      for name in new if old.get(name) != new.get(name)]
        else:
            notes.append(f"{key} differs")
    return "; ".join(notes)


def run_identity(pipeline_hash: str, source: Path, settings: dict) -> dict:
    """What a checkpoint must match: the pipeline, the input file and the output settings."""
    return {"pipeline": pipeline_hash, "input": file_identity(source), "settings": settings}


def file_identity(path: Path) -> dict:
    """An input file's path, size, row count and the hash of its Parquet footer."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - FOOTER_TAIL))
        tail = handle.read(FOOTER_TAIL)
        footer_length = int.from_bytes(tail[:4], "little") if len(tail) == FOOTER_TAIL else 0
        handle.seek(max(0, size - FOOTER_TAIL - footer_length))
        footer = handle.read()
    return {"path": str(path.resolve()), "size": size,
            "rows": pq.ParquetFile(path).metadata.num_rows,
            "footer_sha256": hashlib.sha256(footer).hexdigest()}


def pipeline_hash(nlp: Language) -> str:
    """A hash of the pipeline's config, running pipes and weights (thinc and PyTorch parameters)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(nlp.config.to_str().encode("utf-8"))
    digest.update(json.dumps(nlp.pipe_names).encode("utf-8"))
    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        for node in model.walk() if model is not None else []:
            for name in node.param_names:
                if node.has_param(name):
                    digest.update(node.ops.to_numpy(node.get_param(name)).tobytes())
            for shim in node.shims:
                update_with_torch_weights(digest, getattr(shim, "_model", None))
    return digest.hexdigest()


def update_with_torch_weights(digest, module) -> None:
    """Feed a PyTorch module's state dict (tensors as bytes, other entries by type) to ``digest``."""
    import torch

    if not isinstance(module, torch.nn.Module):
        return
    for name, value in module.state_dict().items():
        digest.update(name.encode("utf-8"))
        if isinstance(value, torch.Tensor) and not value.is_quantized:
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        else:
            digest.update(type(value).__name__.encode("utf-8"))


def write_json_atomically(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def existing_checkpoint(dest: Path) -> Optional[Path]:
    """The parts folder an interrupted run left for ``dest``, if any."""
    folder = parts_dir(dest)
    return folder if folder.is_dir() else None
