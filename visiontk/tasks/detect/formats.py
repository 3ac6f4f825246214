"""`data.format` for detection: coco | yolo | voc (xml), read by ``visiontk.data.formats``.

The formats layer parses each file into records whose boxes and labels are
what ``DetectionDataset`` consumes as they are; this adapter maps the recipe's
``data.options`` onto the readers, adds detection's one option of its own
(``min_visibility``, for the augmentation), checks the class list against
the expected one and says what was read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from visiontk.console import info, plural
from visiontk.data.formats.coco import CocoOptions, read_coco
from visiontk.data.formats.options import split_path, under
from visiontk.data.formats.records import AnnotatedSet
from visiontk.data.formats.voc import VocXmlOptions, read_voc
from visiontk.data.formats.yolo import YoloOptions, data_yaml_path, read_yolo
from visiontk.data.regular_files import file_present
from visiontk.errors import DataError, UserError
from visiontk.recipe import Number, Section, register_format_options


class _Augmented(Section):
    # Augmentation drops a box when less than this fraction of its area stays in
    # the image (crops, shifts); boxes partly outside are clipped to it.
    min_visibility: Annotated[Number, Field(ge=0.0, le=1.0)] = 0.2


class DetectCocoOptions(_Augmented, CocoOptions):
    """COCO's options and min_visibility."""


class DetectYoloOptions(_Augmented, YoloOptions):
    """YOLO's options and min_visibility."""


class DetectVocOptions(_Augmented, VocXmlOptions):
    """VOC xml's options and min_visibility."""


register_format_options("coco", DetectCocoOptions, task="detect")
register_format_options("yolo", DetectYoloOptions, task="detect")
register_format_options("voc", DetectVocOptions, task="detect")


def split_name(recipe, split: str) -> str:
    """'train' / 'val' name the recipe's splits; anything else is a split name itself."""
    return getattr(recipe.data, split) if split in ("train", "val") else split


def annotation_source(recipe, split: str, root: Path) -> Path:
    """The file or folder whose existence says a split is there."""
    opts = recipe.data.options
    if recipe.data.format == "yolo":
        return data_yaml_path(root, opts.data_yaml)
    return under(root, split_path(opts.annotations, split_name(recipe, split), "annotations"))


def read_split(recipe, split: str, classes: list[str] | None = None, root: str | None = None) -> AnnotatedSet:
    """The records of one split, through the reader of data.format.

    ``classes`` (a checkpoint's or the training split's), else data.classes,
    is the label order expected: a file giving another is refused.
    """
    found, where = read_annotations(recipe, split, classes, root)
    if not found.records:
        raise DataError(f"{where}: split '{split_name(recipe, split)}' has no usable images")
    report = found.report
    n_boxes = sum(len(r.labels) for r in found.records)
    crowd = f", {report.crowd} crowd annotations left out" if report.crowd else ""
    info(f"{split_name(recipe, split)}: {plural(len(found.records), 'image')}, {plural(n_boxes, 'box')}, "
         f"{plural(len(found.classes), 'class')}{crowd}; {report.summary()}")
    return found


def read_annotations(recipe, split: str, classes: list[str] | None = None, root: str | None = None
                     ) -> tuple[AnnotatedSet, Path]:
    """``read_split`` without its verdict (`visiontk data check` reports an empty split
    with the rest): the records, possibly none, and the file or folder they come from."""
    d = recipe.data
    root_dir = Path(root or d.root)
    # YOLO: data.root may be the data yaml itself (data_yaml_path).
    if not root_dir.is_dir() and not (d.format == "yolo" and file_present(root_dir)):
        raise UserError(f"{root_dir}: data root does not exist (data.root)")
    opts, name, policy = d.options, split_name(recipe, split), d.bad_annotations
    wanted = list(classes) if classes is not None else (list(d.classes) if d.classes else None)
    where = annotation_source(recipe, split, root_dir)
    if d.format == "coco":
        found = read_coco(where, under(root_dir, split_path(opts.images, name, "images")), policy)
    elif d.format == "yolo":
        found = read_yolo(where, name, policy, within=root_dir if root_dir.is_dir() else None)
    else:
        ids = None if opts.ids is None else under(root_dir, split_path(opts.ids, name, "ids"))
        found = read_voc(where, under(root_dir, split_path(opts.images, name, "images")), wanted, policy, ids)
    if wanted is not None and found.classes != wanted:
        # COCO categories and YOLO names fix the label order: a different list
        # would silently train (or score) class k as another class.
        raise DataError(f"{where}: classes {found.classes} differ from the expected {wanted} "
                        f"(data.classes, the training split, or the checkpoint)")
    return found, where
