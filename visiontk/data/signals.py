"""1-D signals: data files, the preprocessing of a signal, and the signal modality (data/modality.py).

A split is one file under data.root (data.options.file, `{split}` standing for
data.train / data.val):

- `.npz`: arrays `x` ([N, L] or [N, C, L]) and `y` (N labels: integers, or
  class names), and optionally `classes` (the names, in index order);
- `.npy`: the `x` array, its labels in data.options.labels (an `.npy` of N labels);
- `.csv`: a header row, one signal per row: the values, and the label in the
  column data.options.label_column (any position).

Integer labels index data.classes (or the file's `classes`; else the classes
are named "0" .. "K-1"); string labels name them (sorted unless data.classes
gives the order).

A signal the model reads has a fixed length (data.options.length, default the
training signals'): `finish` resamples another length linearly, as an image is
resized. Normalisation is per channel, (x - mean) / std, data.mean / data.std
(default 0 and 1: signals such as MNIST-1D come standardised).
"""
from __future__ import annotations

import csv
import functools
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional, Sequence

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from visiontk.console import plural
from visiontk.data.regular_files import open_regular, read_regular_text, require_file
from visiontk.data.sources import SourceRule, StdinLine
from visiontk.errors import DataError, UserError
from visiontk.recipe import Section, register_format_options

MAX_LENGTH = 1_000_000
SIGNAL_SUFFIXES = (".npy", ".csv", ".txt")


class SignalOptions(Section):
    """data.options of the `signals` format."""

    # The file of a split, under data.root; {split} is data.train or data.val.
    file: Annotated[str, Field(min_length=1)] = "{split}.npz"
    # .npz: the names of the arrays.
    x_key: str = "x"
    y_key: str = "y"
    # .npy: the labels file ({split} as in `file`).
    labels: str = "{split}_labels.npy"
    # .csv: the label column's header.
    label_column: str = "label"
    # The length the model reads (None: the training signals' length).
    length: Optional[Annotated[int, Field(ge=2, le=MAX_LENGTH)]] = None


register_format_options("signals", SignalOptions)


# ---------------------------------------------------------------- reading files


def _load_npy_like(path: Path, what: str):
    try:
        with open_regular(path) as f:
            return np.load(io.BytesIO(f.read()), allow_pickle=False)
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: cannot read {what} ({str(e).splitlines()[0][:200]})") from None


def _as_signals(x: Any, path: Path) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" or x.ndim not in (2, 3) or x.shape[-1] < 2 or x.shape[0] < 1:
        raise UserError(f"{path}: signals must be a numeric array [N, L] or [N, C, L], got {x.dtype} {list(x.shape)}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise UserError(f"{path}: signals hold NaN or infinite values")
    return x[:, None, :] if x.ndim == 2 else x


def _read_csv(path: Path, label_column: str) -> tuple[np.ndarray, list]:
    rows = list(csv.reader(io.StringIO(read_regular_text(path))))
    if not rows:
        raise UserError(f"{path}: empty CSV")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise UserError(f"{path}: no '{label_column}' column (data.options.label_column); header: {', '.join(header)}")
    col = header.index(label_column)
    values, labels = [], []
    for line, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != len(header):
            raise UserError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        try:
            values.append([float(v) for i, v in enumerate(row) if i != col])
        except ValueError:
            raise UserError(f"{path}:{line}: a value is not a number") from None
        labels.append(row[col].strip())
    if not values:
        raise UserError(f"{path}: no signal rows")
    return np.asarray(values, dtype=np.float32), labels


def read_signal_file(path: Path, options: SignalOptions, split: str) -> tuple[np.ndarray, list, list[str] | None]:
    """(signals [N, C, L] float32, N raw labels, the file's class names or None)."""
    require_file(path, f"{path}: signal file does not exist (data.options.file)")
    suffix = path.suffix.lower()
    names = None
    if suffix == ".npz":
        arrays = _load_npy_like(path, "npz arrays")
        for key in (options.x_key, options.y_key):
            if key not in arrays.files:
                raise UserError(f"{path}: no array '{key}' (holds {', '.join(arrays.files) or 'none'})")
        x, y = arrays[options.x_key], arrays[options.y_key]
        if "classes" in arrays.files:
            names = [str(c) for c in arrays["classes"].tolist()]
    elif suffix == ".npy":
        x = _load_npy_like(path, "signals")
        labels_path = path.parent / options.labels.replace("{split}", split)
        require_file(labels_path, f"{labels_path}: labels file does not exist (data.options.labels)")
        y = _load_npy_like(labels_path, "labels")
    elif suffix == ".csv":
        x, y = _read_csv(path, options.label_column)
    else:
        raise UserError(f"{path}: signal files are .npz, .npy or .csv")
    x = _as_signals(x, path)
    y = list(np.asarray(y).reshape(-1).tolist())
    if len(y) != len(x):
        raise UserError(f"{path}: {plural(len(x), 'signal')} but {plural(len(y), 'label')}")
    return x, y, names


def label_indices(labels: list, classes: Sequence[str] | None, path: Path) -> tuple[np.ndarray, list[str]]:
    """Class indices of raw labels, and the class names (given, or found)."""
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels)
    if ints:
        top = max(labels)
        if min(labels) < 0:
            raise UserError(f"{path}: negative label {min(labels)}")
        names = list(classes) if classes is not None else [str(i) for i in range(top + 1)]
        if top >= len(names):
            raise UserError(f"{path}: label {top} is out of range for {plural(len(names), 'class')}")
        return np.asarray(labels, dtype=np.int64), names
    text = [str(v) for v in labels]
    names = list(classes) if classes is not None else sorted(set(text))
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise UserError(f"{path}: labels not in the class list: {', '.join(unknown[:5])}")
    return np.asarray([index[t] for t in text], dtype=np.int64), names


