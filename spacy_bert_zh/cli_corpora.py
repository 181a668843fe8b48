"""CLI commands that read corpora: ``convert ner|cls|spans|prepared``, ``prepare``, ``make-corpus``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli import app, convert_app


# --- convert commands (ner_conversion.py, cls_conversion.py, span_conversion.py) --------


@convert_app.command("ner")
def convert_ner_cmd(
    input_path: Path = typer.Argument(..., help="Character-per-line NER file: a character, TAB or spaces, its tag."),
    output_path: Path = typer.Argument(..., help="DocBin file to write (.spacy)."),
    scheme: Optional[str] = typer.Option(None, help="Tag scheme: bio, iob1, bioes, bilou or bmes (default: detected)."),
    n_sents: int = typer.Option(1, "--n-sents", "-n", help="Sentences per doc (0: up to the next -DOCSTART-)."),
    strict: bool = typer.Option(False, help="Fail on broken tag sequences instead of repairing them."),
    encoding: str = typer.Option("utf-8", help="Input encoding, e.g. gbk."),
    report: Optional[Path] = typer.Option(None, help="Also write the summary as JSON to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Convert a character-per-line NER file (BIO, IOB1, BIOES/BILOU, BMES) to a DocBin.

    The scheme is detected from the tags (IOB1 only when at least 80% of entity starts are I- tags);
    broken tag sequences are repaired and counted unless --strict.
    """
    from .conversion import convert_ner

    _run_conversion(lambda: convert_ner(input_path, output_path, scheme=scheme, n_sents=n_sents, strict=strict,
                                        encoding=encoding, show_progress=False if quiet else None), report)


