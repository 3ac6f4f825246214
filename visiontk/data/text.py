"""Sentences: the `text` data format, the vocabulary, and the text modality (data/modality.py).

A split is one file under data.root (data.options.file, `{split}` standing for
data.train / data.val): a TSV (`.tsv`, tab-separated) or CSV (`.csv`) with a
header row naming a text column and a label column (data.options.text_column,
label_column). Labels are class names (sorted unless data.classes gives the order).

Tokens are words and single punctuation marks (lower-cased unless
data.options.lowercase is false). The vocabulary is built from the training
split only: tokens seen at least data.options.min_freq times, most frequent
first (ties alphabetical), at most data.options.max_vocab of them, after the
padding token `<pad>` (index 0) and the unknown token `<unk>` (index 1). A
sentence becomes data.options.max_len token ids: cut after max_len, padded
with 0. The vocabulary travels in every checkpoint (its `preprocess`), so
`predict` encodes a sentence exactly as training did.
"""
from __future__ import annotations

import collections
import csv
import functools
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable, Mapping, Optional

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from visiontk.console import plural
from visiontk.data.regular_files import read_regular_text, require_file
from visiontk.data.sources import SourceRule, StdinLine
from visiontk.errors import DataError, UserError
from visiontk.recipe import Section, register_format_options

PAD, UNK = "<pad>", "<unk>"
MAX_LEN = 100_000
MAX_VOCAB = 2_000_000
MAX_TOKEN = 1000
_TOKEN = re.compile(r"\w+|[^\w\s]")

csv.field_size_limit(10_000_000)


class TextOptions(Section):
    """data.options of the `text` format."""

    # The file of a split, under data.root; {split} is data.train or data.val.
    file: Annotated[str, Field(min_length=1)] = "{split}.tsv"
    text_column: Annotated[str, Field(min_length=1)] = "text"
    label_column: Annotated[str, Field(min_length=1)] = "label"
    # The vocabulary: tokens seen at least min_freq times in the training split, at most max_vocab.
    min_freq: Annotated[int, Field(ge=1)] = 1
    max_vocab: Optional[Annotated[int, Field(ge=1, le=MAX_VOCAB)]] = None
    # Token ids per sentence: longer sentences are cut, shorter ones padded.
    max_len: Annotated[int, Field(ge=1, le=MAX_LEN)] = 64
    lowercase: bool = True


register_format_options("text", TextOptions)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    return _TOKEN.findall(text.lower() if lowercase else text)


# ---------------------------------------------------------------- files


