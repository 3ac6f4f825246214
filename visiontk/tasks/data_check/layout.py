"""A folder without a recipe: which layout it is, as the shipped templates' data sections describe them.

The template of the layout found (recipes/<task>/<format>.yaml) gives the
rest of the recipe -- input size, YOLO-v1's S and B -- with ``data.root`` set
to the folder and the split names and paths found in it; ``--set`` applies on
top, as for a recipe. Looked for in this order, within ``--task`` when given:

* a YOLO data yaml (the path itself, or a ``*.yaml`` in the folder with
  ``names`` and ``train``/``val``): detect, yolo;
* ``annotations/instances_<split>.json``: COCO (detect; segment with --task);
* ``Annotations/`` or ``SegmentationClass/`` beside ``JPEGImages/``: VOC (detect also
  ``annotations/*.xml`` beside ``images/``); without ImageSets lists, train/val lists beside
  it (``data/train_labels.csv``, ...: split_lists.py) are its ``data.options.ids``;
* ``<split>/images`` + ``<split>/masks`` or ``images/<split>`` + ``masks/<split>`` (also named
  ``image`` and ``mask``, ``labels`` or ``label``, as U-Net sets often are): mask folders; masks
  that hold only 0 and 255 are read as black/white (``mask_values: {0: 0, 255: 1}``), and a set
  without a ``val`` folder holds out 20 % of ``train`` (``val_fraction``);
* ``<split>/<class>/<image>``: ImageFolder.
"""
from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path

import numpy as np

from visiontk.console import info
from visiontk.data.formats.files import load_yaml
from visiontk.data.formats.masks import IGNORE_INDEX, load_index_mask
from visiontk.data.formats.yolo import YAML_SUFFIXES
from visiontk.data.images import is_image_file
from visiontk.errors import DataError, UserError
from visiontk.recipe import apply_overrides, read_recipe

from .split_lists import find_split_lists

# Notes on what the layout decided, each with the recipe key it set: `layout_recipe`
# prints them once the user's --set overrides are known, and not those whose key an
# override replaced (a 'read as black/white' note after --set data.options.mask_values=null
# would describe what the check did not do).
_notes: ContextVar[list[tuple[str, str]] | None] = ContextVar("layout_notes", default=None)


def _note(key: str, text: str) -> None:
    held = _notes.get()
    if held is None:
        info(text)
    else:
        held.append((key, text))

TEMPLATES = {("detect", "coco"): "detect/coco", ("detect", "yolo"): "detect/yolo", ("detect", "voc"): "detect/voc",
             ("segment", "masks"): "segment/masks", ("segment", "voc"): "segment/voc",
             ("segment", "coco"): "segment/coco", ("classify", "imagefolder"): "classify/imagefolder"}
LAYOUTS = ("YOLO data yaml", "COCO annotations/instances_<split>.json",
           "VOC Annotations|SegmentationClass + JPEGImages (or annotations/*.xml + images)",
           "mask folders <split>/images|image + <split>/masks|mask|labels|label",
           "ImageFolder <split>/<class>/<image>")
# Mask-folder names, in the order tried: the template's first.
IMAGE_FOLDERS = ("images", "image")
MASK_FOLDERS = ("masks", "mask", "labels", "label")
# The share of data.train held out when a mask set has no val folder.
VAL_FRACTION = 0.2


def _yolo_yaml(path: Path) -> bool:
    cfg = _safe_yaml(path)
    return cfg is not None and "names" in cfg and any(k in cfg for k in ("train", "val"))


def _pick(names: list[str], prefix: str, default: str) -> str:
    return next((n for n in names if n == default), next((n for n in names if n.startswith(prefix)), default))


