"""PNG plots of training curves and confusion matrices (matplotlib, no display)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from visiontk.console import printable  # noqa: E402
from visiontk.errors import writing  # noqa: E402


def plot_training_curves(rows: list[dict], path: Path) -> Path:
    """One panel per column of results.csv (except epoch/time), against epoch."""
    if not rows:
        return path
    keys = [k for k in rows[0] if k not in ("epoch", "time", "stage")]
    n = len(keys)
    cols = min(4, n)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    epochs = [r["epoch"] for r in rows]
    for ax, key in zip(axes.flat, keys):
        ys = [r.get(key) for r in rows]
        pts = [(e, y) for e, y in zip(epochs, ys) if isinstance(y, (int, float))]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return _save(fig, path)


# The largest side of a per-class figure, in inches (at 100 dpi): a 130-class
# confusion matrix at 0.5 in a class would be 6700 px wide.
MAX_FIGURE_INCHES = 24.0


def class_font_size(n: int, inches: float) -> float:
    """A tick-label size (points) that fits `n` labels along `inches`: 8 pt while they fit, smaller
    (down to 3 pt) when they would overlap."""
    return max(3.0, min(8.0, 0.8 * inches * 72 / max(n, 1)))


def plot_confusion_matrix(matrix: list[list[int]], classes: list[str], path: Path) -> Path:
    return _save(confusion_matrix_figure(matrix, classes), path)


def plot_per_class_bars(scores: dict[str, float | None], metric: str, path: Path) -> Path:
    return _save(per_class_bars_figure(scores, metric), path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_matrix_figure(matrix: list[list[int]], classes: list[str]):
    """Rows: true class; columns: predicted. Cells normalised per true class, counts printed
    up to 30 classes. The figure grows with the classes up to MAX_FIGURE_INCHES, and the
    labels shrink to fit beyond that (80, 130 classes)."""
    import numpy as np

    cm = np.asarray(matrix, dtype=float)
    norm = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
    # Names as the terminal shows them: a control character in a class name has no glyph,
    # and matplotlib's warning about it would print the raw character to stderr.
    classes = [printable(str(c), newlines=False) for c in classes]
    n = len(classes)
    size = min(MAX_FIGURE_INCHES, max(4.0, 0.5 * n + 2))
    font = class_font_size(n, size - 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90 if n > 30 else 45, ha="center" if n > 30 else "right", fontsize=font)
    ax.set_yticks(range(n), classes, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    return fig


def per_class_bars_figure(scores: dict[str, float | None], metric: str):
    """One horizontal bar per class, sorted from the best down, its value at its end: the view
    of many classes (80, 130) that stays legible. Classes without a value (absent from the
    split) are listed at the bottom as '-'."""
    import math

    defined = sorted(((v, k) for k, v in scores.items() if isinstance(v, (int, float)) and not math.isnan(v)),
                     key=lambda t: -t[0])
    missing = [k for k, v in scores.items() if not (isinstance(v, (int, float)) and not math.isnan(v))]
    names = [k for _, k in defined] + missing
    shown = [printable(str(k), newlines=False) for k in names]  # no raw control characters via matplotlib
    values = [v for v, _ in defined] + [0.0] * len(missing)
    n = len(names)
    height = min(MAX_FIGURE_INCHES * 2, max(3.0, 0.16 * n + 1.2))
    font = class_font_size(n, height - 1.2)
    fig, ax = plt.subplots(figsize=(7, height))
    ys = list(range(n))
    ax.barh(ys, values, color="tab:blue", height=0.8)
    for y, v, name in zip(ys, values, names):
        ax.text(min(v, 1.0) + 0.01, y, "-" if name in missing else f"{v:.3f}", va="center", fontsize=font)
    ax.set_yticks(ys, shown, fontsize=font)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel(metric)
    ax.set_title(f"{metric} per class ({len(defined)} of {n} with a value)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return fig
