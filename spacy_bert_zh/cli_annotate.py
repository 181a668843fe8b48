"""CLI commands over Parquet: ``annotate`` (local or Ray) and ``show``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli import app


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
    quantize: Optional[str] = typer.Option(None, help="CPU only. int8: the encoder with int8 "
                                           "weights (needs the [fast] extra); bf16: bfloat16 weights "
                                           "(fast on CPUs with AMX or AVX512-BF16)."),
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
