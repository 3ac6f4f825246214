"""A folder without a recipe: which layout it is, as the shipped templates' data sections describe them.

The template of the layout found (recipes/<task>/<format>.yaml) gives the
rest of the recipe -- input size, YOLO-v1's S and B -- with ``data.root`` set
to the folder and the split names and paths found in it; ``--set`` applies on
top, as for a recipe. Looked for in this order, within ``--task`` when given:

* a YOLO data yaml (the path itself, or a ``*.yaml`` in the folder with
  ``names`` and ``train``/``val``): detect, yolo;
* ``annotations/instances_<split>.json``: COCO (detect; segment with --task);
* ``Annotations/`` or ``SegmentationClass/`` beside ``JPEGImages/``: VOC;
* ``<split>/images`` + ``<split>/masks`` or ``images/<split>`` + ``masks/<split>``: mask folders;
* ``<split>/<class>/<image>``: ImageFolder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from visiontk.console import info
from visiontk.data.formats.files import load_yaml
from visiontk.data.formats.masks import IGNORE_INDEX, load_index_mask
from visiontk.data.formats.yolo import YAML_SUFFIXES
from visiontk.data.images import is_image_file
from visiontk.errors import DataError, UserError
from visiontk.recipe import apply_overrides, read_recipe

TEMPLATES = {("detect", "coco"): "detect/coco", ("detect", "yolo"): "detect/yolo", ("detect", "voc"): "detect/voc",
             ("segment", "masks"): "segment/masks", ("segment", "voc"): "segment/voc",
             ("segment", "coco"): "segment/coco", ("classify", "imagefolder"): "classify/imagefolder"}
LAYOUTS = ("YOLO data yaml", "COCO annotations/instances_<split>.json", "VOC Annotations|SegmentationClass + JPEGImages",
           "mask folders <split>/images + <split>/masks", "ImageFolder <split>/<class>/<image>")


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
    if not ((root / folder).is_dir() and (root / "JPEGImages").is_dir()):
        return None
    lists = root / "ImageSets" / ("Main" if task == "detect" else "Segmentation")
    options = {} if (lists / "train.txt").is_file() else {"ids": None}
    # Without a class list: the names the files hold (detect), VOC's 21 or classes.txt (segment).
    return {"train": "train", "val": "val", "options": options, "classes": None}


def _mask_layout(root: Path) -> dict | None:
    """The image and mask folder options of a mask-folder layout, or None."""
    if (root / "train" / "images").is_dir() and (root / "train" / "masks").is_dir():
        return {"images": "{split}/images", "masks": "{split}/masks"}
    if (root / "images" / "train").is_dir() and (root / "masks" / "train").is_dir():
        return {"images": "images/{split}", "masks": "masks/{split}"}
    return None


def _mask_folders(root: Path) -> dict | None:
    options = _mask_layout(root)
    if options is None:
        return None
    data: dict = {"train": "train", "val": "val", "options": options, "classes": None}
    named = next((p for p in _yamls(root) if "names" in (_safe_yaml(p) or {})), None)
    if named is not None:
        options["data_yaml"] = named.name
    elif not (root / "classes.txt").is_file():
        # No class names anywhere: the classes are the mask values met, named by their value.
        top = _largest_mask_value(root / options["masks"].format(split="train"))
        data["classes"] = [str(v) for v in range(max(top + 1, 2))]
        info(f"{root}: no class names (classes.txt, a yaml's names): classes are the mask values 0..{max(top, 1)}")
    return data


def _safe_yaml(path: Path) -> dict | None:
    try:
        cfg = load_yaml(path)
    except DataError:
        return None
    return cfg if isinstance(cfg, dict) else None


def _yamls(root: Path) -> list[Path]:
    return [p for p in sorted(root.iterdir()) if p.suffix.lower() in YAML_SUFFIXES and p.is_file()]


def _largest_mask_value(masks: Path) -> int:
    top = 0
    for p in sorted(masks.rglob("*.png")):
        try:
            values = np.unique(load_index_mask(p))
        except DataError:
            continue  # the check reports it
        values = values[values != IGNORE_INDEX]
        if values.size:
            top = max(top, int(values.max()))
    return top


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
                    f"give a recipe, or --task")


def layout_recipe(target: Path, task: str | None, overrides: list[str]) -> tuple[dict, str, str]:
    """(raw recipe, its source for messages, the layout's name) for a folder or data yaml."""
    task, fmt, data = detect_layout(target, task)
    raw, _ = read_recipe(TEMPLATES[(task, fmt)])
    section = raw.setdefault("data", {})
    options = {**(section.get("options") or {}), **data.pop("options", {})}
    section.update({"format": fmt, "root": str(target), **data, "options": options})
    if fmt == "coco" and task == "segment":
        section.pop("classes", None)
    raw["name"] = target.resolve().stem or "data"
    raw.pop("stages", None)
    return apply_overrides(raw, overrides), str(target), f"layout found, template {TEMPLATES[(task, fmt)]}"
