"""A labelled sentence set whose label depends on word order, not only on which words occur.

Every sentence holds filler words, one sentiment word (good, great, ... or
bad, awful, ...) and the word "not" once. The label is the sentiment's,
flipped when "not" stands right before the sentiment word ("the plot was not
good": negative); anywhere else "not" changes nothing ("not once did i say
the plot was good": positive). Half the sentences are negated, independently
of everything else, so a sentence and its reordering share their words but
not always their label: a bag of words is at chance (50 %) by construction,
and a convolution over two neighbouring words can be right every time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from visiontk.data.synth import _Output, check_split_args

CLASSES = ("negative", "positive")
POSITIVE = ("good", "great", "fine", "nice", "wonderful")
NEGATIVE = ("bad", "awful", "poor", "boring", "terrible")
FILLERS = ("the", "a", "plot", "film", "book", "food", "show", "was", "is", "really", "quite", "i", "said", "once",
           "today", "it", "and", "so", "very", "this", "that", "felt", "seemed", "honestly")
_SEED_OFFSET = {"train": 0, "val": 1}


def sentence(rng: np.random.Generator) -> tuple[str, str]:
    positive, negated = bool(rng.integers(2)), bool(rng.integers(2))
    words = list(rng.choice(FILLERS, size=int(rng.integers(4, 9))))
    sentiment = str(rng.choice(POSITIVE if positive else NEGATIVE))
    at = int(rng.integers(0, len(words) + 1))
    words.insert(at, sentiment)
    if negated:
        words.insert(at, "not")
    else:  # anywhere but right before the sentiment word
        spots = [i for i in range(len(words) + 1) if i != at]
        words.insert(int(rng.choice(spots)), "not")
    return " ".join(words), CLASSES[int(positive != negated)]


def synth_text(out: Path, n: int = 2000, seed: int = 0, val_fraction: float = 0.25) -> dict:
    """out/train.tsv and out/val.tsv: `text<TAB>label` with a header row."""
    check_split_args(n, seed, val_fraction, n_min=4, n_why="both splits of both labels")
    n_val = min(max(int(round(n * val_fraction)), 1), n - 1)
    counts = {"train": n - n_val, "val": n_val}
    with _Output(out) as o:
        for split, count in counts.items():
            rng = np.random.default_rng([seed, _SEED_OFFSET[split]])
            rows = ["text\tlabel"] + ["\t".join(sentence(rng)) for _ in range(count)]
            o.text("\n".join(rows) + "\n", f"{split}.tsv")
        summary = {"task": "text", "root": str(o.root), "classes": list(CLASSES), **counts}
        return o.finish(summary, {"n": n, "seed": seed, "val_fraction": float(val_fraction)})
