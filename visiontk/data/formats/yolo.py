"""Ultralytics YOLO detection sets (data yaml + one txt per image) -> AnnotatedSet.

The data yaml may have any name (``data.root`` may point at it, or
``data.options.data_yaml`` names it inside the root). As Ultralytics reads it:
``path`` is the dataset root (relative to the yaml's folder; the folder itself
when absent); ``train`` / ``val`` / ``test`` are, each or in a list, image
directories (searched recursively) or .txt files listing images one per line
(relative lines are relative to the .txt's folder), absolute or relative to
the root. ``names`` is a list or an ``{id: name}`` map with ids 0..K-1.
Labels: the last ``images`` component of the image's path replaced by
``labels``, suffix .txt, one ``class cx cy w h`` (normalised to the image as
displayed) per line. A missing label file means no objects (a negative).
Segment lines (polygons) are not read.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from visiontk.data.regular_files import file_present, read_regular_text, require_file, walk_files
from visiontk.errors import DataError, UserError
from visiontk.recipe import Section, register_format_options

from .boxes import check_box
from .files import load_yaml, read_image_size, read_text
from .issues import MALFORMED, MISSING_IMAGE, ORPHAN_LABEL, UNKNOWN_CLASS, Issues, Policy
from .names import names_map
from .options import under
from .paths import find_images, inside_or_absolute, resolve
from .records import AnnotatedImage, AnnotatedSet, annotated


class YoloOptions(Section):
    # The ultralytics data file naming the split image folders and the classes;
    # the split names are its keys (train, val, test). Relative to data.root;
    # unused when data.root is the yaml file itself.
    data_yaml: str = "data.yaml"


register_format_options("yolo", YoloOptions)

YAML_SUFFIXES = (".yaml", ".yml")


def data_yaml_path(root: Path | str, data_yaml: str) -> Path:
    """The data yaml of a recipe: ``data.root`` itself when it is a yaml file, else
    ``data.options.data_yaml`` under it. Missing: one line naming the file and both keys."""
    root = Path(root)
    if root.suffix.lower() in YAML_SUFFIXES and not root.is_dir():
        return require_file(root, f"{root}: YOLO data yaml not found (data.root)")
    path = under(root, data_yaml)
    return require_file(path, f"{path}: YOLO data yaml not found (data.options.data_yaml = {data_yaml!r}, relative "
                              f"to data.root {root}; data.root may also point at the yaml file itself, any name)")


def read_yolo(data_yaml: Path, split: str, policy: Policy = "skip", within: Path | None = None) -> AnnotatedSet:
    """The records of one split. Everything read stays inside the data set's root: the
    yaml's ``path`` (the yaml's folder when absent), which itself stays inside ``within``
    (data.root when it is a folder; when data.root names the yaml, its ``path`` is the
    declaration). Split entries and list lines, relative or absolute, resolve inside it."""
    data_yaml = Path(data_yaml)
    issues = Issues(data_yaml, policy)
    cfg = load_yaml(data_yaml)
    if not isinstance(cfg, dict):
        raise DataError(f"{data_yaml}: expected a mapping with 'path', '{split}' and 'names'")
    classes = _names(cfg, data_yaml)
    declared = str(cfg["path"]) if cfg.get("path") else "."
    root = Path(declared) if Path(declared).is_absolute() else data_yaml.parent / declared
    if within is not None and inside_or_absolute(within, os.path.abspath(root)) is None:
        raise DataError(f"{data_yaml}: 'path' {declared!r} escapes the data root {within} (data.root)")
    entry = cfg.get(split)
    if not entry:
        splits = [k for k in ("train", "val", "test") if cfg.get(k)]
        raise DataError(f"{data_yaml}: no '{split}' split (has: {', '.join(splits) or 'none'})")

    records = []
    for item in entry if isinstance(entry, list) else [entry]:
        item = str(item)
        target = resolve(root, item, str(data_yaml), issues, f"'{split}' folder", "dataset root", absolute=True)
        if target is None:
            continue
        if target.suffix.lower() == ".txt" and file_present(target):
            records += _read_images(_listed_images(target, issues, root), len(classes), issues)
        elif target.is_dir():
            labels_dir = _labels_dir(target, data_yaml)
            images = [(image, (labels_dir / image.relative_to(target)).with_suffix(".txt"))
                      for image in find_images(target)]
            records += _read_images(images, len(classes), issues)
            _report_orphans(labels_dir, {label for _, label in images}, target, issues)
        else:
            raise DataError(f"{data_yaml}: '{split}' is {item!r}, but {target} is neither an image directory "
                            f"nor a .txt list of images")
    return AnnotatedSet(records, classes, list(range(len(classes))), issues.finish())


def _listed_images(listing: Path, issues: Issues, root: Path) -> list[tuple[Path, Path]]:
    """(image, label file) of each line of an image list; relative lines are under the list's folder."""
    pairs = []
    for lineno, line in enumerate(read_text(listing).splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        # Ultralytics writes './images/x.jpg' lines (relative to the list's folder); absolute
        # lines are taken when they lie in the data set's root, like every name read.
        image = resolve(listing.parent if not os.path.isabs(name) else root, name, f"{listing}:{lineno}", issues,
                        "image", "list's folder" if not os.path.isabs(name) else "dataset root", absolute=True)
        if image is None:
            continue
        if not image.exists():  # a FIFO is there: reading its size says so (open_regular)
            issues(MISSING_IMAGE, f"{listing}:{lineno}", f"image file {image} not found")
            continue
        pairs.append((image, _labels_dir(image.parent, listing) / f"{image.stem}.txt"))
    return pairs


def _report_orphans(labels_dir: Path, expected: set, images_dir: Path, issues: Issues) -> None:
    if labels_dir.is_dir():
        for label_file in walk_files(labels_dir, lambda p: p.suffix == ".txt"):
            if label_file not in expected:
                issues(ORPHAN_LABEL, str(label_file), f"label file has no image under {images_dir}", "ignored")


def _read_images(images: list[tuple[Path, Path]], num_classes: int, issues: Issues) -> list[AnnotatedImage]:
    records = []
    for image, label_file in images:
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
    return records


def _names(cfg: dict, data_yaml: Path) -> list[str]:
    by_id = names_map(cfg.get("names"), data_yaml)
    ids = list(by_id)
    if ids != list(range(len(ids))):
        # The label files' class column indexes the names: gaps would leave classes without a name.
        raise DataError(f"{data_yaml}: 'names' ids must be 0..{len(ids) - 1} without gaps, got {ids}")
    return list(by_id.values())


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
