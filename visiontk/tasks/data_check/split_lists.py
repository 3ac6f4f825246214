"""Split lists beside a VOC layout that has no ImageSets: train/val lists found by their names.

Sets exported outside VOCdevkit often give their split as lists next to the
annotations: the raccoon set has ``data/train_labels.csv`` (160 images) and
``data/test_labels.csv`` (40), one row per box with a ``filename`` column, and
``data/raccoon_labels.csv`` holding every box. Such lists are the split the
set's authors meant; reading every annotation in both splits instead scores
the model on the images it trained on.

A file is a candidate when it lies in the folder or one of ``LIST_FOLDERS``,
ends in ``.csv`` or ``.txt``, and a word of its name (split at any non-letter)
is a split's: ``train``/``training`` for train; ``val``/``valid``/``validation``/
``dev`` for val, else ``test``/``testing`` (a set without a val list is
validated on its test list, as the raccoon recipe does). Its entries are read
as ``data.options.ids`` reads them (``read_id_list``: a CSV's ``filename``
column, a text file's first field per line), and it is taken only when they
clearly name the set: at least half of its distinct entries have an
annotation file (``<id>.xml``, or ``<id>.png`` for masks). A list taken with
entries that have none is said in one line naming the list (the check then
counts them as ``missing_annotation``); a list that names too few of the set,
two lists for one split, or one split without the other, leave the split
lists out, said in one line: the user gives ``data.options.ids``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from visiontk.console import info, plural, warn
from visiontk.data.formats.voc import read_id_list
from visiontk.errors import DataError, UserError

# Where split lists are looked for, relative to the data set's folder ("": the folder itself).
LIST_FOLDERS = ("", "data", "splits", "split", "lists", "sets")
LIST_SUFFIXES = (".csv", ".txt")
# Words of a list's name -> its split; for val, val's own words first, then test's.
TRAIN_WORDS = ("train", "training")
VAL_WORDS = (("val", "valid", "validation", "dev"), ("test", "testing"))
# The share of a list's entries that must have an annotation for the list to be the set's.
MIN_MATCHED = 0.5
SHOWN = 3  # missing entries named in the message


@dataclass
class SplitList:
    path: Path  # the file
    name: str  # as data.options.ids gives it: relative to the data set's folder
    ids: list[str]  # distinct entries, in file order
    missing: list[str]  # entries without an annotation file

    @property
    def matched(self) -> int:
        return len(self.ids) - len(self.missing)


def _words(path: Path) -> set[str]:
    return {w for w in re.split(r"[^a-z]+", path.stem.lower()) if w}


def _candidates(root: Path, skip: set[Path]) -> list[Path]:
    found = []
    for sub in LIST_FOLDERS:
        folder = root / sub if sub else root
        if folder in skip or not folder.is_dir():
            continue
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        found += [p for p in entries if p.suffix.lower() in LIST_SUFFIXES and p.is_file()]
    return found


def _role(path: Path) -> tuple[str, int] | None:
    """('train', 0) or ('val', rank: 0 val's words, 1 test's) of a list by its name, or None."""
    words = _words(path)
    train = bool(words & set(TRAIN_WORDS))
    val = [rank for rank, group in enumerate(VAL_WORDS) if words & set(group)]
    if train == bool(val):  # neither, or both ('train_val.csv'): not one split's list
        return None
    return ("train", 0) if train else ("val", val[0])


def _read(path: Path, root: Path, stems: set[str]) -> SplitList | None:
    try:
        listed = read_id_list(path)
    except (DataError, UserError) as e:
        if path.suffix.lower() == ".csv":
            info(f"{path}: not used as a split list ({str(e).removeprefix(f'{path}: ')})")
        return None
    ids = [image_id for _, image_id in listed]
    return SplitList(path, path.relative_to(root).as_posix(), ids, [i for i in ids if i not in stems])


def _pick(found: list[SplitList]) -> SplitList | None | str:
    """The one list of a split; None when there is none; 'ambiguous' when several tie."""
    if not found:
        return None
    if len(found) > 1:
        return "ambiguous"
    return found[0]


def find_split_lists(root: Path, annotations: Path, suffix: str, skip: tuple[Path, ...] = ()) -> dict | None:
    """``{'train': list, 'val': list}`` (paths relative to ``root``) for ``data.options.ids``, or None.

    ``annotations``: the folder the ids resolve in (``<id><suffix>``)."""
    stems = {p.stem for p in annotations.glob(f"*{suffix}")}
    by_role: dict[tuple[str, int], list[SplitList]] = {}
    for path in _candidates(root, set(skip)):
        role = _role(path)
        if role is None:
            continue
        read = _read(path, root, stems)
        if read is None or not read.ids:
            continue
        if read.matched < MIN_MATCHED * len(read.ids):
            warn(f"{read.path}: not used as the {role[0]} split: only {read.matched} of "
                 f"{plural(len(read.ids), 'listed image')} have an annotation in {annotations} "
                 f"(first not found: {', '.join(read.missing[:SHOWN])})")
            continue
        by_role.setdefault(role, []).append(read)
    if not by_role:
        return None
    train = _pick(by_role.get(("train", 0), []))
    val_rank = min((rank for (split, rank) in by_role if split == "val"), default=None)
    val = _pick(by_role.get(("val", val_rank), [])) if val_rank is not None else None
    for split, picked in (("train", train), ("val", val)):
        if picked == "ambiguous":
            names = [r.name for r in by_role[(split, 0 if split == "train" else val_rank)]]
            warn(f"{root}: split lists not used: several could be the {split} split ({', '.join(names)}); "
                 f"give data.options.ids")
            return None
    if train is None or val is None:
        one = train if train is not None else val
        assert isinstance(one, SplitList)
        warn(f"{one.path}: not used as a split list: no {'val' if train is not None else 'train'} list beside it "
             f"(looked for names with {', '.join(TRAIN_WORDS if train is None else VAL_WORDS[0] + VAL_WORDS[1])}); "
             f"give data.options.ids")
        return None
    assert isinstance(train, SplitList) and isinstance(val, SplitList)
    for lst in (train, val):
        if lst.missing:
            more = f" and {len(lst.missing) - SHOWN} more" if len(lst.missing) > SHOWN else ""
            warn(f"{lst.path}: {len(lst.missing)} of {plural(len(lst.ids), 'listed image')} have no annotation "
                 f"file in {annotations} ({', '.join(lst.missing[:SHOWN])}{more}): the check counts them as "
                 f"missing_annotation")
    shared = [i for i in train.ids if i in set(val.ids)]
    if shared:
        warn(f"{root}: {plural(len(shared), 'image')} {'is' if len(shared) == 1 else 'are'} in both split lists {train.name} and {val.name} "
             f"({', '.join(shared[:SHOWN])}): validation would score images the model trained on")
    info(f"{root}: split lists found: train {train.name} ({plural(len(train.ids), 'image')}), val {val.name} "
         f"({plural(len(val.ids), 'image')}) (data.options.ids; --set data.options.ids=null reads every annotation "
         f"in both)")
    return {"train": train.name, "val": val.name}
