"""The ``spacy-bert-zh`` command line: thin Typer wrappers over the library functions.

The commands live in ``cli_corpora`` (convert, prepare, make-corpus), ``cli_models`` (fetch-encoder,
extend-vocab, pretrain, distill, evaluate) and ``cli_annotate`` (annotate, show); importing them
registers them on ``app``.
"""
from __future__ import annotations

import typer

app = typer.Typer(help="Chinese BERT pipelines for spaCy: convert corpora, fetch the encoder, "
                       "evaluate, annotate Parquet.", no_args_is_help=True)
convert_app = typer.Typer(help="Convert Chinese corpora to spaCy DocBin files.", no_args_is_help=True)
app.add_typer(convert_app, name="convert")

# importing the command modules registers their commands, in this order in --help
from . import cli_corpora  # noqa: E402,F401
from . import cli_models  # noqa: E402,F401
from . import cli_annotate  # noqa: E402,F401

if __name__ == "__main__":  # python -m spacy_bert_zh.cli: the command modules registered on the
    from spacy_bert_zh.cli import app as registered_app  # imported module's app, not this one's

    registered_app()
