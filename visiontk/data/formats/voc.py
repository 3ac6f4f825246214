"""Pascal VOC -> AnnotatedSet: the xml layout (boxes) and the SegmentationClass layout (index masks).

Both select images with an id list (``ImageSets/Main/<split>.txt`` for
boxes, ``ImageSets/Segmentation/<split>.txt`` for masks: one id per line,
further fields ignored), or a CSV with a 'filename' column (one row per box,
as many exporters write). Every id is resolved inside the folder it names a
file in: an id list is an annotation too.

Boxes: VOC counts pixels from 1 and includes xmax; they become 0-based
continuous ``[xmin - 1, ymin - 1, xmax, ymax]``. ``difficult`` and
``truncated`` objects are kept as ordinary boxes. Masks: palette ('P') PNGs
whose palette *indices* are the classes, object borders 255 (ignore).
"""
from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from visiontk.data.images import IMAGE_SUFFIXES
from visiontk.data.regular_files import open_regular, require_file
from visiontk.errors import DataError
from visiontk.recipe import Section, register_format_options

from .boxes import check_box
from .files import read_image_size, read_text
from .issues import MALFORMED, MISSING_ANNOTATION, MISSING_IMAGE, UNKNOWN_CLASS, UNSAFE_PATH, Issues, Policy, one_line
from .masks import mask_present, mask_record
from .options import PathOption
from .paths import inside, resolve
from .records import AnnotatedSet, annotated

# The 20 object classes of VOC2007/2012, in the dataset's index order (mask value k + 1).
VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
# VOC's images are JPEGs; other suffixes are looked for after.
_IMAGE_SUFFIXES = (".jpg", *sorted(IMAGE_SUFFIXES - {".jpg"}))


class VocXmlOptions(Section):
    # Relative to data.root; {split} is replaced by data.train / data.val, or a mapping split -> path.
    annotations: PathOption = "Annotations"
    images: PathOption = "JPEGImages"
    # A text file of image ids (VOC's ImageSets), or a CSV file with a 'filename' column;
    # null: every .xml in the annotation folder.
    ids: Optional[PathOption] = "ImageSets/Main/{split}.txt"


register_format_options("voc", VocXmlOptions)


class VocSegmentationOptions(Section):
    # VOC's segmentation layout: palette PNGs of class indices. A task reading it
    # registers this model for itself (the format's own options are the xml ones).
    images: PathOption = "JPEGImages"
    masks: PathOption = "SegmentationClass"
    # As for VocXmlOptions; null: every .png in the mask folder.
    ids: Optional[PathOption] = "ImageSets/Segmentation/{split}.txt"


def read_id_list(path: Path) -> list[tuple[str, str]]:
    """``(where, id)`` of each image of a split list, in file order, once each
    (``where``: file and line, for messages)."""
    path = Path(path)
    require_file(path, f"{path}: image id list not found (data.options.ids)")
    text = read_text(path)
    listed = []
    if path.suffix.lower() == ".csv":
        rows = csv.DictReader(text.splitlines())
        if not rows.fieldnames or "filename" not in rows.fieldnames:
            raise DataError(f"{path}: a CSV id list needs a 'filename' column (data.options.ids)")
        # The image's stem names its annotation: exporters write bare names,
        # folders of their own or absolute paths, none of which says where the
        # file is here (and a stem cannot leave the annotation folder).
        listed = [(f"{path}:{lineno}", Path(row["filename"].strip()).stem)
                  for lineno, row in enumerate(rows, 2) if (row.get("filename") or "").strip()]
    else:
        # ImageSets/Main/<class>_<split>.txt lines are "id flag"; plain lists are "id".
        listed = [(f"{path}:{lineno}", line.split()[0]) for lineno, line in enumerate(text.splitlines(), 1) if line.strip()]
    first = {}
    for where, image_id in listed:
        first.setdefault(image_id, where)
    return [(where, image_id) for image_id, where in first.items()]


def _listed_file(folder: Path, image_id: str, suffix: str, where: str, issues: Issues, folder_name: str) -> Path | None:
    path = inside(folder, image_id + suffix)
    if path is None:
        issues(UNSAFE_PATH, where, f"id {image_id!r} escapes the {folder_name} {folder}")
    return path


# ---------------------------------------------------------------- xml: boxes