def _coco(root: Path) -> dict | None:
    files = sorted(p.name for p in (root / "annotations").glob("instances_*.json"))
    if not files:
        return None
    splits = [f[len("instances_"):-len(".json")] for f in files]
    train, val = _pick(splits, "train", "train"), _pick(splits, "val", "val")
    images = "images/{split}" if (root / "images" / train).is_dir() else "{split}"
    return {"train": train, "val": val, "options": {"annotations": "annotations/instances_{split}.json",
                                                    "images": images}}


def _voc(root: Path, task: str) -> dict | None:
    folder = "Annotations" if task == "detect" else "SegmentationClass"
    options: dict = {}
    if not ((root / folder).is_dir() and (root / "JPEGImages").is_dir()):
        # Pascal VOC xml outside VOCdevkit's names (the raccoon set: annotations/*.xml + images/).
        if not (task == "detect" and (root / "annotations").is_dir() and (root / "images").is_dir()
                and next((root / "annotations").glob("*.xml"), None) is not None):
            return None
        options = {"annotations": "annotations", "images": "images"}
    lists = root / "ImageSets" / ("Main" if task == "detect" else "Segmentation")
    if not (lists / "train.txt").is_file():
        # Split lists beside the set (the raccoon set's data/train_labels.csv, data/test_labels.csv).
        ann = root / options.get("annotations", folder)
        images = root / options.get("images", "JPEGImages")
        found = find_split_lists(root, ann, ".xml" if task == "detect" else ".png", skip=(ann, images))
        options["ids"] = found
        if found is None:
            _note("data.options.ids", f"{root}: no ImageSets split lists: train and val both read every annotation, "
                  f"unless data.options.ids gives them (a list, or a CSV with a filename column, per split)")
    # Without a class list: the names the files hold (detect), VOC's 21 or classes.txt (segment).
    return {"train": "train", "val": "val", "options": options, "classes": None}


def _mask_layout(root: Path) -> dict | None:
    """The image and mask folder options of a mask-folder layout, or None."""
    for images in IMAGE_FOLDERS:
        for masks in MASK_FOLDERS:
            for image_dir, mask_dir in ((f"{{split}}/{images}", f"{{split}}/{masks}"),
                                        (f"{images}/{{split}}", f"{masks}/{{split}}")):
                found = root / mask_dir.format(split="train")
                # A YOLO set's labels/train holds .txt files: only PNGs make other names a mask folder.
                if ((root / image_dir.format(split="train")).is_dir() and found.is_dir()
                        and (masks == MASK_FOLDERS[0] or next(found.rglob("*.png"), None) is not None)):
                    return {"images": image_dir, "masks": mask_dir}
    return None


def _mask_folders(root: Path) -> dict | None:
    options = _mask_layout(root)
    if options is None:
        return None
    data: dict = {"train": "train", "val": "val", "options": options, "classes": None}
    if not (root / options["images"].format(split="val")).is_dir():
        options["val_fraction"] = VAL_FRACTION
        _note("data.options.val_fraction",
              f"{root}: no val split: the last {VAL_FRACTION:.0%} of train is held out (data.options.val_fraction)")
    named = next((p for p in _yamls(root) if "names" in (_safe_yaml(p) or {})), None)
    if named is not None:
        options["data_yaml"] = named.name
        return data
    values = _mask_values(root / options["masks"].format(split="train"))
    if set(values) == {0, IGNORE_INDEX}:
        # Black/white masks: 255 is the object here, not VOC's ignore (it would leave class 0 alone).
        options["mask_values"] = {0: 0, IGNORE_INDEX: 1}
        _note("data.options.mask_values",
              f"{root}: masks hold only 0 and 255: read as black/white, 255 -> class 1 (data.options.mask_values)")
        if not (root / "classes.txt").is_file():
            data["classes"] = ["0", "255"]
    elif not (root / "classes.txt").is_file():
        # No class names anywhere: the classes are the mask values met, named by their value.
        top = max((v for v in values if v != IGNORE_INDEX), default=0)
        data["classes"] = [str(v) for v in range(max(top + 1, 2))]
        _note("data.classes",
              f"{root}: no class names (classes.txt, a yaml's names): classes are the mask values 0..{max(top, 1)}")
    return data


