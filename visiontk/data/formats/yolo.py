"""Ultralytics YOLO detection sets (data yaml + one txt per image) -> AnnotatedSet.

``path`` is the dataset root (relative to the yaml's folder; the folder
itself when absent); ``train`` / ``val`` / ``test`` are image directories (or
lists of them), absolute or inside the root, searched recursively. Labels:
the last ``images`` component of the directory replaced by ``labels``, suffix
.txt, one ``class cx cy w h`` (normalised to the image as displayed) per line.
A missing label file means no objects (a negative). Segment lines (polygons)
are not read.
"""
from __future__ import annotations

import math
from pathlib import Path

from visiontk.data.regular_files import read_regular_text, walk_files
from visiontk.errors import DataError
from visiontk.recipe import Section, register_format_options

from .boxes import check_box
from .files import load_yaml, read_image_size
from .issues import MALFORMED, ORPHAN_LABEL, UNKNOWN_CLASS, Issues, Policy
from .paths import find_images, resolve
from .records import AnnotatedImage, AnnotatedSet, annotated


class YoloOptions(Section):
    # The ultralytics data file naming the split image folders and the classes;
    # the split names are its keys (train, val, test). Relative to data.root.
    data_yaml: str = "data.yaml"


register_format_options("yolo", YoloOptions)


def read_yolo(data_yaml: Path, split: str, policy: Policy = "skip") -> AnnotatedSet:
    data_yaml = Path(data_yaml)
    issues = Issues(data_yaml, policy)
    cfg = load_yaml(data_yaml)
    if not isinstance(cfg, dict):
        raise DataError(f"{data_yaml}: expected a mapping with 'path', '{split}' and 'names'")
    classes = _names(cfg, data_yaml)
    root = Path(str(cfg["path"])) if cfg.get("path") else Path(".")
    root = root if root.is_absolute() else data_yaml.parent / root
    entry = cfg.get(split)
    if not entry:
        splits = [k for k in ("train", "val", "test") if cfg.get(k)]
        raise DataError(f"{data_yaml}: no '{split}' split (has: {', '.join(splits) or 'none'})")

    records = []
    for folder in entry if isinstance(entry, list) else [entry]:
        folder = str(folder)
        images_dir = Path(folder) if Path(folder).is_absolute() else resolve(
            root, folder, str(data_yaml), issues, f"'{split}' folder", "dataset root")
        if images_dir is None:
            continue
        if not images_dir.is_dir():
            raise DataError(f"{data_yaml}: '{split}' image directory {images_dir} not found (image list files are not supported)")
        records += _read_folder(images_dir, _labels_dir(images_dir, data_yaml), len(classes), issues)
    return AnnotatedSet(records, classes, list(range(len(classes))), issues.finish())


def _read_folder(images_dir: Path, labels_dir: Path, num_classes: int, issues: Issues) -> list[AnnotatedImage]:
    records, expected_labels = [], set()
    for image in find_images(images_dir):
        label_file = (labels_dir / image.relative_to(images_dir)).with_suffix(".txt")
        expected_labels.add(label_file)
        size = read_image_size(image, str(image), issues)
        if size is None:
            continue
        height, width = size
        boxes, labels = [], []
        if label_file.exists():
            try:
                text = read_regular_text(label_file)
            except DataError as e:  # a FIFO, a device, a folder: never read
                issues.message(MALFORMED, str(e))
                continue
            except (OSError, UnicodeDecodeError) as e:
                issues(MALFORMED, str(label_file), f"cannot read label file ({e.__class__.__name__})")
                continue
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                parsed = _parse_line(line, num_classes, height, width, f"{label_file}:{lineno}", issues)
                if parsed is not None:
                    boxes.append(parsed[0])
                    labels.append(parsed[1])
        records.append(annotated(image, height, width, boxes, labels, image_id=image.stem))
    if labels_dir.is_dir():
        for label_file in walk_files(labels_dir, lambda p: p.suffix == ".txt"):
            if label_file not in expected_labels:
                issues(ORPHAN_LABEL, str(label_file), f"label file has no image under {images_dir}", "ignored")
    return records


def _names(cfg: dict, data_yaml: Path) -> list[str]:
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


def _parse_line(line: str, num_classes: int, height: int, width: int, where: str, issues: Issues):
    """(box, class) of one label line, or None when it is dropped."""
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
    checked = check_box(box, height, width, where, issues)
    return None if checked is None else (checked, int(cls))
