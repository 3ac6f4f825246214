"""`data.format` adapters for segmentation: recipe options -> records and class names.

Three on-disk layouts, each with its own `data.options` schema (validated like
every recipe section, so a typo is named with the closest valid key):

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
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from visiontk.errors import UserError
from visiontk.recipe import build_dataclass

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


@dataclass
class MaskFolderOptions:
    # Folders relative to data.root; {split} is replaced by data.train / data.val.
    images: str = "{split}/images"
    masks: str = "{split}/masks"
    # Mask of images/<stem>.<ext> is masks/<stem><mask_suffix>.png.
    mask_suffix: str = ""
    # Stored value -> class index, for masks that are not stored as class indices
    # (e.g. {0: 0, 255: 1} for binary masks saved as black/white). Values not
    # listed are bad annotations.
    mask_values: Optional[dict] = None
    # > 0: hold out this fraction of the data.train folder (the last images in
    # sorted order) as the validation split, for sets shipped without one.
    val_fraction: float = 0.0


@dataclass
class VocOptions:
    # Split lists are ImageSets/Segmentation/<data.train|data.val>.txt under data.root.
    pass


@dataclass
class CocoOptions:
    # Relative to data.root; {split} is replaced by data.train / data.val.
    annotations: str = "annotations/instances_{split}.json"
    images: str = "images/{split}"


FORMAT_OPTIONS: dict[str, type] = {"masks": MaskFolderOptions, "voc": VocOptions, "coco": CocoOptions}


def validate_data(recipe, source: str) -> None:
    """Check `data.format` and `data.options`; store the options back with defaults filled."""
    data = recipe.data
    if data.format not in FORMAT_OPTIONS:
        raise UserError(f"{source}: 'data.format' must be one of {', '.join(map(repr, FORMAT_OPTIONS))} for segment, "
                        f"got {data.format!r}")
    if not data.root:
        raise UserError(f"{source}: 'data.root' is required")
    opts = build_dataclass(FORMAT_OPTIONS[data.format], data.options, "data.options", source)
    if isinstance(opts, MaskFolderOptions):
        if not 0.0 <= opts.val_fraction < 1.0:
            raise UserError(f"{source}: 'data.options.val_fraction' must be in [0, 1), got {opts.val_fraction!r}")
        if opts.mask_values is not None:
            for raw, index in opts.mask_values.items():
                if not (_is_byte(raw) and _is_byte(index)):
                    raise UserError(f"{source}: 'data.options.mask_values' maps stored values 0-255 to class indices "
                                    f"0-255 (255 = ignore), got {raw!r}: {index!r}")
    for key in ("images", "masks", "annotations"):
        value = getattr(opts, key, None)
        if value is not None and not value:
            raise UserError(f"{source}: 'data.options.{key}' must not be empty")
    data.options = dataclasses.asdict(opts)
    if data.classes is not None and len(data.classes) < 2:
        raise UserError(f"{source}: 'data.classes' needs at least 2 names (index 0 first, e.g. background), "
                        f"got {data.classes!r}")


def _is_byte(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255


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


def _values(recipe, opts: dict) -> tuple[int, ...] | None:
    """The stored-value -> class table of the recipe, or None when masks already hold class indices."""
    mapping = opts.get("mask_values")
    ignore = recipe.loss.get("ignore_index", IGNORE_INDEX)
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
        held_out = opts["val_fraction"] > 0 and split in ("train", "val")
        which = data.train if held_out else folder
        images = root_dir / opts["images"].replace("{split}", which)
        masks = root_dir / opts["masks"].replace("{split}", which)
        records = read_mask_folders(images, masks, None, policy, opts["mask_suffix"], check=False)
        if held_out:
            n_val = min(max(1, round(len(records) * opts["val_fraction"])), len(records) - 1)
            records = records[-n_val:] if split == "val" else records[:-n_val]
        where = images
    elif data.format == "voc":
        records = read_voc_segmentation(root_dir, folder, None, policy, check=False)
        where = root_dir / "ImageSets" / "Segmentation" / f"{folder}.txt"
    else:
        ann = root_dir / opts["annotations"].replace("{split}", folder)
        image_root = root_dir / opts["images"].replace("{split}", folder)
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
