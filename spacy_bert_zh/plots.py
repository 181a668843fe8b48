"""Plots of an evaluation as PNG: per-label NER P/R/F bars and the textcat confusion matrix.

``write_plots`` draws from the scores of ``evaluation.evaluate_pipeline`` (which holds the gold
counts and the confusion matrix), so nothing is predicted twice. matplotlib (the ``plots`` extra)
is imported only here, when a plot is drawn. The class labels are Chinese: the font is Noto Sans
SC from the ``pylopdf-fonts-zh-cn`` package (same extra) when installed, else a system font that
has the glyphs, else matplotlib's default with a warning that the labels may render as boxes.
"""
from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

NER_PLOT = "ner_per_label.png"
CONFUSION_PLOT = "textcat_confusion.png"
EXTRA_HINT = "pip install 'spacy-bert-zh[plots]'"
DPI = 120
# Packages that ship a CJK font, as (module, function returning the font's path), best first.
FONT_PACKAGES = (("pylopdf_fonts_zh_cn", "sans_path"),)


class PlotsError(RuntimeError):
    """The plots cannot be drawn (matplotlib is missing); the message says what to install."""


def write_plots(scores: Dict[str, Any], out_dir: Path) -> List[Path]:
    """Write ``ner_per_label.png`` and ``textcat_confusion.png`` (those whose scores exist) to ``out_dir``."""
    require_matplotlib()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if scores.get("ner") and scores["ner"]["per_label"]:
        written.append(plot_ner_per_label(scores["ner"], out_dir / NER_PLOT))
    if scores.get("textcat") and scores["textcat"].get("confusion"):
        written.append(plot_confusion(scores["textcat"], out_dir / CONFUSION_PLOT))
    return written


