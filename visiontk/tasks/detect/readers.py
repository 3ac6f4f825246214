"""Detection annotations (COCO json, YOLO txt, Pascal VOC xml) -> one record type.

Every reader returns ``(records, class_names, report)``. Boxes are pixel
``xyxy`` in continuous 0-based coordinates: the image spans [0, W] x [0, H]
and a box covering the whole image is ``(0, 0, W, H)`` -- the convention of
COCO (x, y, w, h) and of albumentations' 'pascal_voc' format.

Bad annotations are reported with the file and the line / annotation id /
object index. ``policy='skip'`` drops the bad box or image (clips a box that
only partly leaves the image), records it in the report and warns;
``policy='error'`` raises `DataError` at the first problem. A file that cannot
be parsed at all (json, xml, yaml) is always a `DataError`. Images without
boxes are kept: they are valid negatives.
"""
from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from visiontk.console import warn
from visiontk.errors import DataError

Policy = Literal["skip", "error"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Problem kinds, the keys of ReadReport.counts.
BOX_CLIPPED = "box_clipped"  # partly outside the image: clipped, kept
BOX_OUTSIDE = "box_outside"  # entirely outside: dropped
BOX_EMPTY = "box_empty"  # zero or negative width/height: dropped
UNKNOWN_CLASS = "unknown_class"
MISSING_IMAGE = "missing_image"
BAD_IMAGE = "bad_image"  # exists but its size cannot be read
ORPHAN_LABEL = "orphan_label"  # YOLO label file without an image
MISSING_ANNOTATION = "missing_annotation"  # VOC id listed but no xml
MALFORMED = "malformed"  # bad line, missing/invalid field
UNSAFE_PATH = "unsafe_path"  # file name escaping the image root

# Annotation tools round coordinates; an overshoot this small (pixels) is
# clipped silently instead of being reported as a box outside the image.
CLIP_TOLERANCE = 0.5
MAX_WARNINGS = 20


@dataclass
class DetectionRecord:
    image: Path
    width: int
    height: int
    boxes: np.ndarray  # float32 [K, 4] pixel xyxy, 0-based
    labels: np.ndarray  # int64 [K], index into the class names


@dataclass
class ReadReport:
    source: str
    messages: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    crowd_skipped: int = 0  # COCO iscrowd annotations: valid, but not used as boxes

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        self.messages.append(message)

    def summary(self) -> str:
        if not self.total:
            return f"{self.source}: no problems"
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))
        return f"{self.source}: {self.total} problems ({kinds})"


class _Issues:
    """Applies the policy to each problem: raise, or record and warn."""

    def __init__(self, source: Path | str, policy: str) -> None:
        if policy not in ("skip", "error"):
            raise ValueError(f"policy must be 'skip' or 'error', got {policy!r}")
        self.policy = policy
        self.report = ReadReport(str(source))

    def __call__(self, kind: str, where: str, problem: str, action: str = "skipped") -> None:
        message = _one_line(f"{where}: {problem}")
        if self.policy == "error":
            raise DataError(message)
        self.report.add(kind, f"{message} ({action})")
        # Cap the warnings: a broken export can have thousands of identical problems.
        if len(self.report.messages) <= MAX_WARNINGS:
            warn(f"{message} ({action})")  # warn() prints plain text: '[x, y, w, h]' stays as is

    def finish(self) -> ReadReport:
        if self.report.total > MAX_WARNINGS:
            warn(f"{self.report.total - MAX_WARNINGS} more problems not shown; {self.report.summary()}")
        return self.report


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _record(image: Path, width: int, height: int, boxes: list, labels: list) -> DetectionRecord:
    return DetectionRecord(
        image=image,
        width=int(width),
        height=int(height),
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64).reshape(-1),
    )


def _check_box(box: tuple[float, ...], width: float, height: float, where: str, issues: _Issues) -> list[float] | None:
    """Validate a pixel xyxy box; return it (clipped) or None when it is dropped."""
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


