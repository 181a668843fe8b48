"""Parquet file plumbing for annotation: find the inputs, name the outputs, write them atomically.

An output file is written under a hidden temporary name next to it (``.NAME.partial``) and
renamed only once its last row group and footer are on disk, so a file with the final name is
always complete; a killed run leaves at most a ``.partial`` file, which the next run replaces
(the windows annotated before the kill are kept apart, by ``checkpoint.py``).
"""
from __future__ import annotations

import glob
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_SUFFIX = ".parquet"
PARTIAL_SUFFIX = ".partial"
METADATA_KEY = b"spacy_bert_zh.annotation"
GLOB_CHARS = "*?["


class InputError(ValueError):
    """The INPUT / OUTPUT arguments name no Parquet files or an impossible output layout."""


@dataclass(frozen=True)
class FileJob:
    """One input Parquet file and the output file it is annotated into."""

    source: Path
    dest: Path


def plan_jobs(input_spec: str | Path, output: str | Path) -> list[FileJob]:
    """Pair every input Parquet file with its output path.

    INPUT is a file, a folder (every ``*.parquet`` below it, hidden files skipped) or a glob.
    A single input *file* is written to the file OUTPUT; otherwise OUTPUT is a folder that gets
    each input under the same path relative to the input folder (or the glob's fixed prefix).
    Files already inside OUTPUT (earlier outputs, when OUTPUT lies within INPUT) are not inputs.
    """
    output = Path(output)
    source = Path(input_spec)
    if source.is_file():
        dest = output / source.name if output.is_dir() else output
        return [FileJob(source, dest)]
    files, root = find_parquet_files(str(input_spec))
    if output.is_file():
        raise InputError(f"OUTPUT {output} is a file, but INPUT {input_spec} is a folder or glob; "
                         f"give a folder as OUTPUT")
    inside_output = [path for path in files if path.resolve().is_relative_to(output.resolve())]
    return [FileJob(path, output / path.relative_to(root))
            for path in files if path not in inside_output]


def input_files(input_spec: str | Path) -> list[Path]:
    """The Parquet files INPUT names: the file itself, or those of a folder or a glob."""
    if Path(input_spec).is_file():
        return [Path(input_spec)]
    return find_parquet_files(str(input_spec))[0]


def find_parquet_files(input_spec: str) -> tuple[list[Path], Path]:
    """The Parquet files of a folder (recursive) or a glob, sorted, and the folder they are relative to."""
    if Path(input_spec).is_dir():
        root = Path(input_spec)
        files = [path for path in root.rglob("*" + PARQUET_SUFFIX) if is_visible_file(path, root)]
    else:
        root = glob_root(input_spec)
        files = [Path(name) for name in glob.glob(input_spec, recursive=True)]
        files = [path for path in files if is_visible_file(path, root)]
    if not files:
        raise InputError(f"no Parquet files found at {input_spec}")
    return sorted(files), root


def glob_root(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard."""
    fixed = []
    for part in Path(pattern).parts[:-1]:
        if any(char in part for char in GLOB_CHARS):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def is_visible_file(path: Path, root: Path) -> bool:
    """True for a regular file with no hidden (``.``) component below ``root``."""
    relative = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    return path.is_file() and not any(part.startswith(".") for part in relative.parts)


def partial_path(dest: Path) -> Path:
    """The hidden temporary name an output file is written under: ``.NAME.partial``."""
    return dest.with_name("." + dest.name + PARTIAL_SUFFIX)


@contextmanager
def atomic_parquet_writer(dest: Path, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
    """A ParquetWriter on ``partial_path(dest)``, renamed to ``dest`` (after fsync) on success.

    On an exception the partial file is removed; on SIGKILL it stays behind, never under ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(dest)
    with open(tmp, "wb") as sink:
        writer = pq.ParquetWriter(sink, schema)
        try:
            yield writer
            writer.close()
            sink.flush()
            os.fsync(sink.fileno())
        except BaseException:
            writer.close()
            sink.close()
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, dest)


def with_annotation_metadata(schema: pa.Schema, info: dict) -> pa.Schema:
    """``schema`` with ``info`` (JSON) stored under ``METADATA_KEY`` in the file's key-value metadata."""
    metadata = dict(schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(info, ensure_ascii=False).encode("utf-8")
    return schema.with_metadata(metadata)


def read_annotation_metadata(path: Path) -> dict | None:
    """The annotation info stored in a Parquet file's metadata (None if it has none)."""
    metadata = pq.read_metadata(path).metadata or {}
    raw = metadata.get(METADATA_KEY)
    return json.loads(raw) if raw else None


def is_complete_output(dest: Path, source_rows: int) -> bool:
    """True when ``dest`` is a finished annotation output with ``source_rows`` rows."""
    try:
        info = read_annotation_metadata(dest)
        return info is not None and pq.read_metadata(dest).num_rows == source_rows
    except (OSError, pa.ArrowException):
        return False
