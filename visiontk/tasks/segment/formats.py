"""`data.format` adapters for segmentation: recipe options -> records and class names.

Three on-disk layouts, each with its own `data.options` model (validated with
the rest of the recipe, so a typo is named with the closest valid key):

- ``masks``: image and mask folders, masks hold class indices (255 = ignore);
- ``voc``: Pascal VOC (``JPEGImages``, palette PNGs in ``SegmentationClass``,
  split lists in ``ImageSets/Segmentation``);
- ``coco``: a COCO instances file whose polygons / RLE are rasterised.

The readers do the work (``readers.py``); this module only maps recipe keys
onto them, resolves the class names and applies the value table that turns
stored mask values into class indices (``mask_values``, ``loss.ignore_index``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

from pydantic import AfterValidator, Field

from visiontk.errors import UserError
from visiontk.recipe import Fraction, Section, rule_error

from .readers import (
    IGNORE_INDEX,
    SegmentationRecord,
    check_records,
    read_coco_segmentation,
    read_mask_folders,
    read_voc_segmentation,
    value_table,
)

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]


def _stored_values(mapping: dict) -> dict:
    # A rule rather than dict[Byte, Byte]: the message names the offending pair.
    for raw, index in mapping.items():
        if not (_is_byte(raw) and _is_byte(index)):
            raise rule_error(f"maps stored values 0-255 to class indices 0-255 (255 = ignore), got {raw!r}: {index!r}",
                             show_value=False)
    return mapping


def _is_byte(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255


# A folder or file relative to data.root; {split} is replaced by data.train / data.val.
RelativePath = Annotated[str, Field(min_length=1)]


class MaskFolderOptions(Section):
    images: RelativePath = "{split}/images"
    masks: RelativePath = "{split}/masks"
    # Mask of images/<stem>.<ext> is masks/<stem><mask_suffix>.png.
    mask_suffix: str = ""
    # Stored value -> class index, for masks that are not stored as class indices
    # (e.g. {0: 0, 255: 1} for binary masks saved as black/white). Values not
    # listed are bad annotations.
    mask_values: Optional[Annotated[dict, AfterValidator(_stored_values)]] = None
    # > 0: hold out this fraction of the data.train folder (the last images in
    # sorted order) as the validation split, for sets shipped without one.
    val_fraction: Fraction = 0.0


class VocOptions(Section):
    """Split lists are ImageSets/Segmentation/<data.train|data.val>.txt under data.root: no options."""


class CocoOptions(Section):
    annotations: RelativePath = "annotations/instances_{split}.json"
    images: RelativePath = "images/{split}"


# segment and detect still read coco and voc with options of their own; with one
# parser per format (data/formats/, issue 12 item 3) each format registers one
# model with visiontk.recipe.register_format_options and this mapping goes.
FORMAT_OPTIONS: dict[str, type[Section]] = {"masks": MaskFolderOptions, "voc": VocOptions, "coco": CocoOptions}


def split_folder(recipe, split: str) -> str:
    """'train' / 'val' name the recipe's splits; anything else is taken as a split name itself."""
    return {"train": recipe.data.train, "val": recipe.data.val}.get(split, split)


def class_names(recipe, root: Path, given: list[str] | None) -> list[str] | None:
    """Class names from the checkpoint, the recipe, or the data set (None: the reader says, for COCO)."""
    if given:
        return list(given)
    if recipe.data.classes:
        return list(recipe.data.classes)
    listed = root / "classes.txt"
    if listed.is_file():
        names = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) < 2:
            raise UserError(f"{listed}: needs at least 2 class names, one per line (index 0 first)")
        return names
    if recipe.data.format == "voc":
        return list(VOC_CLASSES)
    if recipe.data.format == "coco":
        return None
    raise UserError(f"data.classes: not given in the recipe and {listed} does not exist; "
                    "list the class names, index 0 (usually background) first")


def _values(recipe, opts) -> tuple[int, ...] | None:
    """The stored-value -> class table of the recipe, or None when masks already hold class indices."""
    mapping = opts.mask_values if isinstance(opts, MaskFolderOptions) else None
    ignore = recipe.loss.ignore_index
    if mapping is None and ignore == IGNORE_INDEX:
        return None
    if mapping is None:
        mapping = {v: v for v in range(256)}
    # loss.ignore_index names a class whose pixels count in neither loss nor
    # metrics: folded into 255, which every later stage ignores.
    return value_table({raw: (IGNORE_INDEX if index == ignore else index) for raw, index in mapping.items()})


def read_records(recipe, split: str, classes: list[str] | None, root: str | None = None
                 ) -> tuple[list[SegmentationRecord], list[str]]:
    """Checked records of one split and the class names (index 0 first)."""
    data = recipe.data
    root_dir = Path(root or data.root)
    opts = data.options
    policy = data.bad_annotations
    names = class_names(recipe, root_dir, classes)
    folder = split_folder(recipe, split)
    values = _values(recipe, opts)

    if data.format == "masks":
        held_out = opts.val_fraction > 0 and split in ("train", "val")
        which = data.train if held_out else folder
        images = root_dir / opts.images.replace("{split}", which)
        masks = root_dir / opts.masks.replace("{split}", which)
        records = read_mask_folders(images, masks, None, policy, opts.mask_suffix, check=False)
        if held_out:
            n_val = min(max(1, round(len(records) * opts.val_fraction)), len(records) - 1)
            records = records[-n_val:] if split == "val" else records[:-n_val]
        where = images
    elif data.format == "voc":
        records = read_voc_segmentation(root_dir, folder, None, policy, check=False)
        where = root_dir / "ImageSets" / "Segmentation" / f"{folder}.txt"
    else:
        ann = root_dir / opts.annotations.replace("{split}", folder)
        image_root = root_dir / opts.images.replace("{split}", folder)
        if not ann.is_file():
            raise UserError(f"{ann}: COCO annotation file does not exist (data.options.annotations)")
        records, read_names = read_coco_segmentation(ann, image_root, names[1:] if names else None, policy, check=False)
        names = [names[0], *read_names[1:]] if names else read_names
        where = ann
    if values is not None:
        records = [dataclasses.replace(r, values=values) for r in records]
    records = check_records(records, len(names), policy)
    if not records:
        raise UserError(f"{where}: no usable image/mask pairs for split '{split}'")
    return records, names