@convert_app.command("cls")
def convert_cls_cmd(
    input_path: Path = typer.Argument(..., help="label<TAB>text lines (.tsv/.txt), CSV with a header, or JSONL."),
    output_path: Path = typer.Argument(..., help="DocBin file to write (.spacy)."),
    file_format: Optional[str] = typer.Option(None, "--format", help="tsv, csv or jsonl (default: from the extension)."),
    labels: Optional[str] = typer.Option(None, help="Comma-separated label set, e.g. to make dev/test match train."),
    multilabel: bool = typer.Option(False, help="Several labels per text, joined by --label-separator."),
    label_separator: str = typer.Option("|", help="Separator of labels with --multilabel."),
    label_field: str = typer.Option("label", help="CSV column / JSON field of the label."),
    text_field: Optional[str] = typer.Option(None, help="CSV column / JSON field of the text (default: text or sentence)."),
    encoding: str = typer.Option("utf-8", help="Input encoding, e.g. gbk."),
    skip_invalid: bool = typer.Option(False, help="Skip invalid rows (listed in the report) instead of failing."),
    report: Optional[Path] = typer.Option(None, help="Also write the summary as JSON to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Convert a text classification file (one text and its label or labels per row) to a DocBin."""
    from .conversion import convert_cls

    label_set = [label.strip() for label in labels.split(",")] if labels else None
    _run_conversion(lambda: convert_cls(input_path, output_path, file_format=file_format, labels=label_set,
                                        multilabel=multilabel, label_separator=label_separator,
                                        label_field=label_field, text_field=text_field, encoding=encoding,
                                        skip_invalid=skip_invalid, show_progress=False if quiet else None), report)


@convert_app.command("prepared")
def convert_prepared_cmd(
    prepared: Path = typer.Argument(..., help="Folder written by `spacy-bert-zh prepare` (with prepared.json)."),
    output_dir: Path = typer.Argument(..., help="Writes OUTPUT_DIR/{train,dev,test}/{ner,cls}.spacy."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Convert every split of a prepared corpus with the converter and label set its manifest names."""
    from .conversion import ConversionError
    from .prepare import PrepareError, convert_prepared

    try:
        reports = convert_prepared(prepared, output_dir, show_progress=False if quiet else None)
    except (ConversionError, PrepareError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    for report in reports:
        typer.echo(report.summary())


@convert_app.command("spans")
def convert_spans_cmd(
    input_path: Path = typer.Argument(..., help="CLUENER or doccano JSON lines, or a Label Studio JSON export."),
    output_path: Path = typer.Argument(..., help="DocBin file to write (.spacy)."),
    file_format: Optional[str] = typer.Option(
        None, "--format", help="cluener, doccano or labelstudio (default: detected: a JSON array is Label Studio; "
                               "JSON lines whose first label is an object are CLUENER, a list or entities doccano)."),
    overlap: str = typer.Option("error", help="Overlapping or nested spans: error; longest (keep the longest, "
                                              "then the leftmost); first (keep the leftmost, then the longest). "
                                              "Dropped spans are counted in the report."),
    text_field: str = typer.Option("text", help="Field of the text (Label Studio: the key in the task's data)."),
    strict: bool = typer.Option(False, help="Fail on unknown fields instead of listing them in the report."),
    encoding: str = typer.Option("utf-8", help="Input encoding, e.g. gbk."),
    skip_invalid: bool = typer.Option(False, help="Skip invalid records (listed in the report) instead of failing."),
    report: Optional[Path] = typer.Option(None, help="Also write the summary as JSON to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Convert character-span NER annotations (CLUENER, doccano, Label Studio) to a DocBin, one doc
    per text, the text exactly as written, one token per character.

    CLUENER ends are inclusive; a CLUENER line without "label" is unlabelled (entities missing, not
    none), one with "label": {} has no entities. Label Studio: the first annotation that is not
    was_cancelled is used; a task without one is unlabelled.
    """
    from .span_conversion import convert_spans

    _run_conversion(lambda: convert_spans(input_path, output_path, file_format=file_format, overlap=overlap,
                                          text_field=text_field, strict=strict, skip_invalid=skip_invalid,
                                          encoding=encoding, show_progress=False if quiet else None), report)


def _run_conversion(convert, report_path: Optional[Path]) -> None:
    """Run a converter, print its summary (and save it as JSON); print errors and exit 1, no traceback."""
    from .conversion import ConversionError

    try:
        report = convert()
    except (ConversionError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(report.summary())
    if report_path:
        report.write_json(report_path)


# --- prepare command (prepare.py) ----------------------------------------------------------


@app.command("prepare")
def prepare_cmd(
    corpus: str = typer.Argument(..., help="msra, resume, cluener, chnsenticorp or online-shopping."),
    source: Path = typer.Argument(..., help="The download: a file, a zip, or a folder (searched with its zips)."),
    output_dir: Path = typer.Argument(..., help="Writes train/dev/test files and prepared.json here."),
    seed: int = typer.Option(0, help="Seed of the splits carved where the corpus has none."),
    dev_fraction: float = typer.Option(0.1, help="Share carved out as dev (msra, cluener, online-shopping)."),
    test_fraction: float = typer.Option(0.1, help="Share carved out as test (online-shopping)."),
):
    """Turn a downloaded public corpus into train/dev/test files for `convert prepared`."""
    from .prepare import PrepareError, SplitOptions, prepare_corpus

    try:
        manifest = prepare_corpus(corpus, source, output_dir, SplitOptions(seed, dev_fraction, test_fraction))
    except PrepareError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    counts = ", ".join(f"{name} {entry['count']:,}" for name, entry in manifest["splits"].items())
    typer.echo(f"{corpus} -> {output_dir}: {counts} (convert with `spacy-bert-zh convert prepared {output_dir} ...`)")
    if manifest["left_out_count"]:
        first = manifest["left_out"][0]
        typer.echo(f"left out {manifest['left_out_count']:,} rows (listed in prepared.json); first: "
                   f"{first['file']}:{first['line']}: {first['reason']}")


@app.command("make-corpus")
def make_corpus_cmd(
    out_dir: Path = typer.Argument(Path("corpus/sample"), help="Folder to write the raw sample files to."),
    seed: int = typer.Option(0, help="Random seed (the committed sample uses 0)."),
):
    """Write the small embedded corpus (invented NER sentences, classified texts, a Parquet sample)."""
    from .sample_corpus import write_sample_corpus

    for path in write_sample_corpus(out_dir, seed=seed):
        typer.echo(f"wrote {path}")
