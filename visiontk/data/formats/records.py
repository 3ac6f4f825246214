"""What every reader returns: one ``AnnotatedImage`` per image, in an ``AnnotatedSet``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .issues import ReadReport


def _no_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


def _no_labels() -> np.ndarray:
    return np.zeros((0,), dtype=np.int64)


@dataclass(frozen=True)
class Segment:
    """The region of one COCO object, as stored in the json (rasterised on demand)."""

    label: int  # index into AnnotatedSet.classes
    segmentation: Any  # polygon list, uncompressed RLE (counts a list) or compressed RLE (counts a string)
    crowd: bool = False  # iscrowd: a region of many objects; never a box


@dataclass
class AnnotatedImage:
    image: Path
    height: int  # as displayed (after EXIF rotation)
    width: int
    boxes: np.ndarray = field(default_factory=_no_boxes)  # float32 [K, 4] pixel xyxy, 0-based continuous
    labels: np.ndarray = field(default_factory=_no_labels)  # int64 [K], index into the class names
    segments: tuple[Segment, ...] = ()  # COCO regions, crowd ones included
    mask: Path | None = None  # index-mask PNG (mask folders, VOC SegmentationClass)
    image_id: int | str | None = None  # the file's own id: COCO's id, the stem elsewhere


@dataclass
class AnnotatedSet:
    records: list[AnnotatedImage]
    # Class names in label order; None when the files do not name their
    # classes (index masks: the pixel values are the classes).
    classes: list[str] | None
    # The file's own id of each class (COCO's, gaps kept; YOLO's 0..K-1);
    # None when the format has no ids (VOC names its classes).
    category_ids: list[int] | None
    report: ReadReport


def annotated(image: Path, height: int, width: int, boxes: list, labels: list, **extra: Any) -> AnnotatedImage:
    """An AnnotatedImage from plain lists of boxes and labels."""
    return AnnotatedImage(
        image=image,
        height=int(height),
        width=int(width),
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64).reshape(-1),
        **extra,
    )