def split_file(recipe, split: str, root: str | None = None) -> tuple[Path, str]:
    data = recipe.data
    name = getattr(data, split) if split in ("train", "val") else split
    return Path(root or data.root) / data.options.file.replace("{split}", name), name


@functools.lru_cache(maxsize=8)
def _training_shape(path: str, mtime: float, size: int, options_json: str) -> tuple[int, int]:
    options = SignalOptions.model_validate_json(options_json)
    x, _, _ = read_signal_file(Path(path), options, "train")
    return x.shape[1], x.shape[2]


def training_shape(recipe) -> tuple[int, int]:
    """(channels, length) of the training signals (read once per file version)."""
    path, _ = split_file(recipe, "train")
    require_file(path, f"{path}: signal file does not exist (data.options.file)")
    st = os.stat(path)
    return _training_shape(str(path), st.st_mtime, st.st_size, recipe.data.options.model_dump_json())


# ---------------------------------------------------------------- one signal


def parse_numbers(text: str, where: str) -> np.ndarray:
    """Numbers separated by commas and/or whitespace."""
    parts = text.replace(",", " ").split()
    try:
        values = np.asarray([float(p) for p in parts], dtype=np.float32)
    except ValueError:
        raise DataError(f"{where}: not a line of numbers") from None
    return values