def read_voc(
    ann_dir: Path,
    image_dir: Path,
    class_names: list[str] | None = None,
    policy: Policy = "skip",
    id_list: Path | None = None,
) -> AnnotatedSet:
    """``<id>.xml`` files of ``ann_dir`` (those of ``id_list``, else all) -> records.

    ``class_names`` None: the sorted set of names found (so the same files
    always give the same order); given: objects with other names are
    reported as unknown classes.
    """
    ann_dir, image_dir = Path(ann_dir), Path(image_dir)
    issues = Issues(ann_dir, policy)
    if not ann_dir.is_dir():
        raise DataError(f"{ann_dir}: annotation directory not found")
    if id_list is None:
        xml_files = sorted(ann_dir.glob("*.xml"))
    else:
        xml_files = []
        for where, image_id in read_id_list(id_list):
            xml = _listed_file(ann_dir, image_id, ".xml", where, issues, "annotation directory")
            if xml is not None and not xml.exists():  # a FIFO is there: reading it says so (open_regular)
                issues(MISSING_ANNOTATION, str(xml), f"no annotation file for id {image_id!r}")
            elif xml is not None:
                xml_files.append(xml)

    parsed = [p for p in (_parse_xml(f, image_dir, issues) for f in xml_files) if p is not None]
    names = sorted({name for *_, objects in parsed for name, _, _ in objects}) if class_names is None else list(class_names)
    index = {n: k for k, n in enumerate(names)}
    records = []
    for xml, path, height, width, objects in parsed:
        boxes, labels = [], []
        for name, box, where in objects:
            if name not in index:
                issues(UNKNOWN_CLASS, where, f"class {name!r} is not in the class names")
                continue
            boxes.append(box)
            labels.append(index[name])
        records.append(annotated(path, height, width, boxes, labels, image_id=xml.stem))
    return AnnotatedSet(records, names, None, issues.finish())


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text and child.text.strip() else None


def _parse_xml(xml_file: Path, image_dir: Path, issues: Issues):
    """(xml, image path, height, width, [(name, box, where)]), or None when the image is skipped."""
    try:
        with open_regular(xml_file) as f:
            root = ET.parse(f).getroot()
    except ET.ParseError as e:
        raise DataError(one_line(f"{xml_file}: not valid XML ({e})")) from None
    except OSError as e:
        raise DataError(f"{xml_file}: cannot read ({e.__class__.__name__})") from None
    where = str(xml_file)
    filename = _text(root, "filename")
    if filename is None:
        issues(MALFORMED, where, "missing <filename>")
        return None
    path = resolve(image_dir, filename, where, issues, "filename", "image directory")
    if path is None:
        return None
    if not path.is_file():
        issues(MISSING_IMAGE, where, f"image file {path} not found")
        return None
    size = root.find("size")
    try:
        height, width = int(float(_text(size, "height") or 0)), int(float(_text(size, "width") or 0))
    except (ValueError, OverflowError):
        height = width = 0
    if width <= 0 or height <= 0:
        # Some exporters write <size> as 0 or leave it out: read it from the image.
        read = read_image_size(path, where, issues)
        if read is None:
            return None
        height, width = read
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = _text(obj, "name")
        owhere = f"{xml_file}: object[{k}]" + (f" ({name})" if name else "")
        if name is None:
            issues(MALFORMED, owhere, "missing <name>")
            continue
        bnd = obj.find("bndbox")
        coords = [_text(bnd, t) for t in ("xmin", "ymin", "xmax", "ymax")]
        try:
            xmin, ymin, xmax, ymax = (float(c) for c in coords)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            issues(MALFORMED, owhere, "<bndbox> needs numeric xmin, ymin, xmax, ymax")
            continue
        # Pixels xmin..xmax (1-based, inclusive) cover [xmin - 1, xmax] in 0-based continuous coordinates.
        box = check_box((xmin - 1, ymin - 1, xmax, ymax), height, width, owhere, issues)
        if box is not None:
            objects.append((name, box, owhere))
    return xml_file, path, height, width, objects


# ---------------------------------------------------------------- SegmentationClass: masks


def read_voc_masks(mask_dir: Path, image_dir: Path, policy: Policy = "skip", id_list: Path | None = None) -> AnnotatedSet:
    """``<id>.png`` masks of ``mask_dir`` with their ``<id>.jpg`` images (ids of ``id_list``, else every mask).

    The records carry ``mask``; ``classes`` is None: the masks hold the class
    indices, and VOC's names are ``["background", *VOC_CLASSES]``.
    """
    mask_dir, image_dir = Path(mask_dir), Path(image_dir)
    issues = Issues(id_list if id_list is not None else mask_dir, policy)
    if id_list is None:
        listed = [(str(p), p.stem) for p in sorted(mask_dir.glob("*.png"))]
    else:
        listed = read_id_list(id_list)
    records = []
    for where, image_id in listed:
        mask = _listed_file(mask_dir, image_id, ".png", where, issues, "mask directory")
        if mask is None:
            continue
        candidates = (inside(image_dir, image_id + suffix) for suffix in _IMAGE_SUFFIXES)
        image = next((p for p in candidates if p is not None and p.is_file()), None)
        if image is None:
            issues(MISSING_IMAGE, f"{image_dir}/{image_id}.jpg", "image missing")
            continue
        if not mask_present(image, mask, issues):
            continue
        record = mask_record(image, mask, image_id, issues)
        if record is not None:
            records.append(record)
    return AnnotatedSet(records, None, None, issues.finish())