def _safe_join(root: Path, name: str) -> Path | None:
    """root / name, or None when name escapes root ('../..', absolute paths).

    The check is on the normalised path, not on symlink targets: dataset
    folders often symlink to shared storage, and a link placed inside the
    root is part of the dataset; what must never happen is an annotation
    naming a file outside it.
    """
    try:
        base = Path(os.path.abspath(root))
        path = Path(os.path.abspath(base / name))
    except ValueError:  # e.g. an embedded NUL byte
        return None
    return path if path.is_relative_to(base) else None


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed, i.e. after EXIF rotation, from the header only."""
    with Image.open(path) as img:
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1)
    # Orientations 5-8 rotate by 90 degrees: the displayed image is transposed.
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _read_size(path: Path, where: str, issues: _Issues) -> tuple[int, int] | None:
    try:
        return _image_size(path)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        what = "image" if where == str(path) else f"image {path}"
        issues(BAD_IMAGE, where, f"cannot read the size of the {what} ({e.__class__.__name__})")
        return None


def _positive_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


# --------------------------------------------------------------------- COCO


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(_one_line(f"{path}: not valid JSON ({e})")) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None


def read_coco(ann_json: Path, image_root: Path, policy: Policy = "skip") -> tuple[list[DetectionRecord], list[str], ReadReport]:
    """COCO detection json -> records. Category ids may have gaps (COCO's 1..90):
    class names are the categories sorted by id, labels index that list.
    Crowd annotations (iscrowd=1) are not boxes of one object: they are left
    out and counted in ``report.crowd_skipped``."""
    ann_json, image_root = Path(ann_json), Path(image_root)
    issues = _Issues(ann_json, policy)
    data = _load_json(ann_json)
    if not isinstance(data, dict):
        raise DataError(f"{ann_json}: expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{ann_json}: missing required field '{key}' (a list)")

    categories: dict[int, str] = {}
    for i, cat in enumerate(data["categories"]):
        where = f"{ann_json}: categories[{i}]"
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            issues(MALFORMED, where, "a category needs an integer 'id' and a string 'name'")
        elif cat["id"] in categories:
            issues(MALFORMED, where, f"duplicate category id {cat['id']}")
        else:
            categories[cat["id"]] = cat["name"]
    cat_ids = sorted(categories)
    class_names = [categories[c] for c in cat_ids]
    cat_index = {c: k for k, c in enumerate(cat_ids)}

    images: dict[Any, tuple[Path, int, int]] = {}
    boxes: dict[Any, list] = {}
    labels: dict[Any, list] = {}
    dropped_images: set = set()  # reported once; their annotations are skipped quietly
    for i, img in enumerate(data["images"]):
        image_id = img.get("id") if isinstance(img, dict) else None
        where = f"{ann_json}: image id {image_id}" if image_id is not None else f"{ann_json}: images[{i}]"
        if not isinstance(image_id, (int, str)):
            issues(MALFORMED, where, "missing required field 'id'" if image_id is None else f"bad image id {image_id!r}")
            continue
        missing = [k for k in ("file_name", "width", "height") if k not in img]
        if missing:
            issues(MALFORMED, where, f"missing required field '{missing[0]}'")
            dropped_images.add(image_id)
            continue
        width, height = _positive_number(img["width"]), _positive_number(img["height"])
        # int() below: a fraction of a pixel would make a 0-pixel image.
        if width is None or height is None or width < 1 or height < 1 or not isinstance(img["file_name"], str):
            issues(MALFORMED, where, f"bad file_name/width/height ({img['file_name']!r}, {img['width']!r}, {img['height']!r})")
            dropped_images.add(image_id)
            continue
        if image_id in images or image_id in dropped_images:
            issues(MALFORMED, where, "duplicate image id")
            continue
        path = _safe_join(image_root, img["file_name"])
        if path is None:
            issues(UNSAFE_PATH, where, f"file_name {img['file_name']!r} escapes the image root {image_root}")
            dropped_images.add(image_id)
            continue
        if not path.is_file():
            issues(MISSING_IMAGE, where, f"image file {path} not found")
            dropped_images.add(image_id)
            continue
        images[image_id] = (path, int(width), int(height))
        boxes[image_id], labels[image_id] = [], []

    for i, ann in enumerate(data["annotations"]):
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        where = f"{ann_json}: annotation id {ann_id}" if ann_id is not None else f"{ann_json}: annotations[{i}]"
        if not isinstance(ann, dict):
            issues(MALFORMED, where, "an annotation must be an object")
            continue
        missing = [k for k in ("image_id", "category_id", "bbox") if k not in ann]
        if missing:
            issues(MALFORMED, where, f"missing required field '{missing[0]}'")
            continue
        image_id = ann["image_id"]
        if not isinstance(image_id, (int, str)) or not isinstance(ann["category_id"], (int, str)):
            issues(MALFORMED, where, f"bad image_id/category_id ({image_id!r}, {ann['category_id']!r})")
            continue
        if image_id in dropped_images:
            continue
        if image_id not in images:
            issues(MALFORMED, where, f"image_id {image_id!r} is not in 'images'")
            continue
        if ann.get("iscrowd", 0):
            issues.report.crowd_skipped += 1
            continue
        if ann["category_id"] not in cat_index:
            issues(UNKNOWN_CLASS, where, f"category_id {ann['category_id']!r} is not in 'categories'")
            continue
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            issues(MALFORMED, where, f"bbox must be [x, y, w, h] numbers, got {bbox!r}")
            continue
        x, y, w, h = (float(v) for v in bbox)
        _, width, height = images[image_id]
        box = _check_box((x, y, x + w, y + h), width, height, where, issues)
        if box is not None:
            boxes[image_id].append(box)
            labels[image_id].append(cat_index[ann["category_id"]])

    records = [_record(p, w, h, boxes[i], labels[i]) for i, (p, w, h) in images.items()]
    return records, class_names, issues.finish()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --------------------------------------------------------------------- YOLO


def _load_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or e.__class__.__name__
        raise DataError(_one_line(f"{path}: not valid YAML{line} ({problem})")) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e.__class__.__name__})") from None


def _yolo_names(cfg: dict, data_yaml: Path) -> list[str]:
    names = cfg.get("names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if isinstance(names, dict) and names:
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DataError(f"{data_yaml}: 'names' keys must be integer class ids") from None
        if ids != list(range(len(ids))):
            raise DataError(f"{data_yaml}: 'names' ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        by_id = {int(k): str(v) for k, v in names.items()}
        return [by_id[i] for i in ids]
    raise DataError(f"{data_yaml}: 'names' must be a non-empty list or {{id: name}} mapping")


def _labels_dir(images_dir: Path, data_yaml: Path) -> Path:
    """The ultralytics rule: the last 'images' path component becomes 'labels'."""
    parts = images_dir.parts
    if "images" not in parts:
        raise DataError(f"{data_yaml}: image directory {images_dir} has no 'images' component, so its labels cannot be found")
    i = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:i], "labels", *parts[i + 1 :])


def _parse_yolo_line(line: str, num_classes: int, width: int, height: int, where: str, issues: _Issues):
    fields = line.split()
    if len(fields) != 5:
        issues(MALFORMED, where, f"expected 5 fields 'class cx cy w h', got {len(fields)}")
        return None
    try:
        values = [float(v) for v in fields]
    except ValueError:
        issues(MALFORMED, where, f"not a number in {line.strip()!r}")
        return None
    if not all(math.isfinite(v) for v in values):
        issues(MALFORMED, where, f"non-finite value in {line.strip()!r}")
        return None
    cls, cx, cy, w, h = values
    if cls != int(cls):
        issues(MALFORMED, where, f"class id {fields[0]!r} is not an integer")
        return None
    if not 0 <= cls < num_classes:
        issues(UNKNOWN_CLASS, where, f"class id {int(cls)} is not in names (0..{num_classes - 1})")
        return None
    box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
    checked = _check_box(box, width, height, where, issues)
    return None if checked is None else (checked, int(cls))


def read_yolo(data_yaml: Path, split: str, policy: Policy = "skip") -> tuple[list[DetectionRecord], list[str], ReadReport]:
    """Ultralytics data yaml -> records of one split.

    ``path`` is the dataset root (relative to the yaml's folder; the folder
    itself when absent); ``train`` / ``val`` / ``test`` are image directories
    (or lists of them) under it, searched recursively. Labels: the last
    ``images`` component of the directory replaced by ``labels``, suffix .txt,
    one ``class cx cy w h`` (normalised) per line. A missing label file means
    no objects (a negative). Segment lines (polygons) are not read.
    """
    data_yaml = Path(data_yaml)
    issues = _Issues(data_yaml, policy)
    cfg = _load_yaml(data_yaml)
    if not isinstance(cfg, dict):
        raise DataError(f"{data_yaml}: expected a mapping with 'path', '{split}' and 'names'")
    class_names = _yolo_names(cfg, data_yaml)
    root = Path(cfg["path"]) if cfg.get("path") else Path(".")
    root = root if root.is_absolute() else data_yaml.parent / root
    entry = cfg.get(split)
    if not entry:
        splits = [k for k in ("train", "val", "test") if cfg.get(k)]
        raise DataError(f"{data_yaml}: no '{split}' split (has: {', '.join(splits) or 'none'})")

    records = []
    for rel in entry if isinstance(entry, list) else [entry]:
        images_dir = Path(str(rel)) if Path(str(rel)).is_absolute() else root / str(rel)
        if not images_dir.is_dir():
            raise DataError(f"{data_yaml}: '{split}' image directory {images_dir} not found (image list files are not supported)")
        labels_dir = _labels_dir(images_dir, data_yaml)
        images = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        expected_labels = set()
        for image in images:
            label_file = (labels_dir / image.relative_to(images_dir)).with_suffix(".txt")
            expected_labels.add(label_file)
            size = _read_size(image, str(image), issues)
            if size is None:
                continue
            width, height = size
            boxes, labels = [], []
            if label_file.is_file():
                try:
                    text = label_file.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    issues(MALFORMED, str(label_file), f"cannot read label file ({e.__class__.__name__})")
                    continue
                for lineno, line in enumerate(text.splitlines(), 1):
                    if not line.strip():
                        continue
                    parsed = _parse_yolo_line(line, len(class_names), width, height, f"{label_file}:{lineno}", issues)
                    if parsed is not None:
                        boxes.append(parsed[0])
                        labels.append(parsed[1])
            records.append(_record(image, width, height, boxes, labels))
        if labels_dir.is_dir():
            for label_file in sorted(labels_dir.rglob("*.txt")):
                if label_file not in expected_labels:
                    issues(ORPHAN_LABEL, str(label_file), f"label file has no image under {images_dir}", "ignored")
    return records, class_names, issues.finish()


# ---------------------------------------------------------------------- VOC


def _xml_text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text and child.text.strip() else None


def _parse_voc_file(xml_file: Path, image_dir: Path, issues: _Issues):
    """One xml -> (image path, width, height, [(name, box, where)]) or None if the image is skipped."""
    try:
        root = ET.parse(xml_file).getroot()
    except ET.ParseError as e:
        raise DataError(_one_line(f"{xml_file}: not valid XML ({e})")) from None
    except OSError as e:
        raise DataError(f"{xml_file}: cannot read ({e.__class__.__name__})") from None
    where = str(xml_file)
    filename = _xml_text(root, "filename")
    if filename is None:
        issues(MALFORMED, where, "missing <filename>")
        return None
    path = _safe_join(image_dir, filename)
    if path is None:
        issues(UNSAFE_PATH, where, f"filename {filename!r} escapes the image directory {image_dir}")
        return None
    if not path.is_file():
        issues(MISSING_IMAGE, where, f"image file {path} not found")
        return None
    size = root.find("size")
    try:
        width, height = int(float(_xml_text(size, "width") or 0)), int(float(_xml_text(size, "height") or 0))
    except ValueError:
        width = height = 0
    if width <= 0 or height <= 0:
        # Some exporters write <size> as 0 or leave it out: read it from the image.
        read = _read_size(path, where, issues)
        if read is None:
            return None
        width, height = read
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = _xml_text(obj, "name")
        owhere = f"{xml_file}: object[{k}]" + (f" ({name})" if name else "")
        if name is None:
            issues(MALFORMED, owhere, "missing <name>")
            continue
        bnd = obj.find("bndbox")
        coords = [_xml_text(bnd, t) for t in ("xmin", "ymin", "xmax", "ymax")]
        try:
            xmin, ymin, xmax, ymax = (float(c) for c in coords)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            issues(MALFORMED, owhere, "<bndbox> needs numeric xmin, ymin, xmax, ymax")
            continue
        # VOC counts pixels from 1 and includes xmax: pixels xmin..xmax cover
        # [xmin - 1, xmax] in 0-based continuous coordinates (width xmax - xmin + 1).
        box = _check_box((xmin - 1, ymin - 1, xmax, ymax), width, height, owhere, issues)
        if box is not None:
            objects.append((name, box, owhere))
    return path, width, height, objects


def read_voc(
    ann_dir: Path,
    image_dir: Path,
    class_names: list[str] | None = None,
    policy: Policy = "skip",
    ids: list[str] | None = None,
) -> tuple[list[DetectionRecord], list[str], ReadReport]:
    """Pascal VOC xml files -> records.

    ``ids`` (e.g. the lines of ImageSets/Main/train.txt) selects ``<id>.xml``;
    default: every .xml in ann_dir. ``class_names`` None: the sorted set of
    names found (so the same files always give the same order); given: objects
    with other names are reported as unknown classes. ``difficult`` and
    ``truncated`` objects are kept as ordinary boxes.
    """
    ann_dir, image_dir = Path(ann_dir), Path(image_dir)
    issues = _Issues(ann_dir, policy)
    if not ann_dir.is_dir():
        raise DataError(f"{ann_dir}: annotation directory not found")
    if ids is not None:
        xml_files = []
        for i in ids:
            f = ann_dir / f"{i}.xml"
            if f.is_file():
                xml_files.append(f)
            else:
                issues(MISSING_ANNOTATION, str(f), f"no annotation file for id {i!r}")
    else:
        xml_files = sorted(ann_dir.glob("*.xml"))

    parsed = [p for p in (_parse_voc_file(f, image_dir, issues) for f in xml_files) if p is not None]
    names = sorted({name for *_, objects in parsed for name, _, _ in objects}) if class_names is None else list(class_names)
    index = {n: k for k, n in enumerate(names)}
    records = []
    for path, width, height, objects in parsed:
        boxes, labels = [], []
        for name, box, where in objects:
            if name not in index:
                issues(UNKNOWN_CLASS, where, f"class {name!r} is not in the class names")
                continue
            boxes.append(box)
            labels.append(index[name])
        records.append(_record(path, width, height, boxes, labels))
    return records, names, issues.finish()
