"""PNG plots of what `visiontk data check` counts: bars per class or per bin, one series per split."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_bars(labels: list[str], series: dict[str, list[float]], path: Path, title: str, value_label: str,
              log: bool = False) -> Path:
    """Grouped horizontal bars: one row per label (a class, a bin), one bar per series (a split).

    Horizontal, and taller with more rows, so that 80+ class names stay legible.
    """
    n, k = len(labels), max(1, len(series))
    fig, ax = plt.subplots(figsize=(7.0, max(2.5, 0.22 * n * min(k, 2) + 1.2)))
    y = np.arange(n)
    height = 0.8 / k
    for i, (name, values) in enumerate(series.items()):
        ax.barh(y + (i - (k - 1) / 2) * height, values, height=height, label=name)
    ax.set_yticks(y, labels, fontsize=8 if n <= 40 else 6)
    ax.invert_yaxis()  # the first label on top
    if log:
        ax.set_xscale("symlog")
    ax.set_xlabel(value_label)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