@dataclass(frozen=True)
class SignalPreprocess:
    """How a signal becomes the model's input: [C, length] float32, (x - mean) / std per channel."""

    length: int
    channels: int = 1
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    _constants: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    kind = "signal"
    mode = "signal"
    sources = SourceRule(accept=lambda p: p.suffix.lower() in SIGNAL_SUFFIXES, lines_are_data=True,
                         noun="signal files (.npy, .csv, .txt)")

    def __post_init__(self) -> None:
        if not 2 <= int(self.length) <= MAX_LENGTH:
            raise UserError(f"preprocess: length must be from 2 to {MAX_LENGTH}, got {self.length!r}")
        object.__setattr__(self, "length", int(self.length))
        if not 1 <= int(self.channels) <= 64:
            raise UserError(f"preprocess: channels must be from 1 to 64, got {self.channels!r}")

        def per_channel(values, key):
            values = [float(v) for v in values]
            if len(values) == 1:
                values = values * self.channels
            if len(values) != self.channels or not all(math.isfinite(v) for v in values):
                raise UserError(f"preprocess: '{key}' must have 1 or {self.channels} finite values, got {values}")
            return tuple(values)

        object.__setattr__(self, "mean", per_channel(self.mean, "mean"))
        object.__setattr__(self, "std", per_channel(self.std, "std"))
        if not all(s > 0 for s in self.std):
            raise UserError(f"preprocess: std must be positive, got {self.std}")

    # -- plain data ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": "signal", "length": self.length, "channels": self.channels, "mean": list(self.mean),
                "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SignalPreprocess":
        unknown = set(d) - {"kind", "length", "channels", "mean", "std"}
        if unknown:
            raise UserError(f"preprocess: unknown keys {', '.join(sorted(unknown))}")
        try:
            return cls(length=int(d["length"]), channels=int(d.get("channels", 1)), mean=tuple(d["mean"]),
                       std=tuple(d["std"]))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"preprocess: malformed entry {dict(d)!r} ({e.__class__.__name__}: {e})") from None

    # -- what the predictor and the memory check read ----------------------------------
    @property
    def size(self) -> tuple[int, int]:
        """(1, length): a signal counts as a 1-row image where sizes are multiplied out."""
        return (1, self.length)

    def with_size(self, size) -> "SignalPreprocess":
        return self

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.channels, self.length)

    def item_meta(self, item) -> dict:
        return {"path": str(item)}

    # -- item -> array -----------------------------------------------------------------
    def decode(self, item) -> tuple[np.ndarray, tuple[int, int]]:
        """float32 [C, L] from a .npy file ([L] or [C, L]), a text file or stdin line of
        numbers (C x L values, channel after channel); DataError naming the input."""
        where = str(item)
        if isinstance(item, StdinLine):
            x = parse_numbers(item.text, where)
        elif Path(item).suffix.lower() == ".npy":
            x = _load_npy_like(Path(item), "a signal")
            if x.dtype.kind not in "iuf":
                raise DataError(f"{where}: not a numeric array ({x.dtype})")
            x = x.astype(np.float32)
        else:
            try:
                x = parse_numbers(read_regular_text(item), where)
            except UnicodeDecodeError:
                raise DataError(f"{where}: not a text file of numbers") from None
        if x.ndim == 1:
            if x.size % self.channels:
                raise DataError(f"{where}: {plural(x.size, 'value')} do not split into {plural(self.channels, 'channel')}")
            x = x.reshape(self.channels, -1)
        if x.ndim != 2 or x.shape[0] != self.channels or x.shape[1] < 2:
            raise DataError(f"{where}: expected a signal of {self.channels} channel(s) and at least 2 values, "
                            f"got shape {list(x.shape)}")
        if not np.isfinite(x).all():
            raise DataError(f"{where}: the signal holds NaN or infinite values")
        return x, (1, x.shape[1])

    def finish(self, x: np.ndarray) -> np.ndarray:
        """[C, length]: another length resampled linearly (end points kept), as an image is resized."""
        if x.shape[-1] == self.length:
            return np.ascontiguousarray(x, dtype=np.float32)
        src = np.linspace(0.0, 1.0, x.shape[-1])
        dst = np.linspace(0.0, 1.0, self.length)
        return np.stack([np.interp(dst, src, c) for c in x]).astype(np.float32)

    def _scale_bias(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._constants:
            m = torch.tensor(self.mean, dtype=torch.float64)
            s = torch.tensor(self.std, dtype=torch.float64)
            # (x - mean) / std as one multiply-add, constants rounded once: normalize and
            # normalize_batch give the same numbers (what eval scores is what predict does).
            self._constants[key] = ((1.0 / s).float().view(-1, 1).to(device), (-m / s).float().view(-1, 1).to(device))
        return self._constants[key]

    def normalize(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x).float()
        scale, bias = self._scale_bias(t.device)
        return t.mul(scale).add_(bias)

    def normalize_batch(self, batch: torch.Tensor) -> torch.Tensor:
        scale, bias = self._scale_bias(batch.device)
        return batch.float().mul(scale).add_(bias)

    def __call__(self, item) -> torch.Tensor:
        return self.normalize(self.finish(self.decode(item)[0]))

    # -- export and model building ---------------------------------------------------------
    def example(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, *self.input_shape, generator=generator)

    def export_input(self) -> dict:
        return {"dtype": "float32", "layout": "NCL", "length": self.length,
                "resample": "linear interpolation to length (end points kept)",
                "mean": list(self.mean), "std": list(self.std)}

    def backbone_inputs(self) -> dict:
        # Backbones whose layers depend on the length (the MLP) take it from here.
        return {"length": self.length}


# ---------------------------------------------------------------- the data set


class SignalDataset(Dataset):
    """Yields (signal [C, length] normalised, label).

    The whole split is resampled and normalised once, up front (the same
    elementwise float32 arithmetic as one signal at a time, so the same numbers
    as `predict`): a split of small signals costs microseconds per item then,
    not the per-call overhead of a few tensor operations."""

    def __init__(self, x: np.ndarray, y: np.ndarray, preprocess: SignalPreprocess):
        if x.shape[1] != preprocess.channels:
            raise UserError(f"signals have {plural(x.shape[1], 'channel')}, the model takes {preprocess.channels}")
        if x.shape[-1] != preprocess.length:
            x = np.stack([preprocess.finish(s) for s in x])
        self.x = preprocess.normalize_batch(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        self.y, self.preprocess = torch.as_tensor(y, dtype=torch.int64), preprocess

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


class SignalModality:
    name = "signal"
    preprocess_type = SignalPreprocess

    def recipe_preprocess(self, recipe, mean: list[float], std: list[float]) -> SignalPreprocess:
        length = recipe.data.options.length
        channels = recipe.model.in_channels
        if length is None:
            channels, length = training_shape(recipe)
        return SignalPreprocess(length=length, channels=channels, mean=tuple(mean), std=tuple(std))

    synthetic_set = "MNIST-1D"

    def has_training_data(self, recipe) -> bool:
        return split_file(recipe, "train")[0].is_file()

    def synthesize(self, root: Path, synthetic) -> None:
        from visiontk.data.synth_signals import synth_signals

        synth_signals(root, n=synthetic.n, seed=synthetic.seed)

    def classification_data(self, recipe, split: str, train: bool, classes, root, preprocess: SignalPreprocess,
                            augment: list) -> tuple[Dataset, list[str]]:
        path, name = split_file(recipe, split, root)
        x, y, names = read_signal_file(path, recipe.data.options, name)
        indices, classes = label_indices(y, classes or recipe.data.classes or names, path)
        return SignalDataset(x, indices, preprocess), classes


MODALITY = SignalModality()
