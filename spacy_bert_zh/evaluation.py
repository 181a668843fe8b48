"""Evaluate a trained pipeline on DocBin files: per-label NER P/R/F and textcat accuracy and F.

NER is scored on the docs that carry entity annotation and textcat on the docs that carry
``cats``, so one dev set may mix NER sentences and classified texts. The scores also hold the
gold entities per label and the textcat confusion matrix, which ``plots.py`` draws (``--plots``).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import spacy
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import DocBin
from spacy.training import Example
from wasabi import msg

from .training import categorical_accuracy, top_label


def evaluate_pipeline(model: Union[str, Path, Language], data: Iterable[Path],
                      output: Optional[Path] = None, batch_size: int = 64,
                      plots: Optional[Path] = None) -> Dict[str, Any]:
    """Score ``model`` on the ``.spacy`` files (or folders of them) in ``data``; write JSON to
    ``output`` and the PNG plots of ``plots.write_plots`` to the folder ``plots``."""
    if plots is not None:
        from .plots import require_matplotlib

        require_matplotlib()   # before the pipeline runs, not after
    nlp = spacy.load(model) if not isinstance(model, Language) else model
    examples = predict_examples(nlp, read_docbins(nlp, data), batch_size)
    scores = {"ner": score_ner(examples), "textcat": score_textcat(nlp, examples),
              "docs": len(examples)}
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(scores, ensure_ascii=False, indent=2), encoding="utf-8")
    if plots is not None:
        from .plots import write_plots

        write_plots(scores, Path(plots))
    return scores


def read_docbins(nlp: Language, paths: Iterable[Path]) -> List:
    """All gold docs of the given ``.spacy`` files or folders of them, in a stable order."""
    files: List[Path] = []
    for path in map(Path, paths):
        found = sorted(path.rglob("*.spacy")) if path.is_dir() else [path]
        if not found or not all(p.is_file() for p in found):
            raise FileNotFoundError(f"{path}: no .spacy file found")
        files.extend(found)
    return [doc for path in files for doc in DocBin().from_disk(path).get_docs(nlp.vocab)]


def predict_examples(nlp: Language, gold_docs: List, batch_size: int) -> List[Example]:
    """Run the pipeline over the texts of ``gold_docs`` and pair each prediction with its gold doc."""
    predicted = nlp.pipe((nlp.make_doc(doc.text) for doc in gold_docs), batch_size=batch_size)
    return [Example(pred, gold) for pred, gold in zip(predicted, gold_docs)]


def score_ner(examples: List[Example]) -> Optional[Dict[str, Any]]:
    """Micro and per-label P/R/F over the examples whose gold doc has entity annotation."""
    annotated = [eg for eg in examples if eg.reference.has_annotation("ENT_IOB")]
    if not annotated:
        return None
    scores = Scorer.score_spans(annotated, "ents", has_annotation=lambda doc: True)
    return {"docs": len(annotated), "p": scores["ents_p"], "r": scores["ents_r"],
            "f": scores["ents_f"], "per_label": scores["ents_per_type"],
            "gold_per_label": gold_entity_counts(annotated)}


def gold_entity_counts(examples: List[Example]) -> Dict[str, int]:
    """Gold entities per label, labels sorted."""
    counts = Counter(ent.label_ for eg in examples for ent in eg.reference.ents)
    return dict(sorted(counts.items()))


def score_textcat(nlp: Language, examples: List[Example]) -> Optional[Dict[str, Any]]:
    """Accuracy, macro F and per-class P/R/F over the examples whose gold doc has ``cats``."""
    annotated = [eg for eg in examples if eg.reference.cats]
    if not annotated or "textcat" not in nlp.pipe_names:
        return None
    labels = list(nlp.get_pipe("textcat").labels)
    scores = Scorer.score_cats(annotated, "cats", labels=labels, multi_label=False)
    return {"docs": len(annotated), "accuracy": categorical_accuracy(annotated),
            "macro_f": scores["cats_macro_f"], "per_class": scores["cats_f_per_type"],
            "confusion": confusion_matrix(annotated, labels)}


def confusion_matrix(examples: List[Example], labels: List[str]) -> Dict[str, Any]:
    """Exclusive classes: ``matrix[i][j]`` counts the docs of gold class ``labels[i]`` whose top
    predicted class is ``labels[j]``; docs without gold ``cats`` (or without predicted ones) are
    left out. Gold or predicted classes outside ``labels`` get rows and columns after them. The
    diagonal over the total is ``categorical_accuracy``."""
    pairs = [(top_label(eg.reference.cats), top_label(eg.predicted.cats))
             for eg in examples if eg.reference.cats]
    names = list(dict.fromkeys([*labels, *(name for pair in pairs for name in pair if name is not None)]))
    index = {name: i for i, name in enumerate(names)}
    matrix = [[0] * len(names) for _ in names]
    for gold, predicted in pairs:
        if predicted is not None:
            matrix[index[gold]][index[predicted]] += 1
    return {"labels": names, "matrix": matrix}


def print_scores(scores: Dict[str, Any]) -> None:
    """Print the scores as two tables."""
    ner, textcat = scores["ner"], scores["textcat"]
    if ner:
        rows = [(label, *(f"{100 * v[k]:.1f}" for k in "prf")) for label, v in sorted(ner["per_label"].items())]
        rows.append(("ALL (micro)", *(f"{100 * ner[k]:.1f}" for k in "prf")))
        msg.table(rows, header=("NER label", "P", "R", "F"), divider=True, aligns=("l", "r", "r", "r"))
    if textcat:
        rows = [(label, *(f"{100 * v[k]:.1f}" for k in "prf")) for label, v in sorted(textcat["per_class"].items())]
        rows.append(("macro F", "", "", f"{100 * textcat['macro_f']:.1f}"))
        rows.append(("accuracy", "", "", f"{100 * textcat['accuracy']:.1f}"))
        msg.table(rows, header=("Class", "P", "R", "F"), divider=True, aligns=("l", "r", "r", "r"))