def _safe_yaml(path: Path) -> dict | None:
    try:
        cfg = load_yaml(path)
    except DataError:
        return None
    return cfg if isinstance(cfg, dict) else None


def _yamls(root: Path) -> list[Path]:
    return [p for p in sorted(root.iterdir()) if p.suffix.lower() in YAML_SUFFIXES and p.is_file()]


def _mask_values(masks: Path) -> list[int]:
    """The values the masks of a folder hold, 255 included (sorted)."""
    seen = np.zeros(256, dtype=bool)
    for p in sorted(masks.rglob("*.png")):
        try:
            seen |= np.bincount(load_index_mask(p).ravel(), minlength=256).astype(bool)
        except DataError:
            continue  # the check reports it
    return np.flatnonzero(seen).tolist()


def _imagefolder(root: Path) -> dict | None:
    train = root / "train"
    if not train.is_dir():
        return None
    classes = [d for d in train.iterdir() if d.is_dir()]
    if not any(is_image_file(f) for d in classes for f in d.iterdir()):
        return None
    return {"train": "train", "val": "val"}


def detect_layout(target: Path, task: str | None = None) -> tuple[str, str, dict]:
    """(task, format, the data section found) of a folder or a YOLO data yaml."""
    tasks = (task,) if task else ("detect", "segment", "classify")
    if target.is_file():
        if "detect" in tasks and target.suffix.lower() in YAML_SUFFIXES and _yolo_yaml(target):
            return "detect", "yolo", {}
        raise UserError(f"{target}: not a YOLO data yaml (a mapping with 'names' and 'train'/'val'); give a folder "
                        f"or a recipe")
    if not target.is_dir():
        raise UserError(f"{target}: no such recipe, folder or data yaml")
    if "detect" in tasks and _mask_layout(target) is None:  # a mask set's yaml names its mask values
        found = next((p for p in _yamls(target) if _yolo_yaml(p)), None)
        if found is not None:
            return "detect", "yolo", {"options": {"data_yaml": found.name}}
    for t, fmt, probe in (("detect", "coco", _coco), ("segment", "coco", _coco),
                          ("detect", "voc", lambda r: _voc(r, "detect")), ("segment", "voc", lambda r: _voc(r, "segment")),
                          ("segment", "masks", _mask_folders), ("classify", "imagefolder", _imagefolder)):
        if t in tasks:
            data = probe(target)
            if data is not None:
                return t, fmt, data
    within = f" for --task {task}" if task else ""
    raise UserError(f"{target}: no data set layout found{within} (looked for: {'; '.join(LAYOUTS)}); "
                    f"give a recipe{'' if task else ', or --task'}")


def layout_recipe(target: Path, task: str | None, overrides: list[str]) -> tuple[dict, str, str]:
    """(raw recipe, its source for messages, the layout's name) for a folder or data yaml."""
    held: list[tuple[str, str]] = []
    token = _notes.set(held)
    try:
        task, fmt, data = detect_layout(target, task)
    finally:
        _notes.reset(token)
    replaced = {text.split("=", 1)[0].strip() for text in overrides}
    for key, text in held:
        if not any(key == r or key.startswith(r + ".") for r in replaced):
            info(text)
    raw, _ = read_recipe(TEMPLATES[(task, fmt)])
    section = raw.setdefault("data", {})
    options = {**(section.get("options") or {}), **data.pop("options", {})}
    section.update({"format": fmt, "root": str(target), **data, "options": options})
    if fmt == "coco" and task == "segment":
        section.pop("classes", None)
    raw["name"] = target.resolve().stem or "data"
    raw.pop("stages", None)
    return apply_overrides(raw, overrides), str(target), f"layout found, template {TEMPLATES[(task, fmt)]}"