def require_matplotlib() -> None:
    """Raise ``PlotsError`` naming the extra unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise PlotsError(f"plots need matplotlib, which is not installed: {EXTRA_HINT}") from error


def plot_ner_per_label(ner: Dict[str, Any], path: Path) -> Path:
    """Grouped P/R/F bars (percent) per entity label and for all (micro); gold counts under the labels."""
    labels = sorted(ner["per_label"])
    gold = ner.get("gold_per_label", {})
    names = [f"{label}\n(n={gold.get(label, 0):,})" if gold else label for label in labels]
    names.append(f"ALL (micro)\n(n={sum(gold.values()):,})" if gold else "ALL (micro)")
    values = {key: [100 * ner["per_label"][label][key] for label in labels] + [100 * ner[key]]
              for key in "prf"}
    with figure_context(names) as new_figure:
        fig, ax = new_figure(max(6.0, 1.1 * len(names) + 2), 4.5)
        width = 0.27
        for offset, (key, name) in enumerate((("p", "precision"), ("r", "recall"), ("f", "F"))):
            xs = [i + (offset - 1) * width for i in range(len(names))]
            bars = ax.bar(xs, values[key], width, label=name)
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylim(0, 118)
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("%")
        ax.set_title(f"NER per label ({ner['docs']:,} docs)")
        ax.legend(loc="upper right", ncol=3, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        return save(fig, path)


def plot_confusion(textcat: Dict[str, Any], path: Path) -> Path:
    """Gold rows × predicted columns: counts in the cells, colours normalised per gold row."""
    labels, matrix = textcat["confusion"]["labels"], textcat["confusion"]["matrix"]
    shares = row_normalised(matrix)
    with figure_context(labels) as new_figure:
        side = max(4.5, 0.6 * len(labels) + 2.5)
        fig, ax = new_figure(side + 1.2, side)
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(j, i, f"{count:,}", ha="center", va="center", fontsize=8,
                        color="white" if shares[i][j] > 0.6 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0,
                      ha="right" if len(labels) > 4 else "center")
        ax.set_yticks(range(len(labels)), [f"{label} ({sum(row):,})" for label, row in zip(labels, matrix)])
        ax.set_xlabel("predicted (top class)")
        ax.set_ylabel("gold (docs)")
        accuracy = textcat.get("accuracy")
        ax.set_title(f"textcat confusion ({sum(map(sum, matrix)):,} docs"
                     + (f", accuracy {100 * accuracy:.1f}%)" if accuracy is not None else ")"))
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the gold row")
        return save(fig, path)


def row_normalised(matrix: List[List[int]]) -> List[List[float]]:
    """Each row divided by its sum (rows without docs stay zero)."""
    return [[count / sum(row) if sum(row) else 0.0 for count in row] for row in matrix]


# --- fonts ----------------------------------------------------------------------------------

def cjk_font(texts: Iterable[str]) -> Optional[Path]:
    """A font file with a glyph for every character of ``texts``: a font package's first, then a
    system font (checked glyph by glyph, not by name); None when none has them all."""
    texts = list(texts)
    for candidate in [*packaged_fonts(), *system_fonts()]:
        if not missing_glyphs(candidate, texts):
            return candidate
    return None


def missing_glyphs(font: Path, texts: Iterable[str]) -> str:
    """The characters of ``texts`` (non-space, each once) that ``font`` has no glyph for."""
    chars = sorted({char for text in texts for char in text if not char.isspace()})
    charmap = font_charmap(str(font))
    return "".join(char for char in chars if ord(char) not in charmap)


@lru_cache(maxsize=None)
def font_charmap(font: str) -> frozenset:
    """The code points ``font`` maps to a glyph (empty for a file FreeType cannot read)."""
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(code for code, glyph in FT2Font(font).get_charmap().items() if glyph)
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def default_font() -> Path:
    """The file of matplotlib's default sans-serif font (DejaVu Sans, shipped with matplotlib)."""
    from matplotlib import font_manager

    return Path(font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans")))


def packaged_fonts() -> List[Path]:
    """The CJK font files of the installed ``FONT_PACKAGES``."""
    import importlib

    found = []
    for module_name, function in FONT_PACKAGES:
        try:
            path = Path(getattr(importlib.import_module(module_name), function)())
        except (ImportError, AttributeError):
            continue
        if path.is_file():
            found.append(path)
    return found


def system_fonts() -> List[Path]:
    """The font files matplotlib found on the system, those named like CJK fonts first."""
    from matplotlib import font_manager

    hints = ("cjk", "han", "hei", "song", "kai", "ming", "wqy", "fallback", "noto")
    paths = sorted({entry.fname for entry in font_manager.fontManager.ttflist})
    return [Path(p) for p in sorted(paths, key=lambda p: not any(h in Path(p).name.lower() for h in hints))]


@lru_cache(maxsize=None)
def warn_no_font() -> None:
    """Say once on stderr that the labels may render as boxes."""
    print(f"warning: no font with Chinese glyphs found; plot labels may render as boxes "
          f"({EXTRA_HINT} installs one)", file=sys.stderr)


@contextmanager
def figure_context(texts: Iterable[str]):
    """``with figure_context(texts) as new_figure:`` the figures made inside use a font that has
    the glyphs of ``texts``; ``new_figure(width, height)`` → (figure on the Agg canvas, axes).
    Without such a font, ``warn_no_font`` has said so once: matplotlib's warning per missing
    glyph is silenced."""
    import matplotlib

    settings = font_settings(list(texts))
    with matplotlib.rc_context(settings or {}), warnings.catch_warnings():
        if settings is None:
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        yield new_agg_figure


def font_settings(texts: List[str]) -> Optional[Dict[str, Any]]:
    """matplotlib settings for ``texts``: none (``{}``) when the default font has their glyphs,
    else a CJK font first (registered with matplotlib) and DejaVu Sans after it; None (after
    ``warn_no_font``) when no font has them."""
    from matplotlib import font_manager

    if not missing_glyphs(default_font(), texts):
        return {}
    font = cjk_font(texts)
    if font is None:
        warn_no_font()
        return None
    font_manager.fontManager.addfont(str(font))
    return {"font.family": [font_manager.FontProperties(fname=str(font)).get_name(), "DejaVu Sans"]}


def new_agg_figure(width: float, height: float):
    """A figure on the Agg canvas (no pyplot, no GUI backend) and its one axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save(fig, path: Path) -> Path:
    """Write ``fig`` as PNG to ``path``."""
    fig.savefig(path, dpi=DPI, format="png")
    return path
