"""Read segmentation datasets into one representation: ``SegmentationRecord``.

A record is an image path plus where its mask comes from: an index-mask PNG
(mask folders, VOC) or COCO polygons/RLE rasterised on load. Masks hold class
indices (uint8), 0 = background, 255 = ignore.

Problems (missing mask, mask size differing from its image, class values
>= num_classes other than 255, unreadable files, paths escaping the image
root) follow one policy: 'error' raises ``DataError`` with a one-line message
naming the file and the problem; 'skip' warns and drops the record.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils

from visiontk.console import warn
from visiontk.errors import DataError, UserError

Policy = Literal["skip", "error"]
IGNORE_INDEX = 255
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# PIL modes whose pixel values are class indices. 'P' is read as palette
# *indices* (VOC): converting it to RGB or 'L' would destroy the labels.
INDEX_MODES = ("L", "P")
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class CocoMask:
    """COCO objects of one image, rasterised by ``load_mask``.

    ``objects`` holds ``(class_index, segmentation)`` pairs, where
    segmentation is a polygon list, an uncompressed RLE (``counts`` a list) or
    a compressed RLE (``counts`` a string), exactly as in the JSON.
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
    # index`` (255 = ignore), -1 for raw values that must not occur. Lets masks
    # stored as e.g. {0, 255} (binary) be read as classes {0, 1} without
    # rewriting the files.
    values: tuple[int, ...] | None = None

    @property
    def mask_name(self) -> str:
        if self.mask is not None:
            return str(self.mask)
        if self.coco is not None:
            return f"{self.coco.source} (masks of {self.image.name})"
        return f"{self.image} (no mask)"


def check_policy(policy: str) -> None:
    if policy not in ("skip", "error"):
        raise UserError(f"policy must be 'skip' or 'error', got {policy!r}")


def report(message: str, policy: Policy) -> None:
    """Apply the policy to one problem: raise, or warn and let the caller skip."""
    check_policy(policy)
    if policy == "error":
        raise DataError(message)
    warn(f"{message}; skipped")


