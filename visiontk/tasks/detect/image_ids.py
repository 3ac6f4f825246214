"""The COCO image id of an image that belongs to the set a detector was trained on.

A checkpoint keeps its recipe: when it was trained on COCO files and a
predicted image lies in one of the recipe's image folders (data.root +
data.options.images for the train and val splits), its id is the one that
split's annotation file gives its ``file_name``, so ``detect predict
--format coco`` on the set's own images needs no flag to match the ground
truth. Relative roots are taken from the current folder, as training did.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from visiontk.data.formats.coco import image_ids
from visiontk.data.formats.options import split_path, under
from visiontk.errors import UserError


@lru_cache(maxsize=8)
def _folders(data: tuple) -> tuple[tuple[str, str], ...]:
    """(absolute image folder, annotation file) of each split of a COCO recipe's data section."""
    fmt, root, train, val, images, annotations = data
    found = []
    for split in dict.fromkeys((train, val)):
        try:
            folder = under(Path(root), split_path(images, split, "images"))
            ann = under(Path(root), split_path(annotations, split, "annotations"))
        except UserError:  # a mapping without this split
            continue
        found.append((os.path.abspath(folder), str(ann)))
    return tuple(found)


@lru_cache(maxsize=8)
def _ids(ann: str, mtime: float) -> dict:
    return image_ids(Path(ann))


def _key(value) -> object:
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


def recipe_image_id(recipe: dict | None, path: str) -> int | str | None:
    """The id of ``path`` in the COCO files of a checkpoint's recipe, or None (not a COCO recipe, not inside)."""
    data = (recipe or {}).get("data") or {}
    opts = data.get("options") or {}
    if data.get("format") != "coco" or "images" not in opts or "annotations" not in opts:
        return None
    key = ("coco", data.get("root"), data.get("train"), data.get("val"), _key(opts["images"]), _key(opts["annotations"]))
    full = os.path.abspath(path)
    for folder, ann in _folders(key):
        if full.startswith(folder + os.sep) and os.path.isfile(ann):
            name = Path(os.path.relpath(full, folder)).as_posix()
            return _ids(ann, os.path.getmtime(ann)).get(name)
    return None
