"""`data.format` for detection: coco | yolo | voc (xml), read by ``visiontk.data.formats``.

The formats layer parses each file into records whose boxes and labels are
what ``DetectionDataset`` consumes as they are; this adapter maps the recipe's
``data.options`` onto the readers, adds detection's one option of its own
(``min_visibility``, for the augmentation), checks the class list against
the expected one and says what was read.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from visiontk.console import info
from visiontk.data.formats.coco import CocoOptions, read_coco
from visiontk.data.formats.options import check_options, check_range, split_path, under
from visiontk.data.formats.records import AnnotatedSet
from visiontk.data.formats.voc import VocXmlOptions, read_voc
from visiontk.data.formats.yolo import YoloOptions, read_yolo
from visiontk.errors import DataError, UserError
from visiontk.recipe import build_dataclass


@dataclass
class _Augmented:
    # Augmentation drops a box when less than this fraction of its area stays in
    # the image (crops, shifts); boxes partly outside are clipped to it.
    min_visibility: float = 0.2

    def check(self, source: str) -> None:
        check_range(self.min_visibility, 0.0 <= self.min_visibility <= 1.0, "data.options.min_visibility",
                    "must be in [0, 1]", source)


@dataclass
class DetectCocoOptions(_Augmented, CocoOptions):
    pass


@dataclass
class DetectYoloOptions(_Augmented, YoloOptions):
    pass


@dataclass
class DetectVocOptions(_Augmented, VocXmlOptions):
    pass


FORMAT_OPTIONS = {"coco": DetectCocoOptions, "yolo": DetectYoloOptions, "voc": DetectVocOptions}


def validate_data(recipe, source: str) -> None:
    """Check `data.format` and `data.options`; store the options back with defaults filled in
    (the saved recipe says exactly what was read)."""
    d = recipe.data
    if d.format not in FORMAT_OPTIONS:
        raise UserError(f"{source}: 'data.format' must be one of {', '.join(FORMAT_OPTIONS)} for detect, got {d.format!r}")
    if not d.root:
        raise UserError(f"{source}: 'data.root' is required")
    if d.synthetic is not None and d.format == "voc":
        raise UserError(f"{source}: 'data.synthetic' writes COCO and YOLO files: use data.format coco or yolo")
    options = build_dataclass(FORMAT_OPTIONS[d.format], d.options, "data.options", source)
    check_options(options, source)
    d.options = dataclasses.asdict(options)


def split_name(recipe, split: str) -> str:
    """'train' / 'val' name the recipe's splits; anything else is a split name itself."""
    return getattr(recipe.data, split) if split in ("train", "val") else split


def annotation_source(recipe, split: str, root: Path) -> Path:
    """The file or folder whose existence says a split is there."""
    opts = recipe.data.options
    if recipe.data.format == "yolo":
        return under(root, opts["data_yaml"])
    return under(root, split_path(opts["annotations"], split_name(recipe, split), "annotations"))


def read_split(recipe, split: str, classes: list[str] | None = None, root: str | None = None) -> AnnotatedSet:
    """The records of one split, through the reader of data.format.

    ``classes`` (a checkpoint's or the training split's), else data.classes,
    is the label order expected: a file giving another is refused.
    """
    d = recipe.data
    root_dir = Path(root or d.root)
    if not root_dir.is_dir():
        raise UserError(f"{root_dir}: data root does not exist (data.root)")
    opts, name, policy = d.options, split_name(recipe, split), d.bad_annotations
    wanted = list(classes) if classes is not None else (list(d.classes) if d.classes else None)
    where = annotation_source(recipe, split, root_dir)
    if d.format == "coco":
        found = read_coco(where, under(root_dir, split_path(opts["images"], name, "images")), policy)
    elif d.format == "yolo":
        found = read_yolo(where, name, policy)
    else:
        ids = None if opts["ids"] is None else under(root_dir, split_path(opts["ids"], name, "ids"))
        found = read_voc(where, under(root_dir, split_path(opts["images"], name, "images")), wanted, policy, ids)
    if wanted is not None and found.classes != wanted:
        # COCO categories and YOLO names fix the label order: a different list
        # would silently train (or score) class k as another class.
        raise DataError(f"{where}: classes {found.classes} differ from the expected {wanted} "
                        f"(data.classes, the training split, or the checkpoint)")
    if not found.records:
        raise DataError(f"{where}: split '{name}' has no usable images")
    report = found.report
    n_boxes = sum(len(r.labels) for r in found.records)
    crowd = f", {report.crowd} crowd annotations left out" if report.crowd else ""
    info(f"{name}: {len(found.records)} images, {n_boxes} boxes, {len(found.classes)} classes{crowd}; {report.summary()}")
    return found
