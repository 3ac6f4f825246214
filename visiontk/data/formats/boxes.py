"""Box validation shared by the COCO, YOLO and VOC readers: drop, clip or keep, under the policy."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .issues import BOX_CLIPPED, BOX_EMPTY, BOX_OUTSIDE, MALFORMED, Issues

# Annotation tools round coordinates; an overshoot this small (pixels) is
# clipped silently instead of being reported as a box outside the image.
CLIP_TOLERANCE = 0.5


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_box(box: tuple[float, ...], height: float, width: float, where: str, issues: Issues) -> list[float] | None:
    """A pixel xyxy box, clipped to the image; None when it is dropped (reported)."""
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        issues(MALFORMED, where, f"non-finite coordinate in box {list(box)}")
        return None
    if x2 <= x1 or y2 <= y1:
        issues(BOX_EMPTY, where, f"zero or negative size (w={x2 - x1:g}, h={y2 - y1:g})")
        return None
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        issues(BOX_OUTSIDE, where, f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] is entirely outside the {width}x{height} image")
        return None
    clipped = [min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height)]
    # Records store float32: a box too thin for float32 to tell its sides apart
    # (e.g. h = 1e-184 from a YOLO line) would be stored with zero size.
    c = np.asarray(clipped, dtype=np.float32)
    if c[2] <= c[0] or c[3] <= c[1]:
        issues(BOX_EMPTY, where, f"zero or negative size (w={x2 - x1:g}, h={y2 - y1:g})")
        return None
    tol = CLIP_TOLERANCE
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        issues(BOX_CLIPPED, where, f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] extends outside the {width}x{height} image", "clipped")
    return clipped


def duplicate_boxes(boxes: np.ndarray, labels: np.ndarray, tolerance: float = CLIP_TOLERANCE) -> list[tuple[int, int]]:
    """``(i, j)`` with ``i < j`` for each box ``j`` that repeats an earlier box ``i`` of
    the same image: the same label and every side within ``tolerance`` pixels (the
    rounding of annotation tools). Each ``j`` once, with its first ``i``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    if len(boxes) < 2:
        return []
    close = np.abs(boxes[:, None, :] - boxes[None, :, :]).max(axis=-1) <= tolerance
    repeats = np.triu(close & (labels[:, None] == labels[None, :]), k=1)
    return [(int(repeats[:, j].argmax()), int(j)) for j in np.flatnonzero(repeats.any(axis=0))]