# ---------------------------------------------------------------- loading


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) as displayed, i.e. after EXIF rotation; reads the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from exc
    # Orientations 5-8 rotate by 90 degrees and swap the sides.
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def load_image(path: Path) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` with the EXIF orientation applied."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from exc


def _load_png_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode not in INDEX_MODES:
                raise DataError(
                    f"{path}: mask mode {im.mode!r}; expected 'L' or 'P' (palette) with class indices"
                )
            return np.array(im, dtype=np.uint8)  # 'P' gives palette indices, not colours
    except OSError as exc:
        raise DataError(f"{path}: cannot read mask ({exc})") from exc


def _coco_rle(segmentation: Any, height: int, width: int) -> dict:
    if isinstance(segmentation, list):  # polygons: one object may have several parts
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]  # compressed RLE; the C decoder wants bytes
    if isinstance(counts, str):
        counts = counts.encode()
    return {"size": segmentation["size"], "counts": counts}


def _load_coco_mask(coco: CocoMask, image: Path) -> np.ndarray:
    h, w = coco.height, coco.width
    painted = []
    for class_index, segmentation in coco.objects:
        try:
            rle = _coco_rle(segmentation, h, w)
            if list(rle["size"]) != [h, w]:
                raise ValueError(f"RLE size {rle['size']} differs from image entry {[h, w]}")
            with warnings.catch_warnings():
                # pycocotools' __array__ predates numpy 2's `copy` keyword; harmless
                warnings.simplefilter("ignore", DeprecationWarning)
                binary = mask_utils.decode(rle).astype(bool)
        except Exception as exc:  # pycocotools raises bare Exception on malformed input
            raise DataError(f"{coco.source}: bad segmentation for {image.name} ({exc})") from exc
        painted.append((int(binary.sum()), class_index, binary))
    mask = np.zeros((h, w), dtype=np.uint8)
    # Largest first, so a small object lying on a large one stays visible.
    for _, class_index, binary in sorted(painted, key=lambda t: -t[0]):
        mask[binary] = class_index
    return mask


def value_table(mapping: dict[int, int], unlisted: int = -1) -> tuple[int, ...]:
    """A 256-entry ``SegmentationRecord.values`` table from ``{raw value: class index}``.

    Raw values absent from ``mapping`` map to ``unlisted`` (-1: a problem when met).
    """
    table = [unlisted] * 256
    for raw, index in mapping.items():
        table[int(raw)] = int(index)
    return tuple(table)


def _apply_values(record: SegmentationRecord, mask: np.ndarray) -> np.ndarray:
    table = np.asarray(record.values, dtype=np.int16)
    present = np.unique(mask)
    unlisted = present[table[present] < 0]
    if unlisted.size:
        shown = ", ".join(str(v) for v in unlisted[:5]) + (", ..." if unlisted.size > 5 else "")
        raise DataError(f"{record.mask_name}: mask values {shown} are not in the value mapping (data.options.mask_values)")
    return table[mask].astype(np.uint8)


def load_mask(record: SegmentationRecord) -> np.ndarray:
    """Class-index mask ``uint8 [H, W]`` of a record (no range/size checks)."""
    if record.mask is not None:
        mask = _load_png_mask(record.mask)
    elif record.coco is not None:
        mask = _load_coco_mask(record.coco, record.image)
    else:
        raise DataError(f"{record.image}: no mask")
    return mask if record.values is None else _apply_values(record, mask)


# ---------------------------------------------------------------- checks


def mask_problem(
    record: SegmentationRecord,
    mask: np.ndarray,
    image_hw: tuple[int, int],
    num_classes: int | None,
) -> str | None:
    """One-line description of what is wrong with ``mask``, or None."""
    if tuple(mask.shape[:2]) != tuple(image_hw):
        return (
            f"{record.mask_name}: mask size {mask.shape[1]}x{mask.shape[0]} differs from "
            f"image {record.image.name} size {image_hw[1]}x{image_hw[0]}"
        )
    if num_classes is not None:
        values = np.unique(mask)
        bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
        if bad.size:
            shown = ", ".join(str(v) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
            return (
                f"{record.mask_name}: class values {shown} >= num_classes {num_classes} "
                f"(only 255 = ignore is allowed above)"
            )
    return None


def check_records(
    records: Iterable[SegmentationRecord], num_classes: int | None, policy: Policy = "error"
) -> list[SegmentationRecord]:
    """Load every mask once and keep the records without problems.

    Costs one decode per mask; readers run it when ``check=True`` so a bad
    file is reported before training starts rather than mid-epoch.
    """
    kept = []
    for record in records:
        try:
            problem = mask_problem(record, load_mask(record), image_size(record.image), num_classes)
        except DataError as exc:
            problem = str(exc)
        if problem is None:
            kept.append(record)
        else:
            report(problem, policy)
    return kept


def safe_join(root: Path, name: str) -> Path | None:
    """``root / name`` if it stays inside ``root``, else None.

    The check is lexical (normpath, not resolve): an annotation file must not
    reach outside the image root with '..' or an absolute path, but symlinks
    the user placed inside the dataset are followed as usual.
    """
    if not name or os.path.isabs(name) or Path(name).drive:
        return None
    root_abs = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(root_abs, name))
    if os.path.commonpath([root_abs, full]) != root_abs:
        return None
    return Path(full)


# ---------------------------------------------------------------- readers


def _images_under(folder: Path, exclude: Path) -> dict[Path, Path]:
    """Images under ``folder`` keyed by relative path without suffix.

    ``exclude`` (the masks folder) is skipped: it may live inside the images folder.
    """
    found: dict[Path, Path] = {}
    exclude = exclude.resolve()
    for path in sorted(folder.rglob("*")):
        if exclude in path.resolve().parents:
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            key = path.relative_to(folder).with_suffix("")
            if key in found:
                warn(f"{path}: another image with stem {key} exists ({found[key].name}); using that one")
                continue
            found[key] = path
    return found


def read_mask_folders(
    images_dir: str | Path,
    masks_dir: str | Path,
    num_classes: int | None = None,
    policy: Policy = "error",
    mask_suffix: str = "",
    check: bool = True,
) -> list[SegmentationRecord]:
    """Pair ``images_dir/<rel>/<stem>.<ext>`` with ``masks_dir/<rel>/<stem><mask_suffix>.png``.

    Masks are 'L' or 'P' PNGs whose pixel values are class indices (255 =
    ignore). Subfolders are mirrored. With ``check`` every mask is loaded
    once to verify its size and (if ``num_classes`` is given) its values.
    """
    check_policy(policy)
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: not a directory")
    records = []
    for key, image in _images_under(images_dir, masks_dir).items():
        mask = masks_dir / key.parent / f"{key.name}{mask_suffix}.png"
        if not mask.is_file():
            report(f"{image}: no mask {mask}", policy)
            continue
        records.append(SegmentationRecord(image=image, mask=mask))
    return check_records(records, num_classes, policy) if check else records


def read_voc_segmentation(
    root: str | Path,
    split: str | None = "train",
    num_classes: int | None = 21,
    policy: Policy = "error",
    check: bool = True,
) -> list[SegmentationRecord]:
    """PASCAL VOC layout: ``JPEGImages/<id>.jpg`` + ``SegmentationClass/<id>.png``.

    VOC masks are palette ('P') PNGs; the palette *indices* are the classes
    and the white object borders are index 255 (ignore). ``split`` names
    ``ImageSets/Segmentation/<split>.txt``; None takes every mask.
    """
    check_policy(policy)
    root = Path(root)
    image_dir, mask_dir = root / "JPEGImages", root / "SegmentationClass"
    if split is None:
        ids = sorted(p.stem for p in mask_dir.glob("*.png"))
    else:
        split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        try:
            ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise DataError(f"{split_file}: cannot read split file ({exc})") from exc
    records = []
    for image_id in ids:
        candidates = (image_dir / f"{image_id}{ext}" for ext in IMAGE_EXTENSIONS)
        image = next((p for p in candidates if p.is_file()), None)
        mask = mask_dir / f"{image_id}.png"
        if image is None:
            report(f"{image_dir}/{image_id}.jpg: image missing", policy)
        elif not mask.is_file():
            report(f"{image}: no mask {mask}", policy)
        else:
            records.append(SegmentationRecord(image=image, mask=mask))
    return check_records(records, num_classes, policy) if check else records


def _category_map(
    categories: list[dict], class_names: list[str] | None, source: str
) -> tuple[dict[int, int], list[str]]:
    """COCO category id -> contiguous class index (1..K); 0 is background."""
    if class_names is None:
        ordered = sorted(categories, key=lambda c: c["id"])
    else:
        by_name = {c["name"]: c for c in categories}
        missing = [n for n in class_names if n not in by_name]
        if missing:
            raise DataError(f"{source}: categories {missing} not found (has {sorted(by_name)})")
        ordered = [by_name[n] for n in class_names]
    if len(ordered) > 254:
        raise DataError(f"{source}: {len(ordered)} categories; at most 254 fit a uint8 mask")
    mapping = {int(c["id"]): i + 1 for i, c in enumerate(ordered)}
    return mapping, ["background"] + [c["name"] for c in ordered]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _coco_entries(data: Any, ann_json: Path, policy: Policy) -> tuple[list[dict], list[dict], list[dict]]:
    """The images, categories and annotations of a parsed COCO file, each with
    the field types the reader relies on.

    A malformed image or annotation entry is a problem under ``policy``; a
    malformed category is always an error (the class list depends on them).
    """
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("categories"), list):
        raise DataError(f"{ann_json}: not a COCO annotation file (needs 'images' and 'categories' lists)")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise DataError(f"{ann_json}: 'annotations' must be a list")
    categories, category_ids = [], set()
    for i, cat in enumerate(data["categories"]):
        if not (isinstance(cat, dict) and _is_int(cat.get("id")) and isinstance(cat.get("name"), str)):
            raise DataError(f"{ann_json}: categories[{i}] needs an integer 'id' and a string 'name'")
        if cat["id"] in category_ids:
            raise DataError(f"{ann_json}: categories[{i}]: duplicate category id {cat['id']}")
        categories.append(cat)
        category_ids.add(cat["id"])
    images, image_ids = [], set()
    for i, im in enumerate(data["images"]):
        if not (isinstance(im, dict) and _is_int(im.get("id")) and isinstance(im.get("file_name"), str)
                and all(_is_int(im.get(k)) and im[k] > 0 for k in ("width", "height"))):
            report(f"{ann_json}: images[{i}] needs an integer 'id', a string 'file_name' and positive integer "
                   f"'width' and 'height'", policy)
        elif im["id"] in image_ids:
            report(f"{ann_json}: images[{i}]: duplicate image id {im['id']}", policy)
        else:
            images.append(im)
            image_ids.add(im["id"])
    kept = []
    for i, ann in enumerate(annotations):
        if not (isinstance(ann, dict) and _is_int(ann.get("image_id")) and _is_int(ann.get("category_id"))):
            report(f"{ann_json}: annotations[{i}] needs an integer 'image_id' and 'category_id'", policy)
        else:
            kept.append(ann)
    return images, categories, kept


def read_coco_segmentation(
    ann_json: str | Path,
    image_root: str | Path,
    class_names: list[str] | None = None,
    policy: Policy = "error",
    check: bool = True,
) -> tuple[list[SegmentationRecord], list[str]]:
    """Records from a COCO instances file, and the class names (index 0 = 'background').

    Categories are mapped to 1..K in id order, or in ``class_names`` order
    (annotations of other categories are then left as background). Objects
    are painted largest first; crowd regions are painted with their class.
    Every image in the file becomes a record (no annotation = all background).
    """
    check_policy(policy)
    ann_json, image_root = Path(ann_json), Path(image_root)
    try:
        data = json.loads(ann_json.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{ann_json}: not a COCO annotation file ({exc})") from exc
    images, categories, annotations = _coco_entries(data, ann_json, policy)
    source = str(ann_json)
    cat_to_index, names = _category_map(categories, class_names, source)
    known_categories = {int(c["id"]) for c in categories}

    objects: dict[int, list[tuple[int, Any]]] = {int(im["id"]): [] for im in images}
    for ann in annotations:
        image_id, cat = int(ann.get("image_id", -1)), int(ann.get("category_id", -1))
        if image_id not in objects:
            report(f"{source}: annotation {ann.get('id')} refers to unknown image_id {image_id}", policy)
        elif cat not in known_categories:
            report(f"{source}: annotation {ann.get('id')} has unknown category_id {cat}", policy)
        elif cat in cat_to_index and ann.get("segmentation"):  # boxes-only annotations carry no mask
            objects[image_id].append((cat_to_index[cat], ann["segmentation"]))

    records = []
    for im in images:
        name = str(im.get("file_name", ""))
        path = safe_join(image_root, name)
        if path is None:
            report(f"{source}: file_name {name!r} escapes the image root {image_root}; refused", policy)
            continue
        if not path.is_file():
            report(f"{path}: image listed in {ann_json.name} is missing", policy)
            continue
        coco = CocoMask(int(im["height"]), int(im["width"]), tuple(objects[int(im["id"])]), source)
        records.append(SegmentationRecord(image=path, coco=coco))
    if check:
        records = check_records(records, len(names), policy)
    return records, names
