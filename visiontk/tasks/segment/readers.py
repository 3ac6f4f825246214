"""Segmentation records and their masks: what ``SegmentationDataset`` reads per item.

A record is an image path plus where its mask comes from: an index-mask PNG
(mask folders, VOC) or COCO regions rasterised on load, and an optional value
table from stored values to class indices. Masks hold class indices (uint8),
0 = background, 255 = ignore. ``formats.py`` makes the records from what the
formats layer (``visiontk.data.formats``) read; the decoding of PNG masks and
COCO regions lives there too.

``check_records`` loads every mask once before training, so a bad one (size
differing from its image, class values >= num_classes other than 255,
unreadable) is reported under the bad-annotation policy before the first
epoch rather than mid-run.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from visiontk.data.formats.coco import rasterize
from visiontk.data.formats.files import image_size
from visiontk.data.formats.issues import BAD_IMAGE, BAD_MASK, Issues, Policy, ReadReport, check_policy
from visiontk.console import plural, warn
from visiontk.data.formats.masks import (IGNORE_INDEX, apply_value_table, load_index_mask, mask_header_size,
                                         unlisted_values)
from visiontk.errors import DataError

__all__ = ["IGNORE_INDEX", "CocoMask", "Policy", "SegmentationRecord", "check_policy", "check_records", "load_mask",
           "mask_problem"]


@dataclass(frozen=True)
class CocoMask:
    """COCO regions of one image, rasterised by ``load_mask``.

    ``objects`` holds ``(mask value, segmentation)`` pairs, the segmentation
    exactly as in the JSON (polygons, uncompressed or compressed RLE).
    """

    height: int
    width: int
    objects: tuple[tuple[int, Any], ...]
    source: str  # annotation file, for messages


@dataclass(frozen=True)
class SegmentationRecord:
    image: Path
    mask: Path | None = None
    coco: CocoMask | None = None
    # Optional lookup table applied to the decoded mask: ``values[raw] -> class
    # index`` (255 = ignore), -1 for raw values that must not occur.
    values: tuple[int, ...] | None = None

    @property
    def mask_name(self) -> str:
        if self.mask is not None:
            return str(self.mask)
        if self.coco is not None:
            return f"{self.coco.source} (masks of {self.image.name})"
        return f"{self.image} (no mask)"


def load_mask(record: SegmentationRecord) -> np.ndarray:
    """Class-index mask ``uint8 [H, W]`` of a record (no range/size checks)."""
    if record.mask is not None:
        mask = load_index_mask(record.mask)
    elif record.coco is not None:
        coco = record.coco
        mask = rasterize(coco.height, coco.width, coco.objects, coco.source, record.image.name)
    else:
        raise DataError(f"{record.image}: no mask")
    return mask if record.values is None else apply_value_table(record.values, mask, record.mask_name)


def mask_size(record: SegmentationRecord) -> tuple[int, int] | None:
    """(height, width) the record's mask will have, read without decoding it (None: no mask)."""
    if record.mask is not None:
        return mask_header_size(record.mask)
    if record.coco is not None:
        return record.coco.height, record.coco.width
    return None


def mask_problem(
    record: SegmentationRecord,
    mask: np.ndarray,
    image_hw: tuple[int, int],
    num_classes: int | None,
    values: np.ndarray | None = None,
) -> str | None:
    """One-line description of what is wrong with ``mask``, or None.

    ``values``: ``np.unique(mask)`` when the caller has it already.
    """
    if tuple(mask.shape[:2]) != tuple(image_hw):
        return (
            f"{record.mask_name}: mask size {mask.shape[1]}x{mask.shape[0]} differs from "
            f"image {record.image.name} size {image_hw[1]}x{image_hw[0]}"
        )
    if num_classes is not None:
        values = np.unique(mask) if values is None else values
        bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
        if bad.size:
            shown = ", ".join(str(v) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
            return (
                f"{record.mask_name}: class values {shown} >= num_classes {num_classes} "
                f"(only 255 = ignore is allowed above)"
            )
    return None


def check_records(
    records: Iterable[SegmentationRecord],
    num_classes: int | None,
    policy: Policy = "error",
    report: ReadReport | None = None,
    class_ids: Iterable[int] | None = None,
) -> list[SegmentationRecord]:
    """The records whose mask loads and fits its image; the others are problems under ``policy``.

    ``report``: the reader's, so that one report counts every problem of the split.
    ``class_ids``: the mask values that are classes (a class map); others
    (but 255) are ignored by the value table, and counted here for one warning.
    """
    issues = Issues("segmentation masks", policy, report)
    ids = None if class_ids is None else frozenset(int(i) for i in class_ids)
    pixels: Counter = Counter()
    masks: Counter = Counter()
    seen = np.zeros(256, dtype=bool)  # the class values met in the split's masks
    kept = []
    for record in records:
        try:
            image_hw = image_size(record.image)
        except DataError as exc:
            issues.message(BAD_IMAGE, str(exc))
            continue
        try:
            # The mask's size from its header (or its COCO image entry) before any decoding:
            # a 21000 x 21000 mask beside a 32 px image, or a COCO entry saying 100000 x
            # 100000, would otherwise be decoded or rasterised (10 GB) to learn it is wrong.
            stored_hw = mask_size(record)
            if stored_hw is not None and tuple(stored_hw) != tuple(image_hw):
                raise DataError(f"{record.mask_name}: mask size {stored_hw[1]}x{stored_hw[0]} differs from "
                                f"image {record.image.name} size {image_hw[1]}x{image_hw[0]}")
            if ids is None:
                mask = load_mask(record)
            else:
                raw = load_mask(replace(record, values=None))
                for value, count in unlisted_values(raw, ids).items():
                    pixels[value] += count
                    masks[value] += 1
                mask = raw if record.values is None else apply_value_table(record.values, raw, record.mask_name)
            # One pass for the range check and for the values met (the black/white warning below).
            values = np.unique(mask) if num_classes is not None else None
            problem = mask_problem(record, mask, image_hw, num_classes, values)
        except DataError as exc:
            problem = str(exc)
        if problem is None:
            kept.append(record)
            if values is not None:  # in range: below num_classes, or 255
                seen[values] = True
        else:
            issues.message(BAD_MASK, problem)
    issues.finish()
    source = report.source if report is not None else "segmentation masks"
    if (kept and ids is None and num_classes is not None and num_classes >= 2 and seen[IGNORE_INDEX]
            and not seen[1:IGNORE_INDEX].any()):
        # Black/white masks (0 and 255) read as class indices: 255 is ignore, so every
        # object pixel would be left out and training would see class 0 alone.
        warn(f"{source}: the masks (e.g. {kept[0].mask_name}) hold only 0 and 255, and 255 means ignore: no pixel is "
             f"of class 1"
             f"{'' if num_classes == 2 else f'..{num_classes - 1}'}; for masks stored black/white set "
             f"data.options.mask_values: {{0: 0, 255: 1}}")
    if pixels:
        # Not a bad annotation (the pixels are simply unlabelled): one line for the whole split.
        shown = ", ".join(f"{v} ({pixels[v]} px in {plural(masks[v], 'mask')})" for v in sorted(pixels)[:8])
        more = f" and {len(pixels) - 8} more" if len(pixels) > 8 else ""
        warn(f"{source}: mask values {shown}{more} are not in the class map: ignored (255)")
    return kept