def read_text_file(path: Path, options: TextOptions) -> tuple[list[str], list[str]]:
    """(texts, labels) of a TSV/CSV file with a header row."""
    require_file(path, f"{path}: text file does not exist (data.options.file)")
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        rows = list(csv.reader(io.StringIO(read_regular_text(path)), delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: not a readable {'TSV' if delimiter == chr(9) else 'CSV'} file ({e})") from None
    if not rows:
        raise UserError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    for key, column in (("text_column", options.text_column), ("label_column", options.label_column)):
        if column not in header:
            raise UserError(f"{path}: no '{column}' column (data.options.{key}); header: {', '.join(header)}")
    ti, li = header.index(options.text_column), header.index(options.label_column)
    texts, labels = [], []
    for line, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != len(header):
            raise UserError(f"{path}:{line}: {plural(len(row), 'field')}, the header has {len(header)}")
        texts.append(row[ti])
        labels.append(row[li].strip())
    if not texts:
        raise UserError(f"{path}: no sentences")
    return texts, labels


def split_file(recipe, split: str, root: str | None = None) -> Path:
    data = recipe.data
    name = getattr(data, split) if split in ("train", "val") else split
    return Path(root or data.root) / data.options.file.replace("{split}", name)


def build_vocabulary(texts: Iterable[str], min_freq: int = 1, max_vocab: int | None = None,
                     lowercase: bool = True) -> tuple[str, ...]:
    """(<pad>, <unk>, tokens...): the tokens seen >= min_freq times, most frequent first, ties alphabetical."""
    counts = collections.Counter(t for text in texts for t in tokenize(text, lowercase))
    for special in (PAD, UNK):
        counts.pop(special, None)
    kept = sorted((t for t, c in counts.items() if c >= min_freq and len(t) <= MAX_TOKEN), key=lambda t: (-counts[t], t))
    if max_vocab is not None:
        kept = kept[:max_vocab]
    return (PAD, UNK, *kept)


@functools.lru_cache(maxsize=4)
def _training_vocabulary(path: str, mtime: float, size: int, options_json: str) -> tuple[str, ...]:
    options = TextOptions.model_validate_json(options_json)
    texts, _ = read_text_file(Path(path), options)
    return build_vocabulary(texts, options.min_freq, options.max_vocab, options.lowercase)


def training_vocabulary(recipe) -> tuple[str, ...]:
    """The vocabulary of the recipe's training split (built once per file version)."""
    path = split_file(recipe, "train")
    require_file(path, f"{path}: text file does not exist (data.options.file)")
    st = os.stat(path)
    return _training_vocabulary(str(path), st.st_mtime, st.st_size, recipe.data.options.model_dump_json())


# ---------------------------------------------------------------- one sentence


@dataclass(frozen=True)
class TextPreprocess:
    """How a sentence becomes the model's input: max_len int64 token ids (0 = <pad>, 1 = <unk>)."""

    vocab: tuple[str, ...]
    max_len: int = 64
    lowercase: bool = True
    min_freq: int = 1  # how the vocabulary was built (for the record)
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    kind = "text"
    mode = "text"
    channels = 1
    # Stdin lines are sentences; a file named on the command line is one document.
    sources = SourceRule(accept=lambda p: p.suffix.lower() == ".txt", lines_are_data=True, noun="text files (.txt)")

    def __post_init__(self) -> None:
        vocab = tuple(str(t) for t in self.vocab)
        if len(vocab) < 2 or vocab[:2] != (PAD, UNK):
            raise UserError(f"preprocess: the vocabulary must start with {PAD} and {UNK}")
        if len(set(vocab)) != len(vocab):
            raise UserError("preprocess: the vocabulary repeats a token")
        if not 1 <= int(self.max_len) <= MAX_LEN:
            raise UserError(f"preprocess: max_len must be from 1 to {MAX_LEN}, got {self.max_len!r}")
        object.__setattr__(self, "vocab", vocab)
        object.__setattr__(self, "max_len", int(self.max_len))
        self._index.update({t: i for i, t in enumerate(vocab)})

    def to_dict(self) -> dict:
        return {"kind": "text", "vocab": list(self.vocab), "max_len": self.max_len, "lowercase": self.lowercase,
                "min_freq": self.min_freq, "pad": PAD, "unk": UNK}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TextPreprocess":
        unknown = set(d) - {"kind", "vocab", "max_len", "lowercase", "min_freq", "pad", "unk"}
        if unknown:
            raise UserError(f"preprocess: unknown keys {', '.join(sorted(unknown))}")
        try:
            return cls(vocab=tuple(d["vocab"]), max_len=int(d["max_len"]), lowercase=bool(d.get("lowercase", True)),
                       min_freq=int(d.get("min_freq", 1)))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"preprocess: malformed text entry ({e.__class__.__name__}: {e})") from None

    # -- what the predictor and the memory check read ----------------------------------
    @property
    def size(self) -> tuple[int, int]:
        """(1, max_len): a sentence counts as a 1-row image where sizes are multiplied out."""
        return (1, self.max_len)

    def with_size(self, size) -> "TextPreprocess":
        return self

    @property
    def input_shape(self) -> tuple[int]:
        return (self.max_len,)

    def item_meta(self, item) -> dict:
        # A sentence from stdin is echoed in its record, next to its line number.
        return {"path": str(item), "text": item.text} if isinstance(item, StdinLine) else {"path": str(item)}

    # -- item -> ids -------------------------------------------------------------------------
    def encode(self, text: str) -> np.ndarray:
        ids = np.zeros(self.max_len, dtype=np.int64)
        tokens = tokenize(text, self.lowercase)[: self.max_len]
        ids[: len(tokens)] = [self._index.get(t, 1) for t in tokens]
        return ids

    def decode(self, item) -> tuple[np.ndarray, tuple[int, int]]:
        if isinstance(item, StdinLine):
            text = item.text
        else:
            try:
                text = read_regular_text(item)
            except UnicodeDecodeError:
                raise DataError(f"{item}: not a UTF-8 text file") from None
        return self.encode(text), (1, len(tokenize(text, self.lowercase)))

    def finish(self, ids: np.ndarray) -> np.ndarray:
        return ids

    def normalize(self, ids) -> torch.Tensor:
        return torch.as_tensor(ids, dtype=torch.int64)

    def normalize_batch(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.long()

    def __call__(self, item) -> torch.Tensor:
        return self.normalize(self.decode(item)[0])

    # -- export and model building ---------------------------------------------------------
    def example(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, len(self.vocab), (n, self.max_len), generator=generator)

    def export_input(self) -> dict:
        return {"dtype": "int64", "layout": "NT", "max_len": self.max_len,
                "tokenizer": f"regex {_TOKEN.pattern}" + (" on the lower-cased text" if self.lowercase else ""),
                "ids": "index in preprocess.vocab; 0 pads, 1 for unknown tokens; cut after max_len",
                "vocab_size": len(self.vocab)}

    def backbone_inputs(self) -> dict:
        return {"vocab": self.vocab}


# ---------------------------------------------------------------- the data set


class TextDataset(Dataset):
    """Yields (token ids [max_len], label); every sentence encoded once, up front."""

    def __init__(self, texts: list[str], labels: np.ndarray, preprocess: TextPreprocess):
        self.ids = torch.from_numpy(np.stack([preprocess.encode(t) for t in texts]))
        self.y, self.preprocess = torch.as_tensor(labels, dtype=torch.int64), preprocess

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return self.ids[i], int(self.y[i])


class TextModality:
    name = "text"
    preprocess_type = TextPreprocess

    def recipe_preprocess(self, recipe, mean: list[float], std: list[float]) -> TextPreprocess:
        o = recipe.data.options
        return TextPreprocess(training_vocabulary(recipe), o.max_len, o.lowercase, o.min_freq)

    synthetic_set = "sentences"

    def has_training_data(self, recipe) -> bool:
        return split_file(recipe, "train").is_file()

    def synthesize(self, root: Path, synthetic) -> None:
        from visiontk.data.synth_text import synth_text

        synth_text(root, n=synthetic.n, seed=synthetic.seed)

    def classification_data(self, recipe, split: str, train: bool, classes, root, preprocess: TextPreprocess,
                            augment: list) -> tuple[Dataset, list[str]]:
        path = split_file(recipe, split, root)
        texts, labels = read_text_file(path, recipe.data.options)
        names = list(classes or recipe.data.classes or sorted(set(labels)))
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise UserError(f"{path}: labels not in the class list: {', '.join(unknown[:5])}")
        return TextDataset(texts, np.asarray([index[t] for t in labels]), preprocess), names


MODALITY = TextModality()
