"""COCO instances json -> AnnotatedSet: boxes for detection, regions for segmentation, from one parse.

Categories keep their ids (``category_ids``; COCO's 1..90 has gaps): class
names are the categories sorted by id and labels index that list. Every
image in the file becomes a record, with or without objects (negatives and
all-background images are valid). Per object:

* the box is ``bbox`` (x, y, w, h), or, when a region-only annotation has
  none, the extent of its segmentation (COCO defines bbox that way);
* the segmentation (polygons or RLE) is kept as a ``Segment`` and rasterised
  only when a mask is needed (``rasterize``);
* crowd annotations (iscrowd=1) cover many objects: they are kept as segments
  (segmentation paints them with their class) and never become boxes, and
  are counted in ``report.crowd``.

pycocotools is imported only to decode RLE: reading boxes needs no C extension.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from visiontk.errors import DataError
from visiontk.recipe import Section, register_format_options

from .boxes import check_box, is_number
from .files import load_json
from .issues import MALFORMED, MISSING_IMAGE, UNKNOWN_CLASS, Issues, Policy
from .options import PathOption
from .paths import resolve
from .records import AnnotatedSet, Segment, annotated


class CocoOptions(Section):
    # Relative to data.root; {split} is replaced by data.train / data.val, or a mapping split -> path.
    annotations: PathOption = "annotations/instances_{split}.json"
    images: PathOption = "images/{split}"


register_format_options("coco", CocoOptions)


def read_coco(ann_json: Path, image_root: Path, policy: Policy = "skip") -> AnnotatedSet:
    ann_json, image_root = Path(ann_json), Path(image_root)
    issues = Issues(ann_json, policy)
    data = load_json(ann_json)
    if not isinstance(data, dict):
        raise DataError(f"{ann_json}: expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{ann_json}: missing required field '{key}' (a list)")

    category_ids, classes = _categories(data["categories"], ann_json, issues)
    label_of = {c: k for k, c in enumerate(category_ids)}
    images, dropped = _images(data["images"], ann_json, image_root, issues)
    boxes: dict[Any, list] = {i: [] for i in images}
    labels: dict[Any, list] = {i: [] for i in images}
    segments: dict[Any, list] = {i: [] for i in images}
    for i, ann in enumerate(data["annotations"]):
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        where = f"{ann_json}: annotation id {ann_id}" if ann_id is not None else f"{ann_json}: annotations[{i}]"
        parsed = _annotation(ann, where, images, dropped, label_of, issues)
        if parsed is None:
            continue
        image_id, label, box, segment = parsed
        if box is not None:
            boxes[image_id].append(box)
            labels[image_id].append(label)
        if segment is not None:
            segments[image_id].append(segment)

    records = [annotated(path, h, w, boxes[i], labels[i], segments=tuple(segments[i]), image_id=i)
               for i, (path, h, w) in images.items()]
    return AnnotatedSet(records, classes, category_ids, issues.finish())


def image_ids(ann_json: Path) -> dict[str, int | str]:
    """``{file_name: image id}`` of a COCO file's 'images', for writing results with the file's own ids.

    Only the names and ids are read (no image is opened): predictions may be
    made on a copy of the images elsewhere.
    """
    data = load_json(ann_json)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{ann_json}: expected a COCO JSON object with an 'images' list")
    ids: dict[str, int | str] = {}
    for img in data["images"]:
        if isinstance(img, dict) and isinstance(img.get("file_name"), str) and isinstance(img.get("id"), (int, str)):
            ids.setdefault(img["file_name"], img["id"])
    if not ids:
        raise DataError(f"{ann_json}: no image with a 'file_name' and an 'id'")
    return ids


def _categories(entries: list, ann_json: Path, issues: Issues) -> tuple[list[int], list[str]]:
    categories: dict[int, str] = {}
    for i, cat in enumerate(entries):
        where = f"{ann_json}: categories[{i}]"
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            issues(MALFORMED, where, "a category needs an integer 'id' and a string 'name'")
        elif cat["id"] in categories:
            issues(MALFORMED, where, f"duplicate category id {cat['id']}")
        else:
            categories[cat["id"]] = cat["name"]
    ids = sorted(categories)
    return ids, [categories[c] for c in ids]


def _images(entries: list, ann_json: Path, image_root: Path, issues: Issues) -> tuple[dict[Any, tuple[Path, int, int]], set]:
    """The usable images {id: (path, height, width)}, and the ids of the dropped ones
    (reported once here; their annotations are skipped quietly)."""
    images: dict[Any, tuple[Path, int, int]] = {}
    dropped: set = set()
    for i, img in enumerate(entries):
        image_id = img.get("id") if isinstance(img, dict) else None
        where = f"{ann_json}: image id {image_id}" if image_id is not None else f"{ann_json}: images[{i}]"
        if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
            issues(MALFORMED, where, "missing required field 'id'" if image_id is None else f"bad image id {image_id!r}")
            continue
        missing = [k for k in ("file_name", "width", "height") if k not in img]
        if missing:
            issues(MALFORMED, where, f"missing required field '{missing[0]}'")
            dropped.add(image_id)
            continue
        width, height = _positive_number(img["width"]), _positive_number(img["height"])
        # int() below: a fraction of a pixel would make a 0-pixel image.
        if width is None or height is None or width < 1 or height < 1 or not isinstance(img["file_name"], str):
            issues(MALFORMED, where, f"bad file_name/width/height ({img['file_name']!r}, {img['width']!r}, {img['height']!r})")
            dropped.add(image_id)
            continue
        if image_id in images or image_id in dropped:
            issues(MALFORMED, where, "duplicate image id")
            continue
        path = resolve(image_root, img["file_name"], where, issues, "file_name", "image root")
        if path is not None and not path.is_file():
            issues(MISSING_IMAGE, where, f"image file {path} not found")
            path = None
        if path is None:
            dropped.add(image_id)
            continue
        images[image_id] = (path, int(height), int(width))
    return images, dropped


def _annotation(ann: Any, where: str, images: dict, dropped: set, label_of: dict, issues: Issues):
    """(image id, label, box or None, Segment or None) of one annotation, or None when it is dropped."""
    if not isinstance(ann, dict):
        issues(MALFORMED, where, "an annotation must be an object")
        return None
    missing = [k for k in ("image_id", "category_id") if k not in ann]
    if not missing and "bbox" not in ann and not ann.get("segmentation"):
        missing = ["bbox"]  # a region-only annotation gets its box from the region
    if missing:
        issues(MALFORMED, where, f"missing required field '{missing[0]}'")
        return None
    image_id, category = ann["image_id"], ann["category_id"]
    if not isinstance(image_id, (int, str)) or not isinstance(category, (int, str)):
        issues(MALFORMED, where, f"bad image_id/category_id ({image_id!r}, {category!r})")
        return None
    if image_id in dropped:
        return None
    if image_id not in images:
        issues(MALFORMED, where, f"image_id {image_id!r} is not in 'images'")
        return None
    if category not in label_of or isinstance(category, bool):
        issues(UNKNOWN_CLASS, where, f"category_id {category!r} is not in 'categories'")
        return None
    label, segmentation = label_of[category], ann.get("segmentation") or None
    if ann.get("iscrowd", 0):
        issues.report.crowd += 1
        return image_id, label, None, None if segmentation is None else Segment(label, segmentation, crowd=True)
    _, height, width = images[image_id]
    if "bbox" in ann:
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
            issues(MALFORMED, where, f"bbox must be [x, y, w, h] numbers, got {bbox!r}")
            return None
        x, y, w, h = (float(v) for v in bbox)
        extent = (x, y, x + w, y + h)
    else:
        extent = _segmentation_extent(segmentation, height, width)
        if extent is None:
            issues(MALFORMED, where, "no 'bbox', and its segmentation is neither polygons nor an RLE")
            return None
    box = check_box(extent, height, width, where, issues)
    if box is None:
        return None
    return image_id, label, box, None if segmentation is None else Segment(label, segmentation)


def _segmentation_extent(segmentation: Any, height: int, width: int) -> tuple[float, ...] | None:
    """x1, y1, x2, y2 enclosing a polygon list or an RLE; None if it is neither."""
    if isinstance(segmentation, list):
        if not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(is_number(v) for v in p)
                   for p in segmentation):
            return None
        xs = [float(v) for p in segmentation for v in p[0::2]]
        ys = [float(v) for p in segmentation for v in p[1::2]]
        return min(xs), min(ys), max(xs), max(ys)
    try:
        x, y, w, h = (float(v) for v in _mask_api().toBbox(_rle(segmentation, height, width)))
    except Exception:  # pycocotools raises bare Exception on malformed input
        return None
    return x, y, x + w, y + h


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_number(value: Any) -> float | None:
    try:
        number = float(value) if is_number(value) else math.nan
    except OverflowError:  # an integer beyond float range
        return None
    return number if math.isfinite(number) and number > 0 else None


# ----------------------------------------------------------------- regions -> masks


def _mask_api():
    from pycocotools import mask as mask_utils

    return mask_utils


def _rle(segmentation: Any, height: int, width: int) -> dict:
    mask_utils = _mask_api()
    if isinstance(segmentation, list):  # polygons: one object may have several parts
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]  # compressed RLE; the C decoder wants bytes
    if isinstance(counts, str):
        counts = counts.encode()
    return {"size": segmentation["size"], "counts": counts}


def rasterize(height: int, width: int, objects: Iterable[tuple[int, Any]], source: str, image_name: str) -> np.ndarray:
    """uint8 ``[H, W]`` mask painting each ``(value, segmentation)``, largest first
    so that a small object lying on a large one stays visible; 0 elsewhere."""
    painted = []
    for value, segmentation in objects:
        try:
            rle = _rle(segmentation, height, width)
            if list(rle["size"]) != [height, width]:
                raise ValueError(f"RLE size {rle['size']} differs from image entry {[height, width]}")
            with warnings.catch_warnings():
                # pycocotools' __array__ predates numpy 2's `copy` keyword; harmless
                warnings.simplefilter("ignore", DeprecationWarning)
                binary = _mask_api().decode(rle).astype(bool)
        except Exception as exc:  # pycocotools raises bare Exception on malformed input
            raise DataError(f"{source}: bad segmentation for {image_name} ({exc})") from exc
        painted.append((int(binary.sum()), value, binary))
    mask = np.zeros((height, width), dtype=np.uint8)
    for _, value, binary in sorted(painted, key=lambda t: -t[0]):
        mask[binary] = value
    return mask
